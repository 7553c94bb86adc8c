import type { Logger } from 'pino';
import type { Clock } from '../../lib/clock.js';
import { addDays, type LocalDate, localMinute } from '../../lib/days.js';
import type { Db, Queryable } from '../../lib/db.js';
import type { Outbox } from '../../lib/outbox.js';
import type { AccountsService } from '../accounts/accounts.service.js';
import type { LeaderboardsService } from '../leaderboards/leaderboards.service.js';
import type { NotificationsService } from '../notifications/notifications.service.js';
import type { StatsService } from '../stats/stats.service.js';
import { CARE_AFTER_MISSES, isComeback } from './maa.engine.js';
import type { Occasion } from './maa.lines.js';
import type { MaaService, MomentFacts } from './maa.service.js';

export const NUDGES_JOB = 'maa.nudges';
export const EVENT_JOB = 'maa.event';
export const NUDGES_EVERY_MS = 15 * 60_000;
/** Unprompted messages a user gets in one logical day, at most. */
export const DAILY_CAP = 3;
/** Quiet hours for a user who set none (PATCH /v1/me quietHours null): 22:00 to 07:00 local. */
export const DEFAULT_QUIET_HOURS: QuietHours = { start: '22:00', end: '07:00' };
// Local-hour windows of the scheduled nudges.
const MORNING = { from: 8, to: 11 };
const EVENING = { from: 19, to: 22 };
/** The longest window; windows are further apart than this, so a word within it was this window's. */
const WINDOW_MS = Math.max(MORNING.to - MORNING.from, EVENING.to - EVENING.from) * 3_600_000;
const SCHEDULED: Occasion[] = ['welcome', 'day_start', 'care', 'streak_at_risk'];
const KEEP_MS = 14 * 86400_000;
const PAGE = 500;
const LOCK_SPACE = 7201;
/** Friends told of one overtaking at most (the rest hear of the next). */
const OVERTAKEN_MAX = 20;

export interface QuietHours {
  /** 'HH:MM', local wall clock. */
  start: string;
  end: string;
}

const minutesOf = (hhmm: string) => Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5));

/**
 * Whether a local time (minutes after midnight) is in quiet hours: from `start` up to, not
 * including, `end`. A window ending before it starts wraps midnight (22:00–07:00); one ending where
 * it starts is empty (never quiet, the way to turn them off); null is the default window.
 */
export function inQuietHours(minute: number, window: QuietHours | null): boolean {
  const w = window ?? DEFAULT_QUIET_HOURS;
  const from = minutesOf(w.start);
  const to = minutesOf(w.end);
  if (from === to) return false;
  return from < to ? minute >= from && minute < to : minute >= from || minute < to;
}

/** How a word was delivered: live (`maa:message`), or kept quietly in the history during quiet hours. */
export type Delivery = 'live' | 'quiet';

export type NudgesService = ReturnType<typeof makeNudges>;

/**
 * Maa speaking first: the scheduled nudges (a welcome or the day's start in the morning, a streak at
 * risk in the evening, care after days away) and event-driven ones (a group rank, a friend passing,
 * a comeback). Each respects the user's quiet hours, a daily cap and once-per-occasion-per-day (a
 * comeback: once per lapse); the claim is taken under a per-user lock, so racing jobs cannot exceed them.
 *
 * Quiet hours: a scheduled nudge is simply not sent. An event-driven word (something that really
 * happened, at an hour the user chose not to be disturbed) is still said, counted against the cap
 * and kept in the history and the notifications, but pushed neither as `maa:message` nor as
 * `notification:new`: nothing
 * buzzes at night, and nothing the user earned is lost by morning.
 */
