/** Every badge there is. Codes are stored: never rename one; retire it instead. */
export interface BadgeDef {
  code: string;
  name: string;
  description: string;
  /** A key into the clients' icon set. */
  icon: string;
}

export const STREAK_BADGES = [5, 10, 15, 20, 25, 30, 60, 180, 365] as const;

export const CATALOGUE: BadgeDef[] = [
  { code: 'first_task', name: 'First step', description: 'Finished your first task.', icon: 'footprint' },
  { code: 'tasks_100', name: 'Centurion', description: 'Finished 100 tasks.', icon: 'hundred' },
  {
    code: 'first_daily',
    name: 'Ritual begun',
    description: 'Checked in a daily for the first time.',
    icon: 'sunrise',
  },
  ...STREAK_BADGES.map((n) => ({
    code: `streak_${n}`,
    name: `${n}-day streak`,
    description: `Met your daily goal ${n} days in a row.`,
    icon: `flame_${n}`,
  })),
  {
    code: 'perfect_week',
    name: 'Perfect week',
    description: 'Seven perfect days in a row: every daily done.',
    icon: 'star_week',
  },
  {
    code: 'comeback',
    name: 'Comeback',
    description: 'Met your goal again after three or more days away. Maa is proud.',
    icon: 'phoenix',
  },
  {
    code: 'first_group_win',
    name: 'First win',
    description: 'Finished first in a group task of two or more.',
    icon: 'trophy',
  },
  {
    code: 'group_podium',
    name: 'Podium',
    description: 'Finished in the top three of a group task of four or more.',
    icon: 'podium',
  },
  { code: 'group_ten', name: 'Team player', description: 'Finished ten group tasks.', icon: 'team' },
  { code: 'five_friends', name: 'Circle of five', description: 'Made five friends.', icon: 'circle' },
];

export const BY_CODE = new Map(CATALOGUE.map((b) => [b.code, b]));
