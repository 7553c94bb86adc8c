import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import {
  type AddressInfo,
  createServer as createNetServer,
  type Socket as NetSocket,
  connect as netConnect,
} from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import { io as connect, type ManagerOptions, type Socket, type SocketOptions } from 'socket.io-client';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { makeAccessTokens } from '../src/lib/tokens.js';
import { makeRealtime } from '../src/realtime/port.js';
import { createIo, disconnectAllLocal } from '../src/realtime/server.js';
import { aPrincipal, eventually, fakeClock, lane, startTestApp, type TestApp } from './helpers.js';

// Sockets through a real socket.io client against the whole app on a real port.
let t: TestApp;
const ALLOWED_ORIGIN = 'http://app.test';

/** Origin headers of the WebSocket upgrades the server received, so a test knows what it really sent. */
let seenOrigins: (string | undefined)[] = [];
/** Why engine.io refused a handshake, as the server saw it. */
let refusals: { code: number; context: unknown }[] = [];

beforeAll(async () => {
  t = await startTestApp({ listen: true });
  t.app.server.prependListener('upgrade', (req: IncomingMessage) => {
    seenOrigins.push(req.headers.origin);
  });
  t.deps.io.engine.on('connection_error', (err: { code: number; context: unknown }) => {
    refusals.push({ code: err.code, context: err.context });
  });
});
afterAll(() => t?.close());

const clients: Socket[] = [];
beforeEach(() => {
  seenOrigins = [];
  refusals = [];
});
afterEach(() => {
  for (const c of clients.splice(0)) c.disconnect();
});

type Welcome = { userId: string; recovered: boolean };
type Ack =
  | { ok: true; data: Record<string, unknown> }
  | { ok: false; error: { code: string; detail: string } };

function client(opts: Partial<ManagerOptions & SocketOptions> = {}, url = t.url): Socket {
  const socket = connect(url, { transports: ['websocket'], reconnection: false, forceNew: true, ...opts });
  clients.push(socket);
  return socket;
}

/** Resolves with the welcome once connected; rejects with the connect_error. */
function welcomed(socket: Socket): Promise<Welcome> {
  return new Promise((resolve, reject) => {
    socket.once('system:welcome', resolve);
    socket.once('connect_error', reject);
  });
}

async function open(token: string, opts: Partial<ManagerOptions & SocketOptions> = {}, url = t.url) {
  const socket = client({ auth: { token }, ...opts }, url);
  const welcome = await welcomed(socket);
  return { socket, welcome };
}

/** The connect_error a refused handshake gets (fails the test if it connects instead). */
async function refusedWith(opts: Partial<ManagerOptions & SocketOptions>): Promise<Error> {
  const socket = client(opts);
  const outcome = await welcomed(socket).then(
    (w) => ({ connected: w }),
    (err: Error) => ({ err }),
  );
  expect(outcome).not.toHaveProperty('connected');
  expect(socket.connected).toBe(false);
  return (outcome as { err: Error }).err;
}

const ask = (socket: Socket, event: string, ...args: unknown[]): Promise<Ack> =>
  socket.timeout(3000).emitWithAck(event, ...args);

const disconnected = (socket: Socket) => new Promise<string>((resolve) => socket.once('disconnect', resolve));

/** Collects the events of one name a socket receives from now on. */
function collect<T>(socket: Socket, event: string): T[] {
  const seen: T[] = [];
  socket.on(event, (data: T) => seen.push(data));
  return seen;
}

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

async function healthLive() {
  const res = await fetch(`${t.url}/health/live`);
  return { status: res.status, body: await res.json() };
}

