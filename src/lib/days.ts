// Calendar math for logical days: pure functions of an instant, an IANA time zone and the hour at
// which the user's day starts. No clock, no I/O; everything that counts days uses these.

/** A calendar date, 'YYYY-MM-DD'. */
export type LocalDate = string;

export interface DaySettings {
  timezone: string;
  /** 0–23: the local hour at which a logical day begins (4 = night owls finish "today" at 3 am). */
  dayStartHour: number;
}

const formatters = new Map<string, Intl.DateTimeFormat>();
function formatter(timezone: string): Intl.DateTimeFormat {
  let f = formatters.get(timezone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: timezone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
    });
    formatters.set(timezone, f);
  }
  return f;
}

/** The wall-clock date and hour of an instant in a time zone. */
export function wallClock(instant: Date, timezone: string): { date: LocalDate; hour: number } {
  const parts: Record<string, string> = {};
  for (const p of formatter(timezone).formatToParts(instant)) parts[p.type] = p.value;
  return { date: `${parts.year}-${parts.month}-${parts.day}`, hour: Number(parts.hour) };
}

const MS_PER_DAY = 86_400_000;
const toUtcMs = (date: LocalDate) =>
  Date.UTC(Number(date.slice(0, 4)), Number(date.slice(5, 7)) - 1, Number(date.slice(8, 10)));
const fromUtcMs = (ms: number): LocalDate => new Date(ms).toISOString().slice(0, 10);

export const addDays = (date: LocalDate, n: number): LocalDate => fromUtcMs(toUtcMs(date) + n * MS_PER_DAY);
export const daysBetween = (from: LocalDate, to: LocalDate) =>
  Math.round((toUtcMs(to) - toUtcMs(from)) / MS_PER_DAY);
/** ISO weekday: 1 = Monday … 7 = Sunday. */
export const isoWeekday = (date: LocalDate) => ((new Date(toUtcMs(date)).getUTCDay() + 6) % 7) + 1;

/**
 * The logical date an instant belongs to: the local calendar date, or the one before it while the
 * local hour is still before dayStartHour.
 */
export function logicalDate(instant: Date, s: DaySettings): LocalDate {
  const wall = wallClock(instant, s.timezone);
  return wall.hour < s.dayStartHour ? addDays(wall.date, -1) : wall.date;
}

/**
 * The first instant (to the second) of a logical date. When dayStartHour falls in a daylight-saving
 * gap the day starts when the clock jumps; when it falls in a repeated hour, at its first occurrence.
 */
export function dayStart(date: LocalDate, s: DaySettings): Date {
  // logicalDate is non-decreasing in time, so the first second on or after `date` is found by
  // bisection within ±30 hours of the naive UTC guess (offsets span −12…+14 hours).
  const guess = toUtcMs(date) + s.dayStartHour * 3_600_000;
  let lo = Math.floor((guess - 30 * 3_600_000) / 1000);
  let hi = Math.floor((guess + 30 * 3_600_000) / 1000);
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    if (logicalDate(new Date(mid * 1000), s) >= date) hi = mid;
    else lo = mid + 1;
  }
  return new Date(lo * 1000);
}

/** The instant a logical date ends: the start of the next one. */
export const dayEnd = (date: LocalDate, s: DaySettings) => dayStart(addDays(date, 1), s);
