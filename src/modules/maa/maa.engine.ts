import {
  type Facts,
  type Library,
  type Line,
  type Locale,
  type Occasion,
  render,
  TONES,
  type Tone,
} from './maa.lines.js';

// Pure decisions: which occasion fits the user's day, which tone to use, which line to show.

export interface MaaState {
  name: string;
  currentStreak: number;
  done: number;
  goal: number;
  /** Hours left in the user's logical day (fractional). */
  hoursLeft: number;
  /** Hour on the user's wall clock (0–23). */
  localHour: number;
  /** Closed days in a row, ending yesterday, on which the goal was not met (0 = yesterday was fine). */
  missesInRow: number;
  /** Today is the user's first day. */
  newUser: boolean;
}

export const STREAK_MILESTONES = new Set([3, 7, 14, 21, 30, 50, 75, 100, 150, 200, 250, 300, 365]);
export const isMilestone = (streak: number) =>
  STREAK_MILESTONES.has(streak) || (streak > 365 && streak % 100 === 0);

/** Few enough hours left that an unmet goal puts the streak at risk. */
export const AT_RISK_HOURS = 4;
/** Misses in a row after which Maa turns to care and softens. */
export const CARE_AFTER_MISSES = 2;

export function chooseOccasion(s: MaaState): Occasion {
  const tasksLeft = Math.max(0, s.goal - s.done);
  if (tasksLeft === 0) return isMilestone(s.currentStreak) ? 'streak_milestone' : 'goal_met';
  if (s.missesInRow >= CARE_AFTER_MISSES) return s.done > 0 ? 'comeback' : 'care';
  if (s.missesInRow === 1 && s.done === 0) return 'missed_day';
  if (s.hoursLeft <= AT_RISK_HOURS) {
    if (s.currentStreak > 0) return 'streak_at_risk';
    if (s.done === 0) return 'low_motivation';
  }
  if (s.done > 0) return 'task_completed';
  return 'day_start';
}

/** Never harsher after misses: one step softer at 2 misses in a row, gentle from 3. */
export function effectiveTone(tone: Tone, missesInRow: number): Tone {
  const steps = missesInRow >= CARE_AFTER_MISSES + 1 ? 2 : missesInRow >= CARE_AFTER_MISSES ? 1 : 0;
  return TONES[Math.max(0, TONES.indexOf(tone) - steps)] ?? 'gentle';
}

/** An asked-for occasion adjusted to the situation: a missed day after repeated misses becomes care. */
export function adjustOccasion(asked: Occasion, s: MaaState): Occasion {
  if (asked === 'missed_day' && s.missesInRow >= CARE_AFTER_MISSES) return 'care';
  return asked;
}

export function factsOf(s: MaaState): Facts {
  return {
    name: s.name,
    streak: s.currentStreak,
    tasksLeft: Math.max(0, s.goal - s.done),
    hoursLeft: Math.max(1, Math.round(s.hoursLeft)),
    goal: s.goal,
    done: s.done,
    days: Math.max(1, s.missesInRow),
  };
}

export interface Picked {
  line: Line;
  tone: Tone;
  text: string;
}

/**
 * A line for the occasion in the user's tone and locale that is not in `recent` (keys shown in the
 * last week). When every line of the tone was shown, softer then other tones of the same occasion
 * are tried; only when all were shown does the least recently shown line repeat.
 */
export function pickLine(
  lib: Library,
  args: {
    occasion: Occasion;
    tone: Tone;
    locale: Locale;
    facts: Facts;
    /** Line key → when it was last shown (ms), for the last 7 days. */
    recent: Map<string, number>;
    random?: () => number;
  },
): Picked {
  const random = args.random ?? Math.random;
  const byTone = lib[args.locale][args.occasion];
  const i = TONES.indexOf(args.tone);
  const order: Tone[] = [args.tone, ...TONES.slice(0, i).reverse(), ...TONES.slice(i + 1)];
  for (const tone of order) {
    const fresh = byTone[tone].filter((l) => !args.recent.has(l.key));
    if (fresh.length > 0) {
      const line = fresh[Math.floor(random() * fresh.length)] ?? (fresh[0] as Line);
      return { line, tone, text: render(line.text, args.facts) };
    }
  }
  const all = byTone[args.tone];
  const line = [...all].sort(
    (a, b) => (args.recent.get(a.key) ?? 0) - (args.recent.get(b.key) ?? 0),
  )[0] as Line;
  return { line, tone: args.tone, text: render(line.text, args.facts) };
}
