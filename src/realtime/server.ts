import type { Server as HttpServer, IncomingMessage } from 'node:http';
import { createAdapter } from '@socket.io/redis-streams-adapter';
import type { Redis } from 'ioredis';
import { Server } from 'socket.io';
import type { Config } from '../config.js';
import type { Deps } from '../deps.js';
import { accessCookieName } from '../lib/auth.js';
import { systemSocketHandlers } from '../modules/system/system.socket.js';
import { type AppSocket, installHandlers, type SocketHandler } from './handlers.js';
import { groupRoom, type Io, sessionRoom, userRoom } from './port.js';

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
    allowRequest: (req, cb) =>
      cb(originAllowed(req, config) ? null : 'origin_not_allowed', originAllowed(req, config)),
    ...(redis
      ? {
          adapter: createAdapter(forAdapter(redis), {
            streamName: `${config.REDIS_PREFIX}:socket.io`,
            channelPrefix: `${config.REDIS_PREFIX}:socket.io`,
            sessionKeyPrefix: `${config.REDIS_PREFIX}:sio:session:`,
            blockTimeInMs: 5000,
          }),
        }
      : {}),
  });
}

/**
 * The adapter publishes (XADD, PUBLISH) with the client it is given, and duplicates that client for its
 * stream reader and subscriber. Publishing keeps the request-path client: it fails fast, so an emit
 * during an outage still reaches this node's own sockets at once. The duplicates must not inherit its
 * options: the reader holds XREAD BLOCK longer than the command timeout, and a timed-out XREAD drops the
 * entries Redis then hands it (nothing from other nodes ever arrives); and with the offline queue off,
 * every XREAD while reconnecting fails synchronously, so the reader loop spins on rejected promises and
 * freezes the event loop for as long as Redis is unreachable.
 */
function forAdapter(redis: Redis): Redis {
  return quiet(redis, {
    duplicate: () =>
      quiet(
        redis.duplicate({
          commandTimeout: undefined,
          enableOfflineQueue: true,
          maxRetriesPerRequest: null,
          lazyConnect: false,
        }),
      ),
    // Seen as eager, so the adapter does not await connect() on its duplicates itself.
    options: { ...redis.options, lazyConnect: false },
  });
}

/**
 * The adapter issues commands it does not await (SUBSCRIBE at start-up, heartbeats); when a server is
 * closed while they are pending, their rejections would be unhandled. Every promise a command
 * returns is marked handled here; a caller that awaits it still sees the error.
 */
function quiet(client: Redis, overrides: Record<string, unknown> = {}): Redis {
  return new Proxy(client, {
    get(target, prop) {
      if (typeof prop === 'string' && prop in overrides) return overrides[prop];
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        const result = (value as (...a: unknown[]) => unknown).apply(target, args);
        if (result instanceof Promise) result.catch(() => {});
        return result;
      };
    },
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
    if (eq > 0 && part.slice(0, eq).trim() === name) {
      try {
        return decodeURIComponent(part.slice(eq + 1).trim());
      } catch {
        // A mangled value is no credential; it must not surface as a server error.
        return undefined;
      }
    }
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

  // Sockets that came back with a connection-state session that was not theirs (see below).
  const notRecovered = new WeakSet<AppSocket>();
  // Told first, then closed. Sent to this node only: a plain socket.emit goes through the adapter when
  // connection-state recovery is on, and with Redis it would still be on its way when the socket closes.
  const endSocket = (socket: AppSocket, reason: 'token_expired') => {
    io.local.to(socket.id).emit('system:disconnecting', { reason });
    socket.disconnect(true);
  };

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
      if (
        socket.recovered &&
        (socket.data.userId !== principal.userId || socket.data.sessionId !== principal.sessionId)
      ) {
        // The recovery id came from someone else's connection (another account signed in on the same
        // tab): it starts afresh instead of keeping that connection's rooms.
        for (const room of socket.rooms) if (room !== socket.id) void socket.leave(room);
        notRecovered.add(socket);
      }
      const room = userRoom(principal.userId);
      // A recovered socket is already back in its user room; it does not count against itself.
      const open = (io.of('/').adapter.rooms.get(room)?.size ?? 0) - (socket.rooms.has(room) ? 1 : 0);
      if (open >= MAX_CONNECTIONS_PER_USER) return next(new Error('too_many_connections'));
      socket.data.userId = principal.userId;
      socket.data.sessionId = principal.sessionId;
      socket.data.expiresAt = principal.expiresAt;
      next();
    } catch (err) {
      log.error({ err }, 'socket handshake failed');
      next(new Error('unavailable'));
    }
  });

  io.on('connection', (socket) => {
    void socket.join([userRoom(socket.data.userId), sessionRoom(socket.data.sessionId)]);
    // The rooms of the group tasks they are in (later changes join and leave through the adapter).
    deps.groups.groupIdsOf(socket.data.userId).then(
      (ids) => {
        if (ids.length && socket.connected) void socket.join(ids.map(groupRoom));
      },
      (err) => log.warn({ err }, 'could not join group rooms'),
    );
    // Armed only once connected: a handshake the client abandons never fires 'disconnect' to clear it.
    // Measured on the clock that validated the token, so an injected clock does not cut sockets off.
    const { expiresAt } = socket.data;
    if (expiresAt !== undefined) {
      const timer = setTimeout(
        () => endSocket(socket, 'token_expired'),
        Math.max(0, expiresAt - deps.clock.now().getTime()),
      );
      socket.once('disconnect', () => clearTimeout(timer));
    }
    installHandlers(socket, handlers, {
      rateLimiter: deps.rateLimiter,
      multiplier: config.RATE_LIMIT_MULTIPLIER,
      log,
    });
    socket.emit('system:welcome', {
      userId: socket.data.userId,
      recovered: socket.recovered && !notRecovered.has(socket),
    });
  });
}

/**
 * Ends this node's connections so the HTTP server can close; clients reconnect elsewhere. The
 * connections are closed under the sockets rather than the sockets disconnected: to a client that is a
 * dropped connection, so it reconnects by itself (through the load balancer, to another node), and the
 * session is kept for connection-state recovery there. A socket.io-level disconnect would be final.
 */
export function disconnectAllLocal(io: Io) {
  io.local.emit('system:disconnecting', { reason: 'server_shutdown' });
  io.engine?.close();
}