describe('handshake authentication', () => {
  it('a valid token connects and is welcomed as its user, not recovered', async () => {
    const me = await aPrincipal(t.deps);
    const { socket, welcome } = await open(me.token);
    expect(welcome).toEqual({ userId: me.userId, recovered: false });
    expect(socket.connected).toBe(true);
  });

  it('no token, a garbage or non-string token are unauthorized', async () => {
    expect((await refusedWith({})).message).toBe('unauthorized');
    expect((await refusedWith({ auth: {} })).message).toBe('unauthorized');
    expect((await refusedWith({ auth: { token: '' } })).message).toBe('unauthorized');
    expect((await refusedWith({ auth: { token: 'garbage' } })).message).toBe('unauthorized');
    expect((await refusedWith({ auth: { token: 'a.b.c' } })).message).toBe('unauthorized');
    expect((await refusedWith({ auth: { token: 12345 } })).message).toBe('unauthorized');
    expect((await refusedWith({ auth: { token: 'x'.repeat(5000) } })).message).toBe('unauthorized');
  });

  it('a token signed with another key, or with a tampered body, is unauthorized', async () => {
    const me = await aPrincipal(t.deps);
    const otherKey = makeAccessTokens({
      secret: 'another-secret-of-at-least-32-chars!!',
      ttlSeconds: 900,
      clock: t.deps.clock,
    });
    const forged = otherKey.sign({ userId: me.userId, sessionId: me.sessionId }).token;
    expect((await refusedWith({ auth: { token: forged } })).message).toBe('unauthorized');

    const [header, body, sig] = me.token.split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(body, 'base64url').toString());
    const tampered = `${header}.${b64({ ...claims, sub: randomUUID() })}.${sig}`;
    expect((await refusedWith({ auth: { token: tampered } })).message).toBe('unauthorized');

    // The same token still works: the refusals above are about the signature, nothing else.
    await open(me.token);
  });

  it('an alg:none token is unauthorized, with or without a signature part', async () => {
    const me = await aPrincipal(t.deps);
    const [, body, sig] = me.token.split('.') as [string, string, string];
    const none = b64({ alg: 'none', typ: 'JWT' });
    for (const token of [`${none}.${body}.`, `${none}.${body}.${sig}`, `${b64({ alg: 'NONE' })}.${body}.`]) {
      expect((await refusedWith({ auth: { token } })).message).toBe('unauthorized');
    }
  });

  it('an expired token is unauthorized', async () => {
    const me = await aPrincipal(t.deps);
    const past = makeAccessTokens({
      secret: t.deps.config.ACCESS_TOKEN_SECRET,
      ttlSeconds: 60,
      clock: { now: () => new Date(Date.now() - 120_000) },
    });
    const token = past.sign({ userId: me.userId, sessionId: me.sessionId }).token;
    expect((await refusedWith({ auth: { token } })).message).toBe('unauthorized');
  });
});

describe('Origin and cookie auth', () => {
  it('a foreign Origin is refused before auth; the allowed Origin is accepted', async () => {
    const me = await aPrincipal(t.deps);
    const err = await refusedWith({
      auth: { token: me.token },
      extraHeaders: { origin: 'https://evil.test' },
    });
    expect(seenOrigins).toEqual(['https://evil.test']);
    expect(err.message).not.toBe('unauthorized');
    expect(refusals).toEqual([expect.objectContaining({ context: { message: 'origin_not_allowed' } })]);

    seenOrigins = [];
    const { welcome } = await open(me.token, { extraHeaders: { origin: ALLOWED_ORIGIN } });
    expect(seenOrigins).toEqual([ALLOWED_ORIGIN]);
    expect(welcome.userId).toBe(me.userId);
  });

  it('a foreign Origin is refused on the polling transport too', async () => {
    const me = await aPrincipal(t.deps);
    await refusedWith({
      auth: { token: me.token },
      transports: ['polling'],
      extraHeaders: { origin: 'https://evil.test' },
    });
    expect(refusals).toEqual([expect.objectContaining({ context: { message: 'origin_not_allowed' } })]);
    const { welcome } = await open(me.token, {
      transports: ['polling'],
      extraHeaders: { origin: ALLOWED_ORIGIN },
    });
    expect(welcome.userId).toBe(me.userId);
  });

  it('the access cookie without an Origin is refused; with the allowed Origin it is accepted', async () => {
    const me = await aPrincipal(t.deps);
    const cookie = `theme=dark; taskmaa_at=${me.token}`;
    const err = await refusedWith({ extraHeaders: { cookie } });
    expect(seenOrigins).toEqual([undefined]);
    expect(err.message).toBe('origin_not_allowed');

    seenOrigins = [];
    const socket = client({ extraHeaders: { cookie, origin: ALLOWED_ORIGIN } });
    expect(await welcomed(socket)).toEqual({ userId: me.userId, recovered: false });
    expect(seenOrigins).toEqual([ALLOWED_ORIGIN]);
    expect((await ask(socket, 'system:ping', {})).ok).toBe(true);
  });

  it('a foreign Origin with the cookie is refused; a bad cookie with the allowed Origin is unauthorized', async () => {
    const me = await aPrincipal(t.deps);
    await refusedWith({ extraHeaders: { cookie: `taskmaa_at=${me.token}`, origin: 'https://evil.test' } });
    expect(refusals).toHaveLength(1);
    for (const cookie of ['taskmaa_at=garbage', 'taskmaa_at=%E0%A4%A', 'taskmaa_at=']) {
      const err = await refusedWith({ extraHeaders: { cookie, origin: ALLOWED_ORIGIN } });
      expect(err.message).toBe('unauthorized');
    }
    expect(t.logs().filter((l) => l.msg === 'socket handshake failed')).toEqual([]);
  });
});