export function makeNudges(deps: {
  db: Db;
  clock: Clock;
  outbox: Outbox;
  accounts: Pick<AccountsService, 'getMe' | 'dayCalendar'>;
  stats: Pick<StatsService, 'doneAround'>;
  boards: Pick<LeaderboardsService, 'passedFriends'>;
  maa: Pick<MaaService, 'message' | 'state'>;
  notifications: Pick<NotificationsService, 'notify'>;
  log: Logger;
}) {
  const { db, clock, log } = deps;

  /**
   * Takes today's slot for this occasion unless the cap is reached or the occasion was already
   * claimed on a date from `since` (today: once a day) through today.
   */
  function claim(userId: string, occasion: Occasion, today: LocalDate, since: LocalDate, now: Date) {
    return db.tx(async (tx: Queryable) => {
      await tx.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [LOCK_SPACE, userId]);
      const { rows } = await tx.query<{ n: number; taken: boolean }>(
        `SELECT count(*) FILTER (WHERE local_date = $2)::int AS n,
                coalesce(bool_or(occasion = $3 AND local_date >= $4), false) AS taken
           FROM maa_nudges WHERE user_id = $1 AND local_date >= least($2::date, $4::date)`,
        [userId, today, occasion, since],
      );
      if ((rows[0]?.n ?? 0) >= DAILY_CAP || rows[0]?.taken) return false;
      const { rowCount } = await tx.query(
        `INSERT INTO maa_nudges (user_id, local_date, occasion, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT DO NOTHING`,
        [userId, today, occasion, now],
      );
      return rowCount === 1;
    });
  }

  /**
   * Speaks if allowed: the line (history, `maa:message` unless quiet) and a notification. Scheduled
   * words are never sent in quiet hours; event-driven ones are kept quietly (see above). A comeback
   * is said only when the user really is back (isComeback) and once per lapse.
   */
  async function speak(
    userId: string,
    occasion: Occasion,
    how: 'event' | 'scheduled',
    facts: MomentFacts = {},
  ): Promise<Delivery | undefined> {
    const now = clock.now();
    const [me, calendar] = await Promise.all([
      deps.accounts.getMe(userId),
      deps.accounts.dayCalendar(userId),
    ]);
    const quiet = inQuietHours(localMinute(now, me.timezone), me.quietHours);
    if (quiet && how === 'scheduled') return undefined;
    const today = calendar.dateOf(now);
    let since = today;
    if (occasion === 'comeback') {
      const s = await deps.maa.state(userId);
      if (!isComeback(s)) return undefined;
      // The lapse began on the first of the missed days; one comeback for all of it, however many
      // completions (or partial days that extend it) follow.
      since = addDays(today, -s.missesInRow);
    }
    if (!(await claim(userId, occasion, today, since, now))) return undefined;
    const message = await deps.maa.message(userId, occasion, { live: !quiet, facts });
    await deps.notifications.notify(db, {
      userId,
      kind: 'maa',
      data: { occasion: message.occasion, tone: message.tone, text: message.text },
      live: !quiet,
    });
    return quiet ? 'quiet' : 'live';
  }

  /** What the schedule says to this user now, if anything. */
  async function scheduled(userId: string, hour: number): Promise<Occasion | undefined> {
    const s = await deps.maa.state(userId);
    if (hour >= MORNING.from && hour < MORNING.to) {
      // Care after days away; someone already working again heard (or hears) the comeback instead.
      if (s.missesInRow >= CARE_AFTER_MISSES) return isComeback(s) ? undefined : 'care';
      if (s.done === 0) return s.newUser ? 'welcome' : 'day_start';
    }
    if (hour >= EVENING.from && hour < EVENING.to && s.done < s.goal && s.currentStreak > 0)
      return 'streak_at_risk';
    return undefined;
  }

  /**
   * In the paying transaction: is this the first completion or check-in of `day` after at least
   * CARE_AFTER_MISSES whole days without any, on an account older than that? One indexed look at
   * the score ledger (the calendar only when it says maybe), so the comeback job, which weighs the
   * user's whole state, runs for someone plausibly back, not after every completion.
   */
  async function mayBeBack(q: Queryable, userId: string, day: LocalDate): Promise<boolean> {
    const from = addDays(day, -CARE_AFTER_MISSES);
    const done = await deps.stats.doneAround(q, userId, from, day);
    if (done.today !== 1 || done.before !== 0) return false;
    return (await deps.accounts.dayCalendar(userId, q)).firstDay <= from;
  }

  return {
    /** An event-driven word (the maa.event job): said now, or kept quietly in quiet hours. */
    nudge: (userId: string, occasion: Occasion, facts?: MomentFacts) =>
      speak(userId, occasion, 'event', facts),

    /**
     * The score hook (deps.ts `onScore`), in the transaction that paid `userId` these points for
     * `paidOn` (a completion, a check-in): when the payer looks back after days away, the comeback job is queued
     * (it speaks once this commits, if the engine agrees); and friends they just passed on this
     * week's board hear from Maa (she names nobody, so no one's privacy is at stake; a private
     * profile's progress is not told at all).
     */
    async scored(q: Queryable, userId: string, points: number, paidOn: LocalDate): Promise<void> {
      if (await mayBeBack(q, userId, paidOn))
        await deps.outbox.add(q, EVENT_JOB, { userId, occasion: 'comeback' });
      for (const id of await deps.boards.passedFriends(q, userId, points, OVERTAKEN_MAX))
        await deps.outbox.add(q, EVENT_JOB, { userId: id, occasion: 'friend_overtook' });
    },

    /**
     * In the transaction of an event Maa reacts to (it runs as a job once that commits); `facts`
     * carries what only the event knows (a podium finish's `rank`, for the {rank} lines).
     */
    react: (q: Queryable, userId: string, occasion: Occasion, facts: MomentFacts = {}) =>
      deps.outbox.add(q, EVENT_JOB, { userId, occasion, ...facts }),

    /** The scheduled job: users whose local hour is in a window right now, a page at a time. */
    async sweep(): Promise<number> {
      const now = clock.now();
      let after = '00000000-0000-0000-0000-000000000000';
      let spoken = 0;
      for (;;) {
        // Someone who heard a scheduled word within a window's length heard this window's: the
        // sweep every 15 minutes would otherwise weigh their whole state again, only to be refused
        // by the claim (10,000 users: minutes of a core, every quarter of an hour).
        const { rows } = await db.query<{ id: string; hour: number }>(
          `SELECT u.id, extract(hour FROM $1::timestamptz AT TIME ZONE u.timezone)::int AS hour FROM users u
            WHERE u.id > $2 AND u.email_verified_at IS NOT NULL
              AND extract(hour FROM $1::timestamptz AT TIME ZONE u.timezone)::int IN (${[
                ...range(MORNING),
                ...range(EVENING),
              ].join(', ')})
              AND NOT EXISTS (SELECT 1 FROM maa_nudges n
                               WHERE n.user_id = u.id AND n.created_at > $3 AND n.occasion = ANY($4))
            ORDER BY u.id LIMIT ${PAGE}`,
          [now, after, new Date(now.getTime() - WINDOW_MS), SCHEDULED],
        );
        for (const { id, hour } of rows) {
          try {
            const occasion = await scheduled(id, hour);
            if (occasion && (await speak(id, occasion, 'scheduled'))) spoken++;
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
