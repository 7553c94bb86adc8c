import type { IncomingMessage, Server as HttpServer } from 'node:http';
import { createAdapter } from '@socket.io/redis-streams-adapter';
import type { Redis } from 'ioredis';
import { Server } from 'socket.io';
import type { Config } from '../config.js';
import type { Deps } from '../deps.js';
import { accessCookieName } from '../lib/auth.js';
import { systemSocketHandlers } from '../modules/system/system.socket.js';
import { installHandlers, type SocketHandler } from './handlers.js';
import { type Io, sessionRoom, userRoom } from './port.js';

const MAX_CONNECTIONS_PER_USER = 20;

/**
 * The socket.io server exists in every role: api processes attach it to their HTTP server; workers
 * use it only to emit, which the Redis adapter carries to the api processes.
 */
export function createIo(config: Config, redis: Redis | undefined): Io {
  return new Server({
    path: '/socket.io',
    serveClient: false,
    // Big enough that an oversize chat message reaches validation and gets an error ack, instead of
    // the transport dropping the connection.
    maxHttpBufferSize: 256 * 1024,
    connectionStateRecovery: { maxDisconnectionDuration: 2 * 60_000, skipMiddlewares: false },
    cors: { origin: config.CORS_ORIGINS, credentials: true },
    allowRequest: (req, cb) => cb(originAllowed(req, config) ? null : 'origin_not_allowed', originAllowed(req, config)),
    ...(redis
      ? {
          adapter: createAdapter(redis, {
            streamName: `${config.REDIS_PREFIX}:socket.io`,
            channelPrefix: `${config.REDIS_PREFIX}:socket.io`,
            sessionKeyPrefix: `${config.REDIS_PREFIX}:sio:session:`,
            blockTimeInMs: 5000,
          }),
        }
      : {}),
  });
}

// Browsers always send Origin on cross-origin and WebSocket requests; a foreign one is refused.
// Native apps send none, and cannot carry a victim's cookies, so they are let through to auth.
function originAllowed(req: IncomingMessage, config: Config): boolean {
  const origin = req.headers.origin;
  return origin === undefined || config.CORS_ORIGINS.includes(origin);
}

function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return decodeURIComponent(part.slice(eq + 1).trim());
  }
  return undefined;
}

/** Every module's socket handlers, listed explicitly. */
function allHandlers(deps: Deps): SocketHandler[] {
  return [...systemSocketHandlers(deps)];
}

export function attachSockets(httpServer: HttpServer, deps: Deps) {
  const { io, config } = deps;
  const log = deps.log.child({ component: 'realtime' });
  const handlers = allHandlers(deps);
  io.attach(httpServer);

  // Runs on every connection and on every recovery (skipMiddlewares: false): a session revoked
  // while the client was away does not come back.
  io.use(async (socket, next) => {
    try {
      const fromAuth = (socket.handshake.auth as { token?: unknown } | undefined)?.token;
      const token =
        typeof fromAuth === 'string'
          ? fromAuth
          : cookieValue(socket.handshake.headers.cookie, accessCookieName(config.isProduction));
      const viaCookie = typeof fromAuth !== 'string' && token !== undefined;
      if (viaCookie && !socket.handshake.headers.origin) return next(new Error('origin_not_allowed'));
      const principal = await deps.auth.authenticate(token);
      if (!principal) return next(new Error('unauthorized'));
      const open = io.of('/').adapter.rooms.get(userRoom(principal.userId))?.size ?? 0;
      if (open >= MAX_CONNECTIONS_PER_USER) return next(new Error('too_many_connections'));
      socket.data.userId = principal.userId;
      socket.data.sessionId = principal.sessionId;
      if (principal.expiresAt) {
        const timer = setTimeout(() => {
          socket.emit('system:disconnecting', { reason: 'token_expired' });
          socket.disconnect(true);
        }, Math.max(0, principal.expiresAt - Date.now()));
        socket.once('disconnect', () => clearTimeout(timer));
      }
      next();
    } catch (err) {
      log.error({ err }, 'socket handshake failed');
      next(new Error('unavailable'));
    }
  });

  io.on('connection', (socket) => {
    void socket.join([userRoom(socket.data.userId), sessionRoom(socket.data.sessionId)]);
    installHandlers(socket, handlers, {
      rateLimiter: deps.rateLimiter,
      multiplier: config.RATE_LIMIT_MULTIPLIER,
      log,
    });
    socket.emit('system:welcome', { userId: socket.data.userId, recovered: socket.recovered });
  });
}

/** Ends this node's connections so the HTTP server can close; clients reconnect elsewhere. */
export function disconnectAllLocal(io: Io) {
  io.local.emit('system:disconnecting', { reason: 'server_shutdown' });
  io.local.disconnectSockets(true);
  io.engine?.close();
}
