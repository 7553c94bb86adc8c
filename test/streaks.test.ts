import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { addDays, type LocalDate } from '../src/lib/days.js';
import {
  type CheckIn,
  type DailyInput,
  type DayOutcome,
  type DayState,
  type DaySummary,
  dailyHistory,
  dailyStreak,
  emptyOverallState,
  type OverallState,
  type OverallView,
  overallFold,
  overallFoldAll,
  overallView,
} from '../src/modules/dailies/streaks.js';

// ---------------------------------------------------------------------------------------------------
// The reference: recomputes everything from the whole list of days, re-walking history at every step,
// with no state carried between days except the list of decided outcomes. Slow on purpose.
// ---------------------------------------------------------------------------------------------------

interface NaiveOverall {
  outcomes: DayOutcome[];
  current: number;
  longest: number;
  freezes: number;
  longestStart: LocalDate | null;
  longestEnd: LocalDate | null;
  /** Freezes earned while already holding 2 (lost): only to show the generator reaches the cap. */
  earnedAtCap: number;
}

function naiveOverall(days: DaySummary[]): NaiveOverall {
  const reached = (d: DaySummary) => d.completed >= 1 && d.completed >= d.goal;
  const outcomes: DayOutcome[] = [];
  // Streak as of day i: met days walking back until a missed one. Cached once a day is decided,
  // since earlier outcomes never change.
  const streakAt: number[] = [];
  const walkBack = (i: number) => {
    let n = 0;
    for (let j = i; j >= 0 && outcomes[j] !== 'missed'; j--) if (outcomes[j] === 'met') n++;
    return n;
  };
  // Freezes in hand after days 0..i: replay every earn and spend from the account's first day.
  let earnedAtCap = 0;
  const freezesAfter = (i: number) => {
    let f = 0;
    earnedAtCap = 0;
    for (let j = 0; j <= i; j++) {
      if (outcomes[j] === 'met' && (streakAt[j] as number) % 7 === 0) {
        if (f === 2) earnedAtCap++;
        f = Math.min(2, f + 1);
      }
      if (outcomes[j] === 'frozen') f -= 1;
    }
    return f;
  };
  days.forEach((day, i) => {
    let outcome: DayOutcome = 'missed';
    if (reached(day)) outcome = 'met';
    else if (freezesAfter(i - 1) >= 1 && i > 0 && (streakAt[i - 1] as number) >= 1) outcome = 'frozen';
    outcomes.push(outcome);
    streakAt.push(walkBack(i));
  });
  let longest = 0;
  let longestStart: LocalDate | null = null;
  let longestEnd: LocalDate | null = null;
  days.forEach((day, i) => {
    if (outcomes[i] !== 'met' || (streakAt[i] as number) <= longest) return;
    longest = streakAt[i] as number;
    longestEnd = day.date;
    let first = i;
    for (let j = i; j >= 0 && outcomes[j] !== 'missed'; j--) if (outcomes[j] === 'met') first = j;
    longestStart = (days[first] as DaySummary).date;
  });
  const last = days.length - 1;
  return {
    outcomes,
    current: last < 0 ? 0 : (streakAt[last] as number),
    longest,
    freezes: freezesAfter(last),
    longestStart,
    longestEnd,
    earnedAtCap,
  };
}

/** The overall figures with today: today counts as if closed, but only when met. */
function naiveWithToday(closed: DaySummary[], today: DaySummary) {
  const met = today.completed >= 1 && today.completed >= today.goal;
  const r = naiveOverall(met ? [...closed, today] : closed);
  return { current: r.current, longest: r.longest, freezes: r.freezes, today: met ? 'met' : 'pending' };
}

/** Calendar walk with Date objects, to share nothing with the engine's date helpers. */
function naiveDates(from: LocalDate, to: LocalDate): LocalDate[] {
  const out: LocalDate[] = [];
  const d = new Date(`${from}T12:00:00Z`);
  for (let date = from; date <= to; date = d.toISOString().slice(0, 10)) {
    out.push(date);
    d.setUTCDate(d.getUTCDate() + 1);
  }
  return out;
}
const naiveWeekday = (date: LocalDate) => {
  const js = new Date(`${date}T12:00:00Z`).getUTCDay();
  return js === 0 ? 7 : js;
};

