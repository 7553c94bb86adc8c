import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import {
  addDays,
  type DaySettings,
  dayEnd,
  dayStart,
  daysBetween,
  isLocalDate,
  isoWeekday,
  type LocalDate,
  logicalDate,
  wallClock,
} from '../src/lib/days.js';

// The oracle below knows the 2026 offsets of each zone by hand (from the tz database's rules), so it
// shares nothing with the engine, which asks ICU. It is only valid for instants in and around 2026.
const H = 3_600_000;
const M = 60_000;
const utc = (y: number, mo: number, d: number, h = 0, mi = 0) => Date.UTC(y, mo - 1, d, h, mi);

interface Zone {
  /** Offset in minutes before the first transition of 2026. */
  base: number;
  /** [UTC instant, offset in minutes from then on]. */
  transitions: [number, number][];
}
const ZONES: Record<string, Zone> = {
  // 2:00 EST → 3:00 EDT; 2:00 EDT → 1:00 EST.
  'America/New_York': {
    base: -300,
    transitions: [
      [utc(2026, 3, 8, 7), -240],
      [utc(2026, 11, 1, 6), -300],
    ],
  },
  // 1:00 GMT → 2:00 BST; 2:00 BST → 1:00 GMT.
  'Europe/London': {
    base: 0,
    transitions: [
      [utc(2026, 3, 29, 1), 60],
      [utc(2026, 10, 25, 1), 0],
    ],
  },
  // Half-hour DST: 2:00 LHDT → 1:30 LHST on April 5th; 2:00 LHST → 2:30 LHDT on October 4th.
  'Australia/Lord_Howe': {
    base: 660,
    transitions: [
      [utc(2026, 4, 4, 15), 630],
      [utc(2026, 10, 3, 15, 30), 660],
    ],
  },
  // Falls back across 3:00 (3:45 → 2:45) and springs forward 2:45 → 3:45.
  'Pacific/Chatham': {
    base: 825,
    transitions: [
      [utc(2026, 4, 4, 14), 765],
      [utc(2026, 9, 26, 14), 825],
    ],
  },
  // Two-hour DST: 1:00 → 3:00 and back 3:00 → 1:00, so the clock falls back across 1:00 and 2:00.
  'Antarctica/Troll': {
    base: 0,
    transitions: [
      [utc(2026, 3, 29, 1), 120],
      [utc(2026, 10, 25, 1), 0],
    ],
  },
  'Asia/Kolkata': { base: 330, transitions: [] },
  'Pacific/Kiritimati': { base: 840, transitions: [] },
  'Pacific/Pago_Pago': { base: -660, transitions: [] },
};
const ZONE_NAMES = Object.keys(ZONES);

function offsetMin(zone: string, ms: number): number {
  const z = ZONES[zone] as Zone;
  let offset = z.base;
  for (const [at, after] of z.transitions) if (ms >= at) offset = after;
  return offset;
}
const isoDate = (ms: number): LocalDate => new Date(ms).toISOString().slice(0, 10);
const dateMs = (date: LocalDate) => Date.parse(`${date}T00:00:00Z`);

/** Every instant at which the wall clock reads `localMs` (0 in a gap, 2 in a repeated hour). */
function instantsOfLocal(zone: string, localMs: number): number[] {
  const z = ZONES[zone] as Zone;
  const offsets = new Set([z.base, ...z.transitions.map(([, o]) => o)]);
  const found = [...offsets]
    .map((o) => localMs - o * M)
    .filter((t) => offsetMin(zone, t) * M === localMs - t);
  return [...new Set(found)].sort((a, b) => a - b);
}

/**
 * Shifting the wall clock back by the start hour turns "previous date before H" into a plain date;
 * a date that has begun stays begun, so after a fall-back the date reached just before it still holds.
 */
function oracleLogical(zone: string, hour: number, ms: number): LocalDate {
  const byClock = (t: number) => isoDate(t + offsetMin(zone, t) * M - hour * H);
  let date = byClock(ms);
  for (const [at] of (ZONES[zone] as Zone).transitions) {
    if (at <= ms && byClock(at - 1) > date) date = byClock(at - 1);
  }
  return date;
}