describe('system:ping and payload validation', () => {
  let socket: Socket;
  beforeEach(async () => {
    ({ socket } = await open((await aPrincipal(t.deps)).token));
  });

  it('answers with the server time and the echo', async () => {
    const before = Date.now();
    const res = await ask(socket, 'system:ping', { echo: 'hi there' });
    expect(res).toEqual({ ok: true, data: { serverTime: expect.any(String), echo: 'hi there' } });
    const serverTime = Date.parse(String(res.ok && res.data.serverTime));
    expect(serverTime).toBeGreaterThanOrEqual(before - 1000);
    expect(serverTime).toBeLessThanOrEqual(Date.now() + 1000);
    expect(await ask(socket, 'system:ping', {})).toEqual({
      ok: true,
      data: { serverTime: expect.any(String) },
    });
    expect(await ask(socket, 'system:ping', { echo: 'x'.repeat(100) })).toMatchObject({ ok: true });
  });

  it('a ping without a payload is an empty one', async () => {
    expect(await ask(socket, 'system:ping')).toEqual({ ok: true, data: { serverTime: expect.any(String) } });
  });

  it.each([
    ['a wrong type', [{ echo: 5 }], /\/echo/],
    ['an extra field', [{ echo: 'a', admin: true }], /\/admin/],
    ['a string over 100 characters', [{ echo: 'x'.repeat(101) }], /\/echo/],
    ['a number', [42], /object/i],
    ['a string', ['hello'], /object/i],
    ['null', [null], /object/i],
    ['an array', [[{ echo: 'a' }]], /object/i],
    ['two payloads', [{}, {}], /one payload/],
  ])('%s gets an invalid_payload ack and the socket keeps working', async (_name, args, detail) => {
    const res = await ask(socket, 'system:ping', ...args);
    expect(res).toEqual({
      ok: false,
      error: { code: 'invalid_payload', detail: expect.stringMatching(detail) },
    });
    expect(await ask(socket, 'system:ping', { echo: 'still here' })).toMatchObject({
      ok: true,
      data: { echo: 'still here' },
    });
  });

  it('an unknown event gets unknown_event; so do reserved-looking names', async () => {
    for (const event of [
      'nope:nothing',
      'error',
      'connection',
      'constructor',
      '__proto__',
      'x'.repeat(1000),
    ]) {
      const res = await ask(socket, event, {});
      expect(res).toEqual({ ok: false, error: { code: 'unknown_event', detail: expect.any(String) } });
      expect((res as { error: { detail: string } }).error.detail.length).toBeLessThan(100);
    }
    expect(socket.connected).toBe(true);
    expect((await ask(socket, 'system:ping', {})).ok).toBe(true);
  });

  it('events without an ack callback, valid or not, crash nothing', async () => {
    socket.emit('system:ping', { echo: 'fire and forget' });
    socket.emit('system:ping', { echo: 5 });
    socket.emit('system:ping', null);
    socket.emit('nope:nothing', {});
    socket.emit('error', { boom: true });
    socket.emit('error');
    expect(await ask(socket, 'system:ping', { echo: 'after' })).toMatchObject({
      ok: true,
      data: { echo: 'after' },
    });
    expect(socket.connected).toBe(true);
    expect(await healthLive()).toEqual({ status: 200, body: { status: 'ok' } });
  });

  it('a payload near the transport limit gets invalid_payload, not a dropped connection', async () => {
    const res = await ask(socket, 'system:ping', { echo: 'x'.repeat(200 * 1024) });
    expect(res).toEqual({
      ok: false,
      error: { code: 'invalid_payload', detail: expect.stringMatching(/\/echo/) },
    });
    expect(socket.connected).toBe(true);
    expect((await ask(socket, 'system:ping', {})).ok).toBe(true);
  });
});

