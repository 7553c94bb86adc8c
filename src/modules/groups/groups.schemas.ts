import { type Static, Type as T } from '@sinclair/typebox';
import { Description, Title } from '../../http/schemas.js';

const strict = { additionalProperties: false } as const;
const Instant = T.String({ format: 'date-time' });
const Id = T.String({ format: 'uuid' });

export const Visibility = T.Union([T.Literal('public'), T.Literal('private')], {
  description:
    'private: invisible (404) to non-members; public: anyone signed in may find, read and join it.',
});
export const GroupPriority = T.Union([T.Literal('low'), T.Literal('medium'), T.Literal('high')]);
export const GroupStatus = T.Union([T.Literal('open'), T.Literal('closed')]);
export const GroupRole = T.Union([T.Literal('owner'), T.Literal('admin'), T.Literal('member')]);
export type GroupRole = Static<typeof GroupRole>;

export const GroupTask = T.Object(
  {
    id: Id,
    ownerId: Id,
    title: T.String(),
    description: T.String(),
    visibility: Visibility,
    priority: GroupPriority,
    dueAt: Instant,
    status: GroupStatus,
    closedAt: T.Union([Instant, T.Null()]),
    createdAt: Instant,
    updatedAt: Instant,
    memberCount: T.Integer(),
    myRole: T.Union([GroupRole, T.Null()], { description: 'null when I am not a member.' }),
  },
  { ...strict, $id: 'GroupTask' },
);
export type GroupTask = Static<typeof GroupTask>;

export const CreateGroupTaskBody = T.Object(
  {
    title: Title,
    description: T.Optional(Description),
    visibility: Visibility,
    dueAt: T.String({ format: 'date-time', description: 'In the future.' }),
    priority: T.Optional(GroupPriority),
    inviteUserIds: T.Optional(
      T.Array(Id, { maxItems: 50, uniqueItems: true, description: 'Friends only; each gets an invitation.' }),
    ),
  },
  strict,
);
export type CreateGroupTask = Static<typeof CreateGroupTaskBody>;

export const UpdateGroupTaskBody = T.Object(
  {
    title: T.Optional(Title),
    description: T.Optional(Description),
    visibility: T.Optional(Visibility),
    dueAt: T.Optional(T.String({ format: 'date-time' })),
    priority: T.Optional(GroupPriority),
  },
  { ...strict, minProperties: 1 },
);
export type UpdateGroupTask = Static<typeof UpdateGroupTaskBody>;

export const ListGroupTasksQuery = T.Object(
  {
    scope: T.Optional(
      T.Union([T.Literal('mine'), T.Literal('public')], {
        default: 'mine',
        description: 'mine: tasks I am in; public: open, not yet due public tasks I am not in.',
      }),
    ),
    status: T.Optional(GroupStatus),
    q: T.Optional(T.String({ minLength: 1, maxLength: 100 })),
    limit: T.Optional(T.Integer({ minimum: 1, maximum: 100, default: 20 })),
    cursor: T.Optional(T.String({ maxLength: 500 })),
  },
  strict,
);
export type ListGroupTasksQuery = Static<typeof ListGroupTasksQuery>;

export const GroupTaskList = T.Object(
  { items: T.Array(GroupTask), nextCursor: T.Union([T.String(), T.Null()]) },
  strict,
);
export type GroupTaskList = Static<typeof GroupTaskList>;

// Any string: a malformed id is simply not found.
export const GroupTaskParams = T.Object({ id: T.String() }, strict);
export const MemberParams = T.Object({ id: T.String(), userId: T.String() }, strict);

export const Member = T.Object(
  {
    userId: Id,
    username: T.String(),
    role: GroupRole,
    joinedAt: Instant,
    completedAt: T.Union([Instant, T.Null()]),
    rank: T.Union([T.Integer(), T.Null()]),
  },
  { ...strict, $id: 'GroupMember' },
);
export type Member = Static<typeof Member>;
export const MemberList = T.Object({ items: T.Array(Member) }, strict);
export type MemberList = Static<typeof MemberList>;

export const Completion = T.Object({ rank: T.Integer(), completedAt: Instant }, strict);
export type Completion = Static<typeof Completion>;

export const InvitationStatus = T.Union([
  T.Literal('pending'),
  T.Literal('accepted'),
  T.Literal('declined'),
  T.Literal('cancelled'),
]);
export const Invitation = T.Object(
  {
    id: Id,
    groupTaskId: Id,
    groupTitle: T.String(),
    fromUserId: Id,
    toUserId: Id,
    status: InvitationStatus,
    createdAt: Instant,
  },
  { ...strict, $id: 'GroupInvitation' },
);
export type Invitation = Static<typeof Invitation>;
export const InvitationList = T.Object({ items: T.Array(Invitation) }, strict);
export type InvitationList = Static<typeof InvitationList>;

export const InvitationPage = T.Object(
  { items: T.Array(Invitation), nextCursor: T.Union([T.String(), T.Null()]) },
  strict,
);
export type InvitationPage = Static<typeof InvitationPage>;

export const ListInvitationsQuery = T.Object(
  {
    limit: T.Optional(T.Integer({ minimum: 1, maximum: 100, default: 20 })),
    cursor: T.Optional(T.String({ minLength: 1, maxLength: 400, pattern: '^[A-Za-z0-9_-]+$' })),
  },
  strict,
);
export type ListInvitationsQuery = Static<typeof ListInvitationsQuery>;

export const SetRoleBody = T.Object(
  { role: T.Union([T.Literal('admin'), T.Literal('member')], { description: 'The owner stays the owner.' }) },
  strict,
);

export const InviteBody = T.Object(
  { userIds: T.Array(Id, { minItems: 1, maxItems: 50, uniqueItems: true }) },
  strict,
);
export const InvitationParams = T.Object({ id: T.String() }, strict);

export const CloseDuePayload = T.Object({ groupTaskId: Id }, strict);
export type CloseDuePayload = Static<typeof CloseDuePayload>;
