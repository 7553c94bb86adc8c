import type { Socket } from 'socket.io-client';
import { uuidv7 } from 'uuidv7';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CATALOGUE } from '../src/modules/badges/badges.catalogue.js';
import type { FeedEvent } from '../src/modules/feed/feed.service.js';
import { aUser, eventually, openSocket, signIn, startTestApp, type TestApp } from './helpers.js';

// Badges: each rule awards once, however often (or concurrently) the job runs; the first one comes
// end to end (HTTP → ledger → outbox → job → notification and socket event); friends see the feed.
let t: TestApp;
const sockets: Socket[] = [];

beforeAll(async () => {
  t = await startTestApp({ listen: true, worker: true, env: { RATE_LIMIT_MULTIPLIER: '0' } });
});
afterAll(async () => {
  for (const s of sockets) s.disconnect();
  await t?.close();
});

type Person = Awaited<ReturnType<typeof signIn>>;
const person = async (): Promise<Person> => signIn(t.deps, (await aUser(t.deps)).id);

const open = (p: Person) => openSocket(t.url, p.token, sockets);

const setMe = async (p: Person, patch: Record<string, unknown>) => {
  const res = await t.app.inject({ method: 'PATCH', url: '/v1/me', headers: p.headers, payload: patch });
  expect(res.statusCode, res.body).toBe(200);
};

/** A personal task made and completed over HTTP, as a client would. */
async function completeTask(p: Person, title: string) {
  const task = (
    await t.app.inject({ method: 'POST', url: '/v1/tasks', headers: p.headers, payload: { title } })
  ).json();
  const done = await t.app.inject({
    method: 'POST',
    url: `/v1/tasks/${task.id}/complete`,
    headers: p.headers,
    payload: {},
  });
  expect(done.statusCode, done.body).toBe(200);
}

async function befriend(a: Person, b: Person) {
  const asked = await t.deps.friends.sendRequest(a.userId, b.userId);
  await t.deps.friends.accept(b.userId, asked.body.id);
}

const codesOf = async (userId: string) =>
  (
    await t.deps.db.query<{ code: string }>('SELECT code FROM user_badges WHERE user_id = $1 ORDER BY code', [
      userId,
    ])
  ).rows.map((r) => r.code);
const badgeNotifications = async (userId: string, code: string) =>
  (
    await t.deps.db.query(
      `SELECT 1 FROM notifications WHERE user_id = $1 AND kind = 'badge' AND data->>'code' = $2`,
      [userId, code],
    )
  ).rows.length;

/** The job, run as a retried job would be: twice in a row, then twice at once. */
async function evaluateLikeRetries(userId: string) {
  await t.deps.badges.evaluate(userId);
  await t.deps.badges.evaluate(userId);
  await Promise.all([t.deps.badges.evaluate(userId), t.deps.badges.evaluate(userId)]);
}

async function expectAwardedOnce(userId: string, code: string) {
  await evaluateLikeRetries(userId);
  expect(await codesOf(userId)).toContain(code);
  expect(await badgeNotifications(userId, code)).toBe(1);
}

async function expectNot(userId: string, code: string) {
  await t.deps.badges.evaluate(userId);
  expect(await codesOf(userId)).not.toContain(code);
}

async function ledger(userId: string, source: string, count: number, dates?: string[]) {
  for (let i = 0; i < count; i++)
    await t.deps.db.query(
      `INSERT INTO score_events (id, user_id, source, source_key, points, local_date, created_at)
       VALUES ($1, $2, $3, $4, 10, $5, now())`,
      [uuidv7(), userId, source, `k${i}-${uuidv7()}`, dates?.[i] ?? '2026-11-01'],
    );
}

const day = (offset: number) =>
  new Date(Date.UTC(2026, 9, 1) + offset * 86400_000).toISOString().slice(0, 10);

