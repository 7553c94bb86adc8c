import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import type { Logger } from 'pino';

export interface Mail {
  to: string;
  subject: string;
  text: string;
  html: string;
  /** Shown in the dev mailbox log line so a developer can click through; never logged in production. */
  devLink?: string;
}

/** Sends mail. Called only from jobs, never on a request's path. Throws on failure so the job retries. */
export interface Mailer {
  readonly kind: 'smtp' | 'dev-mailbox';
  send(mail: Mail): Promise<void>;
  close(): void;
}

export function smtpMailer(opts: { url: string; from: string }): Mailer {
  // nodemailer reads the connection URL from `url` and lets explicit timeouts override its long defaults.
  const transport = nodemailer.createTransport({
    url: opts.url,
    connectionTimeout: 10_000,
    greetingTimeout: 10_000,
    socketTimeout: 20_000,
  } as Parameters<typeof nodemailer.createTransport>[0]);
  return {
    kind: 'smtp',
    async send({ to, subject, text, html }) {
      await transport.sendMail({ from: opts.from, to, subject, text, html });
    },
    close: () => transport.close(),
  };
}

/** Without SMTP_URL: every mail becomes an .eml file under DATA_DIR/mail, and its link is logged. */
export function devMailbox(opts: { dir: string; from: string; log: Logger; logLinks: boolean }): Mailer {
  const transport = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: 'unix' });
  return {
    kind: 'dev-mailbox',
    async send({ to, subject, text, html, devLink }) {
      const info = await transport.sendMail({ from: opts.from, to, subject, text, html });
      mkdirSync(opts.dir, { recursive: true });
      const file = join(
        opts.dir,
        `${new Date().toISOString().replace(/[:.]/g, '-')}-${info.messageId.replace(/[^A-Za-z0-9]/g, '').slice(0, 24)}.eml`,
      );
      writeFileSync(file, info.message as Buffer);
      opts.log.info(
        { file, ...(opts.logLinks && devLink ? { link: devLink } : {}) },
        'mail written to the dev mailbox',
      );
    },
    close: () => {},
  };
}
