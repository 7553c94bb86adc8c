import { STREAK_BADGES } from './badges.catalogue.js';

/** What the rules look at, read from the user's history in one place (badges.repo facts). */
export interface Facts {
  tasksDone: number;
  dailyCheckIns: number;
  longestStreak: number;
  /** Dates (YYYY-MM-DD) that paid a perfect day, ascending. */
  perfectDates: string[];
  /** Dates whose goal was met or kept by a freeze, ascending. */
  keptDates: string[];
  groupWins: number;
  groupPodiums: number;
  groupsFinished: number;
  friends: number;
}

const DAY_MS = 86400_000;
const dayNumber = (date: string) => Date.parse(`${date}T00:00:00Z`) / DAY_MS;

/** Whether `dates` (ascending, distinct) hold a run of `n` consecutive days. */
export function hasRun(dates: string[], n: number): boolean {
  let run = 0;
  let previous: number | undefined;
  for (const date of dates) {
    const day = dayNumber(date);
    run = previous !== undefined && day === previous + 1 ? run + 1 : 1;
    if (run >= n) return true;
    previous = day;
  }
  return false;
}

/** Whether, between two kept days, there was a lapse of at least `missed` days. */
export function cameBack(keptDates: string[], missed = 3): boolean {
  for (let i = 1; i < keptDates.length; i++)
    if (dayNumber(keptDates[i] as string) - dayNumber(keptDates[i - 1] as string) > missed) return true;
  return false;
}

/** Every badge code these facts have earned. */
export function earned(f: Facts): string[] {
  const codes: string[] = [];
  if (f.tasksDone >= 1) codes.push('first_task');
  if (f.tasksDone >= 100) codes.push('tasks_100');
  if (f.dailyCheckIns >= 1) codes.push('first_daily');
  for (const n of STREAK_BADGES) if (f.longestStreak >= n) codes.push(`streak_${n}`);
  if (hasRun(f.perfectDates, 7)) codes.push('perfect_week');
  if (cameBack(f.keptDates)) codes.push('comeback');
  if (f.groupWins >= 1) codes.push('first_group_win');
  if (f.groupPodiums >= 1) codes.push('group_podium');
  if (f.groupsFinished >= 10) codes.push('group_ten');
  if (f.friends >= 5) codes.push('five_friends');
  return codes;
}
