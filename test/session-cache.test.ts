import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SESSION_CACHE_MS } from '../src/modules/accounts/accounts.sessions.js';
import {
  aUser,
  DEFAULT_PASSWORD,
  eventually,
  fakeClock,
  lane,
  secondInstance,
  signIn,
  startTestApp,
  type TestApp,
  type TestDb,
  testDb,
} from './helpers.js';

// The revocation check on every request is answered from a per-process cache of live sessions
// (accounts.sessions.ts). Ending a session through the app reaches it at once, on this instance and
// (services lane) on another one; a session ended behind the app's back lives at most SESSION_CACHE_MS.
const clock = fakeClock(new Date('2026-03-02T09:00:00Z'));
let tdb: TestDb;
let t: TestApp;
let nodeB: TestApp | undefined;

beforeAll(async () => {
  tdb = await testDb();
  t = await startTestApp({ db: tdb, clock, env: { RATE_LIMIT_MULTIPLIER: '0' } });
});
afterAll(async () => {
  await nodeB?.close();
  await t?.close();
  await tdb?.drop();
});

const me = (app: TestApp, headers: Record<string, string>) =>
  app.app.inject({ method: 'GET', url: '/v1/me', headers }).then((r) => r.statusCode);

const revokeBehindTheAppsBack = (sessionId: string) =>
  t.deps.db.query("UPDATE sessions SET revoked_at = $2, revoked_reason = 'logout' WHERE id = $1", [
    sessionId,
    clock.now(),
  ]);

describe('live-session cache', () => {
  it('a verified session ended behind the app’s back still works from the cache, for SESSION_CACHE_MS at most', async () => {
    const user = await aUser(t.deps);
    const s = await signIn(t.deps, user.id);
    expect(await me(t, s.headers)).toBe(200);
    await revokeBehindTheAppsBack(s.sessionId);
    // Served from the cache: no database round trip on this request.
    expect(await me(t, s.headers)).toBe(200);
    clock.advance(SESSION_CACHE_MS - 1);
    expect(await me(t, s.headers)).toBe(200);
    clock.advance(1);
    expect(await me(t, s.headers)).toBe(401);
  });

  it('an unverified account’s session is never kept: ended, it is refused at once', async () => {
    const user = await aUser(t.deps, { verified: false });
    const s = await signIn(t.deps, user.id);
    expect(await me(t, s.headers)).toBe(200);
    await revokeBehindTheAppsBack(s.sessionId);
    expect(await me(t, s.headers)).toBe(401);
  });

  it('every way a session ends through the app is refused on the next request, with the cache warm', async () => {
    const post = (url: string, headers: Record<string, string>, payload?: object) =>
      t.app.inject({ method: 'POST', url, headers, ...(payload ? { payload } : {}) });
    const user = await aUser(t.deps);
    const [a, b, c, d] = [
      await signIn(t.deps, user.id),
      await signIn(t.deps, user.id),
      await signIn(t.deps, user.id),
      await signIn(t.deps, user.id),
    ];
    for (const s of [a, b, c, d]) expect(await me(t, s.headers)).toBe(200);
    expect((await post('/v1/auth/logout', a.headers)).statusCode).toBe(204);
    expect(await me(t, a.headers)).toBe(401);
    const revoked = await t.app.inject({
      method: 'DELETE',
      url: `/v1/auth/sessions/${b.sessionId}`,
      headers: c.headers,
    });
    expect(revoked.statusCode).toBe(204);
    expect(await me(t, b.headers)).toBe(401);
    const changed = await post('/v1/auth/password/change', c.headers, {
      currentPassword: DEFAULT_PASSWORD,
      password: 'a much longer passphrase 42',
    });
    expect(changed.statusCode).toBe(204);
    expect(await me(t, d.headers)).toBe(401);
    expect(await me(t, c.headers)).toBe(200);
    const deleted = await t.app.inject({
      method: 'DELETE',
      url: '/v1/me',
      headers: c.headers,
      payload: { password: 'a much longer passphrase 42' },
    });
    expect(deleted.statusCode).toBe(204);
    expect(await me(t, c.headers)).toBe(401);
  });

  it.runIf(lane.services)(
    'a session ended on one instance is refused on another that had it cached, within moments',
    async () => {
      nodeB = await secondInstance(t, tdb, { clock });
      const B = nodeB;
      const user = await aUser(t.deps);
      const [a, b] = [await signIn(t.deps, user.id), await signIn(t.deps, user.id)];
      for (const s of [a, b]) expect(await me(B, s.headers)).toBe(200);
      // Logout on A; B hears it through the adapter, long before its entry would run out (the clock
      // stands still: only the message can end it).
      const started = Date.now();
      const out = await t.app.inject({ method: 'POST', url: '/v1/auth/logout', headers: a.headers });
      expect(out.statusCode).toBe(204);
      await eventually(async () => expect(await me(B, a.headers)).toBe(401), 2000);
      const sessionMs = Date.now() - started;
      // Deleting the account on A ends every session of the user on B.
      const gone = await t.app.inject({
        method: 'DELETE',
        url: '/v1/me',
        headers: b.headers,
        payload: { password: DEFAULT_PASSWORD },
      });
      expect(gone.statusCode).toBe(204);
      const deletedAt = Date.now();
      await eventually(async () => expect(await me(B, b.headers)).toBe(401), 2000);
      console.log(
        `live-session cache: B refused a logout on A after ${sessionMs} ms, a deletion after ${Date.now() - deletedAt} ms`,
      );
    },
    30_000,
  );
});
