import type { Logger } from 'pino';
import { uuidv7 } from 'uuidv7';
import type { Clock } from '../../lib/clock.js';
import type { Db, Queryable } from '../../lib/db.js';
import { AppError, conflict, invalid, notFound } from '../../lib/errors.js';
import { type IdempotencyKey, idempotent, type Outcome } from '../../lib/idempotency.js';
import type { Outbox } from '../../lib/outbox.js';
import type { Realtime } from '../../realtime/port.js';
import type { BadgesService } from '../badges/badges.service.js';
import type { DailiesService } from '../dailies/dailies.service.js';
import type { GroupsService } from '../groups/groups.service.js';
import type { NotificationsService } from '../notifications/notifications.service.js';
import {
  decodeCursor,
  encodeCursor,
  isInstant,
  isString,
  type PublicUserRow,
  summaryMaker,
  UUID,
} from '../users/users.summary.js';
import type { Presence } from './friends.presence.js';
import type { FriendRequestRow } from './friends.repo.js';
import * as repo from './friends.repo.js';
import type {
  BlockedUser,
  BlockList,
  Friend,
  FriendList,
  FriendRequest,
  FriendRequestList,
  FriendsNotifyPayload,
  ListFriendRequestsQuery,
  PageQuery,
} from './friends.schemas.js';

export const FRIENDS_NOTIFY_JOB = 'friends.notify';

/** How `a` relates to `b`, from a's side. */
export interface Relation {
  isFriend: boolean;
  /** a has blocked b. */
  blocking: boolean;
  /** b has blocked a. */
  blockedBy: boolean;
  /** Either of the two blocked the other: no messages, invitations or requests between them. */
  blocked: boolean;
  /** A pending friend request between them: outgoing = a asked b. */
  pendingRequest: { id: string; direction: 'incoming' | 'outgoing' } | null;
}

const toRequest = (r: FriendRequestRow): FriendRequest => ({
  id: r.id,
  fromUserId: r.fromUserId,
  toUserId: r.toUserId,
  status: r.status,
  createdAt: r.createdAt.toISOString(),
});

const requestNotFound = () => notFound('friend request');
const userNotFound = () => notFound('user');
const notPending = () => conflict('request_not_pending', 'This request was already answered the other way.');

const isUniqueViolation = (err: unknown) => (err as { code?: string } | null)?.code === '23505';

export type FriendsService = ReturnType<typeof makeFriendsService>;