describe('flood guard', () => {
  it('a burst past the soft limit gets rate_limited acks, then the socket recovers', async () => {
    const { socket } = await open((await aPrincipal(t.deps)).token);
    const answers = await Promise.all(Array.from({ length: 60 }, () => ask(socket, 'system:ping', {})));
    const limited = answers.filter((a) => !a.ok && a.error.code === 'rate_limited').length;
    const ok = answers.filter((a) => a.ok).length;
    expect(ok + limited).toBe(60);
    expect(ok).toBeGreaterThanOrEqual(30);
    expect(limited).toBeGreaterThan(0);
    expect(socket.connected).toBe(true);
    await eventually(async () => expect((await ask(socket, 'system:ping', {})).ok).toBe(true), 3000, 200);
  });

  it('past the hard limit only that socket is disconnected; other users and the server carry on', async () => {
    const flooder = await open((await aPrincipal(t.deps)).token);
    const bystander = await open((await aPrincipal(t.deps)).token);
    const sameUserOtherTab = await open((await aPrincipal(t.deps, flooder.welcome.userId)).token);
    const gone = disconnected(flooder.socket);
    const answers: Ack[] = [];
    for (let i = 0; i < 200; i++) flooder.socket.emit('system:ping', {}, (a: Ack) => answers.push(a));
    expect(await gone).toBe('io server disconnect');
    expect(answers.some((a) => !a.ok && a.error.code === 'rate_limited')).toBe(true);
    expect(answers.length).toBeLessThan(200);

    expect(bystander.socket.connected).toBe(true);
    expect((await ask(bystander.socket, 'system:ping', { echo: 'b' })).ok).toBe(true);
    expect((await ask(sameUserOtherTab.socket, 'system:ping', { echo: 'c' })).ok).toBe(true);
    expect(await healthLive()).toEqual({ status: 200, body: { status: 'ok' } });
  });
});

describe('the realtime port', () => {
  it('toUser reaches every tab of that user and no other user', async () => {
    const alice = await aPrincipal(t.deps);
    const tab1 = await open(alice.token);
    const tab2 = await open((await aPrincipal(t.deps, alice.userId)).token);
    const bob = await open((await aPrincipal(t.deps)).token);
    const got = [tab1, tab2, bob].map(({ socket }) => collect<Welcome>(socket, 'system:welcome'));

    t.deps.realtime.toUser(alice.userId, 'system:welcome', { userId: alice.userId, recovered: true });
    await eventually(() => {
      expect(got[0]).toEqual([{ userId: alice.userId, recovered: true }]);
      expect(got[1]).toEqual([{ userId: alice.userId, recovered: true }]);
    });
    // A round trip on Bob's connection after the emit: anything sent to him would have arrived first.
    expect((await ask(bob.socket, 'system:ping', {})).ok).toBe(true);
    expect(got[2]).toEqual([]);
  });

  it('toRoom reaches the sockets in that room', async () => {
    const alice = await aPrincipal(t.deps);
    const a = await open(alice.token);
    const got = collect(a.socket, 'system:disconnecting');
    t.deps.realtime.toRoom(`session:${alice.sessionId}`, 'system:disconnecting', {
      reason: 'server_shutdown',
    });
    await eventually(() => expect(got).toEqual([{ reason: 'server_shutdown' }]));
  });

  it('endSession ends that session on every tab, and not another session of the same user', async () => {
    const alice = await aPrincipal(t.deps);
    const s1tab1 = await open(alice.token);
    const s1tab2 = await open(alice.token);
    const s2 = await open((await aPrincipal(t.deps, alice.userId)).token);
    const events = [s1tab1, s1tab2, s2].map(({ socket }) => {
      const seen: string[] = [];
      socket.on('system:disconnecting', (d: { reason: string }) => seen.push(`disconnecting:${d.reason}`));
      socket.on('disconnect', (reason) => seen.push(`disconnect:${reason}`));
      return seen;
    });

    t.deps.realtime.endSession(alice.sessionId);
    await eventually(() => {
      for (const seen of events.slice(0, 2)) {
        expect(seen).toEqual(['disconnecting:session_ended', 'disconnect:io server disconnect']);
      }
    });
    expect(s2.socket.connected).toBe(true);
    expect((await ask(s2.socket, 'system:ping', {})).ok).toBe(true);
    expect(events[2]).toEqual([]);
  });

  it('endUser ends every session of that user only', async () => {
    const alice = await aPrincipal(t.deps);
    const a1 = await open(alice.token);
    const a2 = await open((await aPrincipal(t.deps, alice.userId)).token);
    const bob = await open((await aPrincipal(t.deps)).token);
    const gone = [disconnected(a1.socket), disconnected(a2.socket)];
    t.deps.realtime.endUser(alice.userId);
    expect(await Promise.all(gone)).toEqual(['io server disconnect', 'io server disconnect']);
    expect((await ask(bob.socket, 'system:ping', {})).ok).toBe(true);
  });
});