function naiveDailyStates(input: DailyInput): { date: LocalDate; state: DayState }[] {
  return naiveDates(input.createdOn, input.today).map((date) => {
    let state: DayState;
    if (!input.weekdays.includes(naiveWeekday(date))) state = 'not_due';
    else if (input.checkIns.get(date) === 'on_time') state = 'done';
    else if (input.checkIns.get(date) === 'late') state = 'late';
    else if (date === input.today) state = 'pending';
    else if (input.frozenDates.has(date)) state = 'frozen';
    else state = 'missed';
    return { date, state };
  });
}

function naiveDailyStreak(days: { state: DayState }[]): { current: number; longest: number } {
  const states = days.map((d) => d.state);
  const runEndingAt = (i: number) => {
    let n = 0;
    for (let j = i; j >= 0 && states[j] !== 'missed'; j--)
      if (states[j] === 'done' || states[j] === 'late') n++;
    return n;
  };
  let longest = 0;
  for (let i = 0; i < states.length; i++) longest = Math.max(longest, runEndingAt(i));
  return { current: runEndingAt(states.length - 1), longest };
}

// ---------------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------------

interface Engine {
  fold: typeof overallFold;
  view: typeof overallView;
}
const realEngine: Engine = { fold: overallFold, view: overallView };

/** The engine as the rollover job uses it: closed days one by one, then the view for today. */
function runEngine(engine: Engine, closed: DaySummary[], today: DaySummary) {
  let state = emptyOverallState();
  const outcomes: DayOutcome[] = [];
  for (const day of closed) {
    const r = engine.fold(state, day);
    state = r.state;
    outcomes.push(r.outcome);
  }
  return { state, outcomes, view: engine.view(state, today) };
}

const summarize = (closed: DaySummary[], today: DaySummary, engine: Engine) => {
  const got = runEngine(engine, closed, today);
  const { earnedAtCap, ...want } = naiveOverall(closed);
  return {
    earnedAtCap,
    got: {
      outcomes: got.outcomes,
      current: got.state.current,
      longest: got.state.longest,
      freezes: got.state.freezes,
      longestStart: got.state.longestStart,
      longestEnd: got.state.longestEnd,
      view: got.view,
    },
    want: { ...want, view: naiveWithToday(closed, today) as OverallView },
  };
};

const BASE = '2020-01-01';
const day = (date: LocalDate, completed: number, goal = 1): DaySummary => ({ date, completed, goal });
/** Days from BASE on, one per entry: a number is `completed` with goal 1, a pair is [completed, goal]. */
const history = (entries: (number | [number, number])[], start = BASE) =>
  entries.map((e, i) =>
    typeof e === 'number' ? day(addDays(start, i), e) : day(addDays(start, i), e[0], e[1]),
  );
const foldAll = (days: DaySummary[]) => overallFoldAll(emptyOverallState(), days);

const metDay = fc
  .integer({ min: 0, max: 3 })
  .chain((goal) =>
    fc
      .integer({ min: Math.max(1, goal), max: Math.max(1, goal) + 2 })
      .map((completed) => ({ completed, goal })),
  );
const missedDay = fc
  .integer({ min: 0, max: 3 })
  .chain((goal) =>
    fc.integer({ min: 0, max: Math.max(0, goal - 1) }).map((completed) => ({ completed, goal })),
  );
/** Each history has its own miss rate, from rare (long streaks, freezes at the cap) to frequent. */
const overallHistory = fc
  .record({
    start: fc.integer({ min: 0, max: 5000 }),
    missWeight: fc.integer({ min: 1, max: 30 }),
  })
  .chain(({ start, missWeight }) =>
    fc
      .array(fc.oneof({ weight: 60, arbitrary: metDay }, { weight: missWeight, arbitrary: missedDay }), {
        minLength: 1,
        maxLength: 120,
        size: 'max',
      })
      .map((days) => days.map((d, i) => day(addDays(addDays(BASE, start), i), d.completed, d.goal))),
  );