export function makeFriendsService(deps: {
  db: Db;
  clock: Clock;
  outbox: Outbox;
  realtime: Realtime;
  presence: Presence;
  dailies: Pick<DailiesService, 'stats'>;
  notifications: Pick<NotificationsService, 'notify' | 'forgetActor'>;
  /** A new friendship may earn either person a badge. */
  badges: Pick<BadgesService, 'queue'>;
  /** Group invitations go to friends only; the end of a friendship ends them. */
  groups: Pick<GroupsService, 'cancelInvitationsBetween'>;
  log: Logger;
  publicUrl: string;
}) {
  const { db, clock, outbox, realtime, notifications, log } = deps;
  const toSummary = summaryMaker(deps.publicUrl);
  const notify = (q: Queryable, payload: FriendsNotifyPayload) => outbox.add(q, FRIENDS_NOTIFY_JOB, payload);

  async function relation(q: Queryable, a: string, b: string): Promise<Relation> {
    const r = await repo.relation(q, a, b);
    return {
      isFriend: r.isFriend,
      blocking: r.blocking,
      blockedBy: r.blockedBy,
      blocked: r.blocking || r.blockedBy,
      pendingRequest:
        r.requestId && r.requestFrom
          ? { id: r.requestId, direction: r.requestFrom.toLowerCase() === a ? 'outgoing' : 'incoming' }
          : null,
    };
  }

  /** Accepts a pending request under its pair lock: the friendship, and the sender hears of it. */
  async function acceptLocked(tx: Queryable, request: FriendRequestRow, now: Date) {
    const accepted = await repo.answerRequest(tx, request.id, 'accepted', now);
    if (!accepted) return undefined;
    await repo.insertFriendship(tx, accepted.fromUserId, accepted.toUserId, now);
    await deps.badges.queue(tx, accepted.fromUserId);
    await deps.badges.queue(tx, accepted.toUserId);
    await notify(tx, { kind: 'accepted', requestId: accepted.id });
    await notifications.notify(tx, {
      userId: accepted.fromUserId,
      kind: 'friend_accepted',
      actorId: accepted.toUserId,
      data: { requestId: accepted.id },
    });
    tx.afterCommit(() =>
      log.info({ requestId: accepted.id, userId: accepted.toUserId }, 'friend request accepted'),
    );
    return accepted;
  }

  /**
   * Finds a request the caller may answer (as `role`) and locks its pair, so it cannot change under
   * the caller; anyone else's request is not found.
   */
  async function lockedRequest(tx: Queryable, userId: string, id: string, role: 'recipient' | 'sender') {
    if (!UUID.test(id)) throw requestNotFound();
    const found = await repo.findRequest(tx, id);
    const party = found && (role === 'recipient' ? found.toUserId : found.fromUserId);
    if (!found || party !== userId) throw requestNotFound();
    await repo.lockPair(tx, found.fromUserId, found.toUserId, 'exclusive');
    // Read again under the lock: a block or another answer may have just committed.
    return (await repo.findRequest(tx, id)) as FriendRequestRow;
  }

  async function sendOnce(
    userId: string,
    targetId: string,
    key: IdempotencyKey | undefined,
  ): Promise<Outcome<FriendRequest>> {
    const now = clock.now();
    return idempotent(db, key, now, async (tx) => {
      if (!(await repo.lockUser(tx, targetId))) throw userNotFound();
      await repo.lockPair(tx, userId, targetId, 'exclusive');
      const rel = await relation(tx, userId, targetId);
      // Someone who blocked me, or whom I blocked, is not there for me.
      if (rel.blocked) throw userNotFound();
      if (rel.isFriend) throw conflict('already_friends', 'You are friends already.');
      if (rel.pendingRequest?.direction === 'outgoing')
        throw conflict('request_pending', 'You asked already; wait for an answer.');
      if (rel.pendingRequest) {
        // They asked me first: asking back is saying yes.
        const theirs = (await repo.findRequest(tx, rel.pendingRequest.id)) as FriendRequestRow;
        const accepted = await acceptLocked(tx, theirs, now);
        if (accepted) return { status: 201, body: toRequest(accepted) };
      }
      const row = await repo.insertRequest(tx, { id: uuidv7(), fromUserId: userId, toUserId: targetId, now });
      await notify(tx, { kind: 'request', requestId: row.id });
      await notifications.notify(tx, {
        userId: targetId,
        kind: 'friend_request',
        actorId: userId,
        data: { requestId: row.id },
      });
      tx.afterCommit(() => log.info({ requestId: row.id }, 'friend request sent'));
      return { status: 201, body: toRequest(row) };
    });
  }

  function pageOf<R, T>(rows: R[], limit: number, toItem: (r: R) => T, cursorOf: (r: R) => unknown) {
    const page = rows.slice(0, limit);
    const last = page[page.length - 1];
    return {
      items: page.map(toItem),
      nextCursor: rows.length > limit && last !== undefined ? encodeCursor(cursorOf(last)) : null,
    };
  }

  return {
    exportFor: (userId: string) => repo.exportRelations(db, userId),

    /**
     * How `a` relates to `b`. Pass the caller's transaction as `q` to read it inside that
     * transaction; `lock: 'shared'` also holds the pair until it ends, so a block committing meanwhile
     * waits for it (chat sends and group invitations take it; their effects then never follow a block).
     */
    async relation(
      a: string,
      b: string,
      q: Queryable = db,
      opts: { lock?: 'shared' | 'exclusive' } = {},
    ): Promise<Relation> {
      const [x, y] = [a.toLowerCase(), b.toLowerCase()];
      if (opts.lock) await repo.lockPair(q, x, y, opts.lock);
      return relation(q, x, y);
    },

    async areFriends(a: string, b: string, q: Queryable = db): Promise<boolean> {
      return (await relation(q, a.toLowerCase(), b.toLowerCase())).isFriend;
    },

    /** Whether either of the two blocked the other. */
    async isBlocked(a: string, b: string, q: Queryable = db): Promise<boolean> {
      return (await relation(q, a.toLowerCase(), b.toLowerCase())).blocked;
    },

    /**
     * Asks `targetId` to be friends. When they already asked the caller, this accepts theirs (and
     * returns it, accepted). Race-safe: the pair lock orders concurrent requests, and the unique
     * pending-pair index backs it up (a violation is retried once, then reads as the other's request).
     */
    async sendRequest(
      userId: string,
      targetId: string,
      key?: IdempotencyKey,
    ): Promise<Outcome<FriendRequest>> {
      const target = targetId.toLowerCase();
      if (target === userId)
        throw invalid('cannot_befriend_self', 'You cannot send a friend request to yourself.', [
          { field: 'body/userId', message: 'is you' },
        ]);
      try {
        return await sendOnce(userId, target, key);
      } catch (err) {
        if (!isUniqueViolation(err)) throw err;
        return sendOnce(userId, target, key);
      }
    },

    async listRequests(userId: string, query: ListFriendRequestsQuery): Promise<FriendRequestList> {
      const direction = query.direction ?? 'incoming';
      const limit = query.limit ?? 20;
      const before = query.cursor
        ? decodeCursor(query.cursor, (v): v is { d: string; c: string; i: string } => {
            const c = v as Record<string, unknown>;
            return c.d === direction && isInstant(c.c) && isString(c.i) && UUID.test(c.i);
          })
        : undefined;
      const rows = await repo.listPendingRequests(db, {
        userId,
        direction,
        ...(before ? { before: { createdAt: new Date(before.c), id: before.i } } : {}),
        limit: limit + 1,
      });
      return pageOf(rows, limit, toRequest, (r) => ({ d: direction, c: r.createdAt.toISOString(), i: r.id }));
    },

    /** The recipient says yes. Accepting an accepted request returns it unchanged. */
    async accept(userId: string, id: string): Promise<FriendRequest> {
      const now = clock.now();
      return db.tx(async (tx) => {
        const request = await lockedRequest(tx, userId, id, 'recipient');
        if (request.status === 'accepted') return toRequest(request);
        if (request.status === 'cancelled') throw requestNotFound();
        if (request.status === 'declined') throw notPending();
        const accepted = await acceptLocked(tx, request, now);
        if (!accepted) throw notPending();
        return toRequest(accepted);
      });
    },

    /** The recipient says no; the sender is not told. Declining a declined request returns it unchanged. */
    async decline(userId: string, id: string): Promise<FriendRequest> {
      const now = clock.now();
      return db.tx(async (tx) => {
        const request = await lockedRequest(tx, userId, id, 'recipient');
        if (request.status === 'declined') return toRequest(request);
        if (request.status === 'cancelled') throw requestNotFound();
        if (request.status === 'accepted') throw notPending();
        const declined = await repo.answerRequest(tx, request.id, 'declined', now);
        if (!declined) throw notPending();
        return toRequest(declined);
      });
    },

    /** The sender withdraws a pending request; anything else (answered, cancelled) is not found. */
    async cancel(userId: string, id: string): Promise<void> {
      const now = clock.now();
      await db.tx(async (tx) => {
        const request = await lockedRequest(tx, userId, id, 'sender');
        if (request.status !== 'pending') throw requestNotFound();
        await repo.answerRequest(tx, request.id, 'cancelled', now);
      });
    },

    /** My friends by username, with whether each is connected now and their current streak. */
    async listFriends(userId: string, query: PageQuery): Promise<FriendList> {
      const limit = query.limit ?? 20;
      const after = query.cursor
        ? decodeCursor(query.cursor, (v): v is { k: string } => isString((v as { k?: unknown }).k)).k
        : undefined;
      const rows = await repo.listFriends(db, {
        userId,
        ...(after !== undefined ? { after } : {}),
        limit: limit + 1,
      });
      const page = rows.slice(0, limit);
      const ids = page.map((r) => r.id);
      const [online, streaks] = await Promise.all([
        deps.presence(ids),
        Promise.all(
          ids.map((id) =>
            deps.dailies.stats(id).then(
              (s) => s.currentStreak,
              // A friend deleting their account right now: the list still answers.
              (err) => {
                if (err instanceof AppError && err.status === 404) return 0;
                throw err;
              },
            ),
          ),
        ),
      ]);
      const friends: Friend[] = page.map((r, i) => ({
        ...toSummary(r),
        online: online.has(r.id),
        currentStreak: streaks[i] ?? 0,
      }));
      const last = page[page.length - 1];
      return {
        items: friends,
        nextCursor: rows.length > limit && last ? encodeCursor({ k: last.key }) : null,
      };
    },

    /** Ends a friendship; the other person hears of it. */
    async unfriend(userId: string, otherId: string): Promise<void> {
      if (!UUID.test(otherId)) throw notFound('friend');
      const other = otherId.toLowerCase();
      await db.tx(async (tx) => {
        await repo.lockPair(tx, userId, other, 'exclusive');
        if (!(await repo.deleteFriendship(tx, userId, other))) throw notFound('friend');
        await deps.groups.cancelInvitationsBetween(tx, userId, other);
        await notify(tx, { kind: 'removed', toUserId: other, userId });
        tx.afterCommit(() => log.info({ friendId: other }, 'friendship ended'));
      });
    },

    /**
     * Blocks someone: ends the friendship and any pending request or group invitation either way, and from then on each
     * is hidden from the other (search, profile, requests), and my notifications they caused go. A
     * former friend is told only what an unfriend tells, so the block itself is never revealed.
     * Blocking twice returns the first block.
     */
    async block(userId: string, targetId: string): Promise<Outcome<BlockedUser>> {
      const target = targetId.toLowerCase();
      if (target === userId)
        throw invalid('cannot_block_self', 'You cannot block yourself.', [
          { field: 'body/userId', message: 'is you' },
        ]);
      const now = clock.now();
      return db.tx(async (tx) => {
        const user = await repo.lockUser(tx, target);
        if (!user) throw userNotFound();
        await repo.lockPair(tx, userId, target, 'exclusive');
        const block = await repo.insertBlock(tx, userId, target, now);
        const wasFriend = await repo.deleteFriendship(tx, userId, target);
        await repo.cancelPendingBetween(tx, userId, target, now);
        await deps.groups.cancelInvitationsBetween(tx, userId, target);
        await notifications.forgetActor(tx, userId, target);
        if (wasFriend) await notify(tx, { kind: 'removed', toUserId: target, userId });
        if (block.created) tx.afterCommit(() => log.info({ blockedId: target }, 'user blocked'));
        return {
          status: block.created ? 201 : 200,
          body: { ...toSummary(user), blockedAt: block.createdAt.toISOString() },
          replayed: false,
        };
      });
    },

    /** Lifts my block; a friendship it ended stays ended. */
    async unblock(userId: string, targetId: string): Promise<void> {
      if (!UUID.test(targetId)) throw notFound('block');
      const target = targetId.toLowerCase();
      await db.tx(async (tx) => {
        await repo.lockPair(tx, userId, target, 'exclusive');
        if (!(await repo.deleteBlock(tx, userId, target))) throw notFound('block');
      });
    },

    async listBlocks(userId: string, query: PageQuery): Promise<BlockList> {
      const limit = query.limit ?? 20;
      const before = query.cursor
        ? decodeCursor(query.cursor, (v): v is { c: string; i: string } => {
            const c = v as Record<string, unknown>;
            return isInstant(c.c) && isString(c.i) && UUID.test(c.i);
          })
        : undefined;
      const rows = await repo.listBlocks(db, {
        userId,
        ...(before ? { before: { blockedAt: new Date(before.c), id: before.i } } : {}),
        limit: limit + 1,
      });
      return pageOf(
        rows,
        limit,
        (r) => ({ ...toSummary(r), blockedAt: r.blockedAt.toISOString() }),
        (r) => ({ c: r.blockedAt.toISOString(), i: r.id }),
      );
    },

    /**
     * The friends.notify job. The state is read again when it runs, so a notice that no longer holds
     * (a request cancelled or blocked meanwhile, a friendship already ended or made again) is dropped.
     * Running twice sends the event twice at most; clients key it by the request or user id.
     */
    async deliver(payload: FriendsNotifyPayload): Promise<void> {
      if (payload.kind === 'removed') {
        if ((await relation(db, payload.toUserId, payload.userId)).isFriend) return;
        realtime.toUser(payload.toUserId, 'friend:removed', { userId: payload.userId });
        return;
      }
      const request = await repo.findRequest(db, payload.requestId);
      if (!request) return;
      if (payload.kind === 'request') {
        if (request.status !== 'pending') return;
        const [from] = await repo.findUsers(db, [request.fromUserId]);
        if (!from) return;
        realtime.toUser(request.toUserId, 'friend:request', {
          request: toRequest(request),
          from: toSummary(from),
        });
        return;
      }
      if (request.status !== 'accepted') return;
      const rel = await relation(db, request.fromUserId, request.toUserId);
      if (!rel.isFriend) return;
      const [friend] = await repo.findUsers(db, [request.toUserId]);
      if (!friend) return;
      realtime.toUser(request.fromUserId, 'friend:accepted', {
        request: toRequest(request),
        friend: toSummary(friend as PublicUserRow),
      });
    },
  };
}