function oracleDayStart(zone: string, hour: number, date: LocalDate): number {
  const local = dateMs(date) + hour * H;
  const at = instantsOfLocal(zone, local);
  if (at.length > 0) return at[0] as number;
  // In a gap the day starts at the jump over it.
  const z = ZONES[zone] as Zone;
  let before = z.base;
  for (const [t, after] of z.transitions) {
    if (t + before * M <= local && local < t + after * M) return t;
    before = after;
  }
  throw new Error(`no start for ${zone} ${date} ${hour}`);
}

const settings = (timezone: string, dayStartHour: number): DaySettings => ({ timezone, dayStartHour });
const iso = (d: Date) => d.toISOString();

/** Logical dates whose length is not 24 h with dayStartHour 0; with 4 or 23 it is the date before. */
const TRANSITION_DAYS: { zone: string; date: LocalDate; hours: number }[] = [
  { zone: 'America/New_York', date: '2026-03-08', hours: 23 },
  { zone: 'America/New_York', date: '2026-11-01', hours: 25 },
  { zone: 'Europe/London', date: '2026-03-29', hours: 23 },
  { zone: 'Europe/London', date: '2026-10-25', hours: 25 },
  { zone: 'Australia/Lord_Howe', date: '2026-04-05', hours: 24.5 },
  { zone: 'Australia/Lord_Howe', date: '2026-10-04', hours: 23.5 },
  { zone: 'Pacific/Chatham', date: '2026-04-05', hours: 25 },
  { zone: 'Pacific/Chatham', date: '2026-09-27', hours: 23 },
  { zone: 'Antarctica/Troll', date: '2026-03-29', hours: 22 },
  { zone: 'Antarctica/Troll', date: '2026-10-25', hours: 26 },
];
function expectedHours(zone: string, hour: 0 | 4 | 23, date: LocalDate): number {
  for (const t of TRANSITION_DAYS) {
    if (t.zone === zone && date === (hour === 0 ? t.date : addDays(t.date, -1))) return t.hours;
  }
  return 24;
}

const MAIN_HOURS = [0, 4, 23] as const;
const EDGE_HOURS = [0, 1, 2, 3, 4, 23];
/** The transition dates and their neighbours, plus an ordinary winter and summer date everywhere. */
function datesFor(zone: string): LocalDate[] {
  const dates = new Set(['2026-01-15', '2026-07-15']);
  for (const t of TRANSITION_DAYS) {
    if (t.zone === zone) for (const n of [-2, -1, 0, 1]) dates.add(addDays(t.date, n));
  }
  return [...dates].sort();
}

const counts = { edgeInstants: 0, boundaries: 0, sampled: 0, properties: 0 };
afterAll(() => {
  console.log(
    `days: ${counts.edgeInstants} edge completions, ${counts.boundaries} day boundaries, ` +
      `${counts.sampled} sampled instants, ${counts.properties} property runs checked`,
  );
});

describe('the oracle', () => {
  it('agrees with the engine on the wall clock of every 2026 transition, before and after', () => {
    for (const [zone, z] of Object.entries(ZONES)) {
      for (const [at, after] of z.transitions) {
        const before = offsetMin(zone, at - 1);
        expect(wallClock(new Date(at - 1), zone)).toEqual({
          date: isoDate(at - 1 + before * M),
          hour: new Date(at - 1 + before * M).getUTCHours(),
        });
        expect(wallClock(new Date(at), zone)).toEqual({
          date: isoDate(at + after * M),
          hour: new Date(at + after * M).getUTCHours(),
        });
      }
    }
  });
});

