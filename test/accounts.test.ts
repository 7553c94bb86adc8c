import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addDays } from '../src/lib/days.js';
import type { Mail, Mailer } from '../src/lib/mailer.js';
import { accountsJobs } from '../src/modules/accounts/accounts.jobs.js';
import { aUser, DEFAULT_PASSWORD, eventually, signIn, startTestApp, type TestApp } from './helpers.js';
import { linkIn, smtpCapture } from './smtp.js';

// The account lifecycle through HTTP alone, with the worker running, so mails really go out: through
// a local SMTP server here, and through the dev mailbox in the last block.
let t: TestApp;
let smtp: Awaited<ReturnType<typeof smtpCapture>>;

beforeAll(async () => {
  smtp = await smtpCapture();
  t = await startTestApp({ worker: true, env: { SMTP_URL: smtp.url, RATE_LIMIT_MULTIPLIER: '0' } });
});
afterAll(async () => {
  await t?.close();
  await smtp?.close();
});

const json = (
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
  url: string,
  payload?: unknown,
  headers: Record<string, string> = {},
) => t.app.inject({ method, url, headers, ...(payload === undefined ? {} : { payload: payload as object }) });

const mailFor = (email: string, kind: 'verify-email' | 'reset-password', nth = 0) =>
  eventually(() => {
    const mails = smtp.mails.filter((m) => m.to.includes(email) && m.raw.includes(kind));
    const mail = mails[nth];
    if (!mail) throw new Error(`no ${kind} mail #${nth} for ${email} yet`);
    return mail;
  }, 10_000);

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const unique = () => Math.random().toString(36).slice(2, 10);