const dailyCase = fc
  .record({
    start: fc.integer({ min: 0, max: 5000 }),
    span: fc.integer({ min: 0, max: 150 }),
    weekdays: fc.subarray([1, 2, 3, 4, 5, 6, 7]),
    // Check-ins and freezes are drawn over a wider window than the daily's life, to test the edges.
    marks: fc.array(
      fc.constantFrom<CheckIn | 'none' | 'frozen'>('on_time', 'on_time', 'late', 'none', 'frozen'),
      {
        minLength: 170,
        maxLength: 170,
      },
    ),
    window: fc.tuple(fc.integer({ min: -10, max: 165 }), fc.integer({ min: -10, max: 165 })),
  })
  .map(({ start, span, weekdays, marks, window }) => {
    const createdOn = addDays(BASE, start);
    const checkIns = new Map<LocalDate, CheckIn>();
    const frozenDates = new Set<LocalDate>();
    naiveDates(addDays(createdOn, -10), addDays(createdOn, marks.length - 11)).forEach((date, i) => {
      const m = marks[i];
      if (m === 'on_time' || m === 'late') checkIns.set(date, m);
      if (m === 'frozen') frozenDates.add(date);
    });
    const [a, b] = window;
    const input: DailyInput = { today: addDays(createdOn, span), createdOn, weekdays, checkIns, frozenDates };
    return { input, from: addDays(createdOn, Math.min(a, b)), to: addDays(createdOn, Math.max(a, b)) };
  });

const tally = {
  histories: 0,
  days: 0,
  mismatches: 0,
  frozenDays: 0,
  capHits: 0,
  splits: 0,
  dailies: 0,
  dailyDays: 0,
  dailyMismatches: 0,
};
afterAll(() => {
  console.log(
    `streaks: ${tally.histories} overall histories, ${tally.days} days, ${tally.mismatches} mismatches ` +
      `(${tally.frozenDays} frozen days, ${tally.capHits} freezes earned at the cap, ${tally.splits} split folds); ` +
      `${tally.dailies} dailies, ${tally.dailyDays} daily days, ${tally.dailyMismatches} mismatches`,
  );
});

// ---------------------------------------------------------------------------------------------------
// Rules, case by case
// ---------------------------------------------------------------------------------------------------

