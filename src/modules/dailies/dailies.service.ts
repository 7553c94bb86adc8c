import { uuidv7 } from 'uuidv7';
import type { Config } from '../../config.js';
import type { Clock } from '../../lib/clock.js';
import type { DayCalendar } from '../../lib/day-history.js';
import { addDays, earlierDate, isoWeekday, type LocalDate } from '../../lib/days.js';
import type { Db, Queryable } from '../../lib/db.js';
import { invalid, notFound } from '../../lib/errors.js';
import { type IdempotencyKey, idempotent } from '../../lib/idempotency.js';
import type { Outbox } from '../../lib/outbox.js';
import type { Realtime } from '../../realtime/port.js';
import type { AccountsService } from '../accounts/accounts.service.js';
import { POINTS, type StatsService } from '../stats/stats.service.js';
import * as repo from './dailies.repo.js';
import type { CheckIn, CreateDaily, Daily, Stats, UpdateDaily } from './dailies.schemas.js';
import {
  type DayOutcome,
  dailyHistory,
  dailyStreak,
  emptyOverallState,
  type OverallState,
  overallFold,
  overallView,
} from './streaks.js';

export const DAY_CLOSED_JOB = 'dailies.day_closed';
const ALL_WEEKDAYS = [1, 2, 3, 4, 5, 6, 7];
const HISTORY_MAX_DAYS = 366;
/** Overall streak lengths that pay a bonus, once ever each. */
export const STREAK_MILESTONES: Record<number, number> = {
  7: 50,
  30: 100,
  60: 150,
  100: 200,
  180: 300,
  365: 500,
};

/** Completions per logical date from other modules (tasks), counted toward the daily goal. */
export type CompletionCounts = (
  userId: string,
  from: LocalDate,
  to: LocalDate,
  q: Queryable,
) => Promise<Map<LocalDate, number>>;

export type DailiesService = ReturnType<typeof makeDailiesService>;

