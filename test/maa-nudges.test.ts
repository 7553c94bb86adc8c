import type { Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DAILY_CAP } from '../src/modules/maa/maa.nudges.js';
import { aUser, eventually, fakeClock, openSocket, signIn, startTestApp, type TestApp } from './helpers.js';

// Maa speaking first: scheduled nudges in the user's local windows, event-driven words, quiet hours,
// the daily cap and once-per-occasion-per-day, through the job handlers on a real database.
const HOUR = 3_600_000;
// Monday 2026-03-02, 03:30 UTC = 09:00 in Kolkata (UTC+05:30).
const clock = fakeClock(new Date('2026-03-02T03:30:00Z'));
let t: TestApp;
const sockets: Socket[] = [];

beforeAll(async () => {
  t = await startTestApp({ clock, worker: true, listen: true, env: { RATE_LIMIT_MULTIPLIER: '0' } });
});
afterAll(async () => {
  for (const s of sockets) s.disconnect();
  await t?.close();
});

async function person(timezone = 'Asia/Kolkata') {
  const u = await aUser(t.deps, { name: 'Riya', timezone });
  await t.deps.accounts.updateMe(u.id, { dailyGoal: 1 });
  return u.id;
}

const spoken = async (userId: string) =>
  (
    await t.deps.db.query<{ occasion: string }>(
      'SELECT occasion FROM maa_messages WHERE user_id = $1 ORDER BY created_at, id',
      [userId],
    )
  ).rows.map((r) => r.occasion);

const maaNotifications = async (userId: string) =>
  (
    await t.deps.db.query<{ occasion: string }>(
      `SELECT data->>'occasion' AS occasion FROM notifications WHERE user_id = $1 AND kind = 'maa' ORDER BY created_at`,
      [userId],
    )
  ).rows.map((r) => r.occasion);

describe('Maa nudges', () => {
  it('morning: the day start, once, with a notification and maa:message; nothing for an unverified user', async () => {
    clock.set(new Date('2026-03-02T03:30:00Z'));
    const me = await person();
    const unverified = (await aUser(t.deps, { timezone: 'Asia/Kolkata', verified: false })).id;
    const session = await signIn(t.deps, me);
    const socket = await openSocket(t.url, session.token, sockets);
    const live: { occasion: string; text: string }[] = [];
    socket.on('maa:message', (m) => live.push(m));
    await t.deps.nudges.sweep();
    await t.deps.nudges.sweep();
    // The worker's own scheduled sweep may have claimed it first and still be speaking.
    await eventually(async () => expect(await spoken(me)).toEqual(['day_start']));
    await eventually(async () => expect(await maaNotifications(me)).toEqual(['day_start']));
    await eventually(() => expect(live.map((m) => m.occasion)).toEqual(['day_start']));
    expect(live[0]?.text).not.toMatch(/[{}]/);
    expect(await spoken(unverified)).toEqual([]);
  });

  it('evening: a streak at risk when the goal is not met yet; nothing once it is', async () => {
    clock.set(new Date('2026-03-03T03:30:00Z'));
    const [atRisk, safe] = [await person(), await person()];
    for (const u of [atRisk, safe]) {
      const task = await t.deps.tasks.create(u, { title: 'yesterday' });
      await t.deps.tasks.complete(u, task.body.id);
    }
    // The next day, 20:00 in Kolkata: both have a 1-day streak; only one has done today's task.
    clock.set(new Date('2026-03-04T14:30:00Z'));
    const task = await t.deps.tasks.create(safe, { title: 'today' });
    await t.deps.tasks.complete(safe, task.body.id);
    expect((await t.deps.maa.state(atRisk)).currentStreak).toBe(1);
    await t.deps.nudges.sweep();
    await eventually(async () => expect(await spoken(atRisk)).toEqual(['streak_at_risk']));
    expect(await spoken(safe)).toEqual([]);
  });

  it('quiet hours (22:00 to 07:00 local) hold every unprompted word back', async () => {
    clock.set(new Date('2026-03-05T17:00:00Z')); // 22:30 in Kolkata
    const me = await person();
    expect(await t.deps.nudges.nudge(me, 'group_rank')).toBe(false);
    await t.deps.nudges.sweep();
    clock.set(new Date('2026-03-06T01:00:00Z')); // 06:30
    expect(await t.deps.nudges.nudge(me, 'group_rank')).toBe(false);
    expect(await spoken(me)).toEqual([]);
  });

  it(`at most ${DAILY_CAP} a day, each occasion once, however many race`, async () => {
    clock.set(new Date('2026-03-06T06:30:00Z')); // 12:00 in Kolkata
    const me = await person();
    const results = await Promise.all(
      (
        ['group_rank', 'group_rank', 'friend_overtook', 'comeback', 'goal_met', 'streak_milestone'] as const
      ).map((o) => t.deps.nudges.nudge(me, o)),
    );
    expect(results.filter(Boolean)).toHaveLength(DAILY_CAP);
    const said = await spoken(me);
    expect(said).toHaveLength(DAILY_CAP);
    expect(new Set(said).size).toBe(DAILY_CAP);
    // The next logical day has room again.
    clock.advance(24 * HOUR);
    expect(await t.deps.nudges.nudge(me, 'group_rank')).toBe(true);
  });

  it("a friend passing me on this week's board gets a word from Maa; not when their profile is private", async () => {
    clock.set(new Date('2026-03-10T06:30:00Z')); // Tuesday, 12:00 in Kolkata
    const [me, friend, quiet] = [await person(), await person(), await person()];
    for (const other of [friend, quiet]) {
      const asked = await t.deps.friends.sendRequest(me, other);
      await t.deps.friends.accept(other, asked.body.id);
    }
    await t.deps.accounts.updateMe(quiet, { profileVisibility: 'private' });
    const complete = async (u: string) => {
      const task = await t.deps.tasks.create(u, { title: 'x' });
      await t.deps.tasks.complete(u, task.body.id);
    };
    await complete(me); // me 10
    await complete(quiet); // 10: level, not past
    await complete(quiet); // 20: past me, but private
    await complete(friend); // 10: level
    // Queued in the paying transaction, so the outbox says at once who was told (nobody yet).
    const queuedFor = async (u: string) =>
      (
        await t.deps.db.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM outbox WHERE job_name = 'maa.event' AND payload->>'userId' = $1`,
          [u],
        )
      ).rows[0]?.n;
    expect(await queuedFor(me)).toBe(0);
    await complete(friend); // 20: past me
    expect(await queuedFor(me)).toBe(1);
    await eventually(async () => expect(await spoken(me)).toEqual(['friend_overtook']), 10_000);
  });

  it('a podium finish in a group task gets a word from Maa (through the outbox and a job)', async () => {
    clock.set(new Date('2026-03-09T06:30:00Z')); // Monday, 12:00 in Kolkata
    const me = await person();
    const g = await t.deps.groups.create(me, {
      title: 'Morning walk',
      visibility: 'public',
      dueAt: new Date(clock.now().getTime() + 5 * HOUR).toISOString(),
    });
    await t.deps.groups.complete(me, g.body.id);
    await eventually(async () => expect(await spoken(me)).toEqual(['group_rank']), 10_000);
    // The notification is written just after the line is stored.
    await eventually(async () => expect(await maaNotifications(me)).toEqual(['group_rank']));
  });
});
