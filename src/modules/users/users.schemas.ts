import { type Static, Type as T } from '@sinclair/typebox';
import { NOT_BLANK } from '../../http/schemas.js';

const strict = { additionalProperties: false } as const;

export const USER_SEARCH_MAX = 100;

/** What anyone signed in may see of anyone they can see at all: never an email or a setting. */
export const UserSummary = T.Object(
  {
    id: T.String({ format: 'uuid' }),
    username: T.String(),
    name: T.String({ description: 'Empty when none.' }),
    avatarUrl: T.Union([T.String(), T.Null()]),
  },
  { ...strict, $id: 'UserSummary' },
);
export type UserSummary = Static<typeof UserSummary>;

export const Badge = T.Object(
  { code: T.String(), name: T.String(), awardedAt: T.String({ format: 'date-time' }) },
  { ...strict, $id: 'Badge' },
);
export type Badge = Static<typeof Badge>;

export const Relationship = T.Object(
  {
    isFriend: T.Boolean(),
    request: T.Union([T.Literal('incoming'), T.Literal('outgoing'), T.Null()], {
      description: 'A pending friend request between us: incoming (they asked me), outgoing (I asked them).',
    }),
  },
  strict,
);
export type Relationship = Static<typeof Relationship>;

export const Profile = T.Object(
  {
    id: T.String({ format: 'uuid' }),
    username: T.String(),
    name: T.String(),
    avatarUrl: T.Union([T.String(), T.Null()]),
    about: T.Optional(T.String()),
    badges: T.Optional(T.Array(Badge)),
    score: T.Optional(T.Integer()),
    currentStreak: T.Optional(T.Integer()),
    longestStreak: T.Optional(T.Integer()),
    relationship: T.Union([Relationship, T.Null()], {
      description: 'How the viewer relates to this person; null on my own profile.',
    }),
  },
  {
    ...strict,
    $id: 'Profile',
    description:
      'about, badges, score and streaks are present when the profile is public, or friends-only and the ' +
      'viewer is a friend, and always on my own profile.',
  },
);
export type Profile = Static<typeof Profile>;

export const Cursor = T.String({
  minLength: 1,
  maxLength: 400,
  pattern: '^[A-Za-z0-9_-]+$',
  description: 'nextCursor of the previous page.',
});
export const Limit = T.Integer({ minimum: 1, maximum: USER_SEARCH_MAX, default: 20 });

export const SearchUsersQuery = T.Object(
  {
    q: T.String({
      minLength: 1,
      maxLength: 60,
      pattern: NOT_BLANK,
      description:
        'The start of a username or name, ignoring case; surrounding spaces are ignored. `%`, `_` and `\\` are plain characters.',
    }),
    limit: T.Optional(Limit),
    cursor: T.Optional(Cursor),
  },
  strict,
);
export type SearchUsersQuery = Static<typeof SearchUsersQuery>;

export const UserList = T.Object(
  { items: T.Array(UserSummary), nextCursor: T.Union([T.String(), T.Null()]) },
  strict,
);
export type UserList = Static<typeof UserList>;

// Any string: a malformed username is simply not found.
export const ProfileParams = T.Object({ username: T.String() }, strict);

export const DeleteMeBody = T.Object(
  { password: T.String({ minLength: 1, maxLength: 512, description: 'My current password, to confirm.' }) },
  { additionalProperties: false },
);

const Rows = T.Array(T.Record(T.String(), T.Unknown()));
/** The export document: every section a list of the user's own rows, as stored. */
export const AccountExport = T.Object(
  {
    format: T.Literal('taskmaa-export-v1'),
    exportedAt: T.String({ format: 'date-time' }),
    account: T.Record(T.String(), T.Unknown()),
    sessions: Rows,
    daySettings: Rows,
    tasks: Rows,
    dailies: Rows,
    checkIns: Rows,
    closedDays: Rows,
    scoreEvents: Rows,
    friendRequests: Rows,
    friends: Rows,
    blocks: Rows,
    groupTasks: Rows,
    groupInvitations: Rows,
    maaMessages: Rows,
    conversations: Rows,
    messages: T.Array(T.Record(T.String(), T.Unknown()), { description: 'The messages I sent.' }),
    media: T.Array(T.Record(T.String(), T.Unknown()), { description: 'My uploads (metadata).' }),
    badges: T.Array(T.Record(T.String(), T.Unknown()), { description: 'The badges I earned.' }),
    notifications: T.Array(T.Record(T.String(), T.Unknown()), { description: 'What I was told.' }),
  },
  { additionalProperties: false },
);
