import type { Io } from './port.js';

/** How long a cluster-wide socket query may take before this node answers from its own sockets. */
export const CLUSTER_TIMEOUT_MS = 1000;

/**
 * The sockets in these rooms on every node (the adapter asks the others), as id and data. When the
 * cluster does not answer in time (Redis down), this node's own sockets are the answer: callers get a
 * partial view, never an error or a wait.
 */
export async function socketsAcross(
  io: Io,
  rooms: string[],
  opts: { timeoutMs?: number; onFallback?: (err: unknown) => void } = {},
): Promise<{ id: string; data: { userId?: string } }[]> {
  if (rooms.length === 0) return [];
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error('cluster socket query timed out')),
        opts.timeoutMs ?? CLUSTER_TIMEOUT_MS,
      );
    });
    return await Promise.race([io.in(rooms).fetchSockets(), timeout]);
  } catch (err) {
    opts.onFallback?.(err);
    return localSockets(io, rooms);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * This node's sockets in these rooms, read from its own room table: even `io.local...fetchSockets()`
 * asks Redis how many servers there are, which fails while Redis is down.
 */
function localSockets(io: Io, rooms: string[]): { id: string; data: { userId?: string } }[] {
  const nsp = io.of('/');
  const ids = new Set<string>();
  for (const room of rooms) for (const id of nsp.adapter.rooms.get(room) ?? []) ids.add(id);
  return [...ids].flatMap((id) => {
    const socket = nsp.sockets.get(id);
    return socket ? [{ id, data: socket.data }] : [];
  });
}