describe('the account lifecycle over HTTP', () => {
  it('register → verify by mail → login → refresh → sessions → forgot/reset → logout', async () => {
    const id = unique();
    const email = `asha.${id}@example.test`;
    const username = `asha_${id}`;

    const registered = await json('POST', '/v1/auth/register', {
      username,
      email,
      password: 'mango lassi at noon',
      name: 'Asha',
      timezone: 'Asia/Kolkata',
    });
    expect(registered.statusCode).toBe(201);
    expect(registered.json()).toMatchObject({
      username,
      email,
      emailVerified: false,
      timezone: 'Asia/Kolkata',
      name: 'Asha',
    });
    expect(registered.json()).not.toHaveProperty('passwordHash');

    const verifyMail = await mailFor(email, 'verify-email');
    const verifyLink = linkIn(verifyMail.raw);
    expect(verifyLink.origin + verifyLink.pathname).toBe(`${t.config.APP_URL}/verify-email`);
    const token = verifyLink.searchParams.get('token') as string;
    expect(Buffer.from(token, 'base64url').length).toBeGreaterThanOrEqual(16);
    expect((await json('POST', '/v1/auth/verify-email', { token })).statusCode).toBe(204);
    const again = await json('POST', '/v1/auth/verify-email', { token });
    expect(again.statusCode).toBe(400);
    expect(again.json().code).toBe('invalid_token');

    const login = await json(
      'POST',
      '/v1/auth/login',
      { login: username.toUpperCase(), password: 'mango lassi at noon' },
      { 'user-agent': 'phone' },
    );
    expect(login.statusCode).toBe(200);
    const first = login.json();
    expect(first).toMatchObject({ expiresIn: 900, user: { username, emailVerified: true } });
    const me = await json('GET', '/v1/me', undefined, bearer(first.accessToken));
    expect(me.json()).toMatchObject({ email, emailVerified: true });

    const laptop = (
      await json(
        'POST',
        '/v1/auth/login',
        { login: email, password: 'mango lassi at noon' },
        { 'user-agent': 'laptop' },
      )
    ).json();

    const refreshed = await json('POST', '/v1/auth/refresh', { refreshToken: first.refreshToken });
    expect(refreshed.statusCode).toBe(200);
    const second = refreshed.json();
    expect(second.refreshToken).not.toBe(first.refreshToken);
    expect((await json('GET', '/v1/me', undefined, bearer(second.accessToken))).statusCode).toBe(200);

    const sessions = (await json('GET', '/v1/auth/sessions', undefined, bearer(second.accessToken))).json();
    expect(sessions.items).toHaveLength(2);
    expect(sessions.items.filter((s: { current: boolean }) => s.current)).toHaveLength(1);
    expect(sessions.items.map((s: { userAgent: string }) => s.userAgent).sort()).toEqual(['laptop', 'phone']);

    // Revoke the laptop from the phone: its access token stops working at once.
    const laptopSession = sessions.items.find((s: { userAgent: string }) => s.userAgent === 'laptop');
    expect(
      (await json('DELETE', `/v1/auth/sessions/${laptopSession.id}`, undefined, bearer(second.accessToken)))
        .statusCode,
    ).toBe(204);
    expect((await json('GET', '/v1/me', undefined, bearer(laptop.accessToken))).statusCode).toBe(401);
    expect((await json('POST', '/v1/auth/refresh', { refreshToken: laptop.refreshToken })).statusCode).toBe(
      401,
    );

    // Forgot and reset: every session ends, the new password works and the old one does not.
    expect((await json('POST', '/v1/auth/password/forgot', { email: email.toUpperCase() })).statusCode).toBe(
      202,
    );
    const resetToken = linkIn((await mailFor(email, 'reset-password')).raw).searchParams.get(
      'token',
    ) as string;
    const weak = await json('POST', '/v1/auth/password/reset', {
      token: resetToken,
      password: 'password123',
    });
    expect(weak.statusCode).toBe(400);
    expect(weak.json().code).toBe('password_too_common');
    expect(
      (await json('POST', '/v1/auth/password/reset', { token: resetToken, password: 'chai before sunrise' }))
        .statusCode,
    ).toBe(204);
    expect((await json('GET', '/v1/me', undefined, bearer(second.accessToken))).statusCode).toBe(401);
    expect(
      (
        await json('POST', '/v1/auth/password/reset', {
          token: resetToken,
          password: 'chai before sunrise 2',
        })
      ).statusCode,
    ).toBe(400);
    expect(
      (await json('POST', '/v1/auth/login', { login: email, password: 'mango lassi at noon' })).statusCode,
    ).toBe(401);
    const third = (
      await json('POST', '/v1/auth/login', { login: email, password: 'chai before sunrise' })
    ).json();

    const logout = await json('POST', '/v1/auth/logout', undefined, bearer(third.accessToken));
    expect(logout.statusCode).toBe(204);
    expect((await json('GET', '/v1/me', undefined, bearer(third.accessToken))).statusCode).toBe(401);
    expect((await json('POST', '/v1/auth/refresh', { refreshToken: third.refreshToken })).statusCode).toBe(
      401,
    );
  });

  it('change password ends every other session and keeps this one', async () => {
    const user = await aUser(t.deps);
    const here = await signIn(t.deps, user.id);
    const elsewhere = await signIn(t.deps, user.id);
    const wrong = await json(
      'POST',
      '/v1/auth/password/change',
      { currentPassword: 'nope nope nope', password: 'a brand new secret' },
      here.headers,
    );
    expect(wrong.statusCode).toBe(400);
    expect(wrong.json().code).toBe('current_password_incorrect');
    const ok = await json(
      'POST',
      '/v1/auth/password/change',
      { currentPassword: DEFAULT_PASSWORD, password: 'a brand new secret' },
      here.headers,
    );
    expect(ok.statusCode).toBe(204);
    expect((await json('GET', '/v1/me', undefined, here.headers)).statusCode).toBe(200);
    expect((await json('GET', '/v1/me', undefined, elsewhere.headers)).statusCode).toBe(401);
    expect(
      (await json('POST', '/v1/auth/login', { login: user.username, password: 'a brand new secret' }))
        .statusCode,
    ).toBe(200);
  });

  it('a session of someone else is 404, not 403', async () => {
    const a = await signIn(t.deps, (await aUser(t.deps)).id);
    const b = await signIn(t.deps, (await aUser(t.deps)).id);
    const res = await json('DELETE', `/v1/auth/sessions/${b.sessionId}`, undefined, a.headers);
    expect(res.statusCode).toBe(404);
    expect((await json('GET', '/v1/me', undefined, b.headers)).statusCode).toBe(200);
  });
});

