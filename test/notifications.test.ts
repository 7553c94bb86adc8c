import { randomUUID } from 'node:crypto';
import { Value } from '@sinclair/typebox/value';
import { io as connect, type Socket } from 'socket.io-client';
import { uuidv7 } from 'uuidv7';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  MarkReadResult,
  NOTIFICATION_KINDS,
  type Notification,
  NotificationList,
} from '../src/modules/notifications/notifications.schemas.js';
import {
  KEEP_PER_USER,
  NOTIFICATIONS_PRUNE_JOB,
} from '../src/modules/notifications/notifications.service.js';
import { aUser, DEFAULT_PASSWORD, eventually, signIn, startTestApp, type TestApp } from './helpers.js';

// Notifications through HTTP and real sockets on a real database, in both lanes, with the worker
// running (the friends' live events and the prune job go through it). Every test makes its own people.
let t: TestApp;
const sockets: Socket[] = [];

beforeAll(async () => {
  t = await startTestApp({ worker: true, listen: true, env: { RATE_LIMIT_MULTIPLIER: '0' } });
});
afterAll(async () => {
  for (const s of sockets) s.disconnect();
  await t?.close();
});

type Caller = {
  userId: string;
  username: string;
  name: string;
  headers: Record<string, string>;
  token: string;
};
type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE';
type Res = { statusCode: number; body: string; json(): unknown };

async function person(): Promise<Caller> {
  const user = await aUser(t.deps);
  return { ...(await signIn(t.deps, user.id)), username: user.username, name: user.name };
}

const call = (who: Caller | null, method: Method, url: string, payload?: unknown, headers = {}) =>
  t.app.inject({
    method,
    url,
    headers: { ...(who?.headers ?? {}), ...headers },
    ...(payload === undefined ? {} : { payload: payload as object }),
  });

function expectStatus(res: Res, status: number, code?: string) {
  expect(res.statusCode, res.body).toBe(status);
  if (code) expect((res.json() as { code: string }).code).toBe(code);
}

/** Every notification of `who`, through the API, newest first (all pages). */
// Finishing a race may also earn a badge (a job, arriving whenever it does): not what these tests count.
// Badges and Maa's words come from the same events on their own schedule (Maa's also by the hour of
// the day: quiet hours), so tests of the other kinds leave them out.
const SIDE_KINDS = new Set(['badge', 'maa']);
const notSide = async (who: Caller) => (await all(who)).filter((n) => !SIDE_KINDS.has(n.kind));

async function all(who: Caller, unread = false): Promise<Notification[]> {
  const out: Notification[] = [];
  for (let cursor: string | null = ''; cursor !== null; ) {
    const res = await call(
      who,
      'GET',
      `/v1/notifications?limit=100&unread=${unread}${cursor ? `&cursor=${cursor}` : ''}`,
    );
    expectStatus(res, 200);
    expect(Value.Check(NotificationList, res.json()), res.body).toBe(true);
    const page = res.json() as NotificationList;
    out.push(...page.items);
    cursor = page.nextCursor;
  }
  return out;
}

const ofKind = async (who: Caller, kind: string) => (await all(who)).filter((n) => n.kind === kind);

/** Unread notifications of a user, counted in SQL. */
async function sqlUnread(userId: string): Promise<number> {
  const { rows } = await t.deps.db.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM notifications WHERE user_id = $1 AND read_at IS NULL',
    [userId],
  );
  return rows[0]?.n ?? 0;
}

async function unreadCount(who: Caller): Promise<number> {
  const res = await call(who, 'GET', '/v1/notifications?limit=1');
  expectStatus(res, 200);
  return (res.json() as NotificationList).unreadCount;
}

/** A connected socket of `who` and every notification:new it receives. */
async function live(who: Caller): Promise<Notification[]> {
  const socket = connect(t.url, { transports: ['websocket'], auth: { token: who.token }, forceNew: true });
  sockets.push(socket);
  const got: Notification[] = [];
  socket.on('notification:new', (n: Notification) => got.push(n));
  await new Promise((resolve, reject) => {
    socket.once('system:welcome', resolve);
    socket.once('connect_error', reject);
  });
  return got;
}

