import { type Static, Type as T } from '@sinclair/typebox';
import { Cursor, Limit } from '../users/users.schemas.js';

const strict = { additionalProperties: false } as const;
const Instant = T.String({ format: 'date-time' });
const UserId = T.String({ format: 'uuid', description: 'The other person’s user id.' });

export const FriendRequestStatus = T.Union(
  [T.Literal('pending'), T.Literal('accepted'), T.Literal('declined'), T.Literal('cancelled')],
  { description: 'cancelled: withdrawn by its sender, or ended by a block.' },
);
export type FriendRequestStatus = Static<typeof FriendRequestStatus>;

export const FriendRequest = T.Object(
  {
    id: T.String({ format: 'uuid' }),
    fromUserId: T.String({ format: 'uuid' }),
    toUserId: T.String({ format: 'uuid' }),
    status: FriendRequestStatus,
    createdAt: Instant,
  },
  { ...strict, $id: 'FriendRequest' },
);
export type FriendRequest = Static<typeof FriendRequest>;

export const SendFriendRequestBody = T.Object({ userId: UserId }, strict);
export type SendFriendRequest = Static<typeof SendFriendRequestBody>;

export const ListFriendRequestsQuery = T.Object(
  {
    direction: T.Optional(
      T.Union([T.Literal('incoming'), T.Literal('outgoing')], {
        default: 'incoming',
        description: 'incoming: sent to me (the default); outgoing: sent by me. Pending requests only.',
      }),
    ),
    limit: T.Optional(Limit),
    cursor: T.Optional(Cursor),
  },
  strict,
);
export type ListFriendRequestsQuery = Static<typeof ListFriendRequestsQuery>;

export const FriendRequestList = T.Object(
  { items: T.Array(FriendRequest), nextCursor: T.Union([T.String(), T.Null()]) },
  strict,
);
export type FriendRequestList = Static<typeof FriendRequestList>;

// Any string: a malformed id is simply not found, like someone else's.
export const FriendRequestParams = T.Object({ id: T.String() }, strict);

export const Friend = T.Object(
  {
    id: T.String({ format: 'uuid' }),
    username: T.String(),
    name: T.String(),
    avatarUrl: T.Union([T.String(), T.Null()]),
    online: T.Boolean({ description: 'Connected right now, on any device.' }),
    currentStreak: T.Integer(),
  },
  { ...strict, $id: 'Friend' },
);
export type Friend = Static<typeof Friend>;

export const PageQuery = T.Object({ limit: T.Optional(Limit), cursor: T.Optional(Cursor) }, strict);
export type PageQuery = Static<typeof PageQuery>;

export const FriendList = T.Object(
  { items: T.Array(Friend), nextCursor: T.Union([T.String(), T.Null()]) },
  { ...strict, description: 'By username.' },
);
export type FriendList = Static<typeof FriendList>;

export const UserIdParams = T.Object({ userId: T.String() }, strict);

export const BlockBody = T.Object({ userId: UserId }, strict);

export const BlockedUser = T.Object(
  {
    id: T.String({ format: 'uuid' }),
    username: T.String(),
    name: T.String(),
    avatarUrl: T.Union([T.String(), T.Null()]),
    blockedAt: Instant,
  },
  { ...strict, $id: 'BlockedUser' },
);
export type BlockedUser = Static<typeof BlockedUser>;

export const BlockList = T.Object(
  { items: T.Array(BlockedUser), nextCursor: T.Union([T.String(), T.Null()]) },
  { ...strict, description: 'Newest first.' },
);
export type BlockList = Static<typeof BlockList>;

/** The friends.notify job: who to tell what, read again from the database when the job runs. */
export const FriendsNotifyPayload = T.Union([
  T.Object({ kind: T.Literal('request'), requestId: T.String({ format: 'uuid' }) }, strict),
  T.Object({ kind: T.Literal('accepted'), requestId: T.String({ format: 'uuid' }) }, strict),
  T.Object(
    {
      kind: T.Literal('removed'),
      toUserId: T.String({ format: 'uuid' }),
      userId: T.String({ format: 'uuid' }),
    },
    strict,
  ),
]);
export type FriendsNotifyPayload = Static<typeof FriendsNotifyPayload>;