describe('token expiry', () => {
  it('a socket is told and disconnected when its access token expires', async () => {
    const me = await aPrincipal(t.deps);
    // Signed 58.5 s ago with a 60 s lifetime: valid now, expired within about 1.5 s.
    const shortLived = makeAccessTokens({
      secret: t.deps.config.ACCESS_TOKEN_SECRET,
      ttlSeconds: 60,
      clock: { now: () => new Date(Date.now() - 58_500) },
    });
    const { token } = shortLived.sign({ userId: me.userId, sessionId: me.sessionId });
    const longLived = await open(me.token);
    const { socket, welcome } = await open(token);
    expect(welcome.userId).toBe(me.userId);
    const seen: string[] = [];
    socket.on('system:disconnecting', (d: { reason: string }) => seen.push(`disconnecting:${d.reason}`));
    const started = Date.now();
    seen.push(`disconnect:${await disconnected(socket)}`);
    expect(seen).toEqual(['disconnecting:token_expired', 'disconnect:io server disconnect']);
    expect(Date.now() - started).toBeLessThan(3000);
    expect(longLived.socket.connected).toBe(true);
  });
});

describe('limits and clocks', () => {
  it('a user gets at most 20 connections on a node; others are unaffected', async () => {
    const me = await aPrincipal(t.deps);
    const mine = [];
    for (let i = 0; i < 20; i++) mine.push(await open(me.token));
    expect((await refusedWith({ auth: { token: me.token } })).message).toBe('too_many_connections');
    await open((await aPrincipal(t.deps)).token);
    const gone = disconnected(mine[0]?.socket as Socket);
    mine[0]?.socket.disconnect();
    await gone;
    await eventually(async () => {
      await open(me.token);
    }, 2000);
  });

  it('token expiry follows the injected clock, not the wall clock', async () => {
    // A day behind the wall clock: measured against Date.now(), every token would look long expired.
    const clock = fakeClock(new Date(Date.now() - 86_400_000));
    const api = await startTestApp({ listen: true, clock });
    try {
      const me = await aPrincipal(api.deps);
      const { socket } = await open(me.token, {}, api.url);
      const res = await ask(socket, 'system:ping', {});
      expect(res).toEqual({ ok: true, data: { serverTime: clock.now().toISOString() } });
      await new Promise((r) => setTimeout(r, 200));
      expect(socket.connected).toBe(true);
    } finally {
      for (const c of clients.splice(0)) c.disconnect();
      await api.close();
    }
  });
});

