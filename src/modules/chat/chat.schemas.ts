import { type Static, Type as T } from '@sinclair/typebox';
import { MediaView } from '../media/media.schemas.js';
import { Cursor } from '../users/users.schemas.js';

const strict = { additionalProperties: false } as const;
const Instant = T.String({ format: 'date-time' });
const Id = T.String({ format: 'uuid' });
const Seq = T.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });

export const MESSAGE_MAX_CHARS = 4000;
export const HISTORY_MAX = 100;

export const ConversationKind = T.Union([T.Literal('direct'), T.Literal('group')]);

export const Message = T.Object(
  {
    id: Id,
    conversationId: Id,
    seq: T.Integer({ minimum: 1, description: 'Gapless and increasing within the conversation.' }),
    senderId: T.Union([Id, T.Null()], { description: 'null: the sender deleted their account.' }),
    clientMessageId: T.Union([T.String(), T.Null()]),
    body: T.String({ description: 'Empty for a deleted message (a tombstone) or a media-only one.' }),
    media: T.Union([MediaView, T.Null()]),
    createdAt: Instant,
    deletedAt: T.Union([Instant, T.Null()], { description: 'Set when deleted for everyone.' }),
  },
  { ...strict, $id: 'Message' },
);
export type Message = Static<typeof Message>;

export const ConversationMember = T.Object(
  {
    userId: Id,
    username: T.String(),
    name: T.String(),
    avatarUrl: T.Union([T.String(), T.Null()]),
    deliveredSeq: Seq,
    readSeq: Seq,
  },
  { ...strict, description: "A member and their cursors: each message's status for its sender." },
);

export const Conversation = T.Object(
  {
    id: Id,
    kind: ConversationKind,
    groupTaskId: T.Union([Id, T.Null()]),
    title: T.Union([T.String(), T.Null()], { description: "The group task's title; null for direct ones." }),
    members: T.Array(ConversationMember, { description: 'The first 50 members by joining time.' }),
    memberCount: T.Integer(),
    lastSeq: Seq,
    lastMessage: T.Union([Message, T.Null()], { description: 'The newest message I can see.' }),
    unreadCount: T.Integer({ description: 'Messages from others after my read cursor, not deleted.' }),
    canSend: T.Boolean({ description: 'false in a direct conversation once we are no longer friends.' }),
    updatedAt: Instant,
  },
  { ...strict, $id: 'Conversation' },
);
export type Conversation = Static<typeof Conversation>;

export const ConversationList = T.Object(
  { items: T.Array(Conversation), nextCursor: T.Union([T.String(), T.Null()]) },
  strict,
);
export type ConversationList = Static<typeof ConversationList>;

export const ListConversationsQuery = T.Object(
  { limit: T.Optional(T.Integer({ minimum: 1, maximum: 100, default: 20 })), cursor: T.Optional(Cursor) },
  strict,
);
export type ListConversationsQuery = Static<typeof ListConversationsQuery>;

export const OpenDirectBody = T.Object(
  { userId: T.String({ format: 'uuid', description: 'A friend.' }) },
  strict,
);

// Any string: a malformed id is simply not found, like someone else's.
export const ConversationParams = T.Object({ id: T.String({ maxLength: 64 }) }, strict);
export const MessageParams = T.Object(
  { id: T.String({ maxLength: 64 }), messageId: T.String({ maxLength: 64 }) },
  strict,
);

const ClientMessageId = T.String({
  minLength: 1,
  maxLength: 64,
  pattern: '^[A-Za-z0-9._:-]+$',
  description: 'Chosen by the client (a UUID is ideal); a retry with the same id stores nothing new.',
});
const Body = T.String({
  maxLength: MESSAGE_MAX_CHARS,
  description: `At most ${MESSAGE_MAX_CHARS} characters.`,
});
const MediaId = T.String({ format: 'uuid', description: 'An upload of mine (POST /v1/media) not yet sent.' });

const sendFields = { clientMessageId: ClientMessageId, body: T.Optional(Body), mediaId: T.Optional(MediaId) };
export const SendMessageBody = T.Object(sendFields, {
  ...strict,
  description: 'A body, a mediaId, or both.',
});
export type SendMessage = Static<typeof SendMessageBody>;

export const MessagesQuery = T.Object(
  {
    before: T.Optional(
      T.Integer({
        minimum: 1,
        maximum: Number.MAX_SAFE_INTEGER,
        description: 'Messages with a smaller seq (older).',
      }),
    ),
    after: T.Optional(
      T.Integer({
        minimum: 0,
        maximum: Number.MAX_SAFE_INTEGER,
        description: 'Messages with a greater seq (newer).',
      }),
    ),
    limit: T.Optional(T.Integer({ minimum: 1, maximum: HISTORY_MAX, default: 50 })),
  },
  { ...strict, description: 'At most one of before and after; neither gives the newest page.' },
);
export type MessagesQuery = Static<typeof MessagesQuery>;

export const MessagePage = T.Object(
  {
    items: T.Array(Message, { description: 'Oldest first.' }),
    nextCursor: T.Union([T.String(), T.Null()], {
      description: 'A seq: pass it again as `before` (or `after`, when paging that way) for more.',
    }),
  },
  strict,
);
export type MessagePage = Static<typeof MessagePage>;

export const ReadBody = T.Object({ seq: Seq }, strict);

export const DeleteMessageQuery = T.Object(
  {
    scope: T.Optional(
      T.Union([T.Literal('me'), T.Literal('everyone')], {
        default: 'me',
        description: 'everyone: the sender only, within 24 h; leaves a tombstone.',
      }),
    ),
  },
  strict,
);

export const CursorState = T.Object(
  {
    conversationId: Id,
    userId: Id,
    deliveredSeq: Seq,
    readSeq: Seq,
    unreadCount: T.Integer(),
  },
  strict,
);
export type CursorState = Static<typeof CursorState>;

// Socket payloads: the same rules as their REST twins.
const ConversationId = T.String({ maxLength: 64 });
export const ChatSendPayload = T.Object({ conversationId: ConversationId, ...sendFields }, strict);
export const ChatTypingPayload = T.Object({ conversationId: ConversationId }, strict);
export const ChatCursorPayload = T.Object({ conversationId: ConversationId, seq: Seq }, strict);
export const ChatSyncPayload = T.Object(
  {
    conversationId: ConversationId,
    afterSeq: Seq,
    limit: T.Optional(T.Integer({ minimum: 1, maximum: HISTORY_MAX })),
  },
  strict,
);