export function makeDailiesService(deps: {
  db: Db;
  clock: Clock;
  accounts: Pick<AccountsService, 'dayCalendar' | 'getMe'>;
  stats: StatsService;
  taskCompletions: CompletionCounts;
  realtime: Realtime;
  outbox: Outbox;
  config: Pick<Config, 'GRACE_HOURS'>;
}) {
  const { db, clock } = deps;

  const sorted = (weekdays: readonly number[]) => [...new Set(weekdays)].sort((a, b) => a - b);

  async function completions(q: Queryable, userId: string, from: LocalDate, to: LocalDate) {
    const [tasks, checkIns] = await Promise.all([
      deps.taskCompletions(userId, from, to, q),
      repo.checkInCountsByDate(q, userId, from, to),
    ]);
    const counts = new Map(tasks);
    for (const [date, n] of checkIns) counts.set(date, (counts.get(date) ?? 0) + n);
    return counts;
  }

  /** The instant yesterday stops taking late check-ins and undos: GRACE_HOURS into today. */
  const graceEnds = (calendar: DayCalendar, today: LocalDate) =>
    calendar.start(today).getTime() + deps.config.GRACE_HOURS * 3600_000;

  /**
   * The overall streak closed through yesterday (or `through`): the stored state plus any days the
   * rollover has not closed yet (so reads are right even when the job is late), and what each such
   * day counted as.
   */
  async function catchUp(
    q: Queryable,
    userId: string,
    calendar: DayCalendar,
    stored: OverallState | null,
    through?: LocalDate,
  ) {
    const today = calendar.dateOf(clock.now());
    const start = stored ?? { ...emptyOverallState(), lastClosedDate: addDays(calendar.firstDay, -1) };
    const from = addDays(start.lastClosedDate ?? addDays(calendar.firstDay, -1), 1);
    const yesterday = through ?? addDays(today, -1);
    const counts = await completions(q, userId, earlierDate(from, today), today);
    // Read inside the caller's transaction: the embedded database has one connection.
    const { dailyGoal: goal } = await deps.accounts.getMe(userId, q);
    let state = start;
    const closed: {
      date: LocalDate;
      completed: number;
      goal: number;
      outcome: DayOutcome;
      current: number;
    }[] = [];
    for (let date = from; date <= yesterday; date = addDays(date, 1)) {
      const completed = counts.get(date) ?? 0;
      const folded = overallFold(state, { date, completed, goal });
      state = folded.state;
      closed.push({ date, completed, goal, outcome: folded.outcome, current: state.current });
    }
    return { today, state, closed, todayCompleted: counts.get(today) ?? 0, goal, startedFrom: stored };
  }

  /**
   * Days the overall streak spent a freeze on: those the rollover closed, and those it has not closed
   * yet as a read folds them (as stats do), so a daily's streak does not wait for the job.
   */
  async function frozenDays(
    q: Queryable,
    userId: string,
    calendar: DayCalendar,
    from: LocalDate,
    to: LocalDate,
  ) {
    const frozen = await repo.frozenDates(q, userId, from, to);
    const caught = await catchUp(q, userId, calendar, await repo.readOverall(q, userId));
    for (const day of caught.closed)
      if (day.outcome === 'frozen' && day.date >= from && day.date <= to) frozen.add(day.date);
    return frozen;
  }

  async function dailyDtos(q: Queryable, userId: string, rows: repo.DailyRow[]): Promise<Daily[]> {
    if (rows.length === 0) return [];
    const calendar = await deps.accounts.dayCalendar(userId, q);
    const today = calendar.dateOf(clock.now());
    const earliest = rows.reduce((min, r) => earlierDate(r.createdOn, min), today);
    const [checkIns, frozen] = await Promise.all([
      repo.checkInsOf(
        q,
        rows.map((r) => r.id),
        earliest,
      ),
      frozenDays(q, userId, calendar, earliest, today),
    ]);
    return rows.map((row) => {
      const mine = new Map(
        checkIns
          .filter((c) => c.dailyId === row.id)
          .map((c) => [c.date, c.late ? ('late' as const) : ('on_time' as const)]),
      );
      const input = {
        today,
        createdOn: row.createdOn,
        weekdays: row.weekdays,
        checkIns: mine,
        frozenDates: frozen,
      };
      return {
        id: row.id,
        title: row.title,
        description: row.description,
        priority: row.priority,
        weekdays: row.weekdays,
        createdOn: row.createdOn,
        createdAt: row.createdAt.toISOString(),
        updatedAt: row.updatedAt.toISOString(),
        dueToday: row.weekdays.includes(isoWeekday(today)) && row.createdOn <= today,
        doneToday: mine.has(today),
        streak: dailyStreak(input),
      };
    });
  }

  /**
   * A change to yesterday takes the lock the rollover closes days under, and the window is checked
   * after it: yesterday then closes either with the change or after its window, never in between.
   */
  async function lockForLateDay(q: Queryable, userId: string, calendar: DayCalendar, date?: LocalDate) {
    if (date !== undefined && date !== calendar.dateOf(clock.now()))
      await repo.lockOverall(q, userId, clock.now());
  }

  /** Which day a check-in targets, and whether it is late; refuses anything outside the window. */
  function checkInDay(calendar: DayCalendar, requested: LocalDate | undefined) {
    const now = clock.now();
    const today = calendar.dateOf(now);
    const date = requested ?? today;
    if (date === today) return { date, late: false };
    if (date === addDays(today, -1) && now.getTime() < graceEnds(calendar, today))
      return { date, late: true };
    throw invalid(
      'date_out_of_range',
      `Check in for today (${today}), or yesterday within ${deps.config.GRACE_HOURS} hours of today's start.`,
    );
  }

  async function loadDaily(q: Queryable, userId: string, id: string, lock = false) {
    const row = await repo.findDaily(q, userId, id, lock);
    if (!row) throw notFound('daily');
    return row;
  }

  /** Streaks, score, today and the week, computed from the ledger and history (cached by stats()). */
  async function computeStats(userId: string, calendar: DayCalendar): Promise<Stats> {
    const stored = await repo.readOverall(db, userId);
    const caught = await catchUp(db, userId, calendar, stored);
    const view = overallView(caught.state, {
      date: caught.today,
      completed: caught.todayCompleted,
      goal: caught.goal,
    });
    const weekStart = addDays(caught.today, -6);
    const week = await completions(db, userId, weekStart, caught.today);
    const [score, checkIns, tasksCompleted, summaries] = await Promise.all([
      deps.stats.score(userId),
      repo.countCheckIns(db, userId),
      deps
        .taskCompletions(userId, calendar.firstDay, caught.today, db)
        .then((m) => [...m.values()].reduce((a, b) => a + b, 0)),
      repo.countSummaries(db, userId),
    ]);
    const metNotStored = caught.closed.filter((d) => d.outcome === 'met').length;
    return {
      currentStreak: view.current,
      longestStreak: view.longest,
      streakFreezes: view.freezes,
      score,
      today: { date: caught.today, done: caught.todayCompleted, goal: caught.goal },
      weeklyProgress: Array.from({ length: 7 }, (_, i) => {
        const date = addDays(weekStart, i);
        return { date, completed: week.get(date) ?? 0 };
      }),
      totals: {
        tasksCompleted,
        dailyCheckIns: checkIns,
        perfectDays: await deps.stats.countSource(userId, 'perfect_day'),
        daysMet: summaries.met + metNotStored + (view.today === 'met' ? 1 : 0),
      },
    };
  }

  const emitChanged = (q: Queryable, userId: string, dailyId: string) =>
    q.afterCommit(() => deps.realtime.toUser(userId, 'daily:changed', { dailyId }));

  return {
    async create(userId: string, input: CreateDaily): Promise<Daily> {
      const calendar = await deps.accounts.dayCalendar(userId);
      const row = await db.tx(async (tx) => {
        const created = await repo.insertDaily(tx, {
          id: uuidv7(),
          userId,
          title: input.title.trim(),
          description: input.description ?? '',
          priority: input.priority ?? 'medium',
          weekdays: sorted(input.weekdays ?? ALL_WEEKDAYS),
          createdOn: calendar.dateOf(clock.now()),
          now: clock.now(),
        });
        emitChanged(tx, userId, created.id);
        return created;
      });
      return (await dailyDtos(db, userId, [row]))[0] as Daily;
    },

    async list(userId: string, onlyDueToday = false) {
      const rows = await repo.listDailies(db, userId);
      const items = await dailyDtos(db, userId, rows);
      return { items: onlyDueToday ? items.filter((d) => d.dueToday) : items, nextCursor: null };
    },

    async get(userId: string, id: string): Promise<Daily> {
      return (await dailyDtos(db, userId, [await loadDaily(db, userId, id)]))[0] as Daily;
    },

    async update(userId: string, id: string, patch: UpdateDaily): Promise<Daily> {
      const row = await db.tx(async (tx) => {
        const updated = await repo.updateDaily(
          tx,
          userId,
          id,
          {
            ...(patch.title !== undefined ? { title: patch.title.trim() } : {}),
            ...(patch.description !== undefined ? { description: patch.description } : {}),
            ...(patch.priority !== undefined ? { priority: patch.priority } : {}),
            ...(patch.weekdays !== undefined ? { weekdays: sorted(patch.weekdays) } : {}),
          },
          clock.now(),
        );
        if (updated) emitChanged(tx, userId, id);
        return updated;
      });
      if (!row) throw notFound('daily');
      return (await dailyDtos(db, userId, [row]))[0] as Daily;
    },

    /** Hides the daily; its check-ins still count for the days they were made, and points stay. */
    async remove(userId: string, id: string) {
      const removed = await db.tx(async (tx) => {
        const ok = await repo.softDeleteDaily(tx, userId, id, clock.now());
        if (ok) emitChanged(tx, userId, id);
        return ok;
      });
      if (!removed) throw notFound('daily');
    },

    async checkIn(userId: string, id: string, requested: LocalDate | undefined, key?: IdempotencyKey) {
      return idempotent<CheckIn>(db, key, clock.now(), async (tx) => {
        const daily = await loadDaily(tx, userId, id, true);
        const calendar = await deps.accounts.dayCalendar(userId, tx);
        await lockForLateDay(tx, userId, calendar, requested);
        const { date, late } = checkInDay(calendar, requested);
        if (date < daily.createdOn || !daily.weekdays.includes(isoWeekday(date))) {
          throw invalid('not_due', `This daily is not due on ${date}.`);
        }
        const now = clock.now();
        const created = await repo.insertCheckIn(tx, { dailyId: id, userId, date, late, createdAt: now });
        if (created) {
          await deps.stats.award(tx, {
            userId,
            source: 'daily_done',
            sourceKey: `${id}:${date}`,
            points: POINTS.daily_done,
            localDate: date,
          });
          emitChanged(tx, userId, id);
        }
        const row = (await repo.findCheckIn(tx, id, date)) as repo.CheckInRow;
        return {
          status: created ? 201 : 200,
          body: { dailyId: id, date, late: row.late, createdAt: row.createdAt.toISOString() },
        };
      });
    },

    /** Undoes a check-in within the same window; its points go with it (a new check-in pays again, once). */
    async undoCheckIn(userId: string, id: string, date: LocalDate) {
      await db.tx(async (tx) => {
        await loadDaily(tx, userId, id, true);
        const calendar = await deps.accounts.dayCalendar(userId, tx);
        await lockForLateDay(tx, userId, calendar, date);
        checkInDay(calendar, date);
        if (!(await repo.deleteCheckIn(tx, id, date))) throw notFound('check-in');
        await deps.stats.revoke(tx, { userId, source: 'daily_done', sourceKey: `${id}:${date}` });
        emitChanged(tx, userId, id);
      });
    },

    async history(userId: string, id: string, range: { from?: LocalDate; to?: LocalDate }) {
      const daily = await loadDaily(db, userId, id);
      const calendar = await deps.accounts.dayCalendar(userId);
      const today = calendar.dateOf(clock.now());
      const to = range.to ?? today;
      const from = range.from ?? addDays(to, -29);
      if (from > to) throw invalid('invalid_range', '`from` must not be after `to`.');
      if (addDays(from, HISTORY_MAX_DAYS) <= to)
        throw invalid('invalid_range', `Ask for at most ${HISTORY_MAX_DAYS} days.`);
      const [checkIns, frozen] = await Promise.all([
        repo.checkInsOf(db, [id], from),
        frozenDays(db, userId, calendar, from, to),
      ]);
      const map = new Map(checkIns.map((c) => [c.date, c.late ? ('late' as const) : ('on_time' as const)]));
      return {
        days: dailyHistory({
          from,
          to,
          today,
          createdOn: daily.createdOn,
          weekdays: daily.weekdays,
          checkIns: map,
          frozenDates: frozen,
        }),
      };
    },

    async stats(userId: string): Promise<Stats> {
      const calendar = await deps.accounts.dayCalendar(userId);
      const today = calendar.dateOf(clock.now());
      return deps.stats.cached(userId, calendar.end(today), () => computeStats(userId, calendar));
    },

    /**
     * Closes every day of this user that has ended and whose grace window is over: day summaries, spent and earned freezes, the
     * stored streak, perfect-day and milestone points, and a day-closed event. Idempotent and safe
     * to race: the stored state is locked, and a day already closed is never folded again.
     */
    async closeDays(userId: string): Promise<number> {
      return db.tx(async (tx) => {
        const { state: stored, gone } = await repo.lockOverall(tx, userId, clock.now());
        if (gone) return 0;
        const calendar = await deps.accounts.dayCalendar(userId, tx);
        // Yesterday stays open until its grace window ends: a late check-in or an undo may still change it.
        const now = clock.now();
        const today = calendar.dateOf(now);
        const through = addDays(today, now.getTime() < graceEnds(calendar, today) ? -2 : -1);
        const caught = await catchUp(tx, userId, calendar, stored, through);
        if (stored && caught.closed.length === 0) return 0;
        for (const day of caught.closed) {
          if (
            day.outcome === 'met' &&
            (await repo.countDueUndone(tx, userId, day.date, isoWeekday(day.date))) === 0
          ) {
            await deps.stats.award(tx, {
              userId,
              source: 'perfect_day',
              sourceKey: day.date,
              points: POINTS.perfect_day,
              localDate: day.date,
            });
          }
          const bonus = day.outcome === 'met' ? STREAK_MILESTONES[day.current] : undefined;
          if (bonus) {
            await deps.stats.award(tx, {
              userId,
              source: 'streak_milestone',
              sourceKey: String(day.current),
              points: bonus,
              localDate: day.date,
            });
          }
        }
        // Days with nothing done and nothing spent need no row: their absence says "missed".
        await repo.insertSummaries(
          tx,
          userId,
          caught.closed.filter((d) => d.outcome !== 'missed' || d.completed > 0),
        );
        await repo.saveOverall(tx, userId, caught.state, clock.now());
        deps.stats.changed(tx, userId);
        const last = caught.closed[caught.closed.length - 1];
        if (last) {
          await deps.outbox.add(tx, DAY_CLOSED_JOB, {
            userId,
            date: last.date,
            outcome: last.outcome,
            currentStreak: caught.state.current,
            longestStreak: caught.state.longest,
            freezes: caught.state.freezes,
          });
        }
        return caught.closed.length;
      });
    },

    exportFor: (userId: string) => repo.exportDailies(db, userId),

    usersBehind: (afterUserId: string | null, limit: number) =>
      repo.usersBehind(db, clock.now(), deps.config.GRACE_HOURS, afterUserId, limit),
  };
}