describe('dayStart in gaps and repeated hours', () => {
  it.each([
    // Skipped 2:00–2:59 local: the day starts when the clock jumps to 3:00 EDT.
    ['America/New_York', 2, '2026-03-08', '2026-03-08T07:00:00.000Z'],
    // 1:00–1:59 happens twice: the first one, in EDT.
    ['America/New_York', 1, '2026-11-01', '2026-11-01T05:00:00.000Z'],
    ['America/New_York', 2, '2026-11-01', '2026-11-01T07:00:00.000Z'],
    ['America/New_York', 0, '2026-03-08', '2026-03-08T05:00:00.000Z'],
    ['America/New_York', 4, '2026-03-08', '2026-03-08T08:00:00.000Z'],
    ['Europe/London', 1, '2026-03-29', '2026-03-29T01:00:00.000Z'],
    ['Europe/London', 1, '2026-10-25', '2026-10-25T00:00:00.000Z'],
    ['Europe/London', 2, '2026-10-25', '2026-10-25T02:00:00.000Z'],
    // Only 2:00–2:29 is skipped: the day starts at the jump, 2:00 LHST.
    ['Australia/Lord_Howe', 2, '2026-10-04', '2026-10-03T15:30:00.000Z'],
    // 1:30–1:59 is repeated but 1:00 is not.
    ['Australia/Lord_Howe', 1, '2026-04-05', '2026-04-04T14:00:00.000Z'],
    ['Australia/Lord_Howe', 2, '2026-04-05', '2026-04-04T15:30:00.000Z'],
    // The clock falls back across the start hour: the day starts at the first 3:00 (CHADT).
    ['Pacific/Chatham', 3, '2026-04-05', '2026-04-04T13:15:00.000Z'],
    ['Pacific/Chatham', 3, '2026-09-27', '2026-09-26T14:00:00.000Z'],
    ['Antarctica/Troll', 1, '2026-10-25', '2026-10-24T23:00:00.000Z'],
    ['Antarctica/Troll', 2, '2026-10-25', '2026-10-25T00:00:00.000Z'],
    ['Antarctica/Troll', 2, '2026-03-29', '2026-03-29T01:00:00.000Z'],
    ['Asia/Kolkata', 4, '2026-06-15', '2026-06-14T22:30:00.000Z'],
    ['Pacific/Kiritimati', 0, '2026-01-01', '2025-12-31T10:00:00.000Z'],
    ['Pacific/Pago_Pago', 23, '2026-01-01', '2026-01-02T10:00:00.000Z'],
  ] as const)('%s, day start %i, %s → %s', (zone, hour, date, expected) => {
    const s = settings(zone, hour);
    expect(iso(dayStart(date, s))).toBe(expected);
    expect(oracleDayStart(zone, hour, date)).toBe(Date.parse(expected));
    expect(logicalDate(new Date(expected), s)).toBe(date);
    expect(logicalDate(new Date(Date.parse(expected) - 1), s)).toBe(addDays(date, -1));
  });
});

