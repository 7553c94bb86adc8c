import { randomUUID } from 'node:crypto';
import { Value } from '@sinclair/typebox/value';
import { io as connect, type Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { socketPresence } from '../src/modules/friends/friends.presence.js';
import {
  BlockedUser,
  BlockList,
  FriendList,
  FriendRequest,
  FriendRequestList,
} from '../src/modules/friends/friends.schemas.js';
import type { Io } from '../src/realtime/port.js';
import { aUser, eventually, signIn, startTestApp, type TestApp } from './helpers.js';

// Friend requests, friendships and blocks through HTTP on a real database, in both lanes, with the
// worker running so live events arrive through the outbox. Every test makes its own people.
let t: TestApp;
const sockets: Socket[] = [];

beforeAll(async () => {
  t = await startTestApp({ worker: true, listen: true, env: { RATE_LIMIT_MULTIPLIER: '0' } });
});
afterAll(async () => {
  for (const s of sockets) s.disconnect();
  await t?.close();
});

type Caller = { userId: string; username: string; headers: Record<string, string>; token: string };
type Method = 'GET' | 'POST' | 'DELETE';

async function person(overrides: { verified?: boolean; name?: string } = {}): Promise<Caller> {
  const user = await aUser(t.deps, overrides);
  return { ...(await signIn(t.deps, user.id)), username: user.username };
}

const call = (who: Caller | null, method: Method, url: string, payload?: unknown, headers = {}) =>
  t.app.inject({
    method,
    url,
    headers: { ...(who?.headers ?? {}), ...headers },
    ...(payload === undefined ? {} : { payload: payload as object }),
  });

function expectProblem(
  res: { statusCode: number; json(): unknown; body: string },
  status: number,
  code: string,
) {
  expect(res.statusCode, res.body).toBe(status);
  expect((res.json() as { code: string }).code).toBe(code);
}

async function ask(from: Caller, to: Caller): Promise<FriendRequest> {
  const res = await call(from, 'POST', '/v1/friend-requests', { userId: to.userId });
  expect(res.statusCode, res.body).toBe(201);
  expect(Value.Check(FriendRequest, res.json()), res.body).toBe(true);
  return res.json();
}

async function befriend(a: Caller, b: Caller) {
  const request = await ask(a, b);
  const res = await call(b, 'POST', `/v1/friend-requests/${request.id}/accept`);
  expect(res.statusCode, res.body).toBe(200);
  return request;
}

const friendshipsOf = async (a: string, b: string) =>
  (
    await t.deps.db.query<{ userA: string; userB: string }>(
      `SELECT user_a, user_b FROM friendships WHERE (user_a = $1 AND user_b = $2) OR (user_a = $2 AND user_b = $1)`,
      [a, b],
    )
  ).rows;

const requestsBetween = async (a: string, b: string) =>
  (
    await t.deps.db.query<{ id: string; status: string; fromUserId: string }>(
      `SELECT id, status, from_user_id FROM friend_requests
       WHERE (from_user_id = $1 AND to_user_id = $2) OR (from_user_id = $2 AND to_user_id = $1) ORDER BY created_at, id`,
      [a, b],
    )
  ).rows;

const friendIds = async (who: Caller) => {
  const res = await call(who, 'GET', '/v1/friends?limit=100');
  expect(res.statusCode, res.body).toBe(200);
  expect(Value.Check(FriendList, res.json()), res.body).toBe(true);
  return (res.json() as FriendList).items.map((f) => f.id);
};

/** A connected socket of `who`, recording every event it receives. */
function listen(who: Caller): Promise<[string, unknown][]> {
  return new Promise((resolve, reject) => {
    const socket = connect(t.url, {
      transports: ['websocket'],
      reconnection: false,
      forceNew: true,
      auth: { token: who.token },
    });
    sockets.push(socket);
    const got: [string, unknown][] = [];
    socket.onAny((event: string, data: unknown) => got.push([event, data]));
    socket.once('system:welcome', () => resolve(got));
    socket.once('connect_error', reject);
  });
}
const friendEvents = (got: [string, unknown][]) => got.filter(([e]) => e.startsWith('friend:'));
/** Waits for the outbox and the job queue to be idle, so "no event" means none is coming. */
const settled = () =>
  eventually(async () => {
    const { rows } = await t.deps.db.query<{ n: number }>(
      `SELECT (SELECT count(*) FROM outbox WHERE sent_at IS NULL)::int
            + (SELECT count(*) FROM local_jobs WHERE state IN ('waiting', 'active'))::int AS n`,
    );
    expect(rows[0]?.n).toBe(0);
    // The services lane runs jobs on BullMQ: give it a moment after the relay.
    await new Promise((r) => setTimeout(r, 150));
  });

describe('the request life cycle', () => {
  it('ask → listed both ways → accept → friends (with live events) → unfriend', async () => {
    const a = await person({ name: 'Asha' });
    const b = await person({ name: 'Bilal' });
    const aEvents = await listen(a);
    const bEvents = await listen(b);

    const request = await ask(a, b);
    expect(request).toMatchObject({ fromUserId: a.userId, toUserId: b.userId, status: 'pending' });
    expect(Object.keys(request).sort()).toEqual(['createdAt', 'fromUserId', 'id', 'status', 'toUserId']);
    expect(await requestsBetween(a.userId, b.userId)).toEqual([
      { id: request.id, status: 'pending', fromUserId: a.userId },
    ]);

    const outgoing = await call(a, 'GET', '/v1/friend-requests?direction=outgoing');
    expect(Value.Check(FriendRequestList, outgoing.json())).toBe(true);
    expect(outgoing.json()).toEqual({ items: [request], nextCursor: null });
    expect((await call(b, 'GET', '/v1/friend-requests')).json()).toEqual({
      items: [request],
      nextCursor: null,
    });
    expect((await call(a, 'GET', '/v1/friend-requests?direction=incoming')).json().items).toEqual([]);
    expect((await call(b, 'GET', '/v1/friend-requests?direction=outgoing')).json().items).toEqual([]);

    expectProblem(await call(a, 'POST', '/v1/friend-requests', { userId: b.userId }), 409, 'request_pending');
    await eventually(() =>
      expect(friendEvents(bEvents)).toEqual([
        [
          'friend:request',
          { request, from: { id: a.userId, username: a.username, name: 'Asha', avatarUrl: null } },
        ],
      ]),
    );

    // Only the recipient may answer; anyone else is told there is no such request.
    const stranger = await person();
    for (const who of [a, stranger]) {
      expectProblem(await call(who, 'POST', `/v1/friend-requests/${request.id}/accept`), 404, 'not_found');
      expectProblem(await call(who, 'POST', `/v1/friend-requests/${request.id}/decline`), 404, 'not_found');
    }
    expectProblem(await call(b, 'DELETE', `/v1/friend-requests/${request.id}`), 404, 'not_found');

    const accepted = await call(b, 'POST', `/v1/friend-requests/${request.id}/accept`);
    expect(accepted.statusCode, accepted.body).toBe(200);
    expect(accepted.json()).toEqual({ ...request, status: 'accepted' });
    const [row] = await friendshipsOf(a.userId, b.userId);
    expect(row).toEqual({ userA: [a.userId, b.userId].sort()[0], userB: [a.userId, b.userId].sort()[1] });
    await eventually(() =>
      expect(friendEvents(aEvents)).toEqual([
        [
          'friend:accepted',
          {
            request: { ...request, status: 'accepted' },
            friend: { id: b.userId, username: b.username, name: 'Bilal', avatarUrl: null },
          },
        ],
      ]),
    );

    // Accepting again is harmless; declining it now is a conflict; asking again says we are friends.
    const again = await call(b, 'POST', `/v1/friend-requests/${request.id}/accept`);
    expect(again.statusCode).toBe(200);
    expect(again.json()).toEqual(accepted.json());
    expectProblem(
      await call(b, 'POST', `/v1/friend-requests/${request.id}/decline`),
      409,
      'request_not_pending',
    );
    expectProblem(await call(a, 'POST', '/v1/friend-requests', { userId: b.userId }), 409, 'already_friends');
    expectProblem(await call(b, 'POST', '/v1/friend-requests', { userId: a.userId }), 409, 'already_friends');
    expect((await call(b, 'GET', '/v1/friend-requests')).json().items).toEqual([]);
    expect(await friendshipsOf(a.userId, b.userId)).toHaveLength(1);

    // Both see each other, with online state (both have a socket open) and current streak.
    const list = (await call(a, 'GET', '/v1/friends')).json();
    expect(list).toEqual({
      items: [
        {
          id: b.userId,
          username: b.username,
          name: 'Bilal',
          avatarUrl: null,
          online: true,
          currentStreak: 0,
        },
      ],
      nextCursor: null,
    });
    expect(await friendIds(b)).toEqual([a.userId]);

    const ended = await call(a, 'DELETE', `/v1/friends/${b.userId}`);
    expect(ended.statusCode).toBe(204);
    expect(ended.body).toBe('');
    expect(await friendshipsOf(a.userId, b.userId)).toEqual([]);
    expectProblem(await call(a, 'DELETE', `/v1/friends/${b.userId}`), 404, 'not_found');
    expectProblem(await call(b, 'DELETE', `/v1/friends/${a.userId}`), 404, 'not_found');
    expect(await friendIds(a)).toEqual([]);
    expect(await friendIds(b)).toEqual([]);
    await eventually(() =>
      expect(friendEvents(bEvents).slice(1)).toEqual([['friend:removed', { userId: a.userId }]]),
    );
    await settled();
    expect(friendEvents(aEvents)).toHaveLength(1);
    expect(friendEvents(bEvents)).toHaveLength(2);
    // A stranger heard nothing, and nobody's events carry an email.
    expect(JSON.stringify([aEvents, bEvents])).not.toContain('@');
  });

  it('offline friends are shown offline', async () => {
    const a = await person();
    const b = await person();
    await befriend(a, b);
    const [friend] = (await call(a, 'GET', '/v1/friends')).json().items;
    expect(friend).toMatchObject({ id: b.userId, online: false });
    await listen(b);
    const [now] = (await call(a, 'GET', '/v1/friends')).json().items;
    expect(now).toMatchObject({ id: b.userId, online: true });
  });

  it('presence falls back to this node’s sockets when the cluster does not answer (Redis down)', async () => {
    // The cluster never answers; this node has one socket, u1's, in its own room table.
    const stuck = {
      in: () => ({ fetchSockets: () => new Promise(() => {}) }),
      of: () => ({
        adapter: { rooms: new Map([['user:u1', new Set(['s1'])]]) },
        sockets: new Map([['s1', { data: { userId: 'u1' } }]]),
      }),
    } as unknown as Io;
    const presence = socketPresence(stuck, t.deps.log, 50);
    const started = Date.now();
    expect([...(await presence(['u1', 'u2']))]).toEqual(['u1']);
    expect(Date.now() - started).toBeLessThan(1000);
    expect([...(await presence([]))]).toEqual([]);
  });

  it('decline (the sender is not told), ask again, cancel', async () => {
    const a = await person();
    const b = await person();
    const aEvents = await listen(a);
    const first = await ask(a, b);
    const declined = await call(b, 'POST', `/v1/friend-requests/${first.id}/decline`);
    expect(declined.statusCode).toBe(200);
    expect(declined.json()).toEqual({ ...first, status: 'declined' });
    // Declining twice is harmless; accepting what I declined is a conflict.
    expect((await call(b, 'POST', `/v1/friend-requests/${first.id}/decline`)).json()).toEqual(
      declined.json(),
    );
    expectProblem(
      await call(b, 'POST', `/v1/friend-requests/${first.id}/accept`),
      409,
      'request_not_pending',
    );
    expect((await call(a, 'GET', '/v1/friend-requests?direction=outgoing')).json().items).toEqual([]);
    expect(await friendshipsOf(a.userId, b.userId)).toEqual([]);
    // A declined request can no longer be withdrawn.
    expectProblem(await call(a, 'DELETE', `/v1/friend-requests/${first.id}`), 404, 'not_found');

    const second = await ask(a, b);
    expect(second.id).not.toBe(first.id);
    const cancelled = await call(a, 'DELETE', `/v1/friend-requests/${second.id}`);
    expect(cancelled.statusCode).toBe(204);
    expectProblem(await call(a, 'DELETE', `/v1/friend-requests/${second.id}`), 404, 'not_found');
    expectProblem(await call(b, 'POST', `/v1/friend-requests/${second.id}/accept`), 404, 'not_found');
    expectProblem(await call(b, 'POST', `/v1/friend-requests/${second.id}/decline`), 404, 'not_found');
    expect((await call(b, 'GET', '/v1/friend-requests')).json().items).toEqual([]);
    expect((await requestsBetween(a.userId, b.userId)).map((r) => r.status)).toEqual([
      'declined',
      'cancelled',
    ]);
    await settled();
    expect(friendEvents(aEvents)).toEqual([]);
  });

  it('asking someone who already asked me accepts theirs', async () => {
    const a = await person();
    const b = await person();
    const aEvents = await listen(a);
    const theirs = await ask(a, b);
    const res = await call(b, 'POST', '/v1/friend-requests', { userId: a.userId });
    expect(res.statusCode, res.body).toBe(201);
    expect(res.json()).toEqual({ ...theirs, status: 'accepted' });
    expect(await friendshipsOf(a.userId, b.userId)).toHaveLength(1);
    expect((await requestsBetween(a.userId, b.userId)).map((r) => r.status)).toEqual(['accepted']);
    await eventually(() => expect(friendEvents(aEvents).map(([e]) => e)).toEqual(['friend:accepted']));
  });

  it('an Idempotency-Key replays the first answer instead of a 409', async () => {
    const a = await person();
    const b = await person();
    const key = { 'idempotency-key': randomUUID() };
    const first = await call(a, 'POST', '/v1/friend-requests', { userId: b.userId }, key);
    const retry = await call(a, 'POST', '/v1/friend-requests', { userId: b.userId }, key);
    expect(first.statusCode).toBe(201);
    expect(retry.statusCode).toBe(201);
    expect(retry.headers['idempotent-replayed']).toBe('true');
    expect(retry.json()).toEqual(first.json());
    expect(await requestsBetween(a.userId, b.userId)).toHaveLength(1);
  });
});

describe('refusals', () => {
  it('myself 400, unknown 404, malformed or extra fields 400, and nothing stored', async () => {
    const a = await person();
    const b = await person();
    expectProblem(
      await call(a, 'POST', '/v1/friend-requests', { userId: a.userId }),
      400,
      'cannot_befriend_self',
    );
    expectProblem(
      await call(a, 'POST', '/v1/friend-requests', { userId: a.userId.toUpperCase() }),
      400,
      'cannot_befriend_self',
    );
    expectProblem(await call(a, 'POST', '/v1/friend-requests', { userId: randomUUID() }), 404, 'not_found');
    for (const body of [
      { userId: 'nope' },
      {},
      { userId: b.userId, status: 'accepted' },
      { userId: b.userId, fromUserId: b.userId },
      { userId: 42 },
    ]) {
      const res = await call(a, 'POST', '/v1/friend-requests', body);
      expect(res.statusCode, JSON.stringify(body)).toBe(400);
    }
    expect(await requestsBetween(a.userId, b.userId)).toEqual([]);
    for (const [method, url] of [
      ['POST', '/v1/friend-requests/nope/accept'],
      ['POST', `/v1/friend-requests/${randomUUID()}/decline`],
      ['DELETE', '/v1/friend-requests/%27%3B--'],
      ['DELETE', '/v1/friends/nope'],
      ['DELETE', `/v1/friends/${randomUUID()}`],
      ['DELETE', '/v1/blocks/nope'],
    ] as const) {
      expectProblem(await call(a, method, url), 404, 'not_found');
    }
    for (const url of [
      '/v1/friend-requests?direction=sideways',
      '/v1/friend-requests?cursor=bad!',
      '/v1/friend-requests?cursor=e30',
      '/v1/friends?limit=0',
      '/v1/friends?limit=101',
      '/v1/friends?cursor=e30',
      '/v1/blocks?cursor=e30',
      '/v1/friends?role=admin',
    ]) {
      expect((await call(a, 'GET', url)).statusCode, url).toBe(400);
    }
    expectProblem(await call(a, 'POST', '/v1/blocks', { userId: a.userId }), 400, 'cannot_block_self');
    expectProblem(await call(a, 'POST', '/v1/blocks', { userId: randomUUID() }), 404, 'not_found');
    expect((await call(a, 'POST', '/v1/blocks', { userId: b.userId, reason: 'x' })).statusCode).toBe(400);
    expect((await call(a, 'GET', '/v1/blocks')).json().items).toEqual([]);
  });

  it('an unverified user gets 403 email_not_verified on every social route', async () => {
    const u = await person({ verified: false });
    const other = await person();
    const id = randomUUID();
    const routes: [Method, string, unknown?][] = [
      ['POST', '/v1/friend-requests', { userId: other.userId }],
      ['GET', '/v1/friend-requests'],
      ['POST', `/v1/friend-requests/${id}/accept`],
      ['POST', `/v1/friend-requests/${id}/decline`],
      ['DELETE', `/v1/friend-requests/${id}`],
      ['GET', '/v1/friends'],
      ['DELETE', `/v1/friends/${other.userId}`],
      ['POST', '/v1/blocks', { userId: other.userId }],
      ['DELETE', `/v1/blocks/${other.userId}`],
      ['GET', '/v1/blocks'],
    ];
    for (const [method, url, body] of routes) {
      expectProblem(await call(u, method, url, body), 403, 'email_not_verified');
    }
    expect(await requestsBetween(u.userId, other.userId)).toEqual([]);
    // Others may still ask them; they answer once verified.
    await ask(other, u);
  });
});

describe('blocks', () => {
  it('end the friendship and pending requests both ways, and hide each from the other', async () => {
    const a = await person();
    const friend = await person();
    const asker = await person();
    const askedByA = await person();
    const friendEventsGot = await listen(friend);
    const askerEvents = await listen(asker);
    await befriend(a, friend);
    const incoming = await ask(asker, a);
    const outgoing = await ask(a, askedByA);

    const blocked = await call(a, 'POST', '/v1/blocks', { userId: friend.userId });
    expect(blocked.statusCode, blocked.body).toBe(201);
    expect(Value.Check(BlockedUser, blocked.json())).toBe(true);
    expect(blocked.json()).toMatchObject({ id: friend.userId, username: friend.username, avatarUrl: null });
    expect(await friendshipsOf(a.userId, friend.userId)).toEqual([]);
    // The former friend hears exactly what an unfriend says.
    await eventually(() =>
      expect(friendEvents(friendEventsGot).slice(-1)).toEqual([['friend:removed', { userId: a.userId }]]),
    );

    expect((await call(a, 'POST', '/v1/blocks', { userId: asker.userId })).statusCode).toBe(201);
    expect((await call(a, 'POST', '/v1/blocks', { userId: askedByA.userId })).statusCode).toBe(201);
    expect((await requestsBetween(asker.userId, a.userId)).map((r) => r.status)).toEqual(['cancelled']);
    expect((await requestsBetween(a.userId, askedByA.userId)).map((r) => r.status)).toEqual(['cancelled']);
    expect((await call(a, 'GET', '/v1/friend-requests')).json().items).toEqual([]);
    expect((await call(askedByA, 'GET', '/v1/friend-requests')).json().items).toEqual([]);
    expectProblem(await call(a, 'POST', `/v1/friend-requests/${incoming.id}/accept`), 404, 'not_found');
    expectProblem(
      await call(askedByA, 'POST', `/v1/friend-requests/${outgoing.id}/accept`),
      404,
      'not_found',
    );

    // Blocking again returns the first block.
    const twice = await call(a, 'POST', '/v1/blocks', { userId: friend.userId });
    expect(twice.statusCode).toBe(200);
    expect(twice.json()).toEqual(blocked.json());

    // Neither can ask the other; the blocked one cannot tell a block from a missing account.
    for (const [from, to] of [
      [friend, a],
      [a, friend],
    ] as const) {
      expectProblem(await call(from, 'POST', '/v1/friend-requests', { userId: to.userId }), 404, 'not_found');
    }
    expectProblem(await call(friend, 'GET', `/v1/users/${a.username}`), 404, 'not_found');
    expectProblem(await call(a, 'GET', `/v1/users/${friend.username}`), 404, 'not_found');

    const list = (await call(a, 'GET', '/v1/blocks')).json();
    expect(Value.Check(BlockList, list)).toBe(true);
    expect(list.items.map((i: BlockedUser) => i.id)).toEqual([askedByA.userId, asker.userId, friend.userId]);
    expect((await call(friend, 'GET', '/v1/blocks')).json().items).toEqual([]);

    // The blocked one may block back (it reveals nothing); each block is lifted on its own.
    expect((await call(friend, 'POST', '/v1/blocks', { userId: a.userId })).statusCode).toBe(201);
    expect((await call(a, 'DELETE', `/v1/blocks/${friend.userId}`)).statusCode).toBe(204);
    expectProblem(await call(a, 'DELETE', `/v1/blocks/${friend.userId}`), 404, 'not_found');
    expectProblem(await call(a, 'POST', '/v1/friend-requests', { userId: friend.userId }), 404, 'not_found');
    expect((await call(friend, 'DELETE', `/v1/blocks/${a.userId}`)).statusCode).toBe(204);
    // Unblocking does not restore the friendship, but a new request works.
    expect(await friendshipsOf(a.userId, friend.userId)).toEqual([]);
    await ask(a, friend);
    await settled();
    // The asker never heard of anything: no event says "blocked".
    expect(friendEvents(askerEvents)).toEqual([]);
  });

  it('pages through blocks newest first', async () => {
    const a = await person();
    const targets = [];
    for (let i = 0; i < 5; i++) {
      const x = await person();
      targets.push(x.userId);
      expect((await call(a, 'POST', '/v1/blocks', { userId: x.userId })).statusCode).toBe(201);
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const url: string = `/v1/blocks?limit=2${cursor ? `&cursor=${cursor}` : ''}`;
      const page = (await call(a, 'GET', url)).json() as BlockList;
      expect(page.items.length).toBeLessThanOrEqual(2);
      seen.push(...page.items.map((i) => i.id));
      cursor = page.nextCursor;
    } while (cursor);
    expect(seen).toEqual([...targets].reverse());
  });
});

describe('lists', () => {
  it('pages through friends by username and requests newest first', async () => {
    const me = await person();
    const friends: Caller[] = [];
    for (let i = 0; i < 5; i++) {
      const f = await person();
      await befriend(f, me);
      friends.push(f);
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const url: string = `/v1/friends?limit=2${cursor ? `&cursor=${cursor}` : ''}`;
      const page = (await call(me, 'GET', url)).json() as FriendList;
      seen.push(...page.items.map((i) => i.username));
      cursor = page.nextCursor;
    } while (cursor);
    expect(seen).toEqual(friends.map((f) => f.username).sort());

    const askers: string[] = [];
    for (let i = 0; i < 3; i++) askers.push((await ask(await person(), me)).id);
    const first = (await call(me, 'GET', '/v1/friend-requests?limit=2')).json() as FriendRequestList;
    expect(first.items.map((r) => r.id)).toEqual([askers[2], askers[1]]);
    // A cursor is for the direction it came from.
    expect(
      (await call(me, 'GET', `/v1/friend-requests?direction=outgoing&cursor=${first.nextCursor}`)).statusCode,
    ).toBe(400);
    const second = (
      await call(me, 'GET', `/v1/friend-requests?limit=2&cursor=${first.nextCursor}`)
    ).json() as FriendRequestList;
    expect(second).toEqual({ items: [expect.objectContaining({ id: askers[0] })], nextCursor: null });
  });
});

describe('races (G4)', () => {
  it('A→B and B→A at once, 20 pairs: one friendship each, no 5xx', async () => {
    const pairs = await Promise.all(
      Array.from({ length: 20 }, async () => [await person(), await person()] as const),
    );
    const results = await Promise.all(
      pairs.flatMap(([a, b]) => [
        call(a, 'POST', '/v1/friend-requests', { userId: b.userId }),
        call(b, 'POST', '/v1/friend-requests', { userId: a.userId }),
      ]),
    );
    expect(results.map((r) => r.statusCode).filter((s) => s >= 500)).toEqual([]);
    for (const r of results) expect(r.statusCode, r.body).toBe(201);
    for (const [a, b] of pairs) {
      expect(await friendshipsOf(a.userId, b.userId)).toHaveLength(1);
      expect((await requestsBetween(a.userId, b.userId)).map((r) => r.status)).toEqual(['accepted']);
    }
  });

  it('a double accept is harmless: one friendship, one notice', async () => {
    const a = await person();
    const b = await person();
    const aEvents = await listen(a);
    const request = await ask(a, b);
    const results = await Promise.all(
      Array.from({ length: 5 }, () => call(b, 'POST', `/v1/friend-requests/${request.id}/accept`)),
    );
    for (const r of results) {
      expect(r.statusCode, r.body).toBe(200);
      expect(r.json()).toEqual({ ...request, status: 'accepted' });
    }
    expect(await friendshipsOf(a.userId, b.userId)).toHaveLength(1);
    await settled();
    expect(friendEvents(aEvents).map(([e]) => e)).toEqual(['friend:accepted']);
  });

  it('block and accept at once always end blocked, never friends', async () => {
    for (let i = 0; i < 10; i++) {
      const a = await person();
      const b = await person();
      const request = await ask(a, b);
      const [accept, block] = await Promise.all([
        call(b, 'POST', `/v1/friend-requests/${request.id}/accept`),
        call(a, 'POST', '/v1/blocks', { userId: b.userId }),
      ]);
      expect([200, 404]).toContain(accept.statusCode);
      expect(block.statusCode).toBe(201);
      expect(await friendshipsOf(a.userId, b.userId)).toEqual([]);
      expect((await requestsBetween(a.userId, b.userId)).map((r) => r.status)).not.toContain('pending');
      expect(await t.deps.friends.isBlocked(b.userId, a.userId)).toBe(true);
    }
  });
});

describe('the relation API for other modules', () => {
  it('answers inside a caller’s transaction, and a shared lock waits for a block', async () => {
    const a = await person();
    const b = await person();
    const c = await person();
    await befriend(a, b);
    await ask(c, a);
    expect(await t.deps.friends.relation(a.userId, b.userId)).toEqual({
      isFriend: true,
      blocking: false,
      blockedBy: false,
      blocked: false,
      pendingRequest: null,
    });
    const rel = await t.deps.db.tx((tx) =>
      t.deps.friends.relation(a.userId, c.userId, tx, { lock: 'shared' }),
    );
    expect(rel).toMatchObject({ isFriend: false, blocked: false, pendingRequest: { direction: 'incoming' } });
    expect(await t.deps.friends.areFriends(b.userId, a.userId)).toBe(true);
    await call(b, 'POST', '/v1/blocks', { userId: a.userId });
    expect(await t.deps.friends.relation(a.userId, b.userId)).toMatchObject({
      isFriend: false,
      blocking: false,
      blockedBy: true,
      blocked: true,
    });
    expect(await t.deps.friends.isBlocked(b.userId, a.userId)).toBe(true);
  });
});

describe('storage', () => {
  it('every foreign key to users cascades (G2), and deleting a person takes their social rows', async () => {
    const { rows } = await t.deps.db.query<{ table: string; action: string }>(
      `SELECT c.conrelid::regclass::text AS table, c.confdeltype AS action FROM pg_constraint c
       WHERE c.contype = 'f' AND c.confrelid = 'users'::regclass
         AND c.conrelid::regclass::text IN ('friend_requests', 'friendships', 'blocks')`,
    );
    expect(rows).toHaveLength(6);
    for (const r of rows) expect(r.action, r.table).toBe('c');

    const gone = await person();
    const a = await person();
    const b = await person();
    await befriend(gone, a);
    await ask(gone, b);
    await call(gone, 'POST', '/v1/blocks', { userId: (await person()).userId });
    await call(b, 'POST', '/v1/blocks', { userId: gone.userId });
    await t.deps.db.query('DELETE FROM users WHERE id = $1', [gone.userId]);
    const left = await t.deps.db.query<{ n: number }>(
      `SELECT ((SELECT count(*) FROM friend_requests WHERE $1 IN (from_user_id, to_user_id))
             + (SELECT count(*) FROM friendships WHERE $1 IN (user_a, user_b))
             + (SELECT count(*) FROM blocks WHERE $1 IN (blocker_id, blocked_id)))::int AS n`,
      [gone.userId],
    );
    expect(left.rows[0]?.n).toBe(0);
    expect(await friendIds(a)).toEqual([]);
    // As the account deletion does after its commit: without it, a session the process saw live a
    // moment ago would be refused only once its entry runs out (session-cache.test.ts).
    t.deps.realtime.endUser(gone.userId);
    expect((await call(gone, 'GET', '/v1/friends')).statusCode).toBe(401);
  });
});