async function befriend(a: Caller, b: Caller) {
  const asked = await t.deps.friends.sendRequest(a.userId, b.userId);
  await t.deps.friends.accept(b.userId, asked.body.id);
}

/** Some notifications for `who` that nobody caused (the system kind), oldest first. */
async function systemNotes(who: Caller, n: number): Promise<Notification[]> {
  const out: Notification[] = [];
  for (let i = 0; i < n; i++) {
    const note = await t.deps.db.tx((q) =>
      t.deps.notifications.notify(q, { userId: who.userId, kind: 'system', data: { n: i } }),
    );
    if (!note) throw new Error('not stored');
    out.push(note);
  }
  return out;
}

async function createGroup(owner: Caller, body: Record<string, unknown> = {}) {
  const res = await call(owner, 'POST', '/v1/group-tasks', {
    title: 'Run 5k',
    visibility: 'public',
    dueAt: new Date(t.deps.clock.now().getTime() + 3600_000).toISOString(),
    ...body,
  });
  expectStatus(res, 201);
  return res.json() as { id: string };
}

describe('notifications fed by events', () => {
  it('a friend request tells its recipient once, live; accepting tells the sender once', async () => {
    const [a, b] = [await person(), await person()];
    const [aLive, bLive] = [await live(a), await live(b)];
    const bFriendEvents: unknown[] = [];
    (sockets.at(-1) as Socket).on('friend:request', (e) => bFriendEvents.push(e));

    const key = { 'idempotency-key': randomUUID() };
    const sent = await call(a, 'POST', '/v1/friend-requests', { userId: b.userId }, key);
    expectStatus(sent, 201);
    const requestId = (sent.json() as { id: string }).id;
    // Retried with its key (a lost response): the same request, no second notification.
    expectStatus(await call(a, 'POST', '/v1/friend-requests', { userId: b.userId }, key), 201);
    // Asked again without a key: refused, nothing new.
    expectStatus(await call(a, 'POST', '/v1/friend-requests', { userId: b.userId }), 409, 'request_pending');

    const requests = await ofKind(b, 'friend_request');
    expect(requests).toHaveLength(1);
    expect(requests[0]).toMatchObject({
      kind: 'friend_request',
      readAt: null,
      data: { requestId, userId: a.userId, username: a.username, name: a.name },
    });
    await eventually(() => expect(bLive.map((n) => n.id)).toEqual([requests[0]?.id]));
    expect(bLive[0]).toEqual(requests[0]);
    // The existing live event still arrives (through the outbox job).
    await eventually(() => expect(bFriendEvents).toHaveLength(1));
    expect(await all(a)).toEqual([]);

    expectStatus(await call(b, 'POST', `/v1/friend-requests/${requestId}/accept`), 200);
    expectStatus(await call(b, 'POST', `/v1/friend-requests/${requestId}/accept`), 200);
    const accepted = await ofKind(a, 'friend_accepted');
    expect(accepted).toHaveLength(1);
    expect(accepted[0]?.data).toEqual({ requestId, userId: b.userId, username: b.username, name: b.name });
    await eventually(() => expect(aLive.map((n) => n.id)).toEqual([accepted[0]?.id]));
    // The one who accepted is not told about their own answer.
    expect((await all(b)).map((n) => n.kind)).toEqual(['friend_request']);
    expect(await unreadCount(b)).toBe(await sqlUnread(b.userId));
  });

  it('asking back someone who asked first accepts theirs: the first asker hears of the acceptance only', async () => {
    const [c, d] = [await person(), await person()];
    expectStatus(await call(c, 'POST', '/v1/friend-requests', { userId: d.userId }), 201);
    const back = await call(d, 'POST', '/v1/friend-requests', { userId: c.userId });
    expectStatus(back, 201);
    expect((back.json() as { status: string }).status).toBe('accepted');
    expect((await all(c)).map((n) => [n.kind, n.data.userId])).toEqual([['friend_accepted', d.userId]]);
    expect((await all(d)).map((n) => [n.kind, n.data.userId])).toEqual([['friend_request', c.userId]]);
  });

  it('a group invitation tells the invitee once, live; inviting again while pending does not', async () => {
    const [owner, friend] = [await person(), await person()];
    await befriend(owner, friend);
    const friendLive = await live(friend);
    const g = await createGroup(owner, { visibility: 'private', inviteUserIds: [friend.userId] });
    expectStatus(
      await call(owner, 'POST', `/v1/group-tasks/${g.id}/invitations`, { userIds: [friend.userId] }),
      201,
    );
    const invitations = await ofKind(friend, 'group_invitation');
    expect(invitations).toHaveLength(1);
    const pending = (await call(friend, 'GET', '/v1/group-invitations')).json() as {
      items: { id: string; groupTaskId: string }[];
    };
    const inv = pending.items.find((i) => i.groupTaskId === g.id);
    expect(invitations[0]?.data).toEqual({
      invitationId: inv?.id,
      groupTaskId: g.id,
      groupTitle: 'Run 5k',
      userId: owner.userId,
      username: owner.username,
      name: owner.name,
    });
    await eventually(() =>
      expect(friendLive.filter((n) => n.kind === 'group_invitation').map((n) => n.id)).toEqual([
        invitations[0]?.id,
      ]),
    );
  });

  it('closing a group task tells each finisher their rank and points, once', async () => {
    const people = [await person(), await person(), await person(), await person(), await person()];
    const [owner, first, second, ...rest] = people as [Caller, Caller, Caller, Caller, Caller];
    const g = await createGroup(owner, { title: 'Race' });
    for (const p of [first, second, ...rest])
      expectStatus(await call(p, 'POST', `/v1/group-tasks/${g.id}/join`), 200);
    const firstLive = await live(first);
    expectStatus(await call(first, 'POST', `/v1/group-tasks/${g.id}/complete`), 200);
    expectStatus(await call(second, 'POST', `/v1/group-tasks/${g.id}/complete`), 200);
    expectStatus(await call(first, 'POST', `/v1/group-tasks/${g.id}/complete`), 200);
    expect(await notSide(first)).toEqual([]);
    expectStatus(await call(owner, 'POST', `/v1/group-tasks/${g.id}/close`), 200);
    expectStatus(await call(owner, 'POST', `/v1/group-tasks/${g.id}/close`), 200);
    await t.deps.groups.closeIfDue({ groupTaskId: g.id });

    expect((await notSide(first)).map((n) => [n.kind, n.data])).toEqual([
      ['group_rank', { groupTaskId: g.id, title: 'Race', rank: 1, points: 30 }],
    ]);
    expect((await notSide(second)).map((n) => n.data)).toEqual([
      { groupTaskId: g.id, title: 'Race', rank: 2, points: 20 },
    ]);
    for (const p of [owner, ...rest]) expect(await notSide(p)).toEqual([]);
    await eventually(() =>
      expect(firstLive.map((n) => n.kind).filter((k) => !SIDE_KINDS.has(k))).toEqual(['group_rank']),
    );
  });

  it('a notification exists exactly when its event commits, and is pushed only then', async () => {
    const who = await person();
    const got = await live(who);
    await expect(
      t.deps.db.tx(async (q) => {
        await t.deps.notifications.notify(q, { userId: who.userId, kind: 'system', data: { x: 1 } });
        throw new Error('the event failed');
      }),
    ).rejects.toThrow('the event failed');
    const [kept] = await systemNotes(who, 1);
    await eventually(() => expect(got.map((n) => n.id)).toEqual([kept?.id]));
    expect((await all(who)).map((n) => n.id)).toEqual([kept?.id]);
  });
});