describe('a fall-back across the start hour does not bring the previous date back', () => {
  it.each([
    // Chatham, start 3:00: 3:45 CHADT falls back to 2:45 CHAST at 14:00Z.
    ['Pacific/Chatham', 3, '2026-04-04T13:14:59.999Z', '2026-04-04'],
    ['Pacific/Chatham', 3, '2026-04-04T13:15:00.000Z', '2026-04-05'],
    ['Pacific/Chatham', 3, '2026-04-04T14:00:00.000Z', '2026-04-05'],
    ['Pacific/Chatham', 3, '2026-04-04T14:14:59.999Z', '2026-04-05'],
    ['Pacific/Chatham', 3, '2026-04-04T14:15:00.000Z', '2026-04-05'],
    // Troll, start 2:00: 3:00 +02 falls back to 1:00 +00 at 01:00Z.
    ['Antarctica/Troll', 2, '2026-10-24T23:59:59.999Z', '2026-10-24'],
    ['Antarctica/Troll', 2, '2026-10-25T00:00:00.000Z', '2026-10-25'],
    ['Antarctica/Troll', 2, '2026-10-25T01:00:00.000Z', '2026-10-25'],
    ['Antarctica/Troll', 2, '2026-10-25T01:59:59.999Z', '2026-10-25'],
    ['Antarctica/Troll', 1, '2026-10-25T01:00:00.000Z', '2026-10-25'],
  ] as const)('%s, day start %i: %s is %s', (zone, hour, instant, date) => {
    expect(logicalDate(new Date(instant), settings(zone, hour))).toBe(date);
    expect(oracleLogical(zone, hour, Date.parse(instant))).toBe(date);
  });

  // Found by scanning every IANA zone for 2020–2035: the only ones whose clock fell back across a
  // whole hour, so the only ones where the wall clock alone would bring a date back.
  const FALLING_ACROSS = ['Pacific/Chatham', 'Antarctica/Troll', 'Antarctica/Casey', 'Antarctica/Vostok'];
  it('holds at every such fall-back from 2020 to 2035, for every start hour', () => {
    const formats = new Map<string, Intl.DateTimeFormat>();
    const offset = (zone: string, ms: number) => {
      let f = formats.get(zone);
      if (!f) {
        f = new Intl.DateTimeFormat('en-US', {
          timeZone: zone,
          hourCycle: 'h23',
          dateStyle: 'short',
          timeStyle: 'short',
        });
        formats.set(zone, f);
      }
      const p = Object.fromEntries(f.formatToParts(ms).map((x) => [x.type, Number(x.value)]));
      const [y, mo, d, h, mi] = [p.year, p.month, p.day, p.hour, p.minute].map(Number) as number[];
      return Date.UTC(2000 + (y as number), (mo as number) - 1, d, h, mi) - (ms - (ms % M));
    };
    let fallBacks = 0;
    const failures: string[] = [];
    for (const zone of FALLING_ACROSS) {
      let before = offset(zone, utc(2020, 1, 1));
      for (let t = utc(2020, 1, 1); t < utc(2036, 1, 1); t += 12 * H) {
        const after = offset(zone, t + 12 * H);
        const fellBack = after < before;
        before = after;
        if (!fellBack) continue;
        fallBacks++;
        for (let hour = 0; hour < 24; hour++) {
          const s = settings(zone, hour);
          const bounds = new Map<LocalDate, [number, number]>();
          let prev: LocalDate | null = null;
          for (let u = t - 4 * H; u <= t + 16 * H; u += 30 * M) {
            const d = logicalDate(new Date(u), s);
            let b = bounds.get(d);
            if (!b) {
              b = [dayStart(d, s).getTime(), dayEnd(d, s).getTime()];
              bounds.set(d, b);
            }
            const step = prev === null ? 0 : daysBetween(prev, d);
            if (step < 0 || step > 1 || u < b[0] || u >= b[1]) {
              failures.push(`${zone} H=${hour} ${iso(new Date(u))} → ${d} after ${prev}`);
            }
            prev = d;
            counts.sampled++;
          }
        }
      }
    }
    expect(failures.slice(0, 5)).toEqual([]);
    expect(fallBacks).toBeGreaterThanOrEqual(35);
  });
});

describe('completions at the edges of a day', () => {
  // By hand: 23:59:59.999 on D is always D; midnight is D+1 only when days start at midnight;
  // a millisecond before the start hour is the day before, the start hour itself is the day.
  const edges = (hour: number): [string, (d: LocalDate) => number, (d: LocalDate) => LocalDate][] => [
    ['23:59:59.999', (d) => dateMs(d) + 24 * H - 1, (d) => d],
    ['00:00:00.000 next', (d) => dateMs(d) + 24 * H, (d) => (hour === 0 ? addDays(d, 1) : d)],
    [`${hour}:00 − 1 ms`, (d) => dateMs(d) + hour * H - 1, (d) => addDays(d, -1)],
    [`${hour}:00`, (d) => dateMs(d) + hour * H, (d) => d],
  ];
  for (const zone of ZONE_NAMES) {
    it(`${zone}: every edge instant maps to the date the clock says`, () => {
      for (const hour of EDGE_HOURS) {
        const s = settings(zone, hour);
        for (const date of datesFor(zone)) {
          for (const [label, local, expected] of edges(hour)) {
            const instants = instantsOfLocal(zone, local(date));
            instants.forEach((t, i) => {
              const got = logicalDate(new Date(t), s);
              const where = `${zone} H=${hour} ${date} ${label} (${iso(new Date(t))})`;
              // The second pass through a repeated time may belong to a date that already began.
              if (i === 0) expect(got, where).toBe(expected(date));
              expect(got, where).toBe(oracleLogical(zone, hour, t));
              counts.edgeInstants++;
            });
          }
        }
      }
    });
  }

  it('checks both occurrences of a repeated local time, and none in a gap', () => {
    expect(instantsOfLocal('Europe/London', utc(2026, 10, 25, 1, 30))).toEqual([
      utc(2026, 10, 25, 0, 30),
      utc(2026, 10, 25, 1, 30),
    ]);
    expect(instantsOfLocal('America/New_York', utc(2026, 3, 8, 2, 30))).toEqual([]);
    expect(instantsOfLocal('Australia/Lord_Howe', utc(2026, 10, 4, 2, 15))).toEqual([]);
    expect(instantsOfLocal('Australia/Lord_Howe', utc(2026, 4, 5, 1, 45))).toHaveLength(2);
    const londonRepeat = settings('Europe/London', 1);
    for (const t of instantsOfLocal('Europe/London', utc(2026, 10, 25, 1, 0))) {
      expect(logicalDate(new Date(t), londonRepeat)).toBe('2026-10-25');
    }
  });
});

