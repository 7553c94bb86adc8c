import { addDays, type DaySettings, dayStart, daysBetween, type LocalDate, logicalDate } from './days.js';

/** Day settings in force from a logical date on (the first entry's date is the account's first day). */
export interface SettingsChange extends DaySettings {
  effectiveOn: LocalDate;
}

// When a change moves the day's end earlier (a flight east), the days right after it would be short
// or even empty; each lasts at least this long instead, until the new settings' own days catch up.
const MIN_DAY_MS = 12 * 3600_000;

interface Regime {
  change: SettingsChange;
  /** Start instants (ms) of effectiveOn, effectiveOn+1, … up to (excluding) `natural`. */
  starts: number[];
  /** From this date on, days start where the new settings alone say. */
  natural: LocalDate;
}

/**
 * A user's days when their time zone or day start changed over time. A change applies from the next
 * logical day: the old day runs to its natural end, the next day starts there, and days follow the
 * new settings from then on, each at least 12 hours long while the new settings catch up. So every
 * date happens exactly once, in order, with no gap between days, whatever the change.
 */
export class DayCalendar {
  private readonly changes: SettingsChange[];
  private readonly regimes = new Map<number, Regime>();

  constructor(changes: SettingsChange[]) {
    if (changes.length === 0) throw new Error('a calendar needs at least one settings entry');
    this.changes = [...changes].sort((a, b) => (a.effectiveOn < b.effectiveOn ? -1 : 1));
  }

  /** The first logical day the calendar knows (the account's first day). */
  get firstDay(): LocalDate {
    return (this.changes[0] as SettingsChange).effectiveOn;
  }

  /** The settings in force on a date. */
  settingsOn(date: LocalDate): DaySettings {
    const { timezone, dayStartHour } = this.changes[this.regimeIndexOf(date)] as SettingsChange;
    return { timezone, dayStartHour };
  }

  /** The first instant of a logical date. */
  start(date: LocalDate): Date {
    const index = this.regimeIndexOf(date);
    const change = this.changes[index] as SettingsChange;
    if (index === 0) return dayStart(date, change);
    const regime = this.regime(index);
    if (date >= regime.natural) return dayStart(date, change);
    return new Date(regime.starts[daysBetween(change.effectiveOn, date)] as number);
  }

  end(date: LocalDate): Date {
    return this.start(addDays(date, 1));
  }

  /** The logical date an instant belongs to. */
  dateOf(instant: Date): LocalDate {
    const t = instant.getTime();
    for (let i = this.changes.length - 1; i >= 1; i--) {
      const regime = this.regime(i);
      if (t < (regime.starts[0] as number)) continue;
      const change = regime.change;
      const k = regime.starts.findLastIndex((s) => s <= t);
      const naturalStart = dayStart(regime.natural, change).getTime();
      if (t < naturalStart) return addDays(change.effectiveOn, k);
      return logicalDate(instant, change);
    }
    return logicalDate(instant, this.changes[0] as SettingsChange);
  }

  private regimeIndexOf(date: LocalDate): number {
    let index = 0;
    this.changes.forEach((c, i) => {
      if (c.effectiveOn <= date) index = i;
    });
    return index;
  }

  /** How change `i` takes over: from the end of the day before it, as the earlier regimes define it. */
  private regime(i: number): Regime {
    const cached = this.regimes.get(i);
    if (cached) return cached;
    const change = this.changes[i] as SettingsChange;
    const transition = new DayCalendar(this.changes.slice(0, i))
      .end(addDays(change.effectiveOn, -1))
      .getTime();
    const starts = [transition];
    let date = change.effectiveOn;
    for (;;) {
      const next = addDays(date, 1);
      const natural = dayStart(next, change).getTime();
      const previous = starts[starts.length - 1] as number;
      if (natural >= previous + MIN_DAY_MS) {
        const regime = { change, starts, natural: next };
        this.regimes.set(i, regime);
        return regime;
      }
      starts.push(previous + MIN_DAY_MS);
      date = next;
    }
  }
}
