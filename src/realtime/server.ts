import type { Server as HttpServer, IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { createAdapter } from '@socket.io/redis-streams-adapter';
import type { Redis } from 'ioredis';
import { Server } from 'socket.io';
import type { Config } from '../config.js';
import type { Deps } from '../deps.js';
import { accessCookieName } from '../lib/auth.js';
import type { Principal } from '../lib/tokens.js';
import { chatSocketHandlers } from '../modules/chat/chat.socket.js';
import { leaderboardsSocketHandlers } from '../modules/leaderboards/leaderboards.socket.js';
import { systemSocketHandlers } from '../modules/system/system.socket.js';
import { socketsAcross } from './cluster.js';
import { type AppSocket, installHandlers, type SocketHandler } from './handlers.js';
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
    // A connection that never joins the namespace (socket.io's default waits 45 s) is held no longer than
    // an HTTP request may take to arrive.
    connectTimeout: config.REQUEST_TIMEOUT_MS,
    pingInterval: config.SOCKET_PING_INTERVAL_MS,
    pingTimeout: config.SOCKET_PING_TIMEOUT_MS,
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

/**
 * The access token a handshake carries: `auth.token`, or the session cookie, which counts only with
 * an Origin (browsers always send one; a cookie without one is not from a page we allowed).
 */
function credentialOf(
  auth: unknown,
  headers: IncomingHttpHeaders,
  config: Config,
): string | undefined | 'origin_not_allowed' {
  const fromAuth = (auth as { token?: unknown } | undefined)?.token;
  if (typeof fromAuth === 'string') return fromAuth;
  const fromCookie = cookieValue(headers.cookie, accessCookieName(config.isProduction));
  if (fromCookie !== undefined && !headers.origin) return 'origin_not_allowed';
  return fromCookie;
}

// The part of socket.io-adapter's Session this reads.
type RestoreSession = (pid: string, offset: string) => Promise<{ data: unknown } | null>;

/**
 * Connection-state recovery restores a session's rooms and sends the packets it missed while the
 * socket is created, before any middleware runs (socket.io 4.8, Namespace#_createSocket). So a
 * session is restored only for the principal it belonged to, checked first: a revoked session, an
 * expired token or another user's token starts afresh with nothing replayed (the client resyncs).
 */
function guardRecovery(io: Io, deps: Pick<Deps, 'auth' | 'config' | 'log'>): WeakMap<object, Principal> {
  const nsp = io.of('/') as unknown as {
    _createSocket(client: { request: IncomingMessage }, auth: Record<string, unknown>): Promise<unknown>;
    adapter: { restoreSession: RestoreSession };
  };
  // pid → the principal of the connection asking to restore it, while that connection is created.
  const claims = new Map<string, Principal>();
  // Restored sockets → the principal just checked for them, which the handshake middleware reuses.
  const restored = new WeakMap<object, Principal>();
  const restore: RestoreSession = nsp.adapter.restoreSession.bind(nsp.adapter);
  nsp.adapter.restoreSession = async (pid, offset) => {
    const principal = claims.get(pid);
    if (!principal) return null;
    const session = await restore(pid, offset);
    const owner = session?.data as { userId?: string; sessionId?: string } | undefined;
    return owner?.userId === principal.userId && owner.sessionId === principal.sessionId ? session : null;
  };
  const create = nsp._createSocket.bind(nsp);
  nsp._createSocket = async (client, auth) => {
    const pid = auth?.pid;
    if (typeof pid !== 'string') return create(client, auth);
    const credential = credentialOf(auth, client.request.headers, deps.config);
    const principal =
      credential === 'origin_not_allowed'
        ? null
        : await deps.auth.authenticate(credential).catch((err: unknown) => {
            deps.log.warn({ err }, 'recovery check failed; starting afresh');
            return null;
          });
    if (!principal) return create(client, auth);
    claims.set(pid, principal);
    try {
      const socket = await create(client, auth);
      if ((socket as { recovered?: boolean }).recovered) restored.set(socket as object, principal);
      return socket;
    } finally {
      claims.delete(pid);
    }
  };
  return restored;
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

/**
 * When the server closes a WebSocket (ping timeout, never joined, session ended, shutdown), ws sends a
 * close frame and keeps the TCP connection until the client answers it, 30 s by default: a client that
 * stopped reading held its connection that long after it was declared dead. A live client answers within
 * a round trip, so the wait is the ping timeout, at most 5 s.
 * ws reads the option from its server's options as each connection is made. engine.io keeps that server
 * private (hence the guarded reach into it) and makes a new one whenever the HTTP server starts
 * listening, after attach: so it is set again then (engine.io's listener was added first, so runs first).
 */
function limitCloseHandshake(io: Io, httpServer: HttpServer, config: Config) {
  const apply = () => {
    const ws = (io.engine as unknown as { ws?: { options?: { closeTimeout?: number } } }).ws;
    if (ws?.options) ws.options.closeTimeout = Math.min(config.SOCKET_PING_TIMEOUT_MS, 5000);
  };
  apply();
  httpServer.on('listening', apply);
}

/** Every module's socket handlers, listed explicitly. */
function allHandlers(deps: Deps): SocketHandler[] {
  return [...systemSocketHandlers(deps), ...chatSocketHandlers(deps), ...leaderboardsSocketHandlers(deps)];
}

export function attachSockets(httpServer: HttpServer, deps: Deps) {
  const { io, config } = deps;
  const log = deps.log.child({ component: 'realtime' });
  const handlers = allHandlers(deps);
  io.attach(httpServer);
  limitCloseHandshake(io, httpServer, config);
  const restoredSockets = guardRecovery(io, { ...deps, log });
  const adopt = (socket: AppSocket, principal: Principal) => {
    socket.data.userId = principal.userId;
    socket.data.sessionId = principal.sessionId;
    socket.data.expiresAt = principal.expiresAt;
    socket.data.emailVerified = principal.emailVerified === true;
  };
  // Leaderboard changes from every node and worker; this node pushes them to its own watchers.
  io.on('leaderboards:dirty', (rooms) => deps.leaderboards.markDirty(Array.isArray(rooms) ? rooms : []));
  deps.leaderboards.startLive();

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
      // A restored socket is back in its rooms already, but socket.io delivers broadcasts only to
      // connected sockets: any await here would be a window in which messages to it are dropped. Its
      // credential was checked for this very connection just before the restore, and it was counted
      // when it first connected, so it goes through without waiting.
      const checked = restoredSockets.get(socket);
      if (checked) {
        adopt(socket, checked);
        return next();
      }
      const credential = credentialOf(socket.handshake.auth, socket.handshake.headers, config);
      if (credential === 'origin_not_allowed') return next(new Error('origin_not_allowed'));
      const principal = await deps.auth.authenticate(credential);
      if (!principal) return next(new Error('unauthorized'));
      const room = userRoom(principal.userId);
      // Every node's sockets count; a recovered socket is already back in its user room and does not
      // count against itself.
      const sockets = await socketsAcross(io, [room], {
        onFallback: (err) => log.warn({ err }, 'cluster socket count unavailable; counting this node'),
      });
      const open = sockets.filter((s) => s.id !== socket.id).length;
      if (open >= MAX_CONNECTIONS_PER_USER) return next(new Error('too_many_connections'));
      adopt(socket, principal);
      next();
    } catch (err) {
      log.error({ err }, 'socket handshake failed');
      next(new Error('unavailable'));
    }
  });

  io.on('connection', (socket) => {
    void socket.join([userRoom(socket.data.userId), sessionRoom(socket.data.sessionId)]);
    deps.presenceUpdates.connected(socket.data.userId);
    socket.once('disconnect', () => deps.presenceUpdates.disconnected(socket.data.userId));
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
      requireVerifiedEmail: config.REQUIRE_VERIFIED_EMAIL,
      verifiedNow: async (userId) =>
        (await deps.accounts.getMe(userId).catch(() => undefined))?.emailVerified === true,
      log,
    });
    socket.emit('system:welcome', {
      userId: socket.data.userId,
      // With Redis, restoring a session takes round trips to it, during which this node may drop
      // broadcasts meant for the socket (neither replayed nor delivered): the client is told to resync
      // by seq. Missed packets are still replayed; clients drop what they already have by seq.
      recovered: socket.recovered && !deps.redis,
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