describe('registration rules', () => {
  it('refuses bad usernames, passwords, time zones and unknown fields, each with a code', async () => {
    const base = () => ({
      username: `r_${unique()}`,
      email: `r.${unique()}@example.test`,
      password: 'tamarind and tea',
    });
    const cases: [Record<string, unknown>, string, string?][] = [
      [{ username: 'ab' }, 'validation_failed', 'body/username'],
      [{ username: 'has space' }, 'validation_failed', 'body/username'],
      [{ username: 'x'.repeat(31) }, 'validation_failed', 'body/username'],
      [{ email: 'not-an-email' }, 'validation_failed', 'body/email'],
      [{ password: 'short' }, 'validation_failed', 'body/password'],
      [{ password: 'p'.repeat(129) }, 'password_too_long'],
      [{ password: 'Password123' }, 'password_too_common'],
      [{ password: 'iloveyou2' }, 'password_too_common'],
      [{ timezone: 'Mars/Olympus' }, 'invalid_timezone'],
      [{ timezone: '+05:30' }, 'invalid_timezone'],
      [{ emailVerified: true }, 'validation_failed', 'body/emailVerified'],
      [{ role: 'admin' }, 'validation_failed', 'body/role'],
    ];
    for (const [patch, code, field] of cases) {
      const res = await json('POST', '/v1/auth/register', { ...base(), ...patch });
      expect(res.statusCode, JSON.stringify(patch)).toBe(400);
      expect(res.json().code, JSON.stringify(patch)).toBe(code);
      if (field)
        expect(
          res.json().errors.map((e: { field: string }) => e.field),
          JSON.stringify(patch),
        ).toContain(field);
    }
  });

  it('a password equal to the username is refused; a long passphrase with any characters is fine', async () => {
    const username = `same_${unique()}`;
    const same = await json('POST', '/v1/auth/register', {
      username,
      email: `${username}@example.test`,
      password: username,
    });
    expect(same.json().code).toBe('password_too_common');
    const passphrase = `माँ की चाय ☕ ${'x'.repeat(100)}`;
    const ok = await json('POST', '/v1/auth/register', {
      username: `pp_${unique()}`,
      email: `pp.${unique()}@example.test`,
      password: passphrase,
    });
    expect(ok.statusCode).toBe(201);
    // No truncation: the whole passphrase is the password.
    const login = await json('POST', '/v1/auth/login', {
      login: ok.json().username,
      password: passphrase.slice(0, -1),
    });
    expect(login.statusCode).toBe(401);
    expect(
      (await json('POST', '/v1/auth/login', { login: ok.json().username, password: passphrase })).statusCode,
    ).toBe(200);
  });

  it('usernames and emails are unique ignoring case, also when two registrations race', async () => {
    const id = unique();
    const first = await json('POST', '/v1/auth/register', {
      username: `Dup_${id}`,
      email: `Dup.${id}@example.test`,
      password: 'pistachio kulfi',
    });
    expect(first.statusCode).toBe(201);
    const byName = await json('POST', '/v1/auth/register', {
      username: `dup_${id}`,
      email: `other.${id}@example.test`,
      password: 'pistachio kulfi',
    });
    expect(byName.statusCode).toBe(409);
    expect(byName.json().code).toBe('username_taken');
    const byEmail = await json('POST', '/v1/auth/register', {
      username: `other_${id}`,
      email: `DUP.${id}@EXAMPLE.TEST`,
      password: 'pistachio kulfi',
    });
    expect(byEmail.statusCode).toBe(409);
    expect(byEmail.json().code).toBe('email_taken');

    const race = await Promise.all(
      Array.from({ length: 5 }, (_, i) =>
        json('POST', '/v1/auth/register', {
          username: `race_${id}`,
          email: `race${i}.${id}@example.test`,
          password: 'pistachio kulfi',
        }),
      ),
    );
    expect(race.map((r) => r.statusCode).sort()).toEqual([201, 409, 409, 409, 409]);
  });
});