describe('connection state recovery', () => {
  const reconnecting = { reconnection: true, reconnectionDelay: 50, reconnectionDelayMax: 100 };

  /** A connected socket that holds a recovery offset, then loses its transport. */
  async function dropAfterAnEvent(token: string, userId: string) {
    const { socket } = await open(token, reconnecting);
    const got = collect(socket, 'system:disconnecting');
    t.deps.realtime.toUser(userId, 'system:disconnecting', { reason: 'server_shutdown' });
    await eventually(() => expect(got).toHaveLength(1));
    const gone = disconnected(socket);
    // Closing the client's engine looks like a network drop to the server: a recoverable disconnect.
    socket.io.engine.close();
    expect(await gone).toBe('forced close');
    return socket;
  }

  it('the same session comes back (recovered; with Redis the client is told to resync too)', async () => {
    const me = await aPrincipal(t.deps);
    const socket = await dropAfterAnEvent(me.token, me.userId);
    expect(await welcomed(socket)).toEqual({ userId: me.userId, recovered: !lane.services });
    const got = collect(socket, 'system:disconnecting');
    t.deps.realtime.toUser(me.userId, 'system:disconnecting', { reason: 'server_shutdown' });
    await eventually(() => expect(got).toHaveLength(1));
  });

  it('recovery re-runs auth: an invalid token does not come back', async () => {
    const me = await aPrincipal(t.deps);
    const socket = await dropAfterAnEvent(me.token, me.userId);
    socket.auth = { token: 'garbage' };
    await expect(welcomed(socket)).rejects.toThrow('unauthorized');
  });

  /**
   * A socket that holds a recovery offset and lost its transport, not reconnecting by itself; and
   * every raw packet its engine receives once it connects again (what reached the wire, whatever
   * socket.io's client then buffers or drops).
   */
  async function droppedAndWatched(token: string, userId: string) {
    const { socket } = await open(token);
    const got = collect(socket, 'system:disconnecting');
    t.deps.realtime.toUser(userId, 'system:disconnecting', { reason: 'server_shutdown' });
    await eventually(() => expect(got).toHaveLength(1));
    const gone = disconnected(socket);
    socket.io.engine.close();
    expect(await gone).toBe('forced close');
    const wire: string[] = [];
    socket.io.on('open', () =>
      socket.io.engine.on('packet', (p: { data?: unknown }) => wire.push(String(p.data ?? ''))),
    );
    return { socket, wire };
  }
  const missed = (userId: string, marker: string) =>
    t.deps.realtime.toUser(userId, 'daily:changed', { dailyId: marker });

  it('a session revoked while away gets none of the packets it missed', async () => {
    const me = await aPrincipal(t.deps);
    const { socket, wire } = await droppedAndWatched(me.token, me.userId);
    // Missed while away, then the session ends (logout elsewhere, password change...).
    missed(me.userId, 'missed-while-away');
    await t.deps.accounts.logout({ principal: { userId: me.userId, sessionId: me.sessionId, expiresAt: 0 } });
    socket.connect();
    await expect(welcomed(socket)).rejects.toThrow('unauthorized');
    expect(wire.join('\n')).not.toContain('missed-while-away');
  });

  it("another user's token recovering a session gets none of its missed packets", async () => {
    const alice = await aPrincipal(t.deps);
    const mallory = await aPrincipal(t.deps);
    const { socket, wire } = await droppedAndWatched(alice.token, alice.userId);
    missed(alice.userId, 'for-alice-only');
    socket.auth = { token: mallory.token };
    socket.connect();
    expect(await welcomed(socket)).toEqual({ userId: mallory.userId, recovered: false });
    expect(wire.join('\n')).not.toContain('for-alice-only');
  });

  it('the same session recovering gets what it missed, once', async () => {
    const me = await aPrincipal(t.deps);
    const { socket, wire } = await droppedAndWatched(me.token, me.userId);
    const changed = collect<{ dailyId: string }>(socket, 'daily:changed');
    missed(me.userId, 'kept-for-you');
    socket.connect();
    expect(await welcomed(socket)).toEqual({ userId: me.userId, recovered: !lane.services });
    await eventually(() => expect(changed).toEqual([{ dailyId: 'kept-for-you' }]));
    expect(wire.filter((p) => p.includes('kept-for-you'))).toHaveLength(1);
  });

  it('another user recovering the session does not inherit its rooms', async () => {
    const alice = await aPrincipal(t.deps);
    const bob = await aPrincipal(t.deps);
    const socket = await dropAfterAnEvent(alice.token, alice.userId);
    socket.auth = { token: bob.token };
    expect(await welcomed(socket)).toEqual({ userId: bob.userId, recovered: false });
    const got = collect<{ reason: string }>(socket, 'system:disconnecting');
    t.deps.realtime.toUser(alice.userId, 'system:disconnecting', { reason: 'server_shutdown' });
    t.deps.realtime.toUser(bob.userId, 'system:disconnecting', { reason: 'session_ended' });
    await eventually(() => expect(got).toEqual([{ reason: 'session_ended' }]));
    expect((await ask(socket, 'system:ping', {})).ok).toBe(true);
    expect(got).toEqual([{ reason: 'session_ended' }]);
  });
});

