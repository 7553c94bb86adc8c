import { Value } from '@sinclair/typebox/value';
import { io as connect, type Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Completion,
  GroupTask,
  GroupTaskList,
  type InvitationList,
  InvitationPage,
  MemberList,
} from '../src/modules/groups/groups.schemas.js';
import { pointsFor } from '../src/modules/groups/groups.service.js';
import { aUser, eventually, lane, signIn, startTestApp, type TestApp } from './helpers.js';

// Group tasks through HTTP on a real database, in both lanes, with the worker running (auto-close
// comes through the outbox). Every test makes its own people.
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
type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE';

async function person(): Promise<Caller> {
  const user = await aUser(t.deps);
  return { ...(await signIn(t.deps, user.id)), username: user.username };
}

const call = (who: Caller | null, method: Method, url: string, payload?: unknown, headers = {}) =>
  t.app.inject({
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
