import type { Server } from 'socket.io';
import type {
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
  /** Ends every connection of a session (logout, revocation), on every node. */
  endSession(sessionId: string): void;
  /** Ends every connection of a user (account deleted), on every node. */
  endUser(userId: string): void;
}

export function makeRealtime(io: Io): Realtime {
  const emit = (room: string | string[], event: ServerEventName, data: unknown) =>
    (io.to(room).emit as (event: string, data: unknown) => boolean)(event, data);
  const end = (room: string) => {
    io.to(room).emit('system:disconnecting', { reason: 'session_ended' });
    io.in(room).disconnectSockets(true);
  };
  return {
    toUser: (userId, event, data) => emit(userRoom(userId), event, data),
    toRoom: (room, event, data) => emit(room, event, data),
    toUsers: (userIds, event, data) => {
      if (userIds.length) emit(userIds.map(userRoom), event, data);
    },
    endSession: (sessionId) => end(sessionRoom(sessionId)),
    endUser: (userId) => end(userRoom(userId)),
  };
}
