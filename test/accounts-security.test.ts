import { createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ARGON2 } from '../src/modules/accounts/accounts.passwords.js';
import {
  aUser,
  DEFAULT_PASSWORD,
  eventually,
  fakeClock,
  signIn,
  startTestApp,
  type TestApp,
} from './helpers.js';
import { linkIn, smtpCapture } from './smtp.js';

// RELIABILITY.md B1–B7, B9 (sockets: see realtime tests), C7, D4, D9 through the HTTP edge, with the
// real rate limits (RATE_LIMIT_MULTIPLIER=1) and a clock the tests move.
let t: TestApp;
let smtp: Awaited<ReturnType<typeof smtpCapture>>;
const clock = fakeClock(new Date());

beforeAll(async () => {
  smtp = await smtpCapture();
  t = await startTestApp({ worker: true, clock, env: { SMTP_URL: smtp.url } });
});
afterAll(async () => {
  await t?.close();
  await smtp?.close();
});

let ipCounter = 0;
const freshIp = () => `10.${(ipCounter >> 8) & 255}.${ipCounter++ & 255}.7`;
const login = (body: object, ip = freshIp(), headers: Record<string, string> = {}) =>
  t.app.inject({ method: 'POST', url: '/v1/auth/login', payload: body, remoteAddress: ip, headers });
const me = (headers: Record<string, string>) => t.app.inject({ method: 'GET', url: '/v1/me', headers });

describe('B1 tokens at the HTTP edge', () => {
  it('refuses forged, confused and expired access tokens', async () => {
    const user = await aUser(t.deps);
    const s = await signIn(t.deps, user.id);
    const [h, b] = s.token.split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(b, 'base64url').toString());
    const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
    const sign = (data: string, key: string) => createHmac('sha256', key).update(data).digest('base64url');
    const forged = {
      'alg none': `${b64({ alg: 'none', typ: 'JWT' })}.${b}.`,
      'other key': `${h}.${b}.${sign(`${h}.${b}`, 'not-the-server-secret-not-the-server-secret')}`,
      'kid header': (() => {
        const hk = b64({ alg: 'HS256', typ: 'JWT', kid: 'x' });
        return `${hk}.${b}.${sign(`${hk}.${b}`, t.config.ACCESS_TOKEN_SECRET)}`;
      })(),
      'refresh token as access': (() => {
        const bt = b64({ ...claims, typ: 'refresh' });
        return `${h}.${bt}.${sign(`${h}.${bt}`, t.config.ACCESS_TOKEN_SECRET)}`;
      })(),
      'wrong audience': (() => {
        const bt = b64({ ...claims, aud: 'someone-else' });
        return `${h}.${bt}.${sign(`${h}.${bt}`, t.config.ACCESS_TOKEN_SECRET)}`;
      })(),
    };
    for (const [name, token] of Object.entries(forged)) {
      expect((await me({ authorization: `Bearer ${token}` })).statusCode, name).toBe(401);
    }
    expect((await me(s.headers)).statusCode, 'control').toBe(200);
    clock.advance(901_000);
    try {
      expect((await me(s.headers)).statusCode, 'expired').toBe(401);
    } finally {
      clock.advance(-901_000);
    }
  });
});

describe('B3 refresh rotation', () => {
  it('reusing a rotated refresh token revokes the whole session; a race between two tabs does not', async () => {
    const user = await aUser(t.deps);
    const first = (await login({ login: user.username, password: DEFAULT_PASSWORD })).json();

    // Two tabs refresh with the same token at the same moment: no 5xx, both get working tokens.
    const tabs = await Promise.all(
      [0, 1].map(() =>
        t.app.inject({
          method: 'POST',
          url: '/v1/auth/refresh',
          payload: { refreshToken: first.refreshToken },
        }),
      ),
    );
    expect(tabs.map((r) => r.statusCode)).toEqual([200, 200]);
    const next = tabs[0]?.json();
    expect((await me({ authorization: `Bearer ${next.accessToken}` })).statusCode).toBe(200);

    // Later, the old token shows up again: theft is assumed and the session ends.
    clock.advance(11_000);
    const reuse = await t.app.inject({
      method: 'POST',
      url: '/v1/auth/refresh',
      payload: { refreshToken: first.refreshToken },
    });
    expect(reuse.statusCode).toBe(401);
    expect(reuse.json().code).toBe('refresh_token_reused');
    expect((await me({ authorization: `Bearer ${next.accessToken}` })).statusCode).toBe(401);
    const successor = await t.app.inject({
      method: 'POST',
      url: '/v1/auth/refresh',
      payload: { refreshToken: next.refreshToken },
    });
    expect(successor.statusCode).toBe(401);
  });

  it('an unknown refresh token is 401 and a missing one too', async () => {
    for (const payload of [{ refreshToken: 'x'.repeat(43) }, {}]) {
      const res = await t.app.inject({ method: 'POST', url: '/v1/auth/refresh', payload });
      expect(res.statusCode).toBe(401);
      expect(res.json().code).toBe('invalid_refresh_token');
    }
  });
});

