// Streak rules as pure functions of history. The rollover job folds each closed day into a stored
// state (O(1) per day, no re-scan); reads fold whatever days the job has not closed yet and add today
// through overallView. Dailies' streaks are recomputed from their check-ins, which are few.

import { addDays, eachDate, isoWeekday, type LocalDate } from '../../lib/days.js';

export type DayState = 'done' | 'late' | 'missed' | 'not_due' | 'frozen' | 'pending';
export type DayOutcome = 'met' | 'frozen' | 'missed';
export type CheckIn = 'on_time' | 'late';

/** A freeze is earned each time the overall streak reaches a multiple of this many days. */
export const FREEZE_EVERY = 7;
/** Freezes earned beyond this are not kept. */
export const MAX_FREEZES = 2;

export interface DaySummary {
  date: LocalDate;
  /** Tasks and dailies completed on this logical date. */
  completed: number;
  /** The daily goal in force that day. */
  goal: number;
}

export interface OverallState {
  /** Met days in the current streak (frozen days keep it alive but do not count). */
  current: number;
  longest: number;
  freezes: number;
  /** The last day folded in; the next fold must be the day after. Null before the account's first day. */
  lastClosedDate: LocalDate | null;
  /** First met day of the current streak; null when there is none. */
  currentStart: LocalDate | null;
  /** First and last met day of the longest streak (the earliest one, on a tie). */
  longestStart: LocalDate | null;
  longestEnd: LocalDate | null;
}

export interface OverallView {
  current: number;
  longest: number;
  freezes: number;
  /** Whether today's goal is met already; a pending today never breaks the streak. */
  today: 'met' | 'pending';
}

export const emptyOverallState = (): OverallState => ({
  current: 0,
  longest: 0,
  freezes: 0,
  lastClosedDate: null,
  currentStart: null,
  longestStart: null,
  longestEnd: null,
});

function checkDay(day: DaySummary): void {
  for (const [name, value] of [
    ['completed', day.completed],
    ['goal', day.goal],
  ] as const) {
    if (!Number.isInteger(value) || value < 0) {
      throw new RangeError(`${name} must be a non-negative integer, got ${value} on ${day.date}`);
    }
  }
}

/** A goal below 1 would make a day with nothing done count, so it counts as 1. */
export const goalMet = (day: Pick<DaySummary, 'completed' | 'goal'>) =>
  day.completed >= Math.max(1, day.goal);

// Folding a day twice would spend or earn a freeze twice, and skipping one would hide a miss, so the
// caller must present every date in order (a day with no activity has completed 0).
function checkNext(state: OverallState, date: LocalDate): void {
  if (state.lastClosedDate === null) return;
  const next = addDays(state.lastClosedDate, 1);
  if (date !== next) {
    throw new RangeError(`expected ${next} after ${state.lastClosedDate}, got ${date}`);
  }
}

/** Closes one day: the new state and what the day counted as. */
export function overallFold(
  state: OverallState,
  day: DaySummary,
): { state: OverallState; outcome: DayOutcome } {
  checkDay(day);
  checkNext(state, day.date);
  if (goalMet(day)) {
    const current = state.current + 1;
    const currentStart = state.current === 0 ? day.date : state.currentStart;
    const earned = current % FREEZE_EVERY === 0;
    const longer = current > state.longest;
    return {
      outcome: 'met',
      state: {
        current,
        longest: longer ? current : state.longest,
        freezes: earned ? Math.min(MAX_FREEZES, state.freezes + 1) : state.freezes,
        lastClosedDate: day.date,
        currentStart,
        longestStart: longer ? currentStart : state.longestStart,
        longestEnd: longer ? day.date : state.longestEnd,
      },
    };
  }
  // With no streak to keep alive a freeze would be wasted, so it stays in the bank.
  if (state.freezes > 0 && state.current > 0) {
    return {
      outcome: 'frozen',
      state: { ...state, freezes: state.freezes - 1, lastClosedDate: day.date },
    };
  }
  return {
    outcome: 'missed',
    state: { ...state, current: 0, currentStart: null, lastClosedDate: day.date },
  };
}

/** Closes several consecutive days, e.g. when the rollover job or a read catches up. */
export function overallFoldAll(
  state: OverallState,
  days: Iterable<DaySummary>,
): { state: OverallState; outcomes: { date: LocalDate; outcome: DayOutcome }[] } {
  const outcomes: { date: LocalDate; outcome: DayOutcome }[] = [];
  let s = state;
  for (const day of days) {
    const r = overallFold(s, day);
    s = r.state;
    outcomes.push({ date: day.date, outcome: r.outcome });
  }
  return { state: s, outcomes };
}

/**
 * What to show now. `state` must be closed through yesterday (fold the days the job has not closed
 * yet first); today counts, and may earn a freeze, only once its goal is met.
 */
export function overallView(state: OverallState, today: DaySummary): OverallView {
  checkDay(today);
  checkNext(state, today.date);
  const shown = goalMet(today) ? overallFold(state, today).state : state;
  return {
    current: shown.current,
    longest: shown.longest,
    freezes: shown.freezes,
    today: goalMet(today) ? 'met' : 'pending',
  };
}

export interface DailyInput {
  /** The user's current logical date: the only open day. */
  today: LocalDate;
  /** The daily's first day; earlier dates do not exist for it. */
  createdOn: LocalDate;
  /** ISO weekdays (1 = Monday … 7 = Sunday) on which the daily is due. */
  weekdays: readonly number[];
  checkIns: ReadonlyMap<LocalDate, CheckIn>;
  /** Dates on which the user spent an overall streak freeze. */
  frozenDates: ReadonlySet<LocalDate>;
}

function stateOf(date: LocalDate, weekday: number, input: DailyInput, due: ReadonlySet<number>): DayState {
  // A check-in on a day the daily is not due is neither credit nor debt: only due days make a streak.
  if (!due.has(weekday)) return 'not_due';
  const checkIn = input.checkIns.get(date);
  if (checkIn) return checkIn === 'late' ? 'late' : 'done';
  if (date === input.today) return 'pending';
  return input.frozenDates.has(date) ? 'frozen' : 'missed';
}

// The dates in [from, to] that exist for the daily, with their weekday counted along, not re-derived.
function* days(input: DailyInput, from: LocalDate, to: LocalDate): Generator<[LocalDate, number]> {
  const first = from > input.createdOn ? from : input.createdOn;
  const last = to < input.today ? to : input.today;
  let weekday = isoWeekday(first);
  for (const date of eachDate(first, last)) {
    yield [date, weekday];
    weekday = (weekday % 7) + 1;
  }
}

/** The state of each day in [from, to], omitting days before the daily existed and after today. */
export function dailyHistory(
  input: DailyInput & { from: LocalDate; to: LocalDate },
): { date: LocalDate; state: DayState }[] {
  const due = new Set(input.weekdays);
  const out: { date: LocalDate; state: DayState }[] = [];
  for (const [date, weekday] of days(input, input.from, input.to)) {
    out.push({ date, state: stateOf(date, weekday, input, due) });
  }
  return out;
}

/** Due days done (on time or late) in a row; not-due, frozen and pending days neither add nor break. */
export function dailyStreak(input: DailyInput): { current: number; longest: number } {
  const due = new Set(input.weekdays);
  let current = 0;
  let longest = 0;
  for (const [date, weekday] of days(input, input.createdOn, input.today)) {
    const state = stateOf(date, weekday, input, due);
    if (state === 'done' || state === 'late') longest = Math.max(longest, ++current);
    else if (state === 'missed') current = 0;
  }
  return { current, longest };
}
