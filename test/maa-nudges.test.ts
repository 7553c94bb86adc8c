import type { Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { localMinute } from '../src/lib/days.js';
import { DAILY_CAP, DEFAULT_QUIET_HOURS, inQuietHours } from '../src/modules/maa/maa.nudges.js';
import { aUser, eventually, fakeClock, openSocket, signIn, startTestApp, type TestApp } from './helpers.js';

// Maa speaking first: scheduled nudges in the user's local windows, event-driven words (a podium, a
// friend passing, a comeback), the user's quiet hours, the daily cap and once-per-occasion-per-day,
// through the job handlers on a real database.
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

const texts = async (userId: string) =>
  (
    await t.deps.db.query<{ text: string }>(
      'SELECT text FROM maa_messages WHERE user_id = $1 ORDER BY created_at, id',
      [userId],
    )
  ).rows.map((r) => r.text);

/** maa:message events reaching a live socket of this user (and the occasions of Maa's notification:new). */
async function listen(userId: string, notified: string[] = []) {
  const session = await signIn(t.deps, userId);
  const socket = await openSocket(t.url, session.token, sockets);
  const live: { occasion: string; text: string }[] = [];
  socket.on('maa:message', (m) => live.push(m));
  socket.on('notification:new', (n: { kind: string; data: { occasion?: string } }) => {
    if (n.kind === 'maa') notified.push(n.data.occasion ?? '');
  });
  return live;
}

async function complete(userId: string, n = 1) {
  for (let i = 0; i < n; i++) {
    const task = await t.deps.tasks.create(userId, { title: `task ${i}` });
    await t.deps.tasks.complete(userId, task.body.id);
  }
}

/** Every relayed job has run (the services lane runs them on BullMQ: a moment after the relay). */
const settled = () =>
  eventually(async () => {
    const { rows } = await t.deps.db.query<{ n: number }>(
      `SELECT (SELECT count(*) FROM outbox WHERE sent_at IS NULL)::int
            + (SELECT count(*) FROM local_jobs WHERE state IN ('waiting', 'active'))::int AS n`,
    );
    expect(rows[0]?.n).toBe(0);
    await new Promise((r) => setTimeout(r, 150));
  });

const maaNotifications = async (userId: string) =>
  (
    await t.deps.db.query<{ occasion: string }>(
      `SELECT data->>'occasion' AS occasion FROM notifications WHERE user_id = $1 AND kind = 'maa' ORDER BY created_at`,
      [userId],
    )
  ).rows.map((r) => r.occasion);

describe('Maa nudges', () => {
  it('morning: the day start (a welcome on the first day), once, with a notification and maa:message; nothing for an unverified user', async () => {
    // Yesterday noon in Kolkata: one of them joins and meets the goal.
    clock.set(new Date('2026-03-01T06:30:00Z'));
    const back = await person();
    await complete(back);
    clock.set(new Date('2026-03-02T03:30:00Z'));
    const me = await person();
    const unverified = (await aUser(t.deps, { timezone: 'Asia/Kolkata', verified: false })).id;
    const live = await listen(me);
    await t.deps.nudges.sweep();
    await t.deps.nudges.sweep();
    // The worker's own scheduled sweep may have claimed it first and still be speaking.
    await eventually(async () => expect(await spoken(me)).toEqual(['welcome']));
    await eventually(async () => expect(await maaNotifications(me)).toEqual(['welcome']));
    await eventually(() => expect(live.map((m) => m.occasion)).toEqual(['welcome']));
    expect(live[0]?.text).not.toMatch(/[{}]/);
    await eventually(async () => expect(await spoken(back)).toEqual(['day_start']));
    expect(await spoken(unverified)).toEqual([]);
    // A quarter of an hour later the sweep passes them by without weighing their state again.
    clock.set(new Date('2026-03-02T03:45:00Z'));
    const weighed = vi.spyOn(t.deps.maa, 'state');
    try {
      await t.deps.nudges.sweep();
      const users = weighed.mock.calls.map(([userId]) => userId);
      expect(users).not.toContain(me);
      expect(users).not.toContain(back);
    } finally {
      weighed.mockRestore();
    }
    expect(await spoken(me)).toEqual(['welcome']);
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

  it('quiet hours: wrap midnight, end exclusive, an empty window is never quiet, null is the default', () => {
    const at = (hhmm: string) => Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3));
    expect(DEFAULT_QUIET_HOURS).toEqual({ start: '22:00', end: '07:00' });
    const night = { start: '22:00', end: '07:00' };
    for (const [time, quiet] of [
      ['21:59', false],
      ['22:00', true],
      ['23:59', true],
      ['00:00', true],
      ['06:59', true],
      ['07:00', false],
      ['12:00', false],
    ] as const) {
      expect(inQuietHours(at(time), night), time).toBe(quiet);
      expect(inQuietHours(at(time), null), `${time} (default)`).toBe(quiet);
    }
    const siesta = { start: '13:30', end: '15:00' };
    expect(
      [at('13:29'), at('13:30'), at('14:59'), at('15:00'), at('23:00')].map((m) => inQuietHours(m, siesta)),
    ).toEqual([false, true, true, false, false]);
    for (const time of ['00:00', '03:00', '12:00', '22:30', '23:59']) {
      expect(inQuietHours(at(time), { start: '00:00', end: '00:00' }), time).toBe(false);
      expect(inQuietHours(at(time), { start: '09:15', end: '09:15' }), time).toBe(false);
    }
    // Half-hour zones keep their minutes: 17:00 UTC is 22:30 in Kolkata.
    expect(localMinute(new Date('2026-03-05T17:00:00Z'), 'Asia/Kolkata')).toBe(at('22:30'));
    expect(localMinute(new Date('2026-03-05T17:00:00Z'), 'America/St_Johns')).toBe(at('13:30'));
  });

  it('default quiet hours (22:00 to 07:00 local) hold scheduled nudges back; an event is kept quietly, not pushed', async () => {
    clock.set(new Date('2026-03-05T17:00:00Z')); // 22:30 in Kolkata
    const me = await person();
    const live = await listen(me);
    await t.deps.nudges.sweep();
    expect(await t.deps.nudges.nudge(me, 'group_rank')).toBe('quiet');
    clock.set(new Date('2026-03-06T01:00:00Z')); // 06:30
    expect(await t.deps.nudges.nudge(me, 'friend_overtook')).toBe('quiet');
    // Kept for the morning: in the history and the notifications, unread; nothing went out live.
    expect(await spoken(me)).toEqual(['group_rank', 'friend_overtook']);
    expect(await maaNotifications(me)).toEqual(['group_rank', 'friend_overtook']);
    await new Promise((r) => setTimeout(r, 200));
    expect(live).toEqual([]);
  });

  it("the user's own quiet hours (local time, minutes included) replace the default", async () => {
    clock.set(new Date('2026-03-07T03:30:00Z')); // Saturday, 09:00 in Kolkata: the morning window
    const [late, owl, open] = [await person(), await person(), await person()];
    await t.deps.accounts.updateMe(late, { quietHours: { start: '23:00', end: '09:30' } });
    await t.deps.accounts.updateMe(owl, { quietHours: { start: '02:00', end: '05:00' } });
    await t.deps.accounts.updateMe(open, { quietHours: { start: '00:00', end: '00:00' } });
    const lateLive = await listen(late);
    await t.deps.nudges.sweep();
    await eventually(async () => expect(await spoken(owl)).toEqual(['welcome']));
    expect(await spoken(late)).toEqual([]);
    expect(await t.deps.nudges.nudge(late, 'group_rank')).toBe('quiet');
    clock.set(new Date('2026-03-07T04:00:00Z')); // 09:30: the window has ended
    await t.deps.nudges.sweep();
    await eventually(async () => expect(await spoken(late)).toEqual(['group_rank', 'welcome']));
    await eventually(() => expect(lateLive.map((m) => m.occasion)).toEqual(['welcome']));
    // 22:30 would be quiet by default; not for these three. 02:30 is quiet for the owl only, and an
    // empty window (start = end) is never quiet.
    clock.set(new Date('2026-03-07T17:00:00Z'));
    for (const u of [late, owl, open])
      expect(await t.deps.nudges.nudge(u, 'friend_overtook'), u).toBe('live');
    clock.set(new Date('2026-03-07T21:00:00Z'));
    expect(await t.deps.nudges.nudge(owl, 'group_rank')).toBe('quiet');
    expect(await t.deps.nudges.nudge(open, 'group_rank')).toBe('live');
    expect(await t.deps.nudges.nudge(late, 'group_rank')).toBe('quiet');
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
    expect(said).not.toContain('comeback'); // nobody lapsed: she only says it to someone back
    // The next logical day has room again.
    clock.advance(24 * HOUR);
    expect(await t.deps.nudges.nudge(me, 'group_rank')).toBe('live');
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
          `SELECT count(*)::int AS n FROM outbox WHERE job_name = 'maa.event' AND payload->>'userId' = $1
              AND payload->>'occasion' = 'friend_overtook'`,
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
  it('a podium finish whose event carries the rank names it (through the outbox and a job)', async () => {
    clock.set(new Date('2026-03-09T07:30:00Z')); // Monday, 13:00 in Kolkata
    const me = await person();
    await t.deps.db.tx((tx) => t.deps.nudges.react(tx, me, 'group_rank', { rank: 2 }));
    await eventually(async () => expect(await spoken(me)).toEqual(['group_rank']), 10_000);
    expect((await texts(me))[0]).toMatch(/\bnumber 2\b/i);
  });

  it('comeback: the first completion after three missed days brings it, live, once per lapse', async () => {
    clock.set(new Date('2026-03-12T06:30:00Z')); // Thursday, 12:00 in Kolkata
    const me = await person();
    await complete(me);
    clock.set(new Date('2026-03-16T06:30:00Z')); // Monday: Friday to Sunday missed
    const live = await listen(me);
    await complete(me);
    await eventually(async () => expect(await spoken(me)).toEqual(['comeback']), 10_000);
    await eventually(async () => expect(await maaNotifications(me)).toEqual(['comeback']));
    await eventually(() => expect(live.map((m) => m.occasion)).toEqual(['comeback']));
    expect(live[0]?.text).not.toMatch(/[{}]/);
    // More work the same day, and the next (back on track): no second comeback.
    await complete(me);
    clock.set(new Date('2026-03-17T06:30:00Z'));
    await complete(me);
    await settled();
    expect(await spoken(me)).toEqual(['comeback']);
  });

  it('comeback: a short first day back does not make a second one the next day; none when capped', async () => {
    clock.set(new Date('2026-03-12T06:30:00Z'));
    const [me, busy] = [await person(), await person()];
    for (const u of [me, busy]) {
      await t.deps.accounts.updateMe(u, { dailyGoal: 2 });
      await complete(u, 2);
    }
    clock.set(new Date('2026-03-16T06:30:00Z'));
    // busy already heard three words today: the cap holds the comeback back too.
    for (const o of ['group_rank', 'friend_overtook', 'goal_met'] as const) {
      expect(await t.deps.nudges.nudge(busy, o)).toBe('live');
    }
    await complete(me);
    await complete(busy);
    await eventually(async () => expect(await spoken(me)).toEqual(['comeback']), 10_000);
    // 1 of 2: the lapse goes on (4 misses tomorrow), and so does its one comeback.
    clock.set(new Date('2026-03-17T06:30:00Z'));
    expect((await t.deps.maa.state(me)).missesInRow).toBe(4);
    await complete(me);
    await settled();
    expect(await t.deps.nudges.nudge(me, 'comeback')).toBeUndefined();
    expect(await spoken(me)).toEqual(['comeback']);
    expect(await spoken(busy)).toEqual(['group_rank', 'friend_overtook', 'goal_met']);
  });

  it('comeback at night (quiet hours) is kept quietly, not pushed, and not said again in the morning', async () => {
    clock.set(new Date('2026-03-12T06:30:00Z'));
    const me = await person();
    await complete(me);
    clock.set(new Date('2026-03-15T17:30:00Z')); // Sunday 23:00 in Kolkata, after Friday and Saturday
    const notified: string[] = [];
    const live = await listen(me, notified);
    await complete(me);
    await eventually(async () => expect(await spoken(me)).toEqual(['comeback']), 10_000);
    await eventually(async () => expect(await maaNotifications(me)).toEqual(['comeback']));
    clock.set(new Date('2026-03-16T03:30:00Z')); // Monday 09:00: the morning nudge
    await t.deps.nudges.sweep();
    await eventually(async () => expect(await spoken(me)).toEqual(['comeback', 'day_start']));
    await eventually(() => expect(live.map((m) => m.occasion)).toEqual(['day_start']));
    // Neither live event buzzed at night: the night's word waits in the notification list.
    await eventually(() => expect(notified).toEqual(['day_start']));
  });
});
