import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addDays } from '../src/lib/days.js';
import { emptyOverallState, overallFoldAll } from '../src/modules/dailies/streaks.js';
import { aUser, fakeClock, signIn, startTestApp, type TestApp } from './helpers.js';

// The service end to end against the pure engine: random check-in histories go in through HTTP, two
// rollovers race to close the days, and the stored streak equals a fold of the same history; the
// race applies each day once.
const clock = fakeClock(new Date('2026-05-04T06:00:00Z'));
let t: TestApp;
beforeAll(async () => {
  t = await startTestApp({ clock, env: { RATE_LIMIT_MULTIPLIER: '0' } });
});
afterAll(() => t?.close());

describe('rollover (property)', () => {
  it('two racing rollovers close each day once, and streaks equal the engine on the same history', async () => {
    let histories = 0;
    let days = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(fc.boolean(), { minLength: 3, maxLength: 24 }), async (doneOnDay) => {
        const start = '2026-05-04';
        clock.set(new Date(`${start}T06:00:00Z`));
        const user = await aUser(t.deps, { timezone: 'UTC' });
        const session = await signIn(t.deps, user.id);
        const headers = () => ({
          authorization: `Bearer ${t.deps.tokens.sign({ userId: user.id, sessionId: session.sessionId }).token}`,
        });
        const daily = (
          await t.app.inject({
            method: 'POST',
            url: '/v1/dailies',
            headers: headers(),
            payload: { title: 'x' },
          })
        ).json();
        for (let i = 0; i < doneOnDay.length; i++) {
          clock.set(new Date(`${addDays(start, i)}T12:00:00Z`));
          if (doneOnDay[i]) {
            const res = await t.app.inject({
              method: 'POST',
              url: `/v1/dailies/${daily.id}/check-ins`,
              headers: headers(),
              payload: {},
            });
            expect(res.statusCode).toBe(201);
          }
        }
        // The morning after the last day: every day of the history has ended.
        clock.set(new Date(`${addDays(start, doneOnDay.length)}T06:00:00Z`));
        const closed = await Promise.all([
          t.deps.dailies.closeDays(user.id),
          t.deps.dailies.closeDays(user.id),
        ]);
        expect(closed.reduce((a, b) => a + b, 0)).toBe(doneOnDay.length);
        expect(await t.deps.dailies.closeDays(user.id)).toBe(0);

        const expected = overallFoldAll(
          { ...emptyOverallState(), lastClosedDate: addDays(start, -1) },
          doneOnDay.map((done, i) => ({ date: addDays(start, i), completed: done ? 1 : 0, goal: 1 })),
        ).state;
        const { rows } = await t.deps.db.query<{ state: typeof expected }>(
          'SELECT state FROM overall_streaks WHERE user_id = $1',
          [user.id],
        );
        expect(rows[0]?.state).toEqual(expected);
        const stats = (await t.app.inject({ method: 'GET', url: '/v1/me/stats', headers: headers() })).json();
        expect({
          current: stats.currentStreak,
          longest: stats.longestStreak,
          freezes: stats.streakFreezes,
        }).toEqual({
          current: expected.current,
          longest: expected.longest,
          freezes: expected.freezes,
        });
        histories++;
        days += doneOnDay.length;
      }),
      { numRuns: 30, seed: 4242 },
    );
    console.log(
      `rollover property: ${histories} histories, ${days} days through HTTP, 0 mismatches, seed 4242`,
    );
  }, 120_000);
});