describe('me', () => {
  it('reads and updates settings with validation', async () => {
    const s = await signIn(t.deps, (await aUser(t.deps)).id);
    const patch = {
      name: '  Meera  ',
      about: 'Early riser',
      timezone: 'america/new_york',
      dayStartHour: 4,
      dailyGoal: 3,
      profileVisibility: 'public',
      discoverable: false,
      maaTone: 'strict',
      locale: 'hi',
      quietHours: { start: '22:00', end: '07:00' },
    };
    const res = await json('PATCH', '/v1/me', patch, s.headers);
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ ...patch, name: 'Meera', timezone: 'America/New_York' });
    expect((await json('GET', '/v1/me', undefined, s.headers)).json()).toMatchObject({
      dailyGoal: 3,
      quietHours: { start: '22:00', end: '07:00' },
    });
    const cleared = await json('PATCH', '/v1/me', { quietHours: null }, s.headers);
    expect(cleared.json().quietHours).toBeNull();

    for (const bad of [
      { timezone: 'IST' },
      { dayStartHour: 24 },
      { dailyGoal: 0 },
      { profileVisibility: 'everyone' },
      { quietHours: { start: '25:00', end: '07:00' } },
      { email: 'new@example.test' },
      { emailVerified: true },
      { name: 'nul\u0000byte' },
      { about: '\u0000' },
      {},
    ]) {
      const r = await json('PATCH', '/v1/me', bad, s.headers);
      expect(r.statusCode, JSON.stringify(bad)).toBe(400);
    }
  });

  it('a time-zone or day-start change applies from the next logical day', async () => {
    const user = await aUser(t.deps, { timezone: 'Asia/Kolkata' });
    const s = await signIn(t.deps, user.id);
    const res = await json('PATCH', '/v1/me', { timezone: 'America/New_York', dayStartHour: 4 }, s.headers);
    expect(res.json()).toMatchObject({ timezone: 'America/New_York', dayStartHour: 4 });
    // Today still ends where it was going to end; tomorrow follows the new settings.
    expect(await t.deps.accounts.daySettings(user.id)).toEqual({ timezone: 'Asia/Kolkata', dayStartHour: 0 });
    const calendar = await t.deps.accounts.dayCalendar(user.id);
    const today = calendar.dateOf(new Date());
    const tomorrow = addDays(today, 1);
    expect(calendar.settingsOn(tomorrow)).toMatchObject({ timezone: 'America/New_York', dayStartHour: 4 });
    expect(calendar.end(today).getTime()).toBe(calendar.start(tomorrow).getTime());
    // Changing again the same day replaces the pending change rather than stacking it.
    await json('PATCH', '/v1/me', { timezone: 'Europe/London' }, s.headers);
    const rows = await t.deps.db.query<{ effectiveOn: string; timezone: string }>(
      'SELECT effective_on, timezone FROM day_settings WHERE user_id = $1 ORDER BY effective_on',
      [user.id],
    );
    expect(rows.rows.map((r) => r.timezone)).toEqual(['Asia/Kolkata', 'Europe/London']);
    expect(rows.rows[1]?.effectiveOn).toBe(tomorrow);
  });

  it('needs a signed-in caller', async () => {
    const res = await json('GET', '/v1/me');
    expect(res.statusCode).toBe(401);
    expect(res.json().code).toBe('unauthorized');
  });
});

describe('mail', () => {
  it('resend and forgot answer 202 whoever asks, and mail only real, unverified accounts', async () => {
    const unverified = await aUser(t.deps, { verified: false });
    const verified = await aUser(t.deps);
    const nobody = `nobody.${unique()}@example.test`;
    for (const email of [unverified.email, verified.email, nobody]) {
      const res = await json('POST', '/v1/auth/resend-verification', { email });
      expect(res.statusCode).toBe(202);
      expect(res.json()).toEqual({ status: 'accepted' });
    }
    await mailFor(unverified.email, 'verify-email');
    await new Promise((r) => setTimeout(r, 300));
    const sentTo = smtp.mails.flatMap((m) => m.to);
    expect(sentTo.filter((to) => [unverified.email, verified.email, nobody].includes(to))).toEqual([
      unverified.email,
    ]);
  });

  it('escapes names with markup or line breaks (C6)', async () => {
    const user = await aUser(t.deps, {
      verified: false,
      name: '<img src=x onerror=alert(1)>\r\nBcc: evil@example.test',
    });
    await json('POST', '/v1/auth/resend-verification', { email: user.email });
    const mail = await mailFor(user.email, 'verify-email');
    expect(mail.to).toEqual([user.email]);
    const unfolded = mail.raw.replace(/=\r?\n/g, '').replace(/=3D/g, '=');
    const html = unfolded.slice(unfolded.indexOf('Content-Type: text/html'));
    expect(html).toContain('&lt;img src=x onerror=alert(1)&gt;');
    expect(html).not.toContain('<img');
    // The line break was flattened: no header or line of the mail starts with the injected text.
    expect(unfolded).not.toMatch(/^Bcc:/im);
  });

  it('a mail job run again sends the same working link after a failed send, and nothing after a sent one', async () => {
    const user = await aUser(t.deps, { verified: false });
    const payload = {
      userId: user.id,
      purpose: 'verify_email' as const,
      requestId: '01930000-0000-7000-8000-000000000001',
    };
    // The job's own handler with a stand-in SMTP server: the first attempt is refused.
    const sent: Mail[] = [];
    let refuse = true;
    const mailer: Mailer = {
      kind: 'smtp',
      async send(mail) {
        if (refuse) throw new Error('SMTP refused');
        sent.push(mail);
      },
      close() {},
    };
    const job = accountsJobs({ accounts: t.deps.accounts, mailer }).find(
      (j) => j.name === 'accounts.send_mail',
    );
    const run = () => job?.handler(payload, { jobId: 'mail', attempt: 1, log: t.deps.log } as never);
    await expect(run()).rejects.toThrow('SMTP refused');
    refuse = false;
    await run();
    // Run once more, as after a worker stopped before recording the job done, or Redis lost the
    // queue and the outbox relayed it again: the mail went out already.
    await run();
    expect(sent).toHaveLength(1);
    const token = linkIn((sent[0] as Mail).text).searchParams.get('token');
    const { rows } = await t.deps.db.query<{ tokenHash: string; mailed: boolean }>(
      'SELECT token_hash, mailed_at IS NOT NULL AS mailed FROM mail_tokens WHERE user_id = $1',
      [user.id],
    );
    expect(rows).toEqual([{ tokenHash: expect.any(String), mailed: true }]);
    // The token is derived from the request, never stored raw.
    expect(rows[0]?.tokenHash).not.toContain(token as string);
    expect((await json('POST', '/v1/auth/verify-email', { token })).statusCode).toBe(204);
  });
});

