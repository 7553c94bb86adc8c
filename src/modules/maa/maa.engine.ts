import {
  type Facts,
  fits,
  isOptional,
  type Library,
  type Line,
  type Locale,
  type Occasion,
  placeholdersIn,
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
  /** Hour on the user's wall clock (0–23): the morning greets, the afternoon nudges. */
  localHour: number;
  /** Closed days in a row, ending yesterday, on which the goal was not met (0 = yesterday was fine). */
  missesInRow: number;
  /** Today is the user's first day: Maa welcomes them before anything else. */
  newUser: boolean;
}

export const STREAK_MILESTONES = new Set([3, 7, 14, 21, 30, 50, 75, 100, 150, 200, 250, 300, 365]);
export const isMilestone = (streak: number) =>
  STREAK_MILESTONES.has(streak) || (streak > 365 && streak % 100 === 0);

/** Few enough hours left that an unmet goal puts the streak at risk. */
export const AT_RISK_HOURS = 4;
/** Misses in a row after which Maa turns to care and softens. */
export const CARE_AFTER_MISSES = 2;
/** day_start lines greet the morning; from this local hour an untouched day gets a nudge instead. */
export const MORNING_ENDS_HOUR = 12;

/** Working again today after repeated misses: the lapse ends with this day's first completion. */
export const isComeback = (s: MaaState) => s.missesInRow >= CARE_AFTER_MISSES && s.done > 0;

export function chooseOccasion(s: MaaState): Occasion {
  const tasksLeft = Math.max(0, s.goal - s.done);
  if (tasksLeft === 0) return isMilestone(s.currentStreak) ? 'streak_milestone' : 'goal_met';
  if (isComeback(s)) return 'comeback';
  if (s.missesInRow >= CARE_AFTER_MISSES) return 'care';
  if (s.missesInRow === 1 && s.done === 0) return 'missed_day';
  // Someone who joined today is welcomed at any hour, never asked whether they feel low.
  if (s.newUser && s.done === 0) return 'welcome';
  if (s.hoursLeft <= AT_RISK_HOURS) {
    if (s.currentStreak > 0) return 'streak_at_risk';
    if (s.done === 0) return 'low_motivation';
  }
  if (s.done > 0) return 'task_completed';
  // No "good morning" in the afternoon: a day still untouched by then gets a gentle push to start.
  return s.localHour < MORNING_ENDS_HOUR ? 'day_start' : 'low_motivation';
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

/** Uses a fact only this moment knows (a podium finish's rank): the more personal line. */
const namesOptional = (line: Line, facts: Facts) =>
  placeholdersIn(line.text).some((p) => isOptional(p) && facts[p] !== undefined);

/**
 * A line for the occasion in the user's tone and locale that is not in `recent` (keys shown in the
 * last week) and whose placeholders the facts can fill; lines naming a fact only this moment has
 * (the rank) come first. When every line of the tone was shown, softer then other tones of the same
 * occasion are tried; only when all were shown does the least recently shown line repeat.
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
  const usable = (tone: Tone) => byTone[tone].filter((l) => fits(l.text, args.facts));
  for (const tone of order) {
    const fresh = usable(tone).filter((l) => !args.recent.has(l.key));
    const personal = fresh.filter((l) => namesOptional(l, args.facts));
    const pool = personal.length > 0 ? personal : fresh;
    if (pool.length > 0) {
      const line = pool[Math.floor(random() * pool.length)] ?? (pool[0] as Line);
      return { line, tone, text: render(line.text, args.facts) };
    }
  }
  const all = usable(args.tone);
  const line = [...all].sort(
    (a, b) => (args.recent.get(a.key) ?? 0) - (args.recent.get(b.key) ?? 0),
  )[0] as Line;
  return { line, tone: args.tone, text: render(line.text, args.facts) };
}
