import type { Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unavailable } from '../src/lib/errors.js';
import { dailiesJobs } from '../src/modules/dailies/dailies.jobs.js';
import { aUser, eventually, fakeClock, openSocket, signIn, startTestApp, type TestApp } from './helpers.js';

// Dailies, check-ins, history, streaks and the day rollover through HTTP, with a clock the tests move.
// Users live in Asia/Kolkata (+05:30) unless a test says otherwise; 2026-03-02 is a Monday.
const clock = fakeClock(new Date('2026-03-02T03:30:00Z')); // 09:00 IST on Monday 2 March
let t: TestApp;
beforeAll(async () => {
  // Listening: the events test connects real socket.io clients.
  t = await startTestApp({ clock, listen: true, env: { RATE_LIMIT_MULTIPLIER: '0', GRACE_HOURS: '3' } });
});
afterAll(() => t?.close());

const HOUR = 3600_000;
const DAY = 24 * HOUR;
/** 09:00 IST on a March 2026 date. */
const at = (date: string, hhmm = '09:00') => new Date(`${date}T${hhmm}:00+05:30`);

/** A signed-in user whose headers carry a token fresh for wherever the test clock now stands. */
async function someone(tz = 'Asia/Kolkata') {
  const user = await aUser(t.deps, { timezone: tz });
  const session = await signIn(t.deps, user.id);
  return {
    userId: user.id,
    get headers() {
      return {
        authorization: `Bearer ${t.deps.tokens.sign({ userId: user.id, sessionId: session.sessionId }).token}`,
      };
    },
  };
}

const call = (
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
  url: string,
  headers: Record<string, string>,
  payload?: unknown,
) => t.app.inject({ method, url, headers, ...(payload === undefined ? {} : { payload: payload as object }) });

async function newDaily(headers: Record<string, string>, body: object = { title: 'Meditate' }) {
  const res = await call('POST', '/v1/dailies', headers, body);
  expect(res.statusCode).toBe(201);
  return res.json() as { id: string; weekdays: number[]; createdOn: string };
}

describe('dailies', () => {
  it('create, list, read, update and delete, with validation and 404 for others', async () => {
    clock.set(at('2026-03-02'));
    const me = await someone();
    const stranger = await someone();
    const daily = await newDaily(me.headers, { title: '  Walk  ', weekdays: [5, 1, 3], priority: 'high' });
    expect(daily).toMatchObject({
      title: 'Walk',
      weekdays: [1, 3, 5],
      createdOn: '2026-03-02',
      dueToday: true,
      doneToday: false,
    });

    for (const bad of [
      { title: '' },
      // C1 found that a blank title passed validation, trimmed to '' and broke a CHECK (a 500).
      { title: ' \t\n ' },
      { title: 'a\u0000b' },
      { title: 'x', description: 'a\u0000b' },
      { title: 'x', weekdays: [] },
      { title: 'x', weekdays: [0] },
      { title: 'x', weekdays: [1, 1] },
      { title: 'x', streak: 5 },
    ]) {
      expect((await call('POST', '/v1/dailies', me.headers, bad)).statusCode, JSON.stringify(bad)).toBe(400);
    }
    const list = (await call('GET', '/v1/dailies', me.headers)).json();
    expect(list.items.map((d: { id: string }) => d.id)).toContain(daily.id);
    expect((await call('GET', '/v1/dailies', stranger.headers)).json().items).toEqual([]);

    const blank = await call('PATCH', `/v1/dailies/${daily.id}`, me.headers, { title: '   ' });
    expect([blank.statusCode, blank.json().code]).toEqual([400, 'validation_failed']);
    const patched = await call('PATCH', `/v1/dailies/${daily.id}`, me.headers, { weekdays: [2] });
    expect(patched.json()).toMatchObject({ weekdays: [2], dueToday: false });
    expect((await call('GET', '/v1/dailies/today', me.headers)).json().items).toEqual([]);

    for (const [method, url, body] of [
      ['GET', `/v1/dailies/${daily.id}`, undefined],
      ['PATCH', `/v1/dailies/${daily.id}`, { title: 'mine now' }],
      ['POST', `/v1/dailies/${daily.id}/check-ins`, {}],
      ['GET', `/v1/dailies/${daily.id}/history`, undefined],
      ['DELETE', `/v1/dailies/${daily.id}`, undefined],
    ] as const) {
      const res = await call(method, url, stranger.headers, body);
      expect(res.statusCode, `${method} ${url}`).toBe(404);
    }
    expect((await call('DELETE', `/v1/dailies/${daily.id}`, me.headers)).statusCode).toBe(204);
    expect((await call('GET', `/v1/dailies/${daily.id}`, me.headers)).statusCode).toBe(404);
  });
});