describe('B4 cookies and browser controls', () => {
  it('login sets HttpOnly SameSite=Lax cookies; logout clears the same cookies', async () => {
    const user = await aUser(t.deps);
    const res = await login({ login: user.email, password: DEFAULT_PASSWORD });
    const cookies = res.cookies;
    const access = cookies.find((c) => c.name === 'taskmaa_at');
    const refresh = cookies.find((c) => c.name === 'taskmaa_rt');
    for (const c of [access, refresh]) {
      expect(c).toMatchObject({ httpOnly: true, sameSite: 'Lax', path: '/' });
      expect(c?.secure).toBeFalsy();
    }
    expect(access?.maxAge).toBe(900);

    const cookie = `taskmaa_at=${access?.value}; taskmaa_rt=${refresh?.value}`;
    expect((await me({ cookie })).statusCode).toBe(200);
    // A cross-site page cannot use the cookies to change anything or to mint tokens.
    const patch = await t.app.inject({
      method: 'PATCH',
      url: '/v1/me',
      headers: { cookie, origin: 'https://evil.test' },
      payload: { about: 'pwned' },
    });
    expect(patch.statusCode).toBe(403);
    const mint = await t.app.inject({
      method: 'POST',
      url: '/v1/auth/refresh',
      headers: { cookie, origin: 'https://evil.test' },
    });
    expect(mint.statusCode).toBe(403);
    expect(mint.json().code).toBe('origin_not_allowed');
    const ours = await t.app.inject({
      method: 'POST',
      url: '/v1/auth/refresh',
      headers: { cookie, origin: 'http://app.test' },
    });
    expect(ours.statusCode).toBe(200);

    const newAccess = ours.cookies.find((c) => c.name === 'taskmaa_at')?.value;
    const out = await t.app.inject({
      method: 'POST',
      url: '/v1/auth/logout',
      headers: { cookie: `taskmaa_at=${newAccess}`, origin: 'http://app.test' },
    });
    expect(out.statusCode).toBe(204);
    const cleared = out.cookies.filter((c) => c.name === 'taskmaa_at' || c.name === 'taskmaa_rt');
    expect(cleared).toHaveLength(2);
    for (const c of cleared) {
      expect(c).toMatchObject({ value: '', path: '/', httpOnly: true, sameSite: 'Lax' });
      expect(c.expires?.getTime() ?? 0).toBeLessThanOrEqual(Date.now());
    }
    expect((await me({ cookie: `taskmaa_at=${newAccess}` })).statusCode).toBe(401);
  });

  it('in production the cookies are Secure and __Host- prefixed', async () => {
    const prod = await startTestApp({
      env: { NODE_ENV: 'production', ACCESS_TOKEN_SECRET: 's'.repeat(48), RATE_LIMIT_MULTIPLIER: '0' },
    });
    try {
      const user = await aUser(prod.deps);
      const res = await prod.app.inject({
        method: 'POST',
        url: '/v1/auth/login',
        payload: { login: user.username, password: DEFAULT_PASSWORD },
      });
      expect(res.statusCode).toBe(200);
      const names = res.cookies.map((c) => c.name).sort();
      expect(names).toEqual(['__Host-taskmaa_at', '__Host-taskmaa_rt']);
      for (const c of res.cookies)
        expect(c).toMatchObject({ secure: true, httpOnly: true, path: '/', sameSite: 'Lax' });
      expect(res.cookies.every((c) => c.domain === undefined)).toBe(true);
      expect(res.headers['strict-transport-security']).toBeDefined();
    } finally {
      await prod.close();
    }
  });

  it('no auth route mutates on GET', async () => {
    for (const url of [
      '/v1/auth/logout',
      '/v1/auth/refresh',
      '/v1/auth/login',
      '/v1/auth/register',
      '/v1/auth/password/change',
    ]) {
      expect((await t.app.inject({ method: 'GET', url })).statusCode, url).toBe(404);
    }
  });
});