describe('shutdown', () => {
  it('clients are told, then reconnect by themselves through the load balancer to another node', async () => {
    // Node A shares the database, Redis and the token key with t, as api processes of one deployment do.
    const nodeA = await startTestApp({
      listen: true,
      db: { db: t.deps.db, url: undefined, drop: async () => {} },
      env: { REDIS_PREFIX: t.config.REDIS_PREFIX, ACCESS_TOKEN_SECRET: t.config.ACCESS_TOKEN_SECRET },
    });
    const balancer = loadBalancer(new URL(nodeA.url).port);
    try {
      const me = await aPrincipal(nodeA.deps);
      const socket = client(
        { auth: { token: me.token }, reconnection: true, reconnectionDelay: 50, reconnectionDelayMax: 100 },
        await balancer.url,
      );
      expect(await welcomed(socket)).toEqual({ userId: me.userId, recovered: false });
      const notices = collect<{ reason: string }>(socket, 'system:disconnecting');
      // Gives the client a recovery offset.
      nodeA.deps.realtime.toUser(me.userId, 'system:disconnecting', { reason: 'session_ended' });
      await eventually(() => expect(notices).toHaveLength(1));

      const reasons: string[] = [];
      socket.on('disconnect', (reason) => reasons.push(reason));
      const back = welcomed(socket);
      balancer.target = new URL(t.url).port;
      disconnectAllLocal(nodeA.deps.io);
      // Emitted while the client is between nodes.
      t.deps.realtime.toUser(me.userId, 'system:disconnecting', { reason: 'token_expired' });
      await eventually(() => expect(reasons).toHaveLength(1));
      expect(notices[1]).toEqual({ reason: 'server_shutdown' });
      expect(reasons).toEqual(['transport close']);
      // With Redis the session moves to the other node, with what it missed (the welcome still says
      // not recovered: the client resyncs, see attachSockets); embedded, there is no other node.
      expect(await back).toEqual({ userId: me.userId, recovered: false });
      expect((await ask(socket, 'system:ping', {})).ok).toBe(true);
      expect(notices.slice(2)).toEqual(lane.services ? [{ reason: 'token_expired' }] : []);
    } finally {
      for (const c of clients.splice(0)) c.disconnect();
      await balancer.close();
      await nodeA.close();
    }
  });
});

/** A TCP forwarder standing in for the load balancer: new connections go to whichever port is current. */
function loadBalancer(initialTarget: string) {
  const sockets = new Set<NetSocket>();
  const lb = {
    target: initialTarget,
    server: createNetServer((downstream) => {
      const upstream = netConnect(Number(lb.target), '127.0.0.1');
      for (const s of [downstream, upstream]) {
        sockets.add(s);
        s.on('error', () => {});
        s.on('close', () => sockets.delete(s));
      }
      downstream.pipe(upstream).pipe(downstream);
    }),
  };
  const url = new Promise<string>((resolve) =>
    lb.server.listen(0, '127.0.0.1', () =>
      resolve(`http://127.0.0.1:${(lb.server.address() as AddressInfo).port}`),
    ),
  );
  return Object.assign(lb, {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        lb.server.close(() => resolve());
      }),
  });
}

