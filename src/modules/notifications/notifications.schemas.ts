import { type Static, Type as T } from '@sinclair/typebox';

const strict = { additionalProperties: false } as const;
const Instant = T.String({ format: 'date-time' });

export const NOTIFICATIONS_LIST_MAX = 100;
export const NOTIFICATIONS_READ_MAX = 100;

/**
 * Every kind the store accepts: the same list as the CHECK in db/migrations/0010_notifications.sql
 * (a test keeps the two equal). Later features write the kinds not produced yet without a migration.
 */
export const NOTIFICATION_KINDS = [
  'friend_request',
  'friend_accepted',
  'group_invitation',
  'group_rank',
  'group_member_completed',
  'group_closed',
  'badge',
  'maa',
  'streak',
  'leaderboard',
  'system',
] as const;
export type NotificationKind = (typeof NOTIFICATION_KINDS)[number];

export const NotificationKindSchema = T.Union(
  NOTIFICATION_KINDS.map((k) => T.Literal(k)),
  { description: 'What happened; each kind has its own data.' },
);

const Scalar = T.Union([T.String(), T.Number(), T.Boolean(), T.Null()]);

export const Notification = T.Object(
  {
    id: T.String({ format: 'uuid' }),
    kind: NotificationKindSchema,
    data: T.Record(T.String(), Scalar, {
      description:
        'Ids and display names, by kind. When someone caused it, `userId`, `username` and `name` are theirs. ' +
        'friend_request: requestId. friend_accepted: requestId. ' +
        'group_invitation: invitationId, groupTaskId, groupTitle. ' +
        'group_rank (no one caused it): groupTaskId, title, rank, points.',
    }),
    createdAt: Instant,
    readAt: T.Union([Instant, T.Null()]),
  },
  { ...strict, $id: 'Notification' },
);
export type Notification = Static<typeof Notification>;

export const ListNotificationsQuery = T.Object(
  {
    unread: T.Optional(
      T.Boolean({ default: false, description: 'true: only the unread ones; false (the default): all.' }),
    ),
    limit: T.Optional(T.Integer({ minimum: 1, maximum: NOTIFICATIONS_LIST_MAX, default: 20 })),
    cursor: T.Optional(
      T.String({
        minLength: 1,
        maxLength: 200,
        pattern: '^[A-Za-z0-9_-]+$',
        description: 'nextCursor of the previous page (with the same unread filter).',
      }),
    ),
  },
  strict,
);
export type ListNotificationsQuery = Static<typeof ListNotificationsQuery>;

export const NotificationList = T.Object(
  {
    items: T.Array(Notification),
    nextCursor: T.Union([T.String(), T.Null()]),
    unreadCount: T.Integer({ minimum: 0, description: 'All my unread notifications, not just this page.' }),
  },
  { ...strict, description: 'Newest first.' },
);
export type NotificationList = Static<typeof NotificationList>;

export const MarkReadBody = T.Union(
  [
    T.Object(
      {
        ids: T.Array(T.String({ format: 'uuid' }), {
          minItems: 1,
          maxItems: NOTIFICATIONS_READ_MAX,
          description: 'Ids of mine are marked read; any other id is ignored.',
        }),
      },
      strict,
    ),
    T.Object({ all: T.Literal(true, { description: 'Every notification of mine.' }) }, strict),
  ],
  { description: 'Either some ids or all. Marking read twice is harmless.' },
);
export type MarkReadBody = Static<typeof MarkReadBody>;

export const MarkReadResult = T.Object(
  {
    updated: T.Integer({
      minimum: 0,
      description: 'How many of mine this request turned from unread to read.',
    }),
    unreadCount: T.Integer({ minimum: 0 }),
  },
  strict,
);
export type MarkReadResult = Static<typeof MarkReadResult>;
