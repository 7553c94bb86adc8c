import type { Logger } from 'pino';
import type { Clock } from '../../lib/clock.js';
import { wallClock } from '../../lib/days.js';
import type { Db, Queryable } from '../../lib/db.js';
import type { Outbox } from '../../lib/outbox.js';
import type { AccountsService } from '../accounts/accounts.service.js';
import { isoWeek } from '../leaderboards/leaderboards.service.js';
import type { NotificationsService } from '../notifications/notifications.service.js';
import { CARE_AFTER_MISSES } from './maa.engine.js';
import type { Occasion } from './maa.lines.js';
import type { MaaService } from './maa.service.js';

export const NUDGES_JOB = 'maa.nudges';
export const EVENT_JOB = 'maa.event';
export const NUDGES_EVERY_MS = 15 * 60_000;
/** Unprompted messages a user gets in one logical day, at most. */
export const DAILY_CAP = 3;
/** No unprompted message between these local hours (22:00 to 07:00). */
const QUIET_FROM = 22;
const QUIET_TO = 7;
// Local-hour windows of the scheduled nudges.
const MORNING = { from: 8, to: 11 };
const EVENING = { from: 19, to: 22 };
const KEEP_MS = 14 * 86400_000;
const PAGE = 500;
const LOCK_SPACE = 7201;
/** Friends told of one overtaking at most (the rest hear of the next). */
const OVERTAKEN_MAX = 20;

export const quiet = (hour: number) => hour >= QUIET_FROM || hour < QUIET_TO;

export type NudgesService = ReturnType<typeof makeNudges>;

/**
 * Maa speaking first: the scheduled nudges (the day's start in the morning, a streak at risk in the
 * evening, care after days away) and event-driven ones (a group rank). Each respects quiet hours, a
 * daily cap and once-per-occasion-per-day; the claim is taken under a per-user lock, so racing jobs
 * cannot exceed them.
 */
export function makeNudges(deps: {
  db: Db;
  clock: Clock;
  outbox: Outbox;
  accounts: Pick<AccountsService, 'getMe' | 'dayCalendar'>;
  maa: Pick<MaaService, 'message' | 'state'>;
  notifications: Pick<NotificationsService, 'notify'>;
  log: Logger;
}) {
  const { db, clock, log } = deps;

  /** Takes today's slot for this occasion, unless quiet hours, the cap or an earlier one say no. */
  async function claim(userId: string, occasion: Occasion): Promise<boolean> {
    const now = clock.now();
    const [me, calendar] = await Promise.all([
      deps.accounts.getMe(userId),
      deps.accounts.dayCalendar(userId),
    ]);
    if (quiet(wallClock(now, me.timezone).hour)) return false;
    const today = calendar.dateOf(now);
    return db.tx(async (tx: Queryable) => {
      await tx.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [LOCK_SPACE, userId]);
      const { rows } = await tx.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM maa_nudges WHERE user_id = $1 AND local_date = $2',
        [userId, today],
      );
      if ((rows[0]?.n ?? 0) >= DAILY_CAP) return false;
      const { rowCount } = await tx.query(
        `INSERT INTO maa_nudges (user_id, local_date, occasion, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT DO NOTHING`,
        [userId, today, occasion, now],
      );
      return rowCount === 1;
    });
  }

  /** Speaks if allowed: the line (history and `maa:message`) and a notification. */
  async function nudge(userId: string, occasion: Occasion): Promise<boolean> {
    if (!(await claim(userId, occasion))) return false;
    const message = await deps.maa.message(userId, occasion);
    await deps.notifications.notify(db, {
      userId,
      kind: 'maa',
      data: { occasion: message.occasion, tone: message.tone, text: message.text },
    });
    return true;
  }

  /** What the schedule says to this user now, if anything. */
  async function scheduled(userId: string, hour: number): Promise<Occasion | undefined> {
    const s = await deps.maa.state(userId);
    if (hour >= MORNING.from && hour < MORNING.to) {
      if (s.missesInRow >= CARE_AFTER_MISSES) return 'care';
      if (s.done === 0) return 'day_start';
    }
    if (hour >= EVENING.from && hour < EVENING.to && s.done < s.goal && s.currentStreak > 0)
      return 'streak_at_risk';
    return undefined;
  }

  return {
    nudge,

    /**
     * In the transaction that paid `userId` these points: friends they just passed on this week's
     * board hear from Maa (she names nobody, so no one's privacy is at stake; a private profile's
     * progress is not told at all).
     */
    async overtaken(q: Queryable, userId: string, points: number): Promise<void> {
      const { rows } = await q.query<{ id: string }>(
        `WITH me AS (
           SELECT s.score FROM leaderboard_scores s JOIN users u ON u.id = s.user_id
            WHERE s.period = $2 AND s.user_id = $1 AND u.profile_visibility <> 'private')
         SELECT s.user_id AS id FROM leaderboard_scores s, me
          WHERE s.period = $2 AND s.score >= me.score - $3 AND s.score < me.score
            AND s.user_id IN (SELECT user_b FROM friendships WHERE user_a = $1
                              UNION ALL SELECT user_a FROM friendships WHERE user_b = $1)
          LIMIT ${OVERTAKEN_MAX}`,
        [userId, isoWeek(clock.now()), points],
      );
      for (const { id } of rows)
        await deps.outbox.add(q, EVENT_JOB, { userId: id, occasion: 'friend_overtook' });
    },

    /** In the transaction of an event Maa reacts to (it runs as a job once that commits). */
    react: (q: Queryable, userId: string, occasion: Occasion) =>
      deps.outbox.add(q, EVENT_JOB, { userId, occasion }),

    /** The scheduled job: users whose local hour is in a window right now, a page at a time. */
    async sweep(): Promise<number> {
      const now = clock.now();
      let after = '00000000-0000-0000-0000-000000000000';
      let spoken = 0;
      for (;;) {
        const { rows } = await db.query<{ id: string; hour: number }>(
          `SELECT u.id, extract(hour FROM $1::timestamptz AT TIME ZONE u.timezone)::int AS hour FROM users u
            WHERE u.id > $2 AND u.email_verified_at IS NOT NULL
              AND extract(hour FROM $1::timestamptz AT TIME ZONE u.timezone)::int IN (${[
                ...range(MORNING),
                ...range(EVENING),
              ].join(', ')})
            ORDER BY u.id LIMIT ${PAGE}`,
          [now, after],
        );
        for (const { id, hour } of rows) {
          try {
            const occasion = await scheduled(id, hour);
            if (occasion && (await nudge(id, occasion))) spoken++;
          } catch (err) {
            log.warn({ err, userId: id }, 'maa nudge failed');
          }
        }
        const last = rows[rows.length - 1];
        if (!last || rows.length < PAGE) break;
        after = last.id;
      }
      await db.query('DELETE FROM maa_nudges WHERE created_at < $1', [new Date(now.getTime() - KEEP_MS)]);
      return spoken;
    },
  };
}

function range(w: { from: number; to: number }): number[] {
  return Array.from({ length: w.to - w.from }, (_, i) => w.from + i);
}