describe('badges', () => {
  it('the catalogue lists every badge with a name, description and icon', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/v1/badges' });
    expect(res.statusCode).toBe(200);
    const items = res.json().items as { code: string; icon: string }[];
    expect(items.map((b) => b.code)).toEqual(CATALOGUE.map((b) => b.code));
    expect(items.length).toBeGreaterThanOrEqual(17);
    expect(new Set(items.map((b) => b.code)).size).toBe(items.length);
  });

  it('a job for an account deleted meanwhile awards nothing and does not fail', async () => {
    const gone = await person();
    await ledger(gone.userId, 'task_done', 1);
    await t.deps.db.query('DELETE FROM users WHERE id = $1', [gone.userId]);
    expect(await t.deps.badges.evaluate(gone.userId)).toEqual([]);
  });

  it('first_task end to end: a notification, badge:awarded, the profile, and the friends feed', async () => {
    const [me, friend] = [await person(), await person()];
    await befriend(me, friend);
    await setMe(me, { profileVisibility: 'public' });
    const [mine, theirs] = [await open(me), await open(friend)];
    const awarded: unknown[] = [];
    const feed: FeedEvent[] = [];
    mine.on('badge:awarded', (b) => awarded.push(b));
    theirs.on('feed:activity', (e: FeedEvent) => feed.push(e));
    await completeTask(me, 'Secret plan');
    await eventually(
      () => expect(awarded).toEqual([expect.objectContaining({ code: 'first_task', name: 'First step' })]),
      10_000,
    );
    await eventually(() =>
      expect(feed.some((e) => e.kind === 'badge' && e.data.code === 'first_task')).toBe(true),
    );
    // Personal task titles never travel.
    expect(JSON.stringify(feed)).not.toContain('Secret plan');
    expect(await badgeNotifications(me.userId, 'first_task')).toBe(1);
    const { username } = (await t.app.inject({ method: 'GET', url: '/v1/me', headers: me.headers })).json();
    const profile = await t.app.inject({
      method: 'GET',
      url: `/v1/users/${username}`,
      headers: friend.headers,
    });
    expect(profile.json().badges, profile.body).toEqual([expect.objectContaining({ code: 'first_task' })]);
    const list = await t.app.inject({ method: 'GET', url: '/v1/me/badges', headers: me.headers });
    expect(list.json().items.map((b: { code: string }) => b.code)).toEqual(['first_task']);
  });

  it('a private profile earns badges but friends hear nothing of it', async () => {
    const [me, friend] = [await person(), await person()];
    await befriend(me, friend);
    await setMe(me, { profileVisibility: 'private' });
    const theirs = await open(friend);
    const feed: FeedEvent[] = [];
    theirs.on('feed:activity', (e: FeedEvent) => feed.push(e));
    await ledger(me.userId, 'task_done', 1);
    await expectAwardedOnce(me.userId, 'first_task');
    await new Promise((r) => setTimeout(r, 300));
    expect(feed).toEqual([]);
  });

  it('task and daily counts: tasks_100, first_daily', async () => {
    const me = await person();
    await ledger(me.userId, 'task_done', 99);
    await expectNot(me.userId, 'tasks_100');
    await ledger(me.userId, 'task_done', 1);
    await expectAwardedOnce(me.userId, 'tasks_100');
    await expectNot(me.userId, 'first_daily');
    await ledger(me.userId, 'daily_done', 1);
    await expectAwardedOnce(me.userId, 'first_daily');
  });

  it('streak badges at 5, 10, 15, 20, 25, 30, 60, 180 and 365 days', async () => {
    const me = await person();
    const setLongest = (longest: number) =>
      t.deps.db.query(
        `INSERT INTO overall_streaks (user_id, state, last_closed_date, updated_at) VALUES ($1, $2, NULL, now())
         ON CONFLICT (user_id) DO UPDATE SET state = EXCLUDED.state`,
        [me.userId, JSON.stringify({ current: longest, longest, freezes: 0 })],
      );
    await setLongest(4);
    await expectNot(me.userId, 'streak_5');
    await setLongest(29);
    await expectAwardedOnce(me.userId, 'streak_25');
    expect(await codesOf(me.userId)).not.toContain('streak_30');
    await setLongest(365);
    await expectAwardedOnce(me.userId, 'streak_365');
    for (const n of [5, 10, 15, 20, 25, 30, 60, 180, 365])
      expect(await badgeNotifications(me.userId, `streak_${n}`)).toBe(1);
  });

  it('perfect_week: seven perfect days in a row, not six, not with a gap', async () => {
    const me = await person();
    await ledger(me.userId, 'perfect_day', 7, [day(0), day(1), day(2), day(4), day(5), day(6), day(7)]);
    await expectNot(me.userId, 'perfect_week');
    await ledger(me.userId, 'perfect_day', 1, [day(3)]);
    await expectAwardedOnce(me.userId, 'perfect_week');
  });

  it('comeback: the goal met again after three or more days away', async () => {
    const me = await person();
    const kept = (date: string, outcome: 'met' | 'frozen') =>
      t.deps.db.query(
        'INSERT INTO day_summaries (user_id, date, completed, goal, outcome) VALUES ($1, $2, 3, 3, $3)',
        [me.userId, date, outcome],
      );
    await kept(day(0), 'met');
    await kept(day(3), 'met'); // two days missed: not yet a lapse
    await kept(day(5), 'frozen');
    await expectNot(me.userId, 'comeback');
    await kept(day(9), 'met'); // three missed
    await expectAwardedOnce(me.userId, 'comeback');
  });

  it('group badges: first win (2+), podium (4+), ten finished', async () => {
    const [owner, ...others] = await Promise.all(Array.from({ length: 4 }, person));
    const friendsOf = async () => {
      for (const o of others) await befriend(owner as Person, o);
    };
    await friendsOf();
    const race = async (members: Person[], finishers: Person[]) => {
      const g = await t.deps.groups.create((owner as Person).userId, {
        title: 'Race',
        visibility: 'public',
        dueAt: new Date(Date.now() + 3600_000).toISOString(),
      });
      for (const m of members) if (m !== owner) await t.deps.groups.join(m.userId, g.body.id);
      for (const f of finishers) await t.deps.groups.complete(f.userId, g.body.id);
    };
    const [a, b, c] = others as [Person, Person, Person];
    await race([owner as Person], [owner as Person]); // alone: not a win
    await expectNot((owner as Person).userId, 'first_group_win');
    await race([owner as Person, a], [a, owner as Person]);
    await expectAwardedOnce(a.userId, 'first_group_win');
    await expectNot(a.userId, 'group_podium');
    await race([owner as Person, a, b, c], [b, c, a]);
    await expectAwardedOnce(a.userId, 'group_podium');
    await expectAwardedOnce(c.userId, 'group_podium');
    await expectNot(b.userId, 'group_ten');
    for (let i = 0; i < 9; i++) await race([owner as Person, b], [b]);
    await expectAwardedOnce(b.userId, 'group_ten');
  });

  it('five_friends, queued by the friendship itself', async () => {
    const me = await person();
    for (let i = 0; i < 4; i++) await befriend(me, await person());
    await expectNot(me.userId, 'five_friends');
    await befriend(await person(), me);
    await eventually(async () => expect(await codesOf(me.userId)).toContain('five_friends'), 10_000);
    await evaluateLikeRetries(me.userId);
    expect(await badgeNotifications(me.userId, 'five_friends')).toBe(1);
  });

  it("friends hear once a day that someone met their day's goal", async () => {
    const [me, friend] = [await person(), await person()];
    await befriend(me, friend);
    await setMe(me, { profileVisibility: 'friends', dailyGoal: 2 });
    const theirs = await open(friend);
    const feed: FeedEvent[] = [];
    theirs.on('feed:activity', (e: FeedEvent) => feed.push(e));
    for (let i = 0; i < 4; i++) await completeTask(me, `t${i}`);
    await eventually(() => expect(feed.filter((e) => e.kind === 'goal_met')).toHaveLength(1), 10_000);
    await evaluateLikeRetries(me.userId);
    await new Promise((r) => setTimeout(r, 300));
    expect(feed.filter((e) => e.kind === 'goal_met')).toEqual([
      expect.objectContaining({ userId: me.userId, data: expect.objectContaining({ goal: 2 }) }),
    ]);
  });
});
