import type { Static } from '@sinclair/typebox';
import type { CursorState, Message, MessagePage } from '../modules/chat/chat.schemas.js';
import type { FeedEvent } from '../modules/feed/feed.service.js';
import type { FriendRequest } from '../modules/friends/friends.schemas.js';
import type { Leaderboard, LeaderboardUpdate } from '../modules/leaderboards/leaderboards.schemas.js';
import type { MaaMessage } from '../modules/maa/maa.schemas.js';
import type { Notification } from '../modules/notifications/notifications.schemas.js';
import type { Pong } from '../modules/system/system.schemas.js';
import type { Task } from '../modules/tasks/tasks.schemas.js';
import type { UserSummary } from '../modules/users/users.schemas.js';

/** What every client→server event answers through its ack callback. */
export type AckResponse<T> = { ok: true; data: T } | { ok: false; error: { code: string; detail: string } };
export type Ack<T> = (response: AckResponse<T>) => void;

/**
 * Client → server events. Payloads arrive as `unknown` and are validated with the handler's TypeBox
 * schema before anything else sees them.
 */
export interface ClientToServerEvents {
  'system:ping': (payload: unknown, ack?: Ack<Static<typeof Pong>>) => void;
  /** A message (ack: the stored message; a retry with the same clientMessageId gets the same one). */
  'chat:send': (payload: unknown, ack?: Ack<Message>) => void;
  'chat:typing': (payload: unknown, ack?: Ack<{ expiresInMs: number }>) => void;
  'chat:delivered': (payload: unknown, ack?: Ack<CursorState>) => void;
  'chat:read': (payload: unknown, ack?: Ack<CursorState>) => void;
  /** Messages after `afterSeq`, oldest first (after a reconnection that was not recovered). */
  'chat:sync': (payload: unknown, ack?: Ack<MessagePage>) => void;
  /** Start hearing `leaderboard:update` for a board (ack: the board as it stands, with my rank). */
  'leaderboard:watch': (payload: unknown, ack?: Ack<Leaderboard>) => void;
  'leaderboard:unwatch': (payload: unknown, ack?: Ack<{ board: string }>) => void;
}

/** Server → client events, emitted through the realtime port. */
export interface ServerToClientEvents {
  /** Sent once a connection is authenticated. */
  'system:welcome': (data: { userId: string; recovered: boolean }) => void;
  /** Sent just before the server ends the connection on purpose (session ended, token expired). */
  'system:disconnecting': (data: { reason: 'session_ended' | 'token_expired' | 'server_shutdown' }) => void;
  /** The owner's tasks changed (to the owner's room only: titles are private). */
  'task:created': (data: { task: Task }) => void;
  'task:updated': (data: { task: Task }) => void;
  /** pointsAwarded is 0 when the task had already paid before (completed, reopened, completed again). */
  'task:completed': (data: { task: Task; pointsAwarded: number }) => void;
  'task:reopened': (data: { task: Task }) => void;
  'task:deleted': (data: { id: string }) => void;
  /** A daily or its check-ins changed: refetch it. */
  'daily:changed': (data: { dailyId: string }) => void;
  /** A day closed: the overall streak as it now stands. */
  'streak:updated': (data: {
    date: string;
    outcome: 'met' | 'frozen' | 'missed';
    currentStreak: number;
    longestStreak: number;
    freezes: number;
  }) => void;
  /** Someone asked me to be friends (to the recipient). */
  'friend:request': (data: { request: FriendRequest; from: UserSummary }) => void;
  /** My request was accepted (to its sender); `friend` is who accepted. */
  'friend:accepted': (data: { request: FriendRequest; friend: UserSummary }) => void;
  /** `userId` is no longer my friend (they unfriended me; a block reads the same, so it is not revealed). */
  'friend:removed': (data: { userId: string }) => void;
  /** To a group task's room (its members): membership, completion and changes. */
  'group:member_joined': (data: { groupTaskId: string; userId: string }) => void;
  'group:member_left': (data: { groupTaskId: string; userId: string }) => void;
  'group:member_completed': (data: { groupTaskId: string; userId: string; rank: number }) => void;
  'group:updated': (data: { groupTaskId: string }) => void;
  'group:closed': (data: { groupTaskId: string }) => void;
  /**
   * To every member's devices (the sender's too), once the message is stored. It also says its sender
   * has read the conversation up to its seq (no chat:receipt is sent for that).
   */
  'chat:message': (data: Message) => void;
  /** A member's cursors moved (to every member, so senders can show delivered / read). */
  'chat:receipt': (data: {
    conversationId: string;
    userId: string;
    deliveredSeq: number;
    readSeq: number;
  }) => void;
  /** Someone is typing; lapses after expiresInMs unless repeated. */
  'chat:typing': (data: { conversationId: string; userId: string; expiresInMs: number }) => void;
  /** scope everyone: to every member (the message is now a tombstone); me: to my own devices. */
  'chat:deleted': (data: {
    conversationId: string;
    messageId: string;
    seq: number;
    scope: 'me' | 'everyone';
  }) => void;
  /** I earned a badge (every device). */
  'badge:awarded': (data: { code: string; name: string; awardedAt: string }) => void;
  /** A friend's activity: a day's goal met, a group rank, a badge (never from a private profile). */
  'feed:activity': (data: FeedEvent) => void;
  /** A watched board changed (at most once a second per board). */
  'leaderboard:update': (data: LeaderboardUpdate) => void;
  /** A friend came online or went offline (all their devices gone). */
  'presence:update': (data: { userId: string; online: boolean; lastSeenAt: string | null }) => void;
  /** A word from Maa to the user (every device), as also kept in GET /v1/maa/messages. */
  'maa:message': (data: MaaMessage) => void;
  /** A new notification for me (every device), as GET /v1/notifications lists it; after its event committed. */
  'notification:new': (data: Notification) => void;
}

/** Between server processes, through the adapter. */
export interface InterServerEvents {
  /** These leaderboard rooms changed: each node pushes them to its own watchers. */
  'leaderboards:dirty': (rooms: string[]) => void;
  /** A session, or every session of a user, ended: each node forgets it was live (Realtime.onAccessEnded). */
  'access:ended': (ended: AccessEnded) => void;
}

export type AccessEnded = { sessionId: string } | { userId: string };

export type ServerEventName = keyof ServerToClientEvents;
export type ServerEventData<E extends ServerEventName> = Parameters<ServerToClientEvents[E]>[0];

export interface SocketData {
  userId: string;
  sessionId: string;
  /** When the access token the connection authenticated with expires (ms since epoch). */
  expiresAt: number | undefined;
  /** As of the handshake (social events need it; verifying later takes a reconnection). */
  emailVerified: boolean;
}
