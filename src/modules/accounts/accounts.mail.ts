import type { Mail } from '../../lib/mailer.js';
import type { UserRow } from './accounts.repo.js';
import type { MailPurpose } from './accounts.service.js';

const escapeHtml = (s: string) =>
  s.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string,
  );
// A name is the user's own text: it may hold markup or line breaks meant to forge mail content.
const oneLine = (s: string) => s.replace(/[\r\n\t\u2028\u2029]+/g, ' ').trim();

const COPY: Record<MailPurpose, { subject: string; intro: string; action: string; expiry: string }> = {
  verify_email: {
    subject: 'Confirm your email for TaskMaa',
    intro: 'Maa wants to be sure she can reach you. Please confirm your email address.',
    action: 'Confirm my email',
    expiry: 'This link works once and expires in 24 hours.',
  },
  reset_password: {
    subject: 'Reset your TaskMaa password',
    intro: 'Someone (hopefully you) asked to reset your TaskMaa password.',
    action: 'Choose a new password',
    expiry: 'This link works once and expires in 1 hour. If you did not ask, ignore this mail.',
  },
};

export function accountMail(
  purpose: MailPurpose,
  user: Pick<UserRow, 'email' | 'name' | 'username'>,
  link: string,
): Mail {
  const copy = COPY[purpose];
  const who = oneLine(user.name) || user.username;
  return {
    to: user.email,
    subject: copy.subject,
    text: `Hello ${who},\n\n${copy.intro}\n\n${copy.action}: ${link}\n\n${copy.expiry}\n\n— TaskMaa\n`,
    html:
      `<p>Hello ${escapeHtml(who)},</p><p>${copy.intro}</p>` +
      `<p><a href="${escapeHtml(link)}">${copy.action}</a></p><p>${copy.expiry}</p><p>— TaskMaa</p>`,
    devLink: link,
  };
}
