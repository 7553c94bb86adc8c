/**
 * What the authorization matrix must cover (RELIABILITY A1), checked by test/authz-matrix.test.ts:
 * every route of /openapi.json reached by at least one row unless listed in `outsideTheMatrix` with
 * the reason, every client→server event emitted by a row, and every server→client event named in the
 * test that proves who hears it. A route or event added without any of these fails the test (events:
 * the build, through the `satisfies` and `Record` below).
 */
import type { ClientToServerEvents, ServerToClientEvents } from '../../src/realtime/events.js';

export const CLIENT_EVENTS = [
  'system:ping',
  'chat:send',
  'chat:typing',
  'chat:delivered',
  'chat:read',
  'chat:sync',
  'leaderboard:watch',
  'leaderboard:unwatch',
] as const satisfies readonly (keyof ClientToServerEvents)[];
type Unlisted = Exclude<keyof ClientToServerEvents, (typeof CLIENT_EVENTS)[number]>;
export const everyClientEventListed: [Unlisted] extends [never] ? true : never = true;

/** Routes with no one's object behind them: they take credentials, a one-time token, or nothing. */
const CREDENTIALS =
  'takes credentials or a one-time token, no object of anyone’s: test/accounts-security.test.ts (B1–B7)';
export const outsideTheMatrix: Record<string, string> = {
  'GET /health/live': 'liveness, public by design, says nothing about anyone',
  'GET /health/ready': 'readiness, public by design, says nothing about anyone',
  'GET /metrics': 'operators’ metrics behind METRICS_TOKEN, no user data: test/http-platform.test.ts',
  'POST /v1/auth/register': CREDENTIALS,
  'POST /v1/auth/verify-email': CREDENTIALS,
  'POST /v1/auth/resend-verification': CREDENTIALS,
  'POST /v1/auth/login': CREDENTIALS,
  'POST /v1/auth/refresh': CREDENTIALS,
  'POST /v1/auth/password/forgot': CREDENTIALS,
  'POST /v1/auth/password/reset': CREDENTIALS,
  'GET /v1/avatars/{file}':
    'public and immutable by design (profile pictures), under a random unguessable name: test/avatar.test.ts',
};

/** Each server→client event and the test file that shows who hears it (and that others do not). */
export const SERVER_EVENTS: Record<keyof ServerToClientEvents, string> = {
  'system:welcome': 'test/realtime.test.ts',
  'system:disconnecting': 'test/accounts-sockets.test.ts',
  'task:created': 'test/tasks.test.ts',
  'task:updated': 'test/tasks.test.ts',
  'task:completed': 'test/tasks.test.ts',
  'task:reopened': 'test/tasks.test.ts',
  'task:deleted': 'test/tasks.test.ts',
  'daily:changed': 'test/dailies.test.ts',
  'streak:updated': 'test/dailies.test.ts',
  'friend:request': 'test/friends.test.ts',
  'friend:accepted': 'test/friends.test.ts',
  'friend:removed': 'test/friends.test.ts',
  'group:member_joined': 'test/groups.test.ts',
  'group:member_left': 'test/groups.test.ts',
  'group:member_completed': 'test/groups.test.ts',
  'group:updated': 'test/groups.test.ts',
  'group:closed': 'test/groups.test.ts',
  'chat:message': 'test/chat-delivery.test.ts',
  'chat:receipt': 'test/chat.test.ts',
  'chat:typing': 'test/chat.test.ts',
  'chat:deleted': 'test/chat.test.ts',
  'badge:awarded': 'test/badges.test.ts',
  'feed:activity': 'test/badges.test.ts',
  'leaderboard:update': 'test/leaderboards.test.ts',
  'presence:update': 'test/chat.test.ts',
  'maa:message': 'test/maa-nudges.test.ts',
  'notification:new': 'test/notifications.test.ts',
};
