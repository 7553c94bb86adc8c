import { type Static, Type as T } from '@sinclair/typebox';

const strict = { additionalProperties: false } as const;

export const BoardName = T.Union(
  [T.Literal('global:week'), T.Literal('global:all'), T.Literal('friends:week'), T.Literal('friends:all')],
  { description: 'global: public profiles; friends: me and my friends (not private profiles).' },
);
export type BoardName = Static<typeof BoardName>;

export const Period = T.Union([T.Literal('week'), T.Literal('all')], {
  default: 'week',
  description: 'week: points earned in the current ISO week, in UTC (Monday 00:00 UTC to Monday); all: ever.',
});

export const BoardQuery = T.Object(
  { period: T.Optional(Period), limit: T.Optional(T.Integer({ minimum: 1, maximum: 100, default: 20 })) },
  strict,
);
export type BoardQuery = Static<typeof BoardQuery>;

export const BoardEntry = T.Object(
  {
    rank: T.Integer({ minimum: 1, description: 'Equal scores share a rank (1, 2, 2, 4).' }),
    userId: T.String({ format: 'uuid' }),
    username: T.String(),
    avatarUrl: T.Union([T.String(), T.Null()]),
    score: T.Integer(),
  },
  strict,
);
export type BoardEntry = Static<typeof BoardEntry>;

export const Leaderboard = T.Object(
  {
    board: BoardName,
    period: T.String({ description: "'all', or the ISO week as YYYY-Www." }),
    entries: T.Array(BoardEntry),
    me: T.Object(
      {
        rank: T.Union([T.Integer({ minimum: 1 }), T.Null()], {
          description: 'null when I am not on this board (no points yet, or my profile is not public).',
        }),
        score: T.Integer(),
      },
      strict,
    ),
  },
  { ...strict, $id: 'Leaderboard' },
);
export type Leaderboard = Static<typeof Leaderboard>;

/** What watchers get, at most once a second per board while it changes. */
export type LeaderboardUpdate = Omit<Leaderboard, 'me'>;

export const WatchPayload = T.Object({ board: BoardName }, strict);