describe('B5 password storage', () => {
  it('stores argon2id at m=19456, t=2, p=1 and upgrades weaker hashes on login', async () => {
    const user = await aUser(t.deps);
    const { rows } = await t.deps.db.query<{ passwordHash: string }>(
      'SELECT password_hash FROM users WHERE id = $1',
      [user.id],
    );
    expect(rows[0]?.passwordHash).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);

    const { hash } = await import('@node-rs/argon2');
    const weak = await hash(DEFAULT_PASSWORD, { ...ARGON2, memoryCost: 4096, timeCost: 1 });
    await t.deps.db.query('UPDATE users SET password_hash = $2 WHERE id = $1', [user.id, weak]);
    expect((await login({ login: user.username, password: DEFAULT_PASSWORD })).statusCode).toBe(200);
    const after = await t.deps.db.query<{ passwordHash: string }>(
      'SELECT password_hash FROM users WHERE id = $1',
      [user.id],
    );
    expect(after.rows[0]?.passwordHash).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    expect((await login({ login: user.username, password: DEFAULT_PASSWORD })).statusCode).toBe(200);
  });
});

describe('B6 brute force and enumeration', () => {
  it('unknown user and wrong password look the same and take similar time', async () => {
    const user = await aUser(t.deps);
    const wrong = await login({ login: user.username, password: 'not my password' });
    const unknown = await login({ login: `ghost_${Date.now()}`, password: 'not my password' });
    expect(wrong.statusCode).toBe(401);
    expect(unknown.statusCode).toBe(401);
    const strip = (b: { instance?: string }) => ({ ...b, instance: undefined });
    expect(strip(unknown.json())).toEqual(strip(wrong.json()));
    expect(unknown.json().code).toBe('invalid_credentials');

    const time = async (body: object) => {
      const start = process.hrtime.bigint();
      await login(body);
      return Number(process.hrtime.bigint() - start) / 1e6;
    };
    const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
    const known: number[] = [];
    const ghosts: number[] = [];
    for (let i = 0; i < 7; i++) {
      const other = await aUser(t.deps);
      known.push(await time({ login: other.username, password: 'not my password' }));
      ghosts.push(await time({ login: `ghost_${i}_${Date.now()}`, password: 'not my password' }));
    }
    const ratio = median(ghosts) / median(known);
    console.log(
      `B6 timing: wrong password p50 ${median(known).toFixed(1)} ms, unknown user p50 ${median(ghosts).toFixed(1)} ms, ratio ${ratio.toFixed(2)}`,
    );
    // Skipping the hash for unknown users would make them ~20× faster; this band only has to catch
    // that, not measure (the machine is shared with other test files; the bench measures).
    expect(ratio).toBeGreaterThan(0.25);
    expect(ratio).toBeLessThan(4);
  });

  it('200 concurrent failed logins for one account from many addresses: all but the budget are refused before hashing', async () => {
    const user = await aUser(t.deps);
    const started = Date.now();
    const results = await Promise.all(
      Array.from({ length: 200 }, () => login({ login: user.email, password: 'guess guess guess' })),
    );
    const refused = results.filter((r) => r.statusCode === 429);
    const hashed = results.filter((r) => r.statusCode === 401);
    console.log(
      `B6 flood: 200 failed logins → ${hashed.length} hashed (401), ${refused.length} refused before hashing (429) in ${Date.now() - started} ms`,
    );
    expect(hashed.length).toBe(10);
    expect(refused.length).toBe(190);
    expect(Number(refused[0]?.headers['retry-after'])).toBeGreaterThan(0);
    // The right password is refused too while the account's budget is spent: no oracle.
    expect((await login({ login: user.email, password: DEFAULT_PASSWORD })).statusCode).toBe(429);
  });

  it('one address is limited across accounts (D4): 429 with Retry-After and RateLimit headers', async () => {
    const ip = freshIp();
    const statuses: number[] = [];
    let last = await login({ login: 'nobody-0', password: 'x' }, ip);
    statuses.push(last.statusCode);
    for (let i = 1; i < 22; i++) {
      last = await login({ login: `nobody-${i}`, password: 'x' }, ip);
      statuses.push(last.statusCode);
    }
    expect(statuses.filter((s) => s === 401)).toHaveLength(20);
    expect(statuses.slice(20)).toEqual([429, 429]);
    expect(Number(last.headers['retry-after'])).toBeGreaterThan(0);
    expect(last.headers['ratelimit-limit']).toBe('20');
    expect(last.headers['ratelimit-remaining']).toBe('0');
  });
});