describe('check-ins', () => {
  it('today by default, once per day, paying once even under 50 concurrent requests', async () => {
    clock.set(at('2026-03-02'));
    const me = await someone();
    const daily = await newDaily(me.headers);
    const results = await Promise.all(
      Array.from({ length: 50 }, () => call('POST', `/v1/dailies/${daily.id}/check-ins`, me.headers, {})),
    );
    const statuses = results.map((r) => r.statusCode).sort();
    expect(statuses.filter((s) => s === 201)).toHaveLength(1);
    expect(statuses.filter((s) => s === 200)).toHaveLength(49);
    expect(results[0]?.json()).toMatchObject({ dailyId: daily.id, date: '2026-03-02', late: false });
    const { rows } = await t.deps.db.query('SELECT * FROM daily_check_ins WHERE daily_id = $1', [daily.id]);
    expect(rows).toHaveLength(1);
    expect(await t.deps.stats.score(me.userId)).toBe(10);
    expect((await call('GET', '/v1/dailies', me.headers)).json().items[0]).toMatchObject({
      doneToday: true,
      streak: { current: 1 },
    });
  });

  it('yesterday only within the grace window, marked late; other dates are refused', async () => {
    const me = await someone();
    clock.set(at('2026-03-02'));
    const daily = await newDaily(me.headers);
    // Tuesday 02:00 IST: two hours into the new day, inside the 3-hour grace.
    clock.set(at('2026-03-03', '02:00'));
    const late = await call('POST', `/v1/dailies/${daily.id}/check-ins`, me.headers, { date: '2026-03-02' });
    expect(late.statusCode, late.body).toBe(201);
    expect(late.json()).toMatchObject({ date: '2026-03-02', late: true });
    clock.set(at('2026-03-03', '03:01'));
    const tooLate = await call('POST', `/v1/dailies/${daily.id}/check-ins`, me.headers, {
      date: '2026-03-02',
    });
    expect(tooLate.statusCode).toBe(400);
    expect(tooLate.json().code).toBe('date_out_of_range');
    for (const date of ['2026-03-01', '2026-03-04', '2025-03-03']) {
      const res = await call('POST', `/v1/dailies/${daily.id}/check-ins`, me.headers, { date });
      expect(res.json().code, date).toBe('date_out_of_range');
    }
    // Undo follows the same window: yesterday's late check-in can no longer be undone.
    expect(
      (await call('DELETE', `/v1/dailies/${daily.id}/check-ins/2026-03-02`, me.headers)).statusCode,
    ).toBe(400);
  });

  it('a daily is refused on a day it is not due', async () => {
    clock.set(at('2026-03-02')); // Monday
    const me = await someone();
    const daily = await newDaily(me.headers, { title: 'Weekend run', weekdays: [6, 7] });
    const res = await call('POST', `/v1/dailies/${daily.id}/check-ins`, me.headers, {});
    expect(res.statusCode).toBe(400);
    expect(res.json().code).toBe('not_due');
  });

  it('undo takes the points back; checking in again pays again, once', async () => {
    clock.set(at('2026-03-02'));
    const me = await someone();
    const daily = await newDaily(me.headers);
    await call('POST', `/v1/dailies/${daily.id}/check-ins`, me.headers, {});
    expect(await t.deps.stats.score(me.userId)).toBe(10);
    expect(
      (await call('DELETE', `/v1/dailies/${daily.id}/check-ins/2026-03-02`, me.headers)).statusCode,
    ).toBe(204);
    expect(await t.deps.stats.score(me.userId)).toBe(0);
    expect(
      (await call('DELETE', `/v1/dailies/${daily.id}/check-ins/2026-03-02`, me.headers)).statusCode,
    ).toBe(404);
    for (let i = 0; i < 20; i++) {
      await call('POST', `/v1/dailies/${daily.id}/check-ins`, me.headers, {});
      if (i % 2 === 0) await call('DELETE', `/v1/dailies/${daily.id}/check-ins/2026-03-02`, me.headers);
    }
    expect(await t.deps.stats.score(me.userId)).toBe(10);
  });

  it('Idempotency-Key: a replay returns the first answer; another body with the key is 422', async () => {
    clock.set(at('2026-03-02'));
    const me = await someone();
    const daily = await newDaily(me.headers);
    const headers = { ...me.headers, 'idempotency-key': `k-${daily.id}` };
    const first = await call('POST', `/v1/dailies/${daily.id}/check-ins`, headers, {});
    const again = await call('POST', `/v1/dailies/${daily.id}/check-ins`, headers, {});
    expect(first.statusCode).toBe(201);
    expect(again.statusCode).toBe(201);
    expect(again.json()).toEqual(first.json());
    expect(again.headers['idempotent-replayed']).toBe('true');
    const other = await call('POST', `/v1/dailies/${daily.id}/check-ins`, headers, { date: '2026-03-01' });
    expect(other.statusCode).toBe(422);
    expect(other.json().code).toBe('idempotency_key_mismatch');
  });

  it('logical days follow the user’s zone and day start', async () => {
    // 00:00:30 on Tuesday in Kiritimati (+14) is still Monday 10:00:30 UTC.
    clock.set(new Date('2026-03-02T10:00:30Z'));
    const me = await someone('Pacific/Kiritimati');
    const daily = await newDaily(me.headers);
    const res = await call('POST', `/v1/dailies/${daily.id}/check-ins`, me.headers, {});
    expect(res.json().date).toBe('2026-03-03');
  });
});