describe('overall streak rules', () => {
  it('earns a freeze when the streak reaches 7 days, and again at 14', () => {
    expect(foldAll(history([1, 1, 1, 1, 1, 1])).state.freezes).toBe(0);
    expect(foldAll(history([1, 1, 1, 1, 1, 1, 1])).state).toMatchObject({ current: 7, freezes: 1 });
    expect(foldAll(history(Array(14).fill(1))).state.freezes).toBe(2);
  });

  it('holds at most 2 freezes', () => {
    expect(foldAll(history(Array(21).fill(1))).state).toMatchObject({ current: 21, freezes: 2 });
    // At the cap, the 21st day's freeze is lost: one miss spends one, the next 7 days earn one back.
    const r = foldAll(history([...Array(21).fill(1), 0, 0, 0]));
    expect(r.outcomes.map((o) => o.outcome).slice(21)).toEqual(['frozen', 'frozen', 'missed']);
    expect(r.state).toMatchObject({ current: 0, freezes: 0, longest: 21 });
  });

  it('spends a freeze on a missed day, and breaks the streak when none is left', () => {
    const r = foldAll(history([1, 1, 1, 1, 1, 1, 1, 0, 0]));
    expect(r.outcomes.slice(7)).toEqual([
      { date: addDays(BASE, 7), outcome: 'frozen' },
      { date: addDays(BASE, 8), outcome: 'missed' },
    ]);
    expect(r.state).toMatchObject({ current: 0, freezes: 0, longest: 7 });
  });

  it('keeps the streak alive through a frozen day without adding to it or to the next freeze', () => {
    const seven = [1, 1, 1, 1, 1, 1, 1];
    const r = foldAll(history([...seven, 0, 1]));
    expect(r.state).toMatchObject({
      current: 8,
      freezes: 0,
      longestStart: BASE,
      longestEnd: addDays(BASE, 8),
    });
    // 7 met + frozen + 6 met = 13 met days: no freeze yet; the 14th met day earns it.
    expect(foldAll(history([...seven, 0, 1, 1, 1, 1, 1, 1])).state).toMatchObject({
      current: 13,
      freezes: 0,
    });
    expect(foldAll(history([...seven, 0, 1, 1, 1, 1, 1, 1, 1])).state).toMatchObject({
      current: 14,
      freezes: 1,
    });
  });

  it('does not spend a freeze when there is no streak to keep', () => {
    const held: OverallState = { ...emptyOverallState(), freezes: 1, lastClosedDate: addDays(BASE, -1) };
    const r = overallFold(held, day(BASE, 0));
    expect(r).toMatchObject({ outcome: 'missed', state: { freezes: 1, current: 0 } });
  });

  it('uses the goal of each day', () => {
    const r = foldAll(
      history([
        [2, 3],
        [1, 1],
        [3, 3],
        [0, 0],
        [5, 2],
      ]),
    );
    expect(r.outcomes.map((o) => o.outcome)).toEqual(['missed', 'met', 'met', 'missed', 'met']);
    expect(r.state).toMatchObject({ current: 1, longest: 2 });
  });

  it('remembers where the longest streak ran, keeping the first on a tie', () => {
    const r = foldAll(history([1, 1, 0, 0, 1, 1, 0, 1, 1, 1]));
    expect(r.state).toMatchObject({
      longest: 3,
      longestStart: addDays(BASE, 7),
      longestEnd: addDays(BASE, 9),
      currentStart: addDays(BASE, 7),
    });
    expect(foldAll(history([1, 1, 0, 1, 1])).state).toMatchObject({
      longest: 2,
      longestStart: BASE,
      longestEnd: addDays(BASE, 1),
    });
  });

  it('never lets today break the streak, and counts it once met', () => {
    const closed = foldAll(history([1, 1, 1])).state;
    const today = addDays(BASE, 3);
    expect(overallView(closed, day(today, 0))).toEqual({
      current: 3,
      longest: 3,
      freezes: 0,
      today: 'pending',
    });
    expect(overallView(closed, day(today, 1))).toEqual({ current: 4, longest: 4, freezes: 0, today: 'met' });
    const six = foldAll(history([1, 1, 1, 1, 1, 1])).state;
    expect(overallView(six, day(addDays(BASE, 6), 1))).toMatchObject({ current: 7, freezes: 1 });
    expect(overallView(emptyOverallState(), day(BASE, 0))).toEqual({
      current: 0,
      longest: 0,
      freezes: 0,
      today: 'pending',
    });
  });

  it('refuses to fold a day twice, out of order or with a gap, and odd counts', () => {
    const s = foldAll(history([1, 1])).state;
    expect(() => overallFold(s, day(addDays(BASE, 1), 1))).toThrow(RangeError);
    expect(() => overallFold(s, day(addDays(BASE, 3), 1))).toThrow(RangeError);
    expect(() => overallView(s, day(addDays(BASE, 3), 1))).toThrow(RangeError);
    expect(() => overallFold(s, day(addDays(BASE, 2), -1))).toThrow(RangeError);
    expect(() => overallFold(s, day(addDays(BASE, 2), 1.5))).toThrow(RangeError);
    expect(() => overallFold(s, day('2020-02-30', 1))).toThrow(RangeError);
  });
});

