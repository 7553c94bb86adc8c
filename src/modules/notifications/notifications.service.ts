import { uuidv7 } from 'uuidv7';
import type { Clock } from '../../lib/clock.js';
import type { Db, Queryable } from '../../lib/db.js';
import type { Realtime } from '../../realtime/port.js';
import { decodeCursor, encodeCursor, isInstant, isString, UUID } from '../users/users.summary.js';
import type { NotificationRow } from './notifications.repo.js';
import * as repo from './notifications.repo.js';
import type {
  ListNotificationsQuery,
  MarkReadBody,
  MarkReadResult,
  Notification,
  NotificationKind,
  NotificationList,
} from './notifications.schemas.js';

export const NOTIFICATIONS_PRUNE_JOB = 'notifications.prune';
export const NOTIFICATIONS_PRUNE_EVERY_MS = 3600_000;

const DAY_MS = 86400_000;
/** Read notifications go after this long; unread ones after KEEP_ANY_DAYS. */
export const KEEP_READ_DAYS = 30;
export const KEEP_ANY_DAYS = 90;
/** The newest this many per user are kept, whatever their age. */
export const KEEP_PER_USER = 500;
const PRUNE_BATCH = 5000;

type Scalars = Record<string, string | number | boolean | null>;

/**
 * What each kind carries besides its actor. Ids and display names only: never the title of a
 * personal task, and never another user's id except the actor's (`actorId`), so deleting an account
 * removes every notification that names it. `userId`, `username` and `name` are filled in from the
 * actor. Kinds nobody writes yet take any small flat object until their producer pins it down here.
 */
export interface NotificationData {
  friend_request: { requestId: string };
  friend_accepted: { requestId: string };
  group_invitation: { invitationId: string; groupTaskId: string; groupTitle: string };
  group_rank: { groupTaskId: string; title: string; rank: number; points: number };
}

type DataOf<K extends NotificationKind> = K extends keyof NotificationData ? NotificationData[K] : Scalars;

export type NotifyInput = {
  [K in NotificationKind]: {
    /** Who is told. */
    userId: string;
    kind: K;
    /** Who caused it, when someone did; nothing is stored when either has blocked the other. */
    actorId?: string | undefined;
    data: DataOf<K>;
    /** false: stored, without the live `notification:new` (Maa's words in the user's quiet hours). */
    live?: boolean;
  };
}[NotificationKind];

const toNotification = (r: NotificationRow): Notification => ({
  id: r.id,
  kind: r.kind,
  data: r.data,
  createdAt: r.createdAt.toISOString(),
  readAt: r.readAt ? r.readAt.toISOString() : null,
});

type Cursor = { u: boolean; c: string; i: string };

export type NotificationsService = ReturnType<typeof makeNotificationsService>;

export function makeNotificationsService(deps: {
  db: Db;
  clock: Clock;
  realtime: Realtime;
  /**
   * Whether either of the two has blocked the other, read in `q` and holding their pair until it
   * ends (friends' shared pair lock), so a block committing meanwhile waits for this notification
   * and then deletes it (forgetActor), or commits first and this one is never written.
   */
  blocked: (q: Queryable, a: string, b: string) => Promise<boolean>;
}) {
  const { db, clock, realtime } = deps;

  return {
    /**
     * Tells `userId` something, inside the transaction `q` of the event that causes it: the
     * notification exists exactly when the event committed, and reaches the user's devices as
     * `notification:new` after the commit. Nothing is written (undefined) when the actor is the user,
     * when either has blocked the other, or when either account is gone. Callers notify once per
     * real change (a retried event that changes nothing must not call it again).
     */
    async notify(q: Queryable, input: NotifyInput): Promise<Notification | undefined> {
      const actorId = input.actorId?.toLowerCase() ?? null;
      const userId = input.userId.toLowerCase();
      if (actorId === userId) return undefined;
      if (actorId && (await deps.blocked(q, userId, actorId))) return undefined;
      const row = await repo.insert(q, {
        id: uuidv7(),
        userId,
        kind: input.kind,
        actorId,
        data: JSON.stringify(input.data),
        now: clock.now(),
      });
      if (!row) return undefined;
      const notification = toNotification(row);
      if (input.live !== false)
        q.afterCommit(() => realtime.toUser(userId, 'notification:new', notification));
      return notification;
    },

    async list(userId: string, query: ListNotificationsQuery): Promise<NotificationList> {
      const unread = query.unread ?? false;
      const limit = query.limit ?? 20;
      const before = query.cursor
        ? decodeCursor(query.cursor, (v): v is Cursor => {
            const c = v as Record<string, unknown>;
            return c.u === unread && isInstant(c.c) && isString(c.i) && UUID.test(c.i);
          })
        : undefined;
      const [rows, unreadCount] = await Promise.all([
        repo.list(db, {
          userId,
          unread,
          ...(before ? { before: { createdAt: new Date(before.c), id: before.i } } : {}),
          limit: limit + 1,
        }),
        repo.countUnread(db, userId),
      ]);
      const page = rows.slice(0, limit);
      const last = page[page.length - 1];
      return {
        items: page.map(toNotification),
        nextCursor:
          rows.length > limit && last
            ? encodeCursor({ u: unread, c: last.createdAt.toISOString(), i: last.id } satisfies Cursor)
            : null,
        unreadCount,
      };
    },

    /** Marks some of mine (or all) read. Ids that are not mine change nothing and are not reported. */
    async markRead(userId: string, body: MarkReadBody): Promise<MarkReadResult> {
      const now = clock.now();
      return db.tx(async (tx) => {
        const updated =
          'all' in body
            ? await repo.markAllRead(tx, userId, now)
            : await repo.markRead(tx, userId, body.ids, now);
        return { updated, unreadCount: await repo.countUnread(tx, userId) };
      });
    },

    unreadCount: (userId: string) => repo.countUnread(db, userId),

    /**
     * A block, inside its transaction: what the blocked person caused the blocker to be told goes.
     * (What the blocker caused them to be told stays, so the block is not revealed.)
     */
    forgetActor: (q: Queryable, userId: string, actorId: string) => repo.deleteByActor(q, userId, actorId),

    /**
     * The prune job: read notifications older than KEEP_READ_DAYS and any older than KEEP_ANY_DAYS
     * go, then each user keeps at most the newest KEEP_PER_USER. Harmless to run twice.
     */
    async prune(): Promise<{ aged: number; overCap: number }> {
      const now = clock.now().getTime();
      const readBefore = new Date(now - KEEP_READ_DAYS * DAY_MS);
      const before = new Date(now - KEEP_ANY_DAYS * DAY_MS);
      let aged = 0;
      for (;;) {
        const n = await repo.deleteAged(db, { readBefore, before, batch: PRUNE_BATCH });
        aged += n;
        if (n < PRUNE_BATCH) break;
      }
      let overCap = 0;
      for (const userId of await repo.usersOver(db, KEEP_PER_USER))
        overCap += await repo.trimUser(db, userId, KEEP_PER_USER);
      return { aged, overCap };
    },

    exportFor: (userId: string) => repo.exportFor(db, userId),
  };
}