describe('B7 mail tokens', () => {
  it('are long, single use and expire', async () => {
    const user = await aUser(t.deps, { verified: false });
    await t.app.inject({
      method: 'POST',
      url: '/v1/auth/resend-verification',
      payload: { email: user.email },
      remoteAddress: freshIp(),
    });
    const mail = await eventually(() => {
      const found = smtp.mails.find((m) => m.to.includes(user.email));
      if (!found) throw new Error('no mail yet');
      return found;
    }, 10_000);
    const token = linkIn(mail.raw).searchParams.get('token') as string;
    expect(Buffer.from(token, 'base64url').length * 8).toBeGreaterThanOrEqual(128);
    const { rows } = await t.deps.db.query<{ tokenHash: string }>(
      'SELECT token_hash FROM mail_tokens WHERE user_id = $1',
      [user.id],
    );
    expect(rows.map((r) => r.tokenHash)).not.toContain(token);

    clock.advance(24 * 3600_000 + 1000);
    try {
      const late = await t.app.inject({
        method: 'POST',
        url: '/v1/auth/verify-email',
        payload: { token },
        remoteAddress: freshIp(),
      });
      expect(late.statusCode).toBe(400);
      expect(late.json().code).toBe('invalid_token');
    } finally {
      clock.advance(-(24 * 3600_000 + 1000));
    }
    expect(
      (
        await t.app.inject({
          method: 'POST',
          url: '/v1/auth/verify-email',
          payload: { token },
          remoteAddress: freshIp(),
        })
      ).statusCode,
    ).toBe(204);
    expect(
      (
        await t.app.inject({
          method: 'POST',
          url: '/v1/auth/verify-email',
          payload: { token },
          remoteAddress: freshIp(),
        })
      ).statusCode,
    ).toBe(400);
  });
});

describe('D9 mail caps', () => {
  it('per account: at most 3 mails an hour, while every answer stays 202', async () => {
    const user = await aUser(t.deps, { verified: false });
    for (let i = 0; i < 6; i++) {
      const res = await t.app.inject({
        method: 'POST',
        url: '/v1/auth/password/forgot',
        payload: { email: user.email },
        remoteAddress: freshIp(),
      });
      expect(res.statusCode).toBe(202);
    }
    await new Promise((r) => setTimeout(r, 800));
    expect(
      smtp.mails.filter((m) => m.to.includes(user.email) && m.raw.includes('reset-password')),
    ).toHaveLength(3);
  });

  it('per address: 5 mail requests an hour, then 429', async () => {
    const ip = freshIp();
    const statuses = [];
    for (let i = 0; i < 7; i++) {
      const res = await t.app.inject({
        method: 'POST',
        url: '/v1/auth/resend-verification',
        payload: { email: `n${i}@example.test` },
        remoteAddress: ip,
      });
      statuses.push(res.statusCode);
    }
    expect(statuses).toEqual([202, 202, 202, 202, 202, 429, 429]);
  });
});

describe('C7 adversarial input', () => {
  it('100 KB hostile strings are refused in well under 50 ms each', async () => {
    const hostile = {
      email: `${'a'.repeat(100_000)}@`,
      emailDots: `${'a.'.repeat(50_000)}@x`,
      username: `${'a_'.repeat(50_000)}!`,
    };
    const timings: number[] = [];
    for (const [name, value] of Object.entries(hostile)) {
      const payload = name.startsWith('email')
        ? { username: 'valid_name', email: value, password: 'whatever whatever' }
        : { username: value, email: 'ok@example.test', password: 'whatever whatever' };
      // The best of three: backtracking is slow every time, a busy machine only now and then.
      let best = Number.POSITIVE_INFINITY;
      for (let attempt = 0; attempt < 3; attempt++) {
        const start = process.hrtime.bigint();
        const res = await t.app.inject({
          method: 'POST',
          url: '/v1/auth/register',
          payload,
          remoteAddress: freshIp(),
        });
        best = Math.min(best, Number(process.hrtime.bigint() - start) / 1e6);
        expect(res.statusCode, name).toBe(400);
      }
      timings.push(best);
    }
    console.log(`C7: 100 KB hostile fields refused in ${timings.map((x) => x.toFixed(1)).join(', ')} ms`);
    expect(Math.max(...timings)).toBeLessThan(50);
  });

  it('a password is never hashed at hostile lengths', async () => {
    const res = await t.app.inject({
      method: 'POST',
      url: '/v1/auth/login',
      payload: { login: 'someone', password: 'p'.repeat(100_000) },
      remoteAddress: freshIp(),
    });
    expect(res.statusCode).toBe(400);
    expect(res.json().errors).toEqual([
      { field: 'body/password', message: 'must NOT have more than 512 characters' },
    ]);
  });
});