describe('daily streak rules', () => {
  // 2026-03-02 is a Monday.
  const MONDAY = '2026-03-02';
  const daily = (over: Partial<DailyInput>): DailyInput => ({
    today: addDays(MONDAY, 13),
    createdOn: MONDAY,
    weekdays: [1, 2, 3, 4, 5, 6, 7],
    checkIns: new Map(),
    frozenDates: new Set(),
    ...over,
  });
  const all = (input: DailyInput) =>
    dailyHistory({ ...input, from: addDays(input.createdOn, -30), to: input.today });
  const checkIns = (offsets: number[], kind: CheckIn = 'on_time') =>
    new Map(offsets.map((n) => [addDays(MONDAY, n), kind] as const));

  it('treats days it is not due as neutral', () => {
    // Due Mondays and Wednesdays; done on each of them over two weeks, nothing on other days.
    const input = daily({ weekdays: [1, 3], checkIns: checkIns([0, 2, 7, 9]) });
    expect(dailyStreak(input)).toEqual({ current: 4, longest: 4 });
    expect(
      all(input)
        .slice(0, 4)
        .map((d) => d.state),
    ).toEqual(['done', 'not_due', 'done', 'not_due']);
  });

  it('counts late check-ins as done', () => {
    const input = daily({
      checkIns: new Map([...checkIns([0, 1, 3]), ...checkIns([2], 'late')]),
      today: addDays(MONDAY, 3),
    });
    expect(dailyStreak(input)).toEqual({ current: 4, longest: 4 });
    expect(all(input).map((d) => d.state)).toEqual(['done', 'done', 'late', 'done']);
  });

  it('breaks on a missed due day, survives a frozen one without counting it', () => {
    const missed = daily({ checkIns: checkIns([0, 1, 3, 4]), today: addDays(MONDAY, 4) });
    expect(dailyStreak(missed)).toEqual({ current: 2, longest: 2 });
    const frozen = { ...missed, frozenDates: new Set([addDays(MONDAY, 2)]) };
    expect(dailyStreak(frozen)).toEqual({ current: 4, longest: 4 });
    expect(all(frozen).map((d) => d.state)).toEqual(['done', 'done', 'frozen', 'done', 'done']);
  });

  it('leaves today pending until done, without breaking the streak', () => {
    const input = daily({ checkIns: checkIns([0, 1]), today: addDays(MONDAY, 2) });
    expect(all(input).at(-1)).toEqual({ date: addDays(MONDAY, 2), state: 'pending' });
    expect(dailyStreak(input)).toEqual({ current: 2, longest: 2 });
    // A freeze never applies to the open day.
    expect(dailyStreak({ ...input, frozenDates: new Set([addDays(MONDAY, 2)]) })).toEqual({
      current: 2,
      longest: 2,
    });
  });

  it('omits days before the daily existed and after today, and ignores check-ins there', () => {
    const input = daily({ checkIns: checkIns([-3, -1, 0, 5]), today: addDays(MONDAY, 1) });
    const days = dailyHistory({ ...input, from: addDays(MONDAY, -5), to: addDays(MONDAY, 9) });
    expect(days).toEqual([
      { date: MONDAY, state: 'done' },
      { date: addDays(MONDAY, 1), state: 'pending' },
    ]);
    expect(dailyStreak(input)).toEqual({ current: 1, longest: 1 });
    expect(dailyHistory({ ...input, from: addDays(MONDAY, 5), to: addDays(MONDAY, 3) })).toEqual([]);
    expect(dailyStreak({ ...input, today: addDays(MONDAY, -1) })).toEqual({ current: 0, longest: 0 });
  });

  it('gives a check-in on a day the daily is not due no credit', () => {
    const input = daily({ weekdays: [1], checkIns: checkIns([0, 1, 2, 7]), today: addDays(MONDAY, 7) });
    expect(all(input).map((d) => d.state)).toEqual(['done', ...Array<DayState>(6).fill('not_due'), 'done']);
    expect(dailyStreak(input)).toEqual({ current: 2, longest: 2 });
  });
});

// ---------------------------------------------------------------------------------------------------
// The engine against the reference, over generated histories
// ---------------------------------------------------------------------------------------------------

const overallAgrees = (engine: Engine) =>
  fc.property(overallHistory, (days) => {
    const closed = days.slice(0, -1);
    const today = days.at(-1) as DaySummary;
    const { got, want } = summarize(closed, today, engine);
    return JSON.stringify(got) === JSON.stringify(want);
  });

type DailyCase = { input: DailyInput; from: LocalDate; to: LocalDate };
/** The engine's and the reference's answers for one daily: a window of history, all of it, the streak. */
function dailyAnswers(streak: typeof dailyStreak, historyOf: typeof dailyHistory, c: DailyCase) {
  const { input, from, to } = c;
  const all = naiveDailyStates(input);
  return {
    got: {
      window: historyOf({ ...input, from, to }),
      all: historyOf({ ...input, from: input.createdOn, to: input.today }),
      streak: streak(input),
    },
    want: {
      window: all.filter((d) => d.date >= from && d.date <= to),
      all,
      streak: naiveDailyStreak(all),
    },
  };
}
const dailyAgrees = (streak: typeof dailyStreak, historyOf: typeof dailyHistory) =>
  fc.property(dailyCase, (c) => {
    const { got, want } = dailyAnswers(streak, historyOf, c);
    return JSON.stringify(got) === JSON.stringify(want);
  });