describe('day boundaries', () => {
  for (const zone of ZONE_NAMES) {
    it(`${zone}: starts match the oracle, days are contiguous, lengths follow DST`, () => {
      for (const hour of MAIN_HOURS) {
        const s = settings(zone, hour);
        for (const date of datesFor(zone)) {
          const start = dayStart(date, s).getTime();
          const end = dayEnd(date, s).getTime();
          const where = `${zone} H=${hour} ${date}`;
          expect(start, where).toBe(oracleDayStart(zone, hour, date));
          expect(end, where).toBe(dayStart(addDays(date, 1), s).getTime());
          expect((end - start) / H, where).toBe(expectedHours(zone, hour, date));
          expect(logicalDate(new Date(start), s), where).toBe(date);
          expect(logicalDate(new Date(start - 1), s), where).toBe(addDays(date, -1));
          expect(logicalDate(new Date(end - 1), s), where).toBe(date);
          counts.boundaries++;
        }
      }
    });
  }
});

describe('every instant of 2026 belongs to exactly one day', () => {
  // Odd stride so samples land on every minute and second over the year; denser near transitions.
  const STRIDE = 157 * M + 13_317;
  for (const zone of ZONE_NAMES) {
    it(zone, () => {
      const from = utc(2026, 1, 1);
      const to = utc(2027, 1, 1);
      const near = ZONES[zone]?.transitions.map(([at]) => at) ?? [];
      const samples: number[] = [];
      for (let t = from; t < to; t += STRIDE) samples.push(t);
      for (const at of near) for (let t = at - 4 * H; t <= at + 4 * H; t += 3 * M + 1) samples.push(t);
      samples.sort((a, b) => a - b);

      for (const hour of MAIN_HOURS) {
        const s = settings(zone, hour);
        // Every date's bounds once: each day ends where the next begins, none is empty or repeated.
        const starts = new Map<LocalDate, number>();
        let date = addDays(isoDate(from), -2);
        let prevStart = -Infinity;
        while (prevStart < to + 2 * 24 * H) {
          const start = dayStart(date, s).getTime();
          expect(start, `${zone} H=${hour} ${date}`).toBeGreaterThan(prevStart);
          // Troll's two-hour DST makes a 22-hour day.
          expect((start - prevStart) / H === Infinity || (start - prevStart) / H >= 22).toBe(true);
          starts.set(date, start);
          prevStart = start;
          date = addDays(date, 1);
        }
        let prev: LocalDate | null = null;
        const failures: string[] = [];
        for (const t of samples) {
          const d = logicalDate(new Date(t), s);
          const start = starts.get(d) as number;
          const end = starts.get(addDays(d, 1)) as number;
          // Samples are < 24 h apart, so dates must advance by 0 or 1: no day twice, none skipped.
          const step = prev === null ? 0 : daysBetween(prev, d);
          if (!(start <= t && t < end) || d !== oracleLogical(zone, hour, t) || step < 0 || step > 1) {
            failures.push(`H=${hour} ${iso(new Date(t))} → ${d}, [${start}, ${end}), step ${step}`);
          }
          prev = d;
          counts.sampled++;
        }
        expect(failures.slice(0, 5)).toEqual([]);
      }
    });
  }
});

