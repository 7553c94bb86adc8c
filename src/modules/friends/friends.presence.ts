import type { Logger } from 'pino';
import { type Io, userRoom } from '../../realtime/port.js';

/** How long a cluster-wide presence query may take before this node answers from its own sockets. */
const CLUSTER_TIMEOUT_MS = 1000;

export type Presence = (userIds: string[]) => Promise<Set<string>>;

/**
 * Which of these users have a connected socket on any node: one fetchSockets over their rooms, which
 * the adapter answers across nodes. When the cluster does not answer in time (Redis down), this node's
 * own sockets are the answer: a friends list is never held up or failed by presence.
 */
export function socketPresence(io: Io, log: Logger, timeoutMs = CLUSTER_TIMEOUT_MS): Presence {
  const ids = (sockets: { data: { userId?: string } }[]) =>
    new Set(sockets.map((s) => s.data.userId).filter((id): id is string => typeof id === 'string'));
  return async (userIds) => {
    if (userIds.length === 0) return new Set();
    const rooms = userIds.map(userRoom);
    let timer: NodeJS.Timeout | undefined;
    try {
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('presence query timed out')), timeoutMs);
      });
      return ids(await Promise.race([io.in(rooms).fetchSockets(), timeout]));
    } catch (err) {
      log.warn({ err }, 'cluster presence unavailable; answering from this node');
      return ids(await io.local.in(rooms).fetchSockets());
    } finally {
      clearTimeout(timer);
    }
  };
}