describe('blocks', () => {
  it('someone blocked (either way) produces nothing, and a block removes what they caused me', async () => {
    const [a, b, c] = [await person(), await person(), await person()];
    // a asked b; then b blocks a: the request is cancelled and its notification goes.
    expectStatus(await call(a, 'POST', '/v1/friend-requests', { userId: b.userId }), 201);
    expect(await ofKind(b, 'friend_request')).toHaveLength(1);
    expect((await call(b, 'POST', '/v1/blocks', { userId: a.userId })).statusCode).toBeLessThan(300);
    expect(await all(b)).toEqual([]);
    expect(await sqlUnread(b.userId)).toBe(0);
    // Asking again is refused (the block is not revealed) and tells nobody anything.
    expectStatus(await call(a, 'POST', '/v1/friend-requests', { userId: b.userId }), 404);
    expectStatus(await call(b, 'POST', '/v1/friend-requests', { userId: a.userId }), 404);
    expect(await all(a)).toEqual([]);
    expect(await all(b)).toEqual([]);

    // Any kind, present or future (a member finishing in a shared public group...), either direction.
    const tell = (to: Caller, from: Caller) =>
      t.deps.db.tx((q) =>
        t.deps.notifications.notify(q, {
          userId: to.userId,
          kind: 'group_member_completed',
          actorId: from.userId,
          data: { groupTaskId: uuidv7() },
        }),
      );
    expect(await tell(b, a)).toBeUndefined();
    expect(await tell(a, b)).toBeUndefined();
    expect(await tell(c, a)).toBeDefined();
    expect(await tell(a, c)).toBeDefined();
    // Nobody is told about what they did themselves.
    expect(await tell(c, c)).toBeUndefined();
    const { rows } = await t.deps.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM notifications
        WHERE (user_id = $1 AND actor_id = $2) OR (user_id = $2 AND actor_id = $1)`,
      [a.userId, b.userId],
    );
    expect(rows[0]?.n).toBe(0);
  });

  it('a block racing a notification: either the notification is never written or the block removes it', async () => {
    const [a, b] = [await person(), await person()];
    const results = await Promise.all([
      t.deps.db.tx((q) =>
        t.deps.notifications.notify(q, {
          userId: b.userId,
          kind: 'group_member_completed',
          actorId: a.userId,
          data: { groupTaskId: uuidv7() },
        }),
      ),
      t.deps.friends.block(b.userId, a.userId),
    ]);
    expect(results[1].status).toBe(201);
    expect(await all(b)).toEqual([]);
  });
});

describe('GET /v1/notifications', () => {
  it('lists newest first, a page at a time, with the unread filter and the unread count', async () => {
    const who = await person();
    const other = await person();
    await systemNotes(other, 2);
    const made = await systemNotes(who, 25);
    const newestFirst = [...made].reverse().map((n) => n.id);

    const pages: NotificationList[] = [];
    for (let cursor: string | null = ''; cursor !== null; ) {
      const res = await call(who, 'GET', `/v1/notifications?limit=10${cursor ? `&cursor=${cursor}` : ''}`);
      expectStatus(res, 200);
      expect(Value.Check(NotificationList, res.json()), res.body).toBe(true);
      const page = res.json() as NotificationList;
      pages.push(page);
      cursor = page.nextCursor;
    }
    expect(pages.map((p) => p.items.length)).toEqual([10, 10, 5]);
    expect(pages.flatMap((p) => p.items.map((n) => n.id))).toEqual(newestFirst);
    expect(pages.every((p) => p.unreadCount === 25)).toBe(true);
    // The default page size is 20.
    expect(((await call(who, 'GET', '/v1/notifications')).json() as NotificationList).items).toHaveLength(20);

    // Read every third; the unread filter shows the others, in order, a page at a time too.
    const read = newestFirst.filter((_, i) => i % 3 === 0);
    expectStatus(await call(who, 'POST', '/v1/notifications/read', { ids: read }), 200);
    const unread = await all(who, true);
    expect(unread.map((n) => n.id)).toEqual(newestFirst.filter((_, i) => i % 3 !== 0));
    expect(unread.every((n) => n.readAt === null)).toBe(true);
    const first = await call(who, 'GET', '/v1/notifications?unread=true&limit=7');
    const firstPage = first.json() as NotificationList;
    expect(firstPage.unreadCount).toBe(25 - read.length);
    expect(firstPage.unreadCount).toBe(await sqlUnread(who.userId));
    const everything = await all(who);
    expect(everything.map((n) => n.id)).toEqual(newestFirst);
    expect(everything.filter((n) => n.readAt !== null).map((n) => n.id)).toEqual(read);

    // A cursor is for the filter it came from; nonsense and out-of-range limits are refused.
    expectStatus(
      await call(who, 'GET', `/v1/notifications?unread=false&cursor=${firstPage.nextCursor}`),
      400,
      'invalid_cursor',
    );
    expectStatus(await call(who, 'GET', '/v1/notifications?cursor=bm90LWpzb24'), 400, 'invalid_cursor');
    expectStatus(await call(who, 'GET', '/v1/notifications?limit=101'), 400);
    expectStatus(await call(who, 'GET', '/v1/notifications?limit=0'), 400);
    expectStatus(await call(who, 'GET', '/v1/notifications?unread=maybe'), 400);
    expectStatus(await call(null, 'GET', '/v1/notifications'), 401);
  });
});

describe('POST /v1/notifications/read', () => {
  it('marks mine by ids, ignores anyone else’s without telling, and all at once; twice is harmless', async () => {
    const [me, them] = [await person(), await person()];
    const mine = await systemNotes(me, 4);
    const theirs = await systemNotes(them, 2);
    const ids = (ns: (Notification | undefined)[]) => ns.map((n) => n?.id as string);

    const res = await call(me, 'POST', '/v1/notifications/read', {
      ids: ids([mine[0], mine[1], theirs[0]]).concat(uuidv7()),
    });
    expectStatus(res, 200);
    expect(Value.Check(MarkReadResult, res.json())).toBe(true);
    expect(res.json()).toEqual({ updated: 2, unreadCount: 2 });
    // Theirs is untouched, and a foreign id answers exactly like an unknown one (no oracle).
    expect(await sqlUnread(them.userId)).toBe(2);
    const foreign = await call(me, 'POST', '/v1/notifications/read', { ids: ids([theirs[1]]) });
    const unknown = await call(me, 'POST', '/v1/notifications/read', { ids: [uuidv7()] });
    expectStatus(foreign, 200);
    expect(foreign.body).toBe(unknown.body);
    expect(foreign.json()).toEqual({ updated: 0, unreadCount: 2 });
    expect(await sqlUnread(them.userId)).toBe(2);
    // Again: nothing changes, and the first readAt stays.
    const before = (await all(me)).find((n) => n.id === mine[0]?.id)?.readAt;
    expect(before).not.toBeNull();
    expect((await call(me, 'POST', '/v1/notifications/read', { ids: ids([mine[0]]) })).json()).toEqual({
      updated: 0,
      unreadCount: 2,
    });
    expect((await all(me)).find((n) => n.id === mine[0]?.id)?.readAt).toBe(before);

    expect((await call(me, 'POST', '/v1/notifications/read', { all: true })).json()).toEqual({
      updated: 2,
      unreadCount: 0,
    });
    expect((await call(me, 'POST', '/v1/notifications/read', { all: true })).json()).toEqual({
      updated: 0,
      unreadCount: 0,
    });
    expect(await sqlUnread(me.userId)).toBe(0);
    expect(await sqlUnread(them.userId)).toBe(2);
    expect(await unreadCount(them)).toBe(2);

    // Malformed bodies are refused.
    for (const body of [
      {},
      { ids: [] },
      { ids: ['not-a-uuid'] },
      { ids: Array.from({ length: 101 }, () => uuidv7()) },
      { all: false },
      { all: true, ids: [uuidv7()] },
      { ids: [uuidv7()], userId: them.userId },
    ])
      expectStatus(await call(me, 'POST', '/v1/notifications/read', body), 400);
    expectStatus(await call(null, 'POST', '/v1/notifications/read', { all: true }), 401);
    expect(await sqlUnread(them.userId)).toBe(2);
  });
});

describe('account deletion and export', () => {
  it('the export carries my notifications; deleting an account takes what it caused others with it', async () => {
    const [gone, stays] = [await person(), await person()];
    expectStatus(await call(gone, 'POST', '/v1/friend-requests', { userId: stays.userId }), 201);
    await systemNotes(stays, 1);
    await systemNotes(gone, 1);
    expect((await all(stays)).map((n) => n.kind).sort()).toEqual(['friend_request', 'system']);

    const exported = await call(stays, 'GET', '/v1/me/export');
    expectStatus(exported, 200);
    const doc = exported.json() as { notifications: { kind: string; actorId: string | null }[] };
    expect(doc.notifications.map((n) => [n.kind, n.actorId])).toEqual([
      ['friend_request', gone.userId],
      ['system', null],
    ]);

    expectStatus(await call(gone, 'DELETE', '/v1/me', { password: DEFAULT_PASSWORD }), 204);
    expect((await all(stays)).map((n) => n.kind)).toEqual(['system']);
    expect(await unreadCount(stays)).toBe(1);
    const { rows } = await t.deps.db.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM notifications WHERE user_id = $1 OR actor_id = $1 OR data::text LIKE $2',
      [gone.userId, `%${gone.userId}%`],
    );
    expect(rows[0]?.n).toBe(0);
  });
});

describe('prune', () => {
  it('drops read ones after 30 days and any after 90, and keeps the newest 500 per user', async () => {
    const [u, v] = [await person(), await person()];
    const now = t.deps.clock.now().getTime();
    const daysAgo = (d: number) => new Date(now - d * 86400_000);
    const insert = (userId: string, createdAt: Date, readAt: Date | null, n: number) =>
      t.deps.db.query(
        `INSERT INTO notifications (id, user_id, kind, data, created_at, read_at)
         VALUES ($1, $2, 'system', jsonb_build_object('n', $3::int), $4, $5)`,
        [uuidv7(), userId, n, createdAt, readAt],
      );
    await insert(u.userId, daysAgo(31), daysAgo(30), 1); // read, old: goes
    await insert(u.userId, daysAgo(29), daysAgo(1), 2); // read, recent: stays
    await insert(u.userId, daysAgo(89), null, 3); // unread: stays until 90 days
    await insert(u.userId, daysAgo(91), null, 4); // anything past 90 days: goes
    const over = KEEP_PER_USER + 12;
    await t.deps.db.query(
      `INSERT INTO notifications (id, user_id, kind, data, created_at)
       SELECT gen_random_uuid(), $1, 'system', jsonb_build_object('n', i), $2::timestamptz - make_interval(secs => i)
         FROM generate_series(1, $3::int) AS i`,
      [v.userId, new Date(now), over],
    );

    // Through the job, as the worker's schedule runs it.
    await t.deps.jobs.enqueue(NOTIFICATIONS_PRUNE_JOB, {});
    await eventually(async () => {
      expect((await all(u)).map((n) => n.data.n)).toEqual([2, 3]);
      const { rows } = await t.deps.db.query<{ n: number; newest: number; oldest: number }>(
        `SELECT count(*)::int AS n, min((data->>'n')::int) AS newest, max((data->>'n')::int) AS oldest
           FROM notifications WHERE user_id = $1`,
        [v.userId],
      );
      expect(rows[0]).toEqual({ n: KEEP_PER_USER, newest: 1, oldest: KEEP_PER_USER });
    }, 10_000);
    // Running again changes nothing.
    expect(await t.deps.notifications.prune()).toEqual({ aged: 0, overCap: 0 });
    expect(await unreadCount(v)).toBe(KEEP_PER_USER);
  });
});

describe('the store', () => {
  it('accepts exactly the kinds the code knows', async () => {
    const { rows } = await t.deps.db.query<{ def: string }>(
      `SELECT pg_get_constraintdef(c.oid) AS def FROM pg_constraint c
        WHERE c.conrelid = 'notifications'::regclass AND c.contype = 'c'
          AND pg_get_constraintdef(c.oid) LIKE '%kind%'`,
    );
    expect(rows).toHaveLength(1);
    const inCheck = [...(rows[0]?.def ?? '').matchAll(/'([a-z_]+)'/g)].map((m) => m[1]).sort();
    expect(inCheck).toEqual([...NOTIFICATION_KINDS].sort());
    await expect(
      t.deps.db.query(
        `INSERT INTO notifications (id, user_id, kind, data, created_at) VALUES ($1, $2, 'nonsense', '{}', now())`,
        [uuidv7(), (await person()).userId],
      ),
    ).rejects.toThrow();
  });
});