describe('properties, 2020–2035', () => {
  const zones = [...ZONE_NAMES, 'UTC'];
  const instant = fc.integer({ min: utc(2020, 1, 1), max: utc(2036, 1, 1) - 1 });

  it('an instant lies in [dayStart, dayEnd) of its logical date, which starts to the second', () => {
    fc.assert(
      fc.property(instant, fc.constantFrom(...zones), fc.integer({ min: 0, max: 23 }), (t, zone, hour) => {
        const s = settings(zone, hour);
        const d = logicalDate(new Date(t), s);
        const start = dayStart(d, s).getTime();
        const end = dayEnd(d, s).getTime();
        counts.properties++;
        return (
          start <= t &&
          t < end &&
          start % 1000 === 0 &&
          logicalDate(new Date(start - 1), s) === addDays(d, -1) &&
          end - start >= 22 * H &&
          end - start <= 26 * H
        );
      }),
      { numRuns: 5000 },
    );
  });

  it('date arithmetic agrees with itself', () => {
    const date = fc
      .integer({ min: utc(2020, 1, 1), max: utc(2035, 12, 31) })
      .map((ms) => isoDate(ms - (ms % (24 * H))));
    fc.assert(
      fc.property(date, fc.integer({ min: -5000, max: 5000 }), (d, n) => {
        counts.properties++;
        const moved = addDays(d, n);
        return (
          daysBetween(d, moved) === n &&
          addDays(moved, -n) === d &&
          isoWeekday(moved) === ((((isoWeekday(d) - 1 + n) % 7) + 7) % 7) + 1
        );
      }),
      { numRuns: 2000 },
    );
  });
});

describe('calendar details', () => {
  it('knows weekdays, month ends and leap years', () => {
    expect(isoWeekday('2026-01-01')).toBe(4);
    expect(isoWeekday('2026-03-08')).toBe(7);
    expect(isoWeekday('2026-03-09')).toBe(1);
    expect(addDays('2028-02-28', 1)).toBe('2028-02-29');
    expect(addDays('2026-02-28', 1)).toBe('2026-03-01');
    expect(addDays('2026-12-31', 1)).toBe('2027-01-01');
    expect(daysBetween('2026-01-01', '2027-01-01')).toBe(365);
    expect(daysBetween('2028-01-01', '2029-01-01')).toBe(366);
  });

  it('refuses what is not a date or a start hour instead of computing with it', () => {
    expect(isLocalDate('2026-02-28')).toBe(true);
    for (const bad of ['2026-02-30', '2026-13-01', '2026-1-01', 'yesterday', '', '2026-03-08T00:00']) {
      expect(isLocalDate(bad)).toBe(false);
      expect(() => addDays(bad, 1)).toThrow(RangeError);
      expect(() => dayStart(bad, settings('UTC', 0))).toThrow(RangeError);
    }
    for (const hour of [-1, 24, 4.5, Number.NaN]) {
      expect(() => dayStart('2026-01-01', settings('UTC', hour))).toThrow(RangeError);
      expect(() => logicalDate(new Date(0), settings('UTC', hour))).toThrow(RangeError);
    }
    expect(() => logicalDate(new Date(0), settings('Mars/Olympus_Mons', 0))).toThrow(RangeError);
  });

  it('finds a day start in well under half a millisecond', () => {
    const zones = [...ZONE_NAMES, 'UTC'];
    const started = performance.now();
    let calls = 0;
    for (let i = 0; i < 3000; i++) {
      const zone = zones[i % zones.length] as string;
      dayStart(addDays('2026-01-01', i % 365), settings(zone, i % 24));
      calls++;
    }
    const perCall = (performance.now() - started) / calls;
    console.log(`days: dayStart ${(perCall * 1000).toFixed(1)} µs per call over ${calls} calls`);
    expect(perCall).toBeLessThan(0.5);
  });
});