describe('history and streaks', () => {
  it('shows each day as done, late, missed, not_due, frozen or pending, and streaks follow', async () => {
    clock.set(at('2026-03-02'));
    const me = await someone();
    // Due Monday to Friday.
    const daily = await newDaily(me.headers, { title: 'Read', weekdays: [1, 2, 3, 4, 5] });
    const checkIn = async (date: string, hhmm = '09:00', body: object = {}) => {
      clock.set(at(date, hhmm));
      const res = await call('POST', `/v1/dailies/${daily.id}/check-ins`, me.headers, body);
      expect(res.statusCode, `${date} ${hhmm}`).toBeLessThan(300);
    };
    await checkIn('2026-03-02'); // Mon done
    await checkIn('2026-03-04', '01:00', { date: '2026-03-03' }); // Tue late (Wed 01:00)
    await checkIn('2026-03-05'); // Thu done (Wed missed)
    clock.set(at('2026-03-09', '08:00')); // next Monday morning, not yet done
    const history = await call(
      'GET',
      `/v1/dailies/${daily.id}/history?from=2026-03-01&to=2026-03-09`,
      me.headers,
    );
    expect(history.json().days).toEqual([
      { date: '2026-03-02', state: 'done' },
      { date: '2026-03-03', state: 'late' },
      { date: '2026-03-04', state: 'missed' },
      { date: '2026-03-05', state: 'done' },
      { date: '2026-03-06', state: 'missed' },
      { date: '2026-03-07', state: 'not_due' },
      { date: '2026-03-08', state: 'not_due' },
      { date: '2026-03-09', state: 'pending' },
    ]);
    const listed = (await call('GET', '/v1/dailies', me.headers)).json().items[0];
    expect(listed.streak).toEqual({ current: 0, longest: 2 });
    expect(
      (await call('GET', `/v1/dailies/${daily.id}/history?from=2026-03-09&to=2026-03-01`, me.headers))
        .statusCode,
    ).toBe(400);
  });

  it('overall streak, freezes and stats are right before and after the rollover, which applies once', async () => {
    clock.set(at('2026-03-02'));
    const me = await someone();
    const daily = await newDaily(me.headers, { title: 'Pray' });
    // Eight days met (a freeze earned at 7), then Tuesday 10 missed (the freeze is spent), then 11 met.
    for (let d = 0; d < 8; d++) {
      clock.set(new Date(at('2026-03-02').getTime() + d * DAY));
      await call('POST', `/v1/dailies/${daily.id}/check-ins`, me.headers, {});
    }
    clock.set(at('2026-03-11'));
    await call('POST', `/v1/dailies/${daily.id}/check-ins`, me.headers, {});
    clock.set(at('2026-03-12', '08:00'));

    const before = (await call('GET', '/v1/me/stats', me.headers)).json();
    expect(before).toMatchObject({
      currentStreak: 9,
      longestStreak: 9,
      streakFreezes: 0,
      today: { date: '2026-03-12', done: 0, goal: 1 },
    });
    expect(before.weeklyProgress).toEqual([
      { date: '2026-03-06', completed: 1 },
      { date: '2026-03-07', completed: 1 },
      { date: '2026-03-08', completed: 1 },
      { date: '2026-03-09', completed: 1 },
      { date: '2026-03-10', completed: 0 },
      { date: '2026-03-11', completed: 1 },
      { date: '2026-03-12', completed: 0 },
    ]);

    // Two rollovers racing close each day once.
    const closed = await Promise.all([
      t.deps.dailies.closeDays(me.userId),
      t.deps.dailies.closeDays(me.userId),
    ]);
    expect(closed.sort()).toEqual([0, 10]);
    expect(await t.deps.dailies.closeDays(me.userId)).toBe(0);
    const after = (await call('GET', '/v1/me/stats', me.headers)).json();
    expect(after).toEqual({ ...before, score: after.score, totals: after.totals });
    const { rows } = await t.deps.db.query<{ date: string; outcome: string }>(
      'SELECT date, outcome FROM day_summaries WHERE user_id = $1 ORDER BY date',
      [me.userId],
    );
    expect(rows.find((r) => r.date === '2026-03-10')?.outcome).toBe('frozen');
    expect(rows.filter((r) => r.outcome === 'met')).toHaveLength(9);

    // Nine check-ins (90), nine perfect days (180) and the 7-day milestone (50).
    expect(after.score).toBe(9 * 10 + 9 * 20 + 50);
    expect(after.totals).toMatchObject({ dailyCheckIns: 9, perfectDays: 9, daysMet: 9 });

    const history = (
      await call('GET', `/v1/dailies/${daily.id}/history?from=2026-03-09&to=2026-03-12`, me.headers)
    ).json();
    expect(history.days.map((d: { state: string }) => d.state)).toEqual([
      'done',
      'frozen',
      'done',
      'pending',
    ]);
  });

  it('yesterday stays open through its grace window: a late check-in counts, and the rollover waits for it', async () => {
    // C2 found the rollover closing yesterday as missed at midnight, so a late check-in in the grace
    // window (PRODUCT.md) came too late for the streak.
    clock.set(at('2026-03-02'));
    const me = await someone();
    const daily = await newDaily(me.headers, { title: 'Stretch' });
    const behind = async () => (await t.deps.dailies.usersBehind(null, 100_000)).includes(me.userId);

    clock.set(at('2026-03-03', '01:00'));
    expect(await t.deps.dailies.closeDays(me.userId)).toBe(0);
    const late = await call('POST', `/v1/dailies/${daily.id}/check-ins`, me.headers, { date: '2026-03-02' });
    expect([late.statusCode, late.json().late]).toEqual([201, true]);

    clock.set(at('2026-03-03', '02:59'));
    expect(await behind()).toBe(false);
    expect(await t.deps.dailies.closeDays(me.userId)).toBe(0);
    clock.set(at('2026-03-03', '03:00'));
    expect(await behind()).toBe(true);
    expect(await t.deps.dailies.closeDays(me.userId)).toBe(1);
    const { rows } = await t.deps.db.query<{ date: string; outcome: string }>(
      'SELECT date, outcome FROM day_summaries WHERE user_id = $1',
      [me.userId],
    );
    expect(rows).toEqual([{ date: '2026-03-02', outcome: 'met' }]);
    expect((await call('GET', '/v1/me/stats', me.headers)).json()).toMatchObject({ currentStreak: 1 });
    // The window is over: yesterday is final, and the API says so.
    const tooLate = await call('DELETE', `/v1/dailies/${daily.id}/check-ins/2026-03-02`, me.headers);
    expect([tooLate.statusCode, tooLate.json().code]).toEqual([400, 'date_out_of_range']);
  });

  it('stats are cached, and every write that moves them shows at once', async () => {
    clock.set(at('2026-03-02'));
    const me = await someone();
    const stats = async () => (await call('GET', '/v1/me/stats', me.headers)).json();
    expect((await stats()).today.done).toBe(0);
    const task = (await call('POST', '/v1/tasks', me.headers, { title: 'Call Maa' })).json();
    await call('POST', `/v1/tasks/${task.id}/complete`, me.headers, {});
    expect(await stats()).toMatchObject({ today: { done: 1 }, score: 10, currentStreak: 1 });
    await call('POST', `/v1/tasks/${task.id}/reopen`, me.headers, {});
    expect(await stats()).toMatchObject({ today: { done: 0 }, score: 10, currentStreak: 0 });
    const daily = await newDaily(me.headers);
    await call('POST', `/v1/dailies/${daily.id}/check-ins`, me.headers, {});
    expect(await stats()).toMatchObject({ today: { done: 1 }, score: 20 });
    await call('PATCH', '/v1/me', me.headers, { dailyGoal: 2 });
    expect(await stats()).toMatchObject({ today: { done: 1, goal: 2 }, currentStreak: 0 });
  });

  it('a stats read racing a completion cannot cache the old stats past the commit', async () => {
    clock.set(at('2026-03-02'));
    const me = await someone();
    const stats = async () => (await call('GET', '/v1/me/stats', me.headers)).json();
    const task = (await call('POST', '/v1/tasks', me.headers, { title: 'Water the tulsi' })).json();
    // The read computes its stats (before the completion), then waits while the completion commits.
    const original = t.deps.stats.cached;
    let parked!: () => void;
    const reached = new Promise<void>((r) => {
      parked = r;
    });
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    t.deps.stats.cached = (userId, validUntil, compute) =>
      original(userId, validUntil, async () => {
        const value = await compute();
        parked();
        await gate;
        return value;
      });
    try {
      const racing = stats();
      await reached;
      t.deps.stats.cached = original;
      expect((await call('POST', `/v1/tasks/${task.id}/complete`, me.headers, {})).statusCode).toBe(200);
      release();
      expect((await racing).today.done).toBe(0);
    } finally {
      t.deps.stats.cached = original;
    }
    // What the late read stored is not served: the next read shows the completion.
    expect(await stats()).toMatchObject({ today: { done: 1 }, score: 10 });
  });

  it('the rollover job closes every user whose day has ended', async () => {
    clock.set(at('2026-03-02'));
    const a = await someone('Asia/Kolkata');
    const b = await someone('America/New_York');
    clock.set(new Date(at('2026-03-02').getTime() + 3 * DAY));
    await t.deps.jobs.enqueue('dailies.rollover', {}, { jobId: `rollover-${a.userId}` });
    await t.deps.jobs.start();
    await expect
      .poll(
        async () => {
          const { rows } = await t.deps.db.query<{ userId: string; lastClosedDate: string }>(
            'SELECT user_id, last_closed_date FROM overall_streaks WHERE user_id = ANY($1::uuid[]) ORDER BY user_id',
            [[a.userId, b.userId]],
          );
          return rows.length;
        },
        { timeout: 10_000 },
      )
      .toBe(2);
    // The walk goes on to every other user behind: it must end here, not in the next test's users
    // (it closed one of them there once the embedded database let it run between statements).
    await expect
      .poll(() => t.logs().some((l) => l.msg === 'days closed' && l.jobId === `rollover-${a.userId}`), {
        timeout: 10_000,
      })
      .toBe(true);
  });

  it('the rollover stops at a database that is out, to retry them all, but steps over one user who fails', async () => {
    clock.set(at('2026-03-02'));
    const a = await someone();
    const b = await someone();
    clock.set(new Date(at('2026-03-02').getTime() + 3 * DAY));
    const errors: string[] = [];
    const log = { error: (_o: unknown, msg: string) => errors.push(msg), info: () => {}, warn: () => {} };
    const rollover = (closeDays: (id: string) => Promise<number>) => {
      const [job] = dailiesJobs({ dailies: { ...t.deps.dailies, closeDays }, realtime: t.deps.realtime });
      return job?.handler({}, {
        jobId: 'test',
        attempt: 1,
        log,
        signal: new AbortController().signal,
      } as never);
    };

    // The pool could not lend a connection: one attempt, no error log (the runner warns and retries).
    let calls = 0;
    await expect(
      rollover(async () => {
        calls++;
        throw unavailable('database_unavailable');
      }),
    ).rejects.toMatchObject({ code: 'database_unavailable' });
    expect([calls, errors]).toEqual([1, []]);

    // One user's own failure is logged and the others are still closed; the job fails to come back for it.
    await expect(
      rollover(async (id) => {
        if (id === a.userId) throw new Error('broken user');
        return t.deps.dailies.closeDays(id);
      }),
    ).rejects.toThrow(/closing days failed for 1 users/);
    expect(errors).toEqual(['closing days failed']);
    const { rows } = await t.deps.db.query<{ userId: string }>(
      'SELECT user_id FROM overall_streaks WHERE user_id = ANY($1::uuid[]) AND last_closed_date IS NOT NULL',
      [[a.userId, b.userId]],
    );
    expect(rows.map((r) => r.userId)).toEqual([b.userId]);

    // Someone who deleted their account after the page of users was read has nothing left to close:
    // passed over, not an error (C3 found the log while its other sockets deleted accounts).
    errors.length = 0;
    await expect(
      rollover(async (id) => {
        if (id === a.userId) await t.deps.db.query('DELETE FROM users WHERE id = $1', [id]);
        return t.deps.dailies.closeDays(id);
      }),
    ).resolves.toBeUndefined();
    expect(errors).toEqual([]);
  });

  it("daily:changed and streak:updated reach the owner's devices, and no one else's", async () => {
    clock.set(at('2026-03-02'));
    const me = await someone();
    const other = await someone();
    const token = (h: { authorization: string }) => h.authorization.slice('Bearer '.length);
    const sockets: Socket[] = [];
    try {
      const heard = async (who: typeof me) => {
        const socket = await openSocket(t.url, token(who.headers), sockets);
        const got: [string, unknown][] = [];
        socket.onAny((event: string, data: unknown) => {
          if (event.startsWith('daily:') || event.startsWith('streak:')) got.push([event, data]);
        });
        return got;
      };
      const [mine, theirs] = [await heard(me), await heard(other)];
      const daily = await newDaily(me.headers, { title: 'Walk' });
      await call('POST', `/v1/dailies/${daily.id}/check-ins`, me.headers, {});
      clock.set(at('2026-03-03', '12:00'));
      await t.deps.jobs.start();
      expect(await t.deps.dailies.closeDays(me.userId)).toBe(1);
      await eventually(() =>
        expect(mine).toEqual([
          ['daily:changed', { dailyId: daily.id }],
          ['daily:changed', { dailyId: daily.id }],
          [
            'streak:updated',
            { date: '2026-03-02', outcome: 'met', currentStreak: 1, longestStreak: 1, freezes: 0 },
          ],
        ]),
      );
      await new Promise((r) => setTimeout(r, 200));
      expect(theirs).toEqual([]);
    } finally {
      for (const s of sockets) s.disconnect();
    }
  });
});
