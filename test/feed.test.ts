import type { Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FeedEvent } from '../src/modules/feed/feed.service.js';
import { aUser, eventually, lane, openSocket, signIn, startTestApp, type TestApp } from './helpers.js';

// The friends' activity feed (`feed:activity`) for group ranks, end to end through HTTP and real
// socket.io clients, in both lanes: friends hear of a rank, with the group's title only when the
// group is public; private profiles never produce it; people who are not friends hear nothing; no
// personal task's title ever travels.
let t: TestApp;
const sockets: Socket[] = [];

beforeAll(async () => {
  t = await startTestApp({ listen: true, worker: true, env: { RATE_LIMIT_MULTIPLIER: '0' } });
});
afterAll(async () => {
  for (const s of sockets) s.disconnect();
  await t?.close();
});

type Visibility = 'public' | 'friends' | 'private';
type Person = Awaited<ReturnType<typeof signIn>> & { username: string };

async function person(visibility: Visibility): Promise<Person> {
  const user = await aUser(t.deps);
  const me = await signIn(t.deps, user.id);
  const res = await t.app.inject({
    method: 'PATCH',
    url: '/v1/me',
    headers: me.headers,
    payload: { profileVisibility: visibility },
  });
  expect(res.statusCode, res.body).toBe(200);
  return { ...me, username: user.username };
}

async function befriend(a: Person, b: Person) {
  const asked = await t.deps.friends.sendRequest(a.userId, b.userId);
  await t.deps.friends.accept(b.userId, asked.body.id);
}

async function call(p: Person, method: 'GET' | 'POST', url: string, payload?: object) {
  return t.app.inject({ method, url, headers: p.headers, ...(payload ? { payload } : {}) });
}

async function group(owner: Person, title: string, visibility: 'public' | 'private'): Promise<string> {
  const res = await call(owner, 'POST', '/v1/group-tasks', {
    title,
    visibility,
    dueAt: new Date(Date.now() + 3600_000).toISOString(),
  });
  expect(res.statusCode, res.body).toBe(201);
  return res.json().id;
}

async function join(p: Person, groupId: string) {
  const res = await call(p, 'POST', `/v1/group-tasks/${groupId}/join`);
  expect(res.statusCode, res.body).toBe(200);
}

async function finish(p: Person, groupId: string): Promise<number> {
  const res = await call(p, 'POST', `/v1/group-tasks/${groupId}/complete`);
  expect(res.statusCode, res.body).toBe(200);
  return res.json().rank;
}

async function personalTask(p: Person, title: string) {
  const task = await call(p, 'POST', '/v1/tasks', { title });
  expect(task.statusCode, task.body).toBe(201);
  expect((await call(p, 'POST', `/v1/tasks/${task.json().id}/complete`, {})).statusCode).toBe(200);
}

/** A socket and everything `feed:activity` brings it. */
async function listen(p: Person) {
  const socket = await openSocket(t.url, p.token, sockets);
  const feed: FeedEvent[] = [];
  socket.on('feed:activity', (e: FeedEvent) => feed.push(e));
  return {
    feed,
    /**
     * Everything written to this socket before now has arrived: an acked round trip on the same
     * connection comes back after it (group ranks are written as their completion commits).
     */
    barrier: () => socket.timeout(5000).emitWithAck('system:ping', {}),
  };
}

const ranks = (feed: FeedEvent[]) => feed.filter((e) => e.kind === 'group_rank');

describe('activity feed: group ranks', () => {
  it('friends hear of a rank (the title only of a public group); private profiles and non-friends never', async () => {
    // W watches. A (public), F (friends only) and P (private) are W's friends; X is public but no
    // friend of W's; S is in the group and nobody's friend.
    const [w, a, f, p, x, s] = [
      await person('public'),
      await person('public'),
      await person('friends'),
      await person('private'),
      await person('public'),
      await person('public'),
    ];
    for (const friend of [a, f, p]) await befriend(w, friend);
    const [watcher, stranger] = [await listen(w), await listen(s)];

    // Personal task titles, and badges or a day's goal that come of them, never carry the title.
    for (const someone of [a, f, p, x]) await personalTask(someone, `Dentist at 5 for ${someone.username}`);

    const run = await group(a, 'Morning run', 'public');
    for (const member of [p, x, f, s]) await join(member, run);
    const order = [a, p, x, f, s];
    const got: number[] = [];
    for (const member of order) got.push(await finish(member, run));
    expect(got).toEqual([1, 2, 3, 4, 5]);
    // Asked again (a retried request): the same rank, and nobody is told twice.
    expect(await finish(a, run)).toBe(1);

    // A private group's title stays with its members.
    const secret = await group(a, 'Secret surgery prep', 'private');
    expect(await finish(a, secret)).toBe(1);

    // The private profile's badge job (first task) has run and shared nothing.
    await eventually(async () => {
      const { rows } = await t.deps.db.query(`SELECT 1 FROM user_badges WHERE user_id = $1`, [p.userId]);
      expect(rows.length).toBeGreaterThan(0);
    }, 10_000);
    await watcher.barrier();
    await stranger.barrier();

    const byW = ranks(watcher.feed);
    expect(byW).toEqual([
      {
        kind: 'group_rank',
        id: expect.any(String),
        userId: a.userId,
        username: a.username,
        at: expect.any(String),
        data: { groupTaskId: run, rank: 1, title: 'Morning run' },
      },
      {
        kind: 'group_rank',
        id: expect.any(String),
        userId: f.userId,
        username: f.username,
        at: expect.any(String),
        data: { groupTaskId: run, rank: 4, title: 'Morning run' },
      },
      {
        kind: 'group_rank',
        id: expect.any(String),
        userId: a.userId,
        username: a.username,
        at: expect.any(String),
        data: { groupTaskId: secret, rank: 1, title: null },
      },
    ]);
    // Nothing at all of the private profile, nor of someone who is not a friend.
    expect(watcher.feed.filter((e) => e.userId === p.userId || e.userId === x.userId)).toEqual([]);
    // S shares a group with all of them and is friends with none: hears nothing.
    expect(stranger.feed).toEqual([]);
    const wire = JSON.stringify([...watcher.feed, ...stranger.feed]);
    expect(wire).not.toContain('Dentist');
    expect(wire).not.toContain('Secret surgery');
    console.log(
      `feed:activity group_rank (${lane.services ? 'services' : 'embedded'} lane): ${order.length} finishers + 1 private group → ` +
        `friend got ${byW.length} group ranks (${watcher.feed.length} events in all), 0 from the private profile, ` +
        `0 from the non-friend, stranger got ${stranger.feed.length}; no personal or private-group title on the wire`,
    );
  });
});
