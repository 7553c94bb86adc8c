import { randomBytes } from 'node:crypto';
import { Value } from '@sinclair/typebox/value';
import { io as connect, type Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../src/lib/db.js';
import {
  Completion,
  GroupTask,
  GroupTaskList,
  type InvitationList,
  InvitationPage,
  MemberList,
} from '../src/modules/groups/groups.schemas.js';
import { pointsFor } from '../src/modules/groups/groups.service.js';
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

// Group tasks through HTTP on a real database, in both lanes, with the worker running (auto-close
// comes through the outbox). Every test makes its own people.
let t: TestApp;
let tdb: TestDb;
/** The second instance (services lane), and the pool of its own it reaches the shared database with. */
let nodeB: TestApp | undefined;
const sockets: Socket[] = [];

beforeAll(async () => {
  tdb = await testDb();
  t = await startTestApp({ worker: true, listen: true, db: tdb, env: { RATE_LIMIT_MULTIPLIER: '0' } });
});
afterAll(async () => {
  for (const s of sockets) s.disconnect();
  await nodeB?.close();
  await t?.close();
  await tdb?.drop();
});

type Caller = { userId: string; username: string; headers: Record<string, string>; token: string };
type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE';

async function person(): Promise<Caller> {
  const user = await aUser(t.deps);
  return { ...(await signIn(t.deps, user.id)), username: user.username };
}

const call = (who: Caller | null, method: Method, url: string, payload?: unknown, headers = {}) =>
  callOn(t, who, method, url, payload, headers);

const callOn = (
  on: TestApp,
  who: Caller | null,
  method: Method,
  url: string,
  payload?: unknown,
  headers = {},
) =>
  on.app.inject({
    method,
    url,
    headers: { ...(who?.headers ?? {}), ...headers },
    ...(payload === undefined ? {} : { payload: payload as object }),
  });

function expectStatus(
  res: { statusCode: number; body: string; json(): unknown },
  status: number,
  code?: string,
) {
  expect(res.statusCode, res.body).toBe(status);
  if (code) expect((res.json() as { code: string }).code).toBe(code);
}

async function befriend(a: Caller, b: Caller) {
  const asked = await t.deps.friends.sendRequest(a.userId, b.userId);
  await t.deps.friends.accept(b.userId, asked.body.id);
}

const inAnHour = () => new Date(Date.now() + 3600_000).toISOString();

async function createGroup(owner: Caller, body: Record<string, unknown> = {}): Promise<GroupTask> {
  const res = await call(owner, 'POST', '/v1/group-tasks', {
    title: 'Run 5k',
    visibility: 'public',
    dueAt: inAnHour(),
    ...body,
  });
  expectStatus(res, 201);
  expect(Value.Check(GroupTask, res.json()), res.body).toBe(true);
  return res.json();
}

function open(token: string): Promise<Socket> {
  const socket = connect(t.url, {
    transports: ['websocket'],
    auth: { token },
    reconnection: false,
    forceNew: true,
  });
  sockets.push(socket);
  return new Promise((resolve, reject) => {
    socket.once('system:welcome', () => resolve(socket));
    socket.once('connect_error', reject);
  });
}

describe('group tasks', () => {
  it('life cycle: create with invitations, accept, join, list, edit, complete, close with points', async () => {
    const [owner, friend, stranger, other] = [await person(), await person(), await person(), await person()];
    await befriend(owner, friend);
    // Invitations go to friends only.
    expectStatus(
      await call(owner, 'POST', '/v1/group-tasks', {
        title: 'x',
        visibility: 'private',
        dueAt: inAnHour(),
        inviteUserIds: [stranger.userId],
      }),
      403,
      'not_friends',
    );
    expectStatus(
      await call(owner, 'POST', '/v1/group-tasks', {
        title: 'x',
        visibility: 'private',
        dueAt: '2020-01-01T00:00:00Z',
      }),
      400,
      'due_in_past',
    );
    const g = await createGroup(owner, { visibility: 'private', inviteUserIds: [friend.userId] });
    expect(g).toMatchObject({ ownerId: owner.userId, memberCount: 1, myRole: 'owner', status: 'open' });

    const invitations = await call(friend, 'GET', '/v1/group-invitations');
    expectStatus(invitations, 200);
    expect(Value.Check(InvitationPage, invitations.json())).toBe(true);
    const inv = (invitations.json() as InvitationList).items.find((i) => i.groupTaskId === g.id);
    expect(inv).toBeDefined();
    // Only its recipient can answer it.
    expectStatus(await call(stranger, 'POST', `/v1/group-invitations/${inv?.id}/accept`), 404, 'not_found');
    expectStatus(await call(friend, 'POST', `/v1/group-invitations/${inv?.id}/accept`), 200);
    expectStatus(await call(friend, 'POST', `/v1/group-invitations/${inv?.id}/accept`), 200);
    expectStatus(
      await call(friend, 'POST', `/v1/group-invitations/${inv?.id}/decline`),
      409,
      'invitation_answered',
    );

    // Private: invisible to others; they cannot join it either.
    expectStatus(await call(stranger, 'GET', `/v1/group-tasks/${g.id}`), 404, 'not_found');
    expectStatus(await call(stranger, 'POST', `/v1/group-tasks/${g.id}/join`), 404, 'not_found');
    expectStatus(await call(stranger, 'GET', `/v1/group-tasks/${g.id}/members`), 404, 'not_found');
    // Members may not edit; invitations from the owner to a non-friend are refused.
    expectStatus(
      await call(friend, 'PATCH', `/v1/group-tasks/${g.id}`, { title: 'Mine' }),
      403,
      'not_group_admin',
    );
    expectStatus(
      await call(owner, 'POST', `/v1/group-tasks/${g.id}/invitations`, { userIds: [stranger.userId] }),
      403,
      'not_friends',
    );
    const edited = await call(owner, 'PATCH', `/v1/group-tasks/${g.id}`, {
      title: 'Run 10k',
      visibility: 'public',
    });
    expectStatus(edited, 200);
    expect((edited.json() as GroupTask).title).toBe('Run 10k');

    // Public now: a stranger may read, discover and join it; other is left alone.
    expectStatus(await call(stranger, 'GET', `/v1/group-tasks/${g.id}`), 200);
    const discover = await call(stranger, 'GET', '/v1/group-tasks?scope=public&q=10k&limit=100');
    expectStatus(discover, 200);
    expect(Value.Check(GroupTaskList, discover.json())).toBe(true);
    expect((discover.json() as GroupTaskList).items.map((i) => i.id)).toContain(g.id);
    expectStatus(await call(stranger, 'POST', `/v1/group-tasks/${g.id}/complete`), 403, 'not_member');
    expectStatus(await call(stranger, 'DELETE', `/v1/group-tasks/${g.id}`), 403, 'not_group_owner');
    expectStatus(await call(stranger, 'POST', `/v1/group-tasks/${g.id}/join`), 200);
    expectStatus(await call(stranger, 'POST', `/v1/group-tasks/${g.id}/join`), 200);
    const notListed = await call(stranger, 'GET', '/v1/group-tasks?scope=public&q=10k&limit=100');
    expect((notListed.json() as GroupTaskList).items.map((i) => i.id)).not.toContain(g.id);
    const mine = await call(stranger, 'GET', '/v1/group-tasks?scope=mine');
    expect((mine.json() as GroupTaskList).items.map((i) => i.id)).toContain(g.id);
    await call(other, 'POST', `/v1/group-tasks/${g.id}/join`);
    expectStatus(await call(other, 'POST', `/v1/group-tasks/${g.id}/leave`), 204);

    // Completion order gives ranks; asking again answers the same rank.
    const first = await call(friend, 'POST', `/v1/group-tasks/${g.id}/complete`);
    expectStatus(first, 200);
    expect(Value.Check(Completion, first.json())).toBe(true);
    expect((first.json() as Completion).rank).toBe(1);
    expect(((await call(friend, 'POST', `/v1/group-tasks/${g.id}/complete`)).json() as Completion).rank).toBe(
      1,
    );
    expect(((await call(owner, 'POST', `/v1/group-tasks/${g.id}/complete`)).json() as Completion).rank).toBe(
      2,
    );

    const members = await call(stranger, 'GET', `/v1/group-tasks/${g.id}/members`);
    expect(Value.Check(MemberList, members.json())).toBe(true);
    expect((members.json() as MemberList).items.map((m) => m.userId)).toEqual([
      owner.userId,
      friend.userId,
      stranger.userId,
    ]);
    const board = (await call(owner, 'GET', `/v1/group-tasks/${g.id}/leaderboard`)).json() as MemberList;
    expect(board.items.map((m) => [m.userId, m.rank])).toEqual([
      [friend.userId, 1],
      [owner.userId, 2],
      [stranger.userId, null],
    ]);

    expectStatus(await call(friend, 'POST', `/v1/group-tasks/${g.id}/close`), 403, 'not_group_owner');
    const closed = await call(owner, 'POST', `/v1/group-tasks/${g.id}/close`);
    expectStatus(closed, 200);
    expect((closed.json() as GroupTask).status).toBe('closed');
    expectStatus(await call(owner, 'POST', `/v1/group-tasks/${g.id}/close`), 200);
    expectStatus(await call(stranger, 'POST', `/v1/group-tasks/${g.id}/complete`), 409, 'group_closed');
    expectStatus(
      await call(owner, 'PATCH', `/v1/group-tasks/${g.id}`, { title: 'late' }),
      409,
      'group_closed',
    );
    // 3 members: 5 points per finisher, paid once.
    const { rows } = await t.deps.db.query<{ userId: string; points: number }>(
      `SELECT user_id, points FROM score_events WHERE source = 'group_rank' AND source_key = $1 ORDER BY user_id`,
      [g.id],
    );
    expect(rows.map((r) => [r.userId, r.points]).sort()).toEqual(
      [
        [friend.userId, 5],
        [owner.userId, 5],
      ].sort(),
    );

    expectStatus(await call(friend, 'DELETE', `/v1/group-tasks/${g.id}`), 403, 'not_group_owner');
    expectStatus(await call(owner, 'DELETE', `/v1/group-tasks/${g.id}`), 204);
    expectStatus(await call(owner, 'GET', `/v1/group-tasks/${g.id}`), 404, 'not_found');
    expectStatus(await call(owner, 'GET', '/v1/group-tasks/not-a-uuid'), 404, 'not_found');
  });

  it('50 members finishing at once get ranks 1..50 once each; retries keep them; points match the ledger', async () => {
    const owner = await person();
    const g = await createGroup(owner);
    const people = [owner];
    for (let i = 0; i < 49; i++) {
      const p = await person();
      expectStatus(await call(p, 'POST', `/v1/group-tasks/${g.id}/join`), 200);
      people.push(p);
    }
    const results = await Promise.all(
      people.map((p, i) =>
        call(
          p,
          'POST',
          `/v1/group-tasks/${g.id}/complete`,
          undefined,
          i % 2 ? { 'idempotency-key': `k-${i}` } : {},
        ),
      ),
    );
    for (const r of results) expectStatus(r, 200);
    const ranks = results.map((r) => (r.json() as Completion).rank);
    expect([...ranks].sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    // Retries (with and without the key) answer the same rank.
    const again = await Promise.all(
      people.map((p, i) =>
        call(
          p,
          'POST',
          `/v1/group-tasks/${g.id}/complete`,
          undefined,
          i % 2 ? { 'idempotency-key': `k-${i}` } : {},
        ),
      ),
    );
    expect(again.map((r) => (r.json() as Completion).rank)).toEqual(ranks);

    expectStatus(await call(owner, 'POST', `/v1/group-tasks/${g.id}/close`), 200);
    // Closing twice (the job and the owner) pays once.
    await t.deps.groups.closeIfDue({ groupTaskId: g.id });
    const { rows } = await t.deps.db.query<{ userId: string; points: number }>(
      `SELECT user_id, points FROM score_events WHERE source = 'group_rank' AND source_key = $1`,
      [g.id],
    );
    expect(rows).toHaveLength(50);
    const byUser = new Map(rows.map((r) => [r.userId, r.points]));
    people.forEach((p, i) => {
      expect(byUser.get(p.userId)).toBe(pointsFor(ranks[i] as number, 50));
    });
    expect(rows.reduce((s, r) => s + r.points, 0)).toBe(30 + 20 + 10 + 47 * 5);
  });

  it('closes by itself at dueAt through the outbox job, and refuses completion past due', async () => {
    const owner = await person();
    const member = await person();
    const g = await createGroup(owner, { dueAt: new Date(Date.now() + 1500).toISOString() });
    await call(member, 'POST', `/v1/group-tasks/${g.id}/join`);
    expect(((await call(owner, 'POST', `/v1/group-tasks/${g.id}/complete`)).json() as Completion).rank).toBe(
      1,
    );
    await eventually(
      async () => {
        const res = await call(owner, 'GET', `/v1/group-tasks/${g.id}`);
        expect((res.json() as GroupTask).status).toBe('closed');
      },
      10_000,
      100,
    );
    const late = await call(member, 'POST', `/v1/group-tasks/${g.id}/complete`);
    expect(late.statusCode).toBe(409);
    expect(['group_closed', 'group_past_due']).toContain((late.json() as { code: string }).code);
    const { rows } = await t.deps.db.query<{ points: number }>(
      `SELECT points FROM score_events WHERE source = 'group_rank' AND source_key = $1 AND user_id = $2`,
      [g.id, owner.userId],
    );
    expect(rows.map((r) => r.points)).toEqual([5]);
  });

  it('A4: a removed member’s socket hears no group events after the removal commits', async () => {
    const owner = await person();
    const member = await person();
    const stayer = await person();
    const g = await createGroup(owner);
    const memberSocket = await open(member.token);
    const stayerSocket = await open(stayer.token);
    expectStatus(await call(member, 'POST', `/v1/group-tasks/${g.id}/join`), 200);
    expectStatus(await call(stayer, 'POST', `/v1/group-tasks/${g.id}/join`), 200);
    // The member hears the group while in it.
    const heard: string[] = [];
    memberSocket.onAny((event: string) => {
      if (event.startsWith('group:')) heard.push(event);
    });
    const stayerHeard: { event: string; data: unknown }[] = [];
    stayerSocket.onAny((event: string, data: unknown) => {
      if (event.startsWith('group:')) stayerHeard.push({ event, data });
    });
    // The member hears the stayer join (both joined before the listeners: the join is read back).
    expectStatus(await call(owner, 'DELETE', `/v1/group-tasks/${g.id}/members/${stayer.userId}`), 204);
    expectStatus(await call(stayer, 'POST', `/v1/group-tasks/${g.id}/join`), 200);
    await call(owner, 'PATCH', `/v1/group-tasks/${g.id}`, { description: 'before' });
    await eventually(() =>
      expect(heard).toEqual(expect.arrayContaining(['group:member_joined', 'group:updated'])),
    );

    expectStatus(await call(owner, 'DELETE', `/v1/group-tasks/${g.id}/members/${member.userId}`), 204);
    heard.length = 0;
    await call(owner, 'PATCH', `/v1/group-tasks/${g.id}`, { description: 'after' });
    await call(owner, 'POST', `/v1/group-tasks/${g.id}/complete`);
    await eventually(() =>
      expect(stayerHeard.map((e) => e.event)).toEqual(
        expect.arrayContaining(['group:member_left', 'group:member_completed']),
      ),
    );
    expectStatus(await call(owner, 'POST', `/v1/group-tasks/${g.id}/close`), 200);
    await eventually(() => expect(stayerHeard.map((e) => e.event)).toContain('group:closed'));
    await new Promise((r) => setTimeout(r, 200));
    expect(heard).toEqual([]);
    expectStatus(await call(member, 'POST', `/v1/group-tasks/${g.id}/complete`), 403, 'not_member');
    // The group conversation follows the membership, in the same transaction.
    const { rows } = await t.deps.db.query<{ userId: string }>(
      `SELECT cm.user_id FROM conversation_members cm JOIN conversations c ON c.id = cm.conversation_id
        WHERE c.group_task_id = $1 ORDER BY cm.user_id`,
      [g.id],
    );
    expect(rows.map((r) => r.userId)).toEqual([owner.userId, stayer.userId].sort());
  });

  it('the owner makes a member an admin (who may then invite and remove) and takes it back', async () => {
    const [owner, member, other, friendOfMember] = [
      await person(),
      await person(),
      await person(),
      await person(),
    ];
    await befriend(member, friendOfMember);
    const g = await createGroup(owner);
    for (const p of [member, other]) expectStatus(await call(p, 'POST', `/v1/group-tasks/${g.id}/join`), 200);
    const url = (who: Caller) => `/v1/group-tasks/${g.id}/members/${who.userId}`;
    expectStatus(await call(member, 'PATCH', url(other), { role: 'admin' }), 403, 'not_group_owner');
    expectStatus(await call(owner, 'PATCH', url(owner), { role: 'member' }), 403, 'cannot_change_owner');
    expectStatus(await call(owner, 'PATCH', url(friendOfMember), { role: 'admin' }), 404, 'not_found');
    expectStatus(await call(owner, 'PATCH', url(member), { role: 'owner' }), 400);
    const promoted = await call(owner, 'PATCH', url(member), { role: 'admin' });
    expectStatus(promoted, 200);
    expect(promoted.json()).toMatchObject({ userId: member.userId, role: 'admin' });
    expectStatus(
      await call(member, 'POST', `/v1/group-tasks/${g.id}/invitations`, { userIds: [friendOfMember.userId] }),
      201,
    );
    expectStatus(await call(member, 'DELETE', url(other)), 204);
    expectStatus(await call(owner, 'PATCH', url(member), { role: 'member' }), 200);
    expectStatus(
      await call(member, 'PATCH', `/v1/group-tasks/${g.id}`, { description: 'x' }),
      403,
      'not_group_admin',
    );
  });

  it('invitations to me come a page at a time, newest first', async () => {
    const me = await person();
    const inviters = [await person(), await person(), await person()];
    for (const inviter of inviters) {
      await befriend(inviter, me);
      await createGroup(inviter, { visibility: 'private', inviteUserIds: [me.userId] });
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const res = await call(me, 'GET', `/v1/group-invitations?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      expectStatus(res, 200);
      const page = res.json() as { items: { fromUserId: string }[]; nextCursor: string | null };
      seen.push(...page.items.map((i) => i.fromUserId));
      cursor = page.nextCursor;
    } while (cursor);
    expect(seen).toEqual(inviters.map((i) => i.userId).reverse());
    expectStatus(await call(me, 'GET', '/v1/group-invitations?cursor=bogus'), 400, 'invalid_cursor');
  });

  it('an unfriend or a block, by either side, cancels the invitations between the two (C2 found blocks did not)', async () => {
    const owner = await person();
    const [blocked, blocker, exFriend, bystander] = [
      await person(),
      await person(),
      await person(),
      await person(),
    ];
    for (const p of [blocked, blocker, exFriend, bystander]) await befriend(owner, p);
    const group = await createGroup(owner, {
      visibility: 'private',
      inviteUserIds: [blocked.userId, blocker.userId, exFriend.userId, bystander.userId],
    });
    const pending = async (who: Caller) =>
      ((await call(who, 'GET', '/v1/group-invitations')).json() as { items: { id: string }[] }).items;
    const invitationOf = async (who: Caller) => (await pending(who))[0]?.id as string;
    const ids = {
      blocked: await invitationOf(blocked),
      blocker: await invitationOf(blocker),
      exFriend: await invitationOf(exFriend),
    };

    expectStatus(await call(owner, 'POST', '/v1/blocks', { userId: blocked.userId }), 201);
    expectStatus(await call(blocker, 'POST', '/v1/blocks', { userId: owner.userId }), 201);
    expectStatus(await call(exFriend, 'DELETE', `/v1/friends/${owner.userId}`), 204);
    for (const who of ['blocked', 'blocker', 'exFriend'] as const) {
      const me = { blocked, blocker, exFriend }[who];
      expect(await pending(me), who).toEqual([]);
      expectStatus(
        await call(me, 'POST', `/v1/group-invitations/${ids[who]}/accept`),
        409,
        'invitation_answered',
      );
    }
    expectStatus(await call(blocked, 'GET', `/v1/group-tasks/${group.id}`), 404);
    // Someone else's invitation to the same group task is untouched.
    expect(await pending(bystander)).toHaveLength(1);
    expectStatus(
      await call(bystander, 'POST', `/v1/group-invitations/${await invitationOf(bystander)}/accept`),
      200,
    );
  });

  it('a socket that connects later hears its groups at once (events go to members, read at commit)', async () => {
    const owner = await person();
    const member = await person();
    const g = await createGroup(owner);
    await call(member, 'POST', `/v1/group-tasks/${g.id}/join`);
    const socket = await open(member.token);
    const heard: unknown[] = [];
    socket.on('group:member_completed', (d) => heard.push(d));
    await call(owner, 'POST', `/v1/group-tasks/${g.id}/complete`);
    await eventually(() => expect(heard).toEqual([{ groupTaskId: g.id, userId: owner.userId, rank: 1 }]));
  });

  it('deleting the owner’s account hands the group to the earliest member, or deletes it when empty', async () => {
    const owner = await person();
    const member = await person();
    const shared = await createGroup(owner);
    const alone = await createGroup(owner, { visibility: 'private' });
    await call(member, 'POST', `/v1/group-tasks/${shared.id}/join`);
    const res = await call(owner, 'DELETE', '/v1/me', { password: 'correct horse battery staple' });
    expect([200, 204]).toContain(res.statusCode);
    const now = (await call(member, 'GET', `/v1/group-tasks/${shared.id}`)).json() as GroupTask;
    expect(now).toMatchObject({ ownerId: member.userId, myRole: 'owner', memberCount: 1 });
    const { rows } = await t.deps.db.query('SELECT id FROM group_tasks WHERE id = $1', [alone.id]);
    expect(rows).toHaveLength(0);
  });

  it.runIf(lane.services)('the hot group reads use an index (EXPLAIN, sequential scans off)', async () => {
    const U = '01930000-0000-7000-8000-000000000001';
    const queries: [string, string, unknown[]][] = [
      ['my groups (socket rooms)', 'SELECT group_task_id FROM group_members WHERE user_id = $1', [U]],
      ['members of a group', 'SELECT * FROM group_members WHERE group_task_id = $1 ORDER BY rank', [U]],
      [
        'public discovery',
        "SELECT id FROM group_tasks g WHERE visibility = 'public' AND status = 'open' AND due_at > now() ORDER BY created_at DESC, id DESC LIMIT 21",
        [],
      ],
      [
        'my pending invitations',
        "SELECT id FROM group_invitations WHERE to_user_id = $1 AND status = 'pending' ORDER BY created_at DESC, id DESC LIMIT 100",
        [U],
      ],
      ['groups a user owns', 'SELECT id FROM group_tasks WHERE owner_id = $1', [U]],
    ];
    const plans = await t.deps.db.tx(async (q) => {
      await q.query('SET LOCAL enable_seqscan = off');
      const out: [string, string][] = [];
      for (const [name, sql, params] of queries) {
        const { rows } = await q.query<Record<string, string>>(`EXPLAIN ${sql}`, params);
        out.push([name, rows.map((r) => Object.values(r)[0]).join('\n')]);
      }
      return out;
    });
    for (const [name, plan] of plans) {
      expect(plan, name).toMatch(/Index|Bitmap/);
      expect(plan, name).not.toMatch(/Seq Scan/);
    }
  });
});

/**
 * Watches one instance's pool for the two cached reads: the shared discovery slice and a member list.
 * Counting them proves a hit (the database was not asked); `hold` parks the next such read after its
 * rows came back and before they are cached, to stage a write racing it.
 */
function tap(db: Db) {
  const query = db.query;
  const n = { discovery: 0, members: 0 };
  type Kind = keyof typeof n;
  let parked: { kind: Kind; reached: () => void; gate: Promise<void> } | undefined;
  const kindOf = (sql: string): Kind | undefined =>
    sql.includes('NULL AS my_role')
      ? 'discovery'
      : sql.includes('FROM group_members m JOIN users u')
        ? 'members'
        : undefined;
  db.query = (async (sql: string, params?: readonly unknown[]) => {
    const kind = kindOf(sql);
    if (kind) n[kind]++;
    const result = await query.call(db, sql, params);
    if (kind && parked?.kind === kind) {
      const p = parked;
      parked = undefined;
      p.reached();
      await p.gate;
    }
    return result;
  }) as Db['query'];
  return {
    n,
    hold(kind: Kind) {
      let reached!: () => void;
      let release!: () => void;
      const isReached = new Promise<void>((r) => {
        reached = r;
      });
      const gate = new Promise<void>((r) => {
        release = r;
      });
      parked = { kind, reached, gate };
      return { reached: isReached, release };
    },
    restore() {
      db.query = query;
    },
  };
}
type Tap = ReturnType<typeof tap>;

/** Reads twice: the first goes to the database (a write made it stale), the second is a cache hit. */
async function missThenHit<T>(reads: Tap, kind: 'discovery' | 'members', read: () => Promise<T>): Promise<T> {
  const before = reads.n[kind];
  const first = await read();
  expect(reads.n[kind], `${kind}: the first read after a write asks the database`).toBeGreaterThan(before);
  const asked = reads.n[kind];
  const second = await read();
  expect(reads.n[kind], `${kind}: the repeated read is a cache hit`).toBe(asked);
  expect(second).toEqual(first);
  return first;
}

/** A read that must be a cache hit (the write before it changed nothing it shows). */
async function hit<T>(reads: Tap, kind: 'discovery' | 'members', read: () => Promise<T>): Promise<T> {
  const before = reads.n[kind];
  const value = await read();
  expect(reads.n[kind], `${kind}: a cache hit`).toBe(before);
  return value;
}

const searchTag = () => `cache${randomBytes(5).toString('hex')}`;

async function discover(who: Caller, q: string, on: TestApp = t): Promise<GroupTask[]> {
  const res = await callOn(on, who, 'GET', `/v1/group-tasks?scope=public&q=${q}&limit=100`);
  expectStatus(res, 200);
  expect(Value.Check(GroupTaskList, res.json()), res.body).toBe(true);
  return (res.json() as GroupTaskList).items;
}

async function memberList(who: Caller, groupId: string, on: TestApp = t, path = 'members') {
  const res = await callOn(on, who, 'GET', `/v1/group-tasks/${groupId}/${path}`);
  expectStatus(res, 200);
  expect(Value.Check(MemberList, res.json()), res.body).toBe(true);
  return (res.json() as MemberList).items;
}

const ids = (items: { id: string }[]) => items.map((i) => i.id);
const userIds = (items: { userId: string }[]) => items.map((i) => i.userId);

async function deleteAccount(who: Caller) {
  const res = await call(who, 'DELETE', '/v1/me', { password: DEFAULT_PASSWORD });
  expect([200, 204], res.body).toContain(res.statusCode);
}

describe('group caches: public discovery and member lists', () => {
  let reads: Tap;
  beforeAll(() => {
    reads = tap(t.deps.db);
  });
  afterAll(() => reads.restore());

  it('discovery: a repeated read is a hit; every write that changes it makes the next read fresh', async () => {
    const q = searchTag();
    const [owner, viewer, joiner, friend, other] = [
      await person(),
      await person(),
      await person(),
      await person(),
      await person(),
    ];
    await befriend(owner, friend);
    const g = await createGroup(owner, { title: `Swim ${q}` });
    const look = () => discover(viewer, q);
    const entry = async () => (await missThenHit(reads, 'discovery', look)).find((i) => i.id === g.id);

    expect(await entry()).toMatchObject({ memberCount: 1, myRole: null, ownerId: owner.userId });
    // create
    const g2 = await createGroup(other, { title: `Row ${q}` });
    expect(ids(await missThenHit(reads, 'discovery', look))).toEqual([g2.id, g.id]);
    // A private one never enters discovery (and its writes leave the shared entries alone).
    await createGroup(owner, { title: `Secret ${q}`, visibility: 'private' });
    expect(ids(await hit(reads, 'discovery', look))).toEqual([g2.id, g.id]);
    // update: title and description, then the due time
    expectStatus(
      await call(owner, 'PATCH', `/v1/group-tasks/${g.id}`, { title: `Swim far ${q}`, description: 'd2' }),
      200,
    );
    expect(await entry()).toMatchObject({ title: `Swim far ${q}`, description: 'd2' });
    const later = new Date(Date.now() + 2 * 3600_000).toISOString();
    expectStatus(await call(owner, 'PATCH', `/v1/group-tasks/${g.id}`, { dueAt: later }), 200);
    expect((await entry())?.dueAt).toBe(later);
    // join, leave, removal, an accepted invitation: the member count
    expectStatus(await call(joiner, 'POST', `/v1/group-tasks/${g.id}/join`), 200);
    expect((await entry())?.memberCount).toBe(2);
    expectStatus(await call(joiner, 'POST', `/v1/group-tasks/${g.id}/leave`), 204);
    expect((await entry())?.memberCount).toBe(1);
    expectStatus(await call(joiner, 'POST', `/v1/group-tasks/${g.id}/join`), 200);
    expect((await entry())?.memberCount).toBe(2);
    expectStatus(await call(owner, 'DELETE', `/v1/group-tasks/${g.id}/members/${joiner.userId}`), 204);
    expect((await entry())?.memberCount).toBe(1);
    const invited = await call(owner, 'POST', `/v1/group-tasks/${g.id}/invitations`, {
      userIds: [friend.userId],
    });
    expectStatus(invited, 201);
    expect((await hit(reads, 'discovery', look)).find((i) => i.id === g.id)?.memberCount).toBe(1);
    const invitation = (invited.json() as InvitationList).items[0]?.id;
    expectStatus(await call(friend, 'POST', `/v1/group-invitations/${invitation}/accept`), 200);
    expect((await entry())?.memberCount).toBe(2);
    // A role change and a completion show in member lists only: discovery stays a hit.
    expectStatus(
      await call(owner, 'PATCH', `/v1/group-tasks/${g.id}/members/${friend.userId}`, { role: 'admin' }),
      200,
    );
    expectStatus(await call(friend, 'POST', `/v1/group-tasks/${g.id}/complete`), 200);
    expect((await hit(reads, 'discovery', look)).find((i) => i.id === g.id)?.memberCount).toBe(2);
    // visibility: private leaves discovery, public comes back
    expectStatus(await call(owner, 'PATCH', `/v1/group-tasks/${g.id}`, { visibility: 'private' }), 200);
    expect(ids(await missThenHit(reads, 'discovery', look))).toEqual([g2.id]);
    expectStatus(await call(owner, 'PATCH', `/v1/group-tasks/${g.id}`, { visibility: 'public' }), 200);
    expect(ids(await missThenHit(reads, 'discovery', look))).toEqual([g2.id, g.id]);
    // close (by the owner; the automatic close is the same write, see the fake-clock test) and delete
    expectStatus(await call(other, 'POST', `/v1/group-tasks/${g2.id}/close`), 200);
    expect(ids(await missThenHit(reads, 'discovery', look))).toEqual([g.id]);
    expectStatus(await call(owner, 'DELETE', `/v1/group-tasks/${g.id}`), 204);
    expect(ids(await missThenHit(reads, 'discovery', look))).toEqual([]);

    // Account deletion: the owner's task passes to its earliest member; a member's going drops the count.
    const [leaver, heir, plain] = [await person(), await person(), await person()];
    const h = await createGroup(leaver, { title: `Climb ${q}` });
    expectStatus(await call(heir, 'POST', `/v1/group-tasks/${h.id}/join`), 200);
    expectStatus(await call(plain, 'POST', `/v1/group-tasks/${h.id}/join`), 200);
    expect((await missThenHit(reads, 'discovery', look))[0]).toMatchObject({
      id: h.id,
      ownerId: leaver.userId,
      memberCount: 3,
    });
    await deleteAccount(leaver);
    expect((await missThenHit(reads, 'discovery', look))[0]).toMatchObject({
      id: h.id,
      ownerId: heir.userId,
      memberCount: 2,
    });
    await deleteAccount(plain);
    expect((await missThenHit(reads, 'discovery', look))[0]).toMatchObject({ id: h.id, memberCount: 1 });
  });

  it('discovery: the shared entry holds nothing of one caller (what I am in, my role) for another', async () => {
    const q = searchTag();
    const [owner, member, outsider, outsider2] = [
      await person(),
      await person(),
      await person(),
      await person(),
    ];
    const g = await createGroup(owner, { title: `Hike ${q}` });
    expectStatus(await call(member, 'POST', `/v1/group-tasks/${g.id}/join`), 200);
    // The member fills the shared slice; they never see their own task in discovery.
    expect(await missThenHit(reads, 'discovery', () => discover(member, q))).toEqual([]);
    // Outsiders are served that very entry and do see it, with no role of anyone's.
    const seen = await hit(reads, 'discovery', () => discover(outsider, q));
    expect(seen).toEqual([expect.objectContaining({ id: g.id, memberCount: 2, myRole: null })]);
    expect(await hit(reads, 'discovery', () => discover(owner, q))).toEqual([]);
    expect(ids(await hit(reads, 'discovery', () => discover(outsider2, q)))).toEqual([g.id]);
    // Pages: an outsider pages through one at a time over the same shared slices.
    const g2 = await createGroup(owner, { title: `Hike two ${q}` });
    const first = await callOn(t, outsider, 'GET', `/v1/group-tasks?scope=public&q=${q}&limit=1`);
    const page1 = first.json() as GroupTaskList;
    expect(ids(page1.items)).toEqual([g2.id]);
    const second = await callOn(
      t,
      outsider,
      'GET',
      `/v1/group-tasks?scope=public&q=${q}&limit=1&cursor=${page1.nextCursor}`,
    );
    expect(second.json()).toMatchObject({ items: [{ id: g.id }], nextCursor: null });
    // The member, in the newest one, still gets a full page of one (the next slice is read).
    expectStatus(await call(member, 'POST', `/v1/group-tasks/${g2.id}/join`), 200);
    const mine = (await callOn(t, member, 'GET', `/v1/group-tasks?scope=public&q=${q}&limit=1`)).json();
    expect(mine).toEqual({ items: [], nextCursor: null });
    const theirs = (
      await callOn(t, outsider, 'GET', `/v1/group-tasks?scope=public&q=${q}&limit=1`)
    ).json() as GroupTaskList;
    expect(ids(theirs.items)).toEqual([g2.id]);
    expect(theirs.nextCursor).not.toBeNull();
  });

  it('member lists: a repeated read is a hit; every write that changes them makes the next read fresh', async () => {
    const [owner, a, b, friend, outsider] = [
      await person(),
      await person(),
      await person(),
      await person(),
      await person(),
    ];
    await befriend(owner, friend);
    const g = await createGroup(owner);
    const look = () => memberList(outsider, g.id);
    const roles = async () =>
      (await missThenHit(reads, 'members', look)).map((m) => [m.userId, m.role, m.rank]);

    expect(await roles()).toEqual([[owner.userId, 'owner', null]]);
    // join, leave, removal
    expectStatus(await call(a, 'POST', `/v1/group-tasks/${g.id}/join`), 200);
    expect(userIds(await missThenHit(reads, 'members', look))).toEqual([owner.userId, a.userId]);
    expectStatus(await call(a, 'POST', `/v1/group-tasks/${g.id}/leave`), 204);
    expect(userIds(await missThenHit(reads, 'members', look))).toEqual([owner.userId]);
    expectStatus(await call(a, 'POST', `/v1/group-tasks/${g.id}/join`), 200);
    expectStatus(await call(b, 'POST', `/v1/group-tasks/${g.id}/join`), 200);
    expect(userIds(await missThenHit(reads, 'members', look))).toEqual([owner.userId, a.userId, b.userId]);
    expectStatus(await call(owner, 'DELETE', `/v1/group-tasks/${g.id}/members/${b.userId}`), 204);
    expect(userIds(await missThenHit(reads, 'members', look))).toEqual([owner.userId, a.userId]);
    // role change
    expectStatus(
      await call(owner, 'PATCH', `/v1/group-tasks/${g.id}/members/${a.userId}`, { role: 'admin' }),
      200,
    );
    expect(await roles()).toEqual([
      [owner.userId, 'owner', null],
      [a.userId, 'admin', null],
    ]);
    // an accepted invitation (a pending one changes nothing there)
    const invited = await call(owner, 'POST', `/v1/group-tasks/${g.id}/invitations`, {
      userIds: [friend.userId],
    });
    expectStatus(invited, 201);
    expect(userIds(await hit(reads, 'members', look))).toEqual([owner.userId, a.userId]);
    const invitation = (invited.json() as InvitationList).items[0]?.id;
    expectStatus(await call(friend, 'POST', `/v1/group-invitations/${invitation}/accept`), 200);
    expect(userIds(await missThenHit(reads, 'members', look))).toEqual([
      owner.userId,
      a.userId,
      friend.userId,
    ]);
    // completion: completedAt and rank, in both orders (the leaderboard is its own entry)
    const board = () => memberList(outsider, g.id, t, 'leaderboard');
    expect(userIds(await missThenHit(reads, 'members', board))).toEqual([
      owner.userId,
      a.userId,
      friend.userId,
    ]);
    expectStatus(await call(friend, 'POST', `/v1/group-tasks/${g.id}/complete`), 200);
    expect((await missThenHit(reads, 'members', look))[2]).toMatchObject({
      userId: friend.userId,
      rank: 1,
      completedAt: expect.any(String),
    });
    expect(userIds(await missThenHit(reads, 'members', board))).toEqual([
      friend.userId,
      owner.userId,
      a.userId,
    ]);
    // The owner leaving hands the group to the earliest member.
    expectStatus(await call(owner, 'POST', `/v1/group-tasks/${g.id}/leave`), 204);
    expect(await roles()).toEqual([
      [a.userId, 'owner', null],
      [friend.userId, 'member', 1],
    ]);
    // A member's account deletion (their membership goes by cascade).
    await deleteAccount(friend);
    expect(await roles()).toEqual([[a.userId, 'owner', null]]);
    // Turned private: the outsider's next read is a 404, not the cached public list; and a member's
    // cached entry never answers an outsider either (the access check runs on every hit).
    expectStatus(await call(a, 'PATCH', `/v1/group-tasks/${g.id}`, { visibility: 'private' }), 200);
    expect(userIds(await missThenHit(reads, 'members', () => memberList(a, g.id)))).toEqual([a.userId]);
    const before = reads.n.members;
    expectStatus(await call(outsider, 'GET', `/v1/group-tasks/${g.id}/members`), 404, 'not_found');
    expect(reads.n.members, 'the 404 came from the cached entry').toBe(before);
    // close, then delete: gone at once
    expectStatus(await call(a, 'POST', `/v1/group-tasks/${g.id}/close`), 200);
    expect(userIds(await missThenHit(reads, 'members', () => memberList(a, g.id)))).toEqual([a.userId]);
    expectStatus(await call(a, 'DELETE', `/v1/group-tasks/${g.id}`), 204);
    expectStatus(await call(a, 'GET', `/v1/group-tasks/${g.id}/members`), 404, 'not_found');
  });

  it('a read racing a write cannot cache the old state past the commit (versions, not deletes)', async () => {
    const q = searchTag();
    const [owner, joiner, joiner2, viewer] = [await person(), await person(), await person(), await person()];
    const g = await createGroup(owner, { title: `Race ${q}` });
    // Members: the read gets its rows, the join commits (and invalidates), then the read stores them.
    const parked = reads.hold('members');
    const stale = call(viewer, 'GET', `/v1/group-tasks/${g.id}/members`);
    await parked.reached;
    expectStatus(await call(joiner, 'POST', `/v1/group-tasks/${g.id}/join`), 200);
    parked.release();
    // The racing read answers what it read (its request began before the join)...
    expect(userIds(((await stale).json() as MemberList).items)).toEqual([owner.userId]);
    // ...but what it stored went under the old version: the next read is fresh.
    expect(userIds(await memberList(viewer, g.id))).toEqual([owner.userId, joiner.userId]);
    // Discovery, the same way: the late slice (one member) must not be served after the join.
    const parkedSlice = reads.hold('discovery');
    const staleList = discover(viewer, q);
    await parkedSlice.reached;
    expectStatus(await call(joiner2, 'POST', `/v1/group-tasks/${g.id}/join`), 200);
    parkedSlice.release();
    expect((await staleList)[0]?.memberCount).toBe(2);
    expect((await discover(viewer, q))[0]?.memberCount).toBe(3);
  });

  it('a past-due task leaves discovery at its due time, with no write (fake clock, no worker)', async () => {
    const clock = fakeClock(new Date());
    const app = await startTestApp({ clock, env: { RATE_LIMIT_MULTIPLIER: '0' } });
    const appReads = tap(app.deps.db);
    try {
      const someone = async (): Promise<Caller> => {
        const user = await aUser(app.deps);
        return { ...(await signIn(app.deps, user.id)), username: user.username };
      };
      const [owner, viewer] = [await someone(), await someone()];
      const q = searchTag();
      const create = async (title: string, inMs: number) => {
        const res = await callOn(app, owner, 'POST', '/v1/group-tasks', {
          title: `${title} ${q}`,
          visibility: 'public',
          dueAt: new Date(clock.now().getTime() + inMs).toISOString(),
        });
        expectStatus(res, 201);
        return res.json() as GroupTask;
      };
      const later = await create('Later', 3600_000);
      clock.advance(1);
      const soon = await create('Soon', 30_000);
      // A friend invited before the due time, who answers after it.
      const invited = await someone();
      const asked = await app.deps.friends.sendRequest(owner.userId, invited.userId);
      await app.deps.friends.accept(invited.userId, asked.body.id);
      const sent = await callOn(app, owner, 'POST', `/v1/group-tasks/${soon.id}/invitations`, {
        userIds: [invited.userId],
      });
      expectStatus(sent, 201);
      const invitation = (sent.json() as { items: { id: string }[] }).items[0]?.id;
      const look = () => discover(viewer, q, app);
      expect(ids(await missThenHit(appReads, 'discovery', look))).toEqual([soon.id, later.id]);
      // Still before its due time (and well inside the default TTL): served from the cache.
      clock.advance(29_000);
      expect(ids(await hit(appReads, 'discovery', look))).toEqual([soon.id, later.id]);
      // Past it: the entry ended with the earliest due time in it, though nothing was written.
      clock.advance(2_000);
      expect(ids(await missThenHit(appReads, 'discovery', look))).toEqual([later.id]);
      const still = (await callOn(app, owner, 'GET', `/v1/group-tasks/${soon.id}`)).json() as GroupTask;
      expect(still.status, 'no close job ran: the cache alone let it go').toBe('open');
      // Past due but not yet closed, nobody new comes in: no invitation, no accepting one, no join.
      expectStatus(
        await callOn(app, owner, 'POST', `/v1/group-tasks/${soon.id}/invitations`, {
          userIds: [viewer.userId],
        }),
        409,
        'group_past_due',
      );
      expectStatus(
        await callOn(app, invited, 'POST', `/v1/group-invitations/${invitation}/accept`),
        409,
        'group_past_due',
      );
      expectStatus(
        await callOn(app, viewer, 'POST', `/v1/group-tasks/${soon.id}/join`),
        409,
        'group_past_due',
      );
      // The automatic close is a write like the others.
      await app.deps.groups.closeIfDue({ groupTaskId: soon.id });
      expect(
        ((await callOn(app, owner, 'GET', `/v1/group-tasks/${soon.id}`)).json() as GroupTask).status,
      ).toBe('closed');
    } finally {
      appReads.restore();
      await app.close();
    }
  });

  it.runIf(lane.services)(
    'two instances sharing Redis share the entries and see each other’s invalidations',
    async () => {
      const B = await secondInstance(t, tdb);
      nodeB = B;
      const readsB = tap(B.pool);
      try {
        const q = searchTag();
        const [owner, viewer, joiner] = [await person(), await person(), await person()];
        const g = await createGroup(owner, { title: `Relay ${q}` });
        // B fills the entry; A is served it without asking the database.
        expect(ids(await missThenHit(readsB, 'discovery', () => discover(viewer, q, B)))).toEqual([g.id]);
        expect(ids(await hit(reads, 'discovery', () => discover(viewer, q)))).toEqual([g.id]);
        // A write on A: B's next read is fresh.
        expectStatus(await call(joiner, 'POST', `/v1/group-tasks/${g.id}/join`), 200);
        expect((await missThenHit(readsB, 'discovery', () => discover(viewer, q, B)))[0]?.memberCount).toBe(
          2,
        );
        // A write on B: A's next read is fresh.
        expectStatus(
          await callOn(B, owner, 'PATCH', `/v1/group-tasks/${g.id}`, { title: `Relay on ${q}` }),
          200,
        );
        expect((await missThenHit(reads, 'discovery', () => discover(viewer, q)))[0]?.title).toBe(
          `Relay on ${q}`,
        );
        // Member lists: read on A, hit on B; completion on B, fresh on A; leave on A, fresh on B.
        expect(userIds(await missThenHit(reads, 'members', () => memberList(viewer, g.id)))).toEqual([
          owner.userId,
          joiner.userId,
        ]);
        await hit(readsB, 'members', () => memberList(viewer, g.id, B));
        expectStatus(await callOn(B, joiner, 'POST', `/v1/group-tasks/${g.id}/complete`), 200);
        expect((await missThenHit(reads, 'members', () => memberList(viewer, g.id)))[1]?.rank).toBe(1);
        expectStatus(await call(joiner, 'POST', `/v1/group-tasks/${g.id}/leave`), 204);
        expect(userIds(await missThenHit(readsB, 'members', () => memberList(viewer, g.id, B)))).toEqual([
          owner.userId,
        ]);
      } finally {
        readsB.restore();
      }
    },
    30_000,
  );
});