describe('engine equals the reference', () => {
  it('overall: per-day outcomes, current, longest, freezes and today’s view, 2000 histories', () => {
    fc.assert(
      fc.property(overallHistory, (days) => {
        const closed = days.slice(0, -1);
        const today = days.at(-1) as DaySummary;
        const { got, want, earnedAtCap } = summarize(closed, today, realEngine);
        tally.histories++;
        tally.days += days.length;
        tally.frozenDays += want.outcomes.filter((o) => o === 'frozen').length;
        tally.capHits += earnedAtCap;
        if (JSON.stringify(got) !== JSON.stringify(want)) tally.mismatches++;
        expect(got).toEqual(want);
      }),
      { numRuns: 2000 },
    );
    expect(tally.mismatches).toBe(0);
    // The generator must reach the rules that matter, or agreeing would prove little.
    expect(tally.frozenDays).toBeGreaterThan(100);
    expect(tally.capHits).toBeGreaterThan(10);
  });

  it('folding is deterministic, and stopping at any day and resuming from the stored state changes nothing', () => {
    fc.assert(
      fc.property(overallHistory, fc.nat(), (days, cut) => {
        const once = foldAll(days);
        expect(foldAll(days)).toEqual(once);
        const k = cut % (days.length + 1);
        const first = foldAll(days.slice(0, k));
        // As stored in a database column and read back by a later run of the job.
        const stored = JSON.parse(JSON.stringify(first.state)) as OverallState;
        const rest = overallFoldAll(stored, days.slice(k));
        expect(rest.state).toEqual(once.state);
        expect([...first.outcomes, ...rest.outcomes]).toEqual(once.outcomes);
        tally.splits++;
      }),
      { numRuns: 1000 },
    );
  });

  it('dailies: history over any window and the streak, 2000 dailies', () => {
    fc.assert(
      fc.property(dailyCase, (c) => {
        const { got, want } = dailyAnswers(dailyStreak, dailyHistory, c);
        tally.dailies++;
        tally.dailyDays += want.all.length;
        if (JSON.stringify(got) !== JSON.stringify(want)) tally.dailyMismatches++;
        expect(got).toEqual(want);
      }),
      { numRuns: 2000 },
    );
    expect(tally.dailyMismatches).toBe(0);
  });
});

describe('the comparison can fail', () => {
  // Each mutant breaks one rule; the properties above must catch every one of them.
  const isCaught = (engine: Engine) => fc.check(overallAgrees(engine), { numRuns: 300 }).failed;

  it('catches a frozen day that adds to the streak', () => {
    const fold: typeof overallFold = (s, d) => {
      const r = overallFold(s, d);
      return r.outcome === 'frozen' ? { ...r, state: { ...r.state, current: r.state.current + 1 } } : r;
    };
    expect(isCaught({ fold, view: overallView })).toBe(true);
  });

  it('catches a today that breaks the streak while pending', () => {
    const view: typeof overallView = (s, t) => {
      const v = overallView(s, t);
      return v.today === 'pending' ? { ...v, current: 0 } : v;
    };
    expect(isCaught({ fold: overallFold, view })).toBe(true);
  });

  it('catches a miss that spends no freeze', () => {
    const fold: typeof overallFold = (s, d) => {
      const r = overallFold(s, d);
      return r.outcome === 'frozen' ? { ...r, state: { ...r.state, freezes: r.state.freezes + 1 } } : r;
    };
    expect(isCaught({ fold, view: overallView })).toBe(true);
  });

  it('catches late check-ins that do not count, and not-due days that break', () => {
    const noLate: typeof dailyStreak = (input) =>
      dailyStreak({ ...input, checkIns: new Map([...input.checkIns].filter(([, k]) => k !== 'late')) });
    expect(fc.check(dailyAgrees(noLate, dailyHistory), { numRuns: 300 }).failed).toBe(true);
    const everyDay: typeof dailyHistory = (input) =>
      dailyHistory({ ...input, weekdays: [1, 2, 3, 4, 5, 6, 7] });
    expect(fc.check(dailyAgrees(dailyStreak, everyDay), { numRuns: 300 }).failed).toBe(true);
  });
});
