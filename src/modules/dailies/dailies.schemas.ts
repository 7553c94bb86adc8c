import { type Static, Type as T } from '@sinclair/typebox';
import { Description, Title } from '../../http/schemas.js';

const strict = { additionalProperties: false } as const;
const Priority = T.Union([T.Literal('low'), T.Literal('medium'), T.Literal('high')]);
export const LocalDateString = T.String({
  format: 'date',
  pattern: '^\\d{4}-\\d{2}-\\d{2}$',
  description: 'A logical day, YYYY-MM-DD.',
});
const Weekdays = T.Array(T.Integer({ minimum: 1, maximum: 7 }), {
  minItems: 1,
  maxItems: 7,
  uniqueItems: true,
  description: 'ISO weekdays the daily is due on: 1 = Monday … 7 = Sunday.',
});
const Streak = T.Object({ current: T.Integer(), longest: T.Integer() }, strict);

export const Daily = T.Object(
  {
    id: T.String({ format: 'uuid' }),
    title: T.String(),
    description: T.String(),
    priority: Priority,
    weekdays: T.Array(T.Integer()),
    createdOn: T.String(),
    createdAt: T.String({ format: 'date-time' }),
    updatedAt: T.String({ format: 'date-time' }),
    dueToday: T.Boolean(),
    doneToday: T.Boolean(),
    streak: Streak,
  },
  strict,
);
export type Daily = Static<typeof Daily>;
export const DailyList = T.Object({ items: T.Array(Daily), nextCursor: T.Null() }, strict);

export const CreateDailyBody = T.Object(
  {
    title: Title,
    description: T.Optional(Description),
    priority: T.Optional(Priority),
    weekdays: T.Optional(Weekdays),
  },
  strict,
);
export type CreateDaily = Static<typeof CreateDailyBody>;
export const UpdateDailyBody = T.Object(
  {
    title: T.Optional(Title),
    description: T.Optional(Description),
    priority: T.Optional(Priority),
    weekdays: T.Optional(Weekdays),
  },
  { ...strict, minProperties: 1 },
);
export type UpdateDaily = Static<typeof UpdateDailyBody>;

export const DailyParams = T.Object({ id: T.String({ format: 'uuid' }) }, strict);
export const CheckInParams = T.Object({ id: T.String({ format: 'uuid' }), date: LocalDateString }, strict);
export const CheckInBody = T.Object(
  {
    date: T.Optional({
      ...LocalDateString,
      description: 'Today by default; yesterday within the grace window.',
    }),
  },
  strict,
);
export const CheckIn = T.Object(
  {
    dailyId: T.String({ format: 'uuid' }),
    date: T.String(),
    late: T.Boolean(),
    createdAt: T.String({ format: 'date-time' }),
  },
  strict,
);
export type CheckIn = Static<typeof CheckIn>;

export const HistoryQuery = T.Object(
  { from: T.Optional(LocalDateString), to: T.Optional(LocalDateString) },
  strict,
);
export const History = T.Object(
  {
    days: T.Array(
      T.Object(
        {
          date: T.String(),
          state: T.Union(['done', 'late', 'missed', 'not_due', 'frozen', 'pending'].map((s) => T.Literal(s))),
        },
        strict,
      ),
    ),
  },
  strict,
);

export const Stats = T.Object(
  {
    currentStreak: T.Integer(),
    longestStreak: T.Integer(),
    streakFreezes: T.Integer(),
    score: T.Integer(),
    today: T.Object({ date: T.String(), done: T.Integer(), goal: T.Integer() }, strict),
    weeklyProgress: T.Array(T.Object({ date: T.String(), completed: T.Integer() }, strict), {
      minItems: 7,
      maxItems: 7,
    }),
    totals: T.Object(
      {
        tasksCompleted: T.Integer(),
        dailyCheckIns: T.Integer(),
        perfectDays: T.Integer(),
        daysMet: T.Integer(),
      },
      strict,
    ),
  },
  strict,
);
export type Stats = Static<typeof Stats>;
