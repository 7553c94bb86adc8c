import type { Logger } from 'pino';
import type { Clock } from '../../lib/clock.js';
import type { Db } from '../../lib/db.js';
import { socketsAcross } from '../../realtime/cluster.js';
import { type Io, userRoom } from '../../realtime/port.js';
import * as repo from './friends.repo.js';

export type Presence = (userIds: string[]) => Promise<Set<string>>;

/**
 * Which of these users have a connected socket on any node. When the cluster does not answer in time
 * (Redis down), this node's own sockets are the answer: a friends list is never held up or failed by
 * presence.
 */
export function socketPresence(io: Io, log: Logger, timeoutMs?: number): Presence {
  const onFallback = (err: unknown) =>
    log.warn({ err }, 'cluster presence unavailable; answering from this node');
  return async (userIds) => {
    const sockets = await socketsAcross(io, userIds.map(userRoom), {
      onFallback,
      ...(timeoutMs !== undefined ? { timeoutMs } : {}),
    });
    return new Set(sockets.map((s) => s.data.userId).filter((id): id is string => typeof id === 'string'));
  };
}

/**
 * Tells a user's friends when they come online (their first connection anywhere) and when they go
 * offline (no connection anywhere once the grace has passed; the last-seen time is kept). A client
 * that vanishes without closing is dropped by socket.io's ping timeout, which lands here too.
 */
export function presenceAnnouncer(deps: {
  db: Db;
  io: Io;
  clock: Clock;
  log: Logger;
  presence: Presence;
  graceMs: number;
}) {
  const { db, io, clock, log, presence, graceMs } = deps;
  const timers = new Set<NodeJS.Timeout>();
  let closed = false;

  const announce = async (userId: string, online: boolean, lastSeenAt: Date | null) => {
    const friends = await repo.friendIds(db, userId);
    if (friends.length === 0) return;
    io.to(friends.map(userRoom)).emit('presence:update', {
      userId,
      online,
      lastSeenAt: lastSeenAt ? lastSeenAt.toISOString() : null,
    });
  };
  const failed = (err: unknown) => log.warn({ err }, 'presence announcement failed');

  return {
    /**
     * After a socket joined its user room. The first of the user's sockets on this node announces:
     * counted synchronously, so two tabs opening at once cannot both think the other came first. A
     * user already online on another node is announced again, which changes nothing for friends.
     */
    connected(userId: string) {
      if ((io.of('/').adapter.rooms.get(userRoom(userId))?.size ?? 0) > 1) return;
      announce(userId, true, null).catch(failed);
    },
    /** After a socket closed. */
    disconnected(userId: string) {
      // io.close() disconnects the last sockets after close() below, when the pool is already ending.
      if (closed) return;
      const at = clock.now();
      const timer = setTimeout(() => {
        timers.delete(timer);
        presence([userId])
          .then(async (online) => {
            if (online.has(userId)) return;
            await repo.touchLastSeen(db, userId, at);
            await announce(userId, false, at);
          })
          .catch(failed);
      }, graceMs);
      timers.add(timer);
    },
    /** Shutdown: pending announcements are dropped (the other nodes' view is what counts). */
    close() {
      closed = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
    },
  };
}