describe('workers emit through the adapter', () => {
  it.runIf(lane.services)('a second Server on the same Redis reaches a client of the app', async () => {
    // An app of its own, its stream reader fresh like a newly started api process. A short command
    // timeout keeps the quiet periods below short.
    const api = await startTestApp({ listen: true, env: { REDIS_COMMAND_TIMEOUT_MS: '200' } });
    const redis = new Redis(lane.redisUrl as string, { lazyConnect: true });
    await redis.connect();
    const workerIo = createIo(api.config, redis);
    const quiet = () => new Promise((r) => setTimeout(r, api.config.REDIS_COMMAND_TIMEOUT_MS * 2 + 200));
    try {
      // Quiet for longer than a Redis command may take, as between real events: the reader's blocking
      // read outlives the command timeout and must still deliver what arrives next.
      await quiet();
      const me = await aPrincipal(api.deps);
      const { socket } = await open(me.token, {}, api.url);
      const got = collect<Welcome>(socket, 'system:welcome');
      await quiet();
      const worker = makeRealtime(workerIo);
      worker.toUser(me.userId, 'system:welcome', { userId: me.userId, recovered: true });
      await eventually(() => expect(got).toEqual([{ userId: me.userId, recovered: true }]), 3000);
      await quiet();
      worker.toUser(me.userId, 'system:welcome', { userId: me.userId, recovered: false });
      await eventually(() => expect(got).toHaveLength(2), 3000);
      expect(got[1]).toEqual({ userId: me.userId, recovered: false });
    } finally {
      // Server.close() throws once the adapter is closed when no HTTP server was ever attached (a
      // worker's); closeDeps swallows it the same way.
      await workerIo.close().catch(() => {});
      await redis.quit();
      for (const c of clients.splice(0)) c.disconnect();
      await api.close();
    }
  });

  it.runIf(lane.services)('an unreachable Redis does not freeze the process', async () => {
    // In a child process: if the adapter's reader spins, that event loop never runs a timer again.
    const script = join(mkdtempSync(join(tmpdir(), 'taskmaa-rt-')), 'outage.mts');
    writeFileSync(script, OUTAGE_SCRIPT.replaceAll('SRC', pathToFileURL(join(process.cwd(), 'src')).href));
    const out = await new Promise<string>((resolve) => {
      execFile(
        process.execPath,
        ['--import', 'tsx', script],
        { cwd: process.cwd(), timeout: 10_000, env: { ...process.env, REDIS_TARGET: lane.redisUrl } },
        (err, stdout, stderr) => resolve(err ? `failed: ${err.message} ${stderr}` : stdout),
      );
    });
    rmSync(dirname(script), { recursive: true, force: true });
    expect(out.trim()).toMatch(/^ticks \d+$/);
    expect(Number(out.trim().split(' ')[1])).toBeGreaterThan(40);
  });
});

// A worker-like Server on Redis through a TCP proxy, then the proxy goes away: timers must keep firing.
const OUTAGE_SCRIPT = `
import net from 'node:net';
import { loadConfig } from 'SRC/config.ts';
import { connectRedis } from 'SRC/lib/redis.ts';
import { createIo } from 'SRC/realtime/server.ts';
const target = new URL(process.env.REDIS_TARGET);
const sockets = new Set();
const proxy = net.createServer((client) => {
  const upstream = net.connect(Number(target.port || 6379), target.hostname);
  for (const s of [client, upstream]) { sockets.add(s); s.on('error', () => {}); }
  client.pipe(upstream).pipe(client);
});
await new Promise((r) => proxy.listen(0, '127.0.0.1', r));
const url = 'redis://127.0.0.1:' + proxy.address().port;
const config = loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'silent', DATA_DIR: process.cwd(), REDIS_URL: url,
  REDIS_PREFIX: 'outage' + process.pid, APP_URL: 'http://app.test', ACCESS_TOKEN_SECRET: 'x'.repeat(32) });
const redis = await connectRedis({ url, commandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS, name: 'outage-test' });
createIo(config, redis);
await new Promise((r) => setTimeout(r, 300));
proxy.close();
for (const s of sockets) s.destroy();
let ticks = 0;
setInterval(() => ticks++, 10);
setTimeout(() => { process.stdout.write('ticks ' + ticks + '\\n'); process.exit(0); }, 1000);
`;
