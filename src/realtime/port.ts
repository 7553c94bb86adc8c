import type { Server } from 'socket.io';
import type {
  AccessEnded,
  ClientToServerEvents,
  InterServerEvents,
  ServerEventData,
  ServerEventName,
  ServerToClientEvents,
  SocketData,
} from './events.js';

export type Io = Server<ClientToServerEvents, ServerToClientEvents, InterServerEvents, SocketData>;

export const userRoom = (userId: string) => `user:${userId}`;
export const sessionRoom = (sessionId: string) => `session:${sessionId}`;

/**
 * How services talk to connected clients. It goes through the socket.io adapter, so it reaches
 * sockets on every api process, and works from workers too. Call it after the write has committed
 * (Queryable.afterCommit), never before.
 */
export interface Realtime {
  toUser<E extends ServerEventName>(userId: string, event: E, data: ServerEventData<E>): void;
  toRoom<E extends ServerEventName>(room: string, event: E, data: ServerEventData<E>): void;
  /** One broadcast to every device of these users (each socket gets it once). */
  toUsers<E extends ServerEventName>(userIds: string[], event: E, data: ServerEventData<E>): void;
  /** Ends a session (logout, revocation) on every node: its connections, and onAccessEnded. */
  endSession(sessionId: string): void;
  /** Ends every session of a user (account deleted) on every node, likewise. */
  endUser(userId: string): void;
  /** Hears every session or user ended, by this process (at once) or another (through the adapter). */
  onAccessEnded(listener: (ended: AccessEnded) => void): void;
}

export function makeRealtime(io: Io): Realtime {
  const emit = (room: string | string[], event: ServerEventName, data: unknown) =>
    (io.to(room).emit as (event: string, data: unknown) => boolean)(event, data);
  const listeners: ((ended: AccessEnded) => void)[] = [];
  const tell = (ended: AccessEnded) => {
    for (const listener of listeners) listener(ended);
  };
  // From other nodes: the adapter hands over what their serverSideEmit sent, unchecked.
  io.on('access:ended', (ended: unknown) => {
    const e = ended as Partial<Record<'sessionId' | 'userId', unknown>> | null;
    if (typeof e?.sessionId === 'string') tell({ sessionId: e.sessionId });
    else if (typeof e?.userId === 'string') tell({ userId: e.userId });
  });
  const end = (room: string, ended: AccessEnded) => {
    tell(ended);
    io.serverSideEmit('access:ended', ended);
    io.to(room).emit('system:disconnecting', { reason: 'session_ended' });
    io.in(room).disconnectSockets(true);
  };
  return {
    toUser: (userId, event, data) => emit(userRoom(userId), event, data),
    toRoom: (room, event, data) => emit(room, event, data),
    toUsers: (userIds, event, data) => {
      if (userIds.length) emit(userIds.map(userRoom), event, data);
    },
    endSession: (sessionId) => end(sessionRoom(sessionId), { sessionId }),
    endUser: (userId) => end(userRoom(userId), { userId }),
    onAccessEnded: (listener) => {
      listeners.push(listener);
    },
  };
}