describe('housekeeping', () => {
  it('the prune job deletes month-old ended sessions and used mail tokens, and keeps live ones', async () => {
    const user = await aUser(t.deps);
    const live = await signIn(t.deps, user.id);
    const old = await signIn(t.deps, user.id);
    const longAgo = new Date(Date.now() - 40 * 86400_000);
    await t.deps.db.query('UPDATE sessions SET revoked_at = $2 WHERE id = $1', [old.sessionId, longAgo]);
    await t.deps.db.query(
      `INSERT INTO mail_tokens (token_hash, user_id, purpose, created_at, expires_at, used_at)
       VALUES ($1, $2, 'verify_email', $3, $3, $3), ($4, $2, 'verify_email', now(), now() + interval '1 day', NULL)`,
      [`old-${user.id}`, user.id, longAgo, `new-${user.id}`],
    );
    await t.deps.jobs.enqueue('accounts.prune', {}, { jobId: `prune-${user.id}` });
    await eventually(async () => {
      const { rows } = await t.deps.db.query<{ id: string }>('SELECT id FROM sessions WHERE user_id = $1', [
        user.id,
      ]);
      expect(rows.map((r) => r.id)).toEqual([live.sessionId]);
    });
    const tokens = await t.deps.db.query<{ tokenHash: string }>(
      'SELECT token_hash FROM mail_tokens WHERE user_id = $1',
      [user.id],
    );
    expect(tokens.rows.map((r) => r.tokenHash)).toEqual([`new-${user.id}`]);
    expect((await json('GET', '/v1/me', undefined, live.headers)).statusCode).toBe(200);
  });
});

describe('dev mailbox', () => {
  it('without SMTP_URL, writes an .eml under DATA_DIR/mail and logs the link', async () => {
    const dev = await startTestApp({ worker: true, env: { RATE_LIMIT_MULTIPLIER: '0' } });
    try {
      const id = unique();
      const res = await dev.app.inject({
        method: 'POST',
        url: '/v1/auth/register',
        payload: { username: `dev_${id}`, email: `dev.${id}@example.test`, password: 'sandalwood sunset' },
      });
      expect(res.statusCode).toBe(201);
      const dir = join(dev.config.DATA_DIR, 'mail');
      const files = await eventually(() => {
        const found = readdirSync(dir).filter((f) => f.endsWith('.eml'));
        if (found.length === 0) throw new Error('no mail yet');
        return found;
      }, 10_000);
      const raw = readFileSync(join(dir, files[0] as string), 'utf8');
      expect(raw).toContain(`dev.${id}@example.test`);
      const link = linkIn(raw);
      const logged = dev.logs().find((l) => l.msg === 'mail written to the dev mailbox');
      expect(logged?.link).toBe(link.toString());
      const verify = await dev.app.inject({
        method: 'POST',
        url: '/v1/auth/verify-email',
        payload: { token: link.searchParams.get('token') },
      });
      expect(verify.statusCode).toBe(204);
    } finally {
      await dev.close();
    }
  });
});
