import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DayCalendar, type SettingsChange } from '../src/lib/day-history.js';
import { addDays } from '../src/lib/days.js';

const ZONES = [
  'UTC',
  'America/New_York',
  'Europe/London',
  'Australia/Lord_Howe',
  'Asia/Kolkata',
  'Pacific/Kiritimati',
  'Pacific/Pago_Pago',
];

/** Walks dates across every change and checks the calendar is a gapless, ordered sequence of days. */
function checkCalendar(cal: DayCalendar, from: string, days: number) {
  let date = from;
  for (let i = 0; i < days; i++) {
    const start = cal.start(date);
    const end = cal.end(date);
    expect(end.getTime(), `${date} has positive length`).toBeGreaterThan(start.getTime());
    // Contiguity: the next date starts exactly where this one ends (checked as end = start(next)).
    for (const t of [start.getTime(), end.getTime() - 1, Math.floor((start.getTime() + end.getTime()) / 2)]) {
      expect(cal.dateOf(new Date(t)), `instant ${new Date(t).toISOString()} belongs to ${date}`).toBe(date);
    }
    date = addDays(date, 1);
  }
}

describe('day calendar with time-zone changes', () => {
  it('a change applies from the next logical day; no date repeats or vanishes, even across the dateline', () => {
    const pairs: [string, number, string, number][] = [
      ['Pacific/Pago_Pago', 0, 'Pacific/Kiritimati', 0],
      ['Pacific/Kiritimati', 0, 'Pacific/Pago_Pago', 0],
      ['UTC', 0, 'Asia/Kolkata', 4],
      ['America/New_York', 23, 'Europe/London', 0],
      ['Australia/Lord_Howe', 4, 'America/New_York', 23],
    ];
    for (const [a, ha, b, hb] of pairs) {
      const cal = new DayCalendar([
        { effectiveOn: '2020-01-01', timezone: a, dayStartHour: ha },
        { effectiveOn: '2026-03-10', timezone: b, dayStartHour: hb },
      ]);
      checkCalendar(cal, '2026-03-05', 12);
      // The old regime rules up to the change, the new one from the day after it.
      expect(cal.settingsOn('2026-03-09').timezone).toBe(a);
      expect(cal.settingsOn('2026-03-10').timezone).toBe(b);
    }
  });

  it('holds for random histories of changes (property)', () => {
    let checked = 0;
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            gap: fc.integer({ min: 1, max: 40 }),
            timezone: fc.constantFrom(...ZONES),
            dayStartHour: fc.integer({ min: 0, max: 23 }),
          }),
          { minLength: 1, maxLength: 4 },
        ),
        (steps) => {
          let date = '2026-01-01';
          const changes: SettingsChange[] = [];
          for (const step of steps) {
            changes.push({ effectiveOn: date, timezone: step.timezone, dayStartHour: step.dayStartHour });
            date = addDays(date, step.gap);
          }
          const cal = new DayCalendar(changes);
          const span = steps.reduce((n, s) => n + s.gap, 0);
          checkCalendar(cal, '2026-01-01', Math.min(span + 2, 60));
          checked++;
        },
      ),
      { numRuns: 150, seed: 20261127 },
    );
    console.log(`day calendar: ${checked} random histories checked, seed 20261127`);
  });
});
