import type { Static, TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { Logger } from 'pino';
import type { Socket } from 'socket.io';
import { AppError } from '../lib/errors.js';
import type { RateLimiter } from '../lib/ratelimit.js';
import type {
  Ack,
  AckResponse,
  ClientToServerEvents,
  InterServerEvents,
  ServerToClientEvents,
  SocketData,
} from './events.js';

export type AppSocket = Socket<ClientToServerEvents, ServerToClientEvents, InterServerEvents, SocketData>;

export interface SocketContext {
  userId: string;
  sessionId: string;
  socket: AppSocket;
  log: Logger;
}

/** One client→server event: its payload schema, an optional per-user budget, and one service call. */
export interface SocketHandler<S extends TSchema = TSchema, R = unknown> {
  event: keyof ClientToServerEvents;
  payload: S;
  rateLimit?: { max: number; windowMs: number };
  /** Social events, like `config.verified` routes: email_not_verified until the address is confirmed. */
  verified?: boolean;
  handle(ctx: SocketContext, payload: Static<S>): Promise<R>;
}

export const defineSocketHandler = <S extends TSchema, R>(h: SocketHandler<S, R>) => h;

// A per-socket guard against floods, before any handler or store is touched.
const FLOOD_WINDOW_MS = 1000;
const FLOOD_SOFT = 30;
const FLOOD_HARD = 120;

export function installHandlers(
  socket: AppSocket,
  handlers: SocketHandler[],
  opts: {
    rateLimiter: RateLimiter;
    multiplier: number;
    requireVerifiedEmail: boolean;
    /** Asked again while the handshake said unverified: confirming the address needs no reconnection. */
    verifiedNow: (userId: string) => Promise<boolean>;
    log: Logger;
  },
) {
  const known = new Map(
    handlers.map((h) => [h.event as string, { h, check: TypeCompiler.Compile(h.payload) }]),
  );
  const log = opts.log.child({ userId: socket.data.userId, socketId: socket.id });
  let windowStart = Date.now();
  let count = 0;

  const reply = (ack: Ack<unknown> | undefined, response: AckResponse<unknown>) => {
    if (ack) ack(response);
  };
  const fail = (ack: Ack<unknown> | undefined, code: string, detail: string) =>
    reply(ack, { ok: false, error: { code, detail } });

  const flooded = (ack: Ack<unknown> | undefined): boolean => {
    const now = Date.now();
    if (now - windowStart >= FLOOD_WINDOW_MS) {
      windowStart = now;
      count = 0;
    }
    count++;
    // RATE_LIMIT_MULTIPLIER scales this guard like every other limit; 0 turns it off (load tests).
    if (opts.multiplier <= 0) return false;
    if (count > FLOOD_HARD * opts.multiplier) {
      log.warn('socket flood; disconnecting');
      socket.disconnect(true);
      return true;
    }
    if (count > FLOOD_SOFT * opts.multiplier) {
      fail(ack, 'rate_limited', 'Too many events; slow down.');
      return true;
    }
    return false;
  };

  // Every event, known or not, passes through here: nothing a client sends can throw out of a
  // listener (which would take the process down).
  socket.onAny((event: string, ...args: unknown[]) => {
    const ack = typeof args[args.length - 1] === 'function' ? (args.pop() as Ack<unknown>) : undefined;
    try {
      if (flooded(ack)) return;
      const entry = known.get(event);
      if (!entry) return fail(ack, 'unknown_event', `No event ${String(event).slice(0, 64)}.`);
      if (args.length > 1) return fail(ack, 'invalid_payload', 'Send one payload object.');
      // No payload at all means an empty one; an explicit null (or undefined, which JSON sends as null)
      // is a malformed payload like any other non-object.
      const payload = args.length === 0 ? {} : args[0];
      if (!entry.check.Check(payload)) {
        const first = entry.check.Errors(payload).First();
        return fail(ack, 'invalid_payload', `${first?.path || '/'} ${first?.message ?? 'is invalid'}`.trim());
      }
      void run(entry.h, payload, ack);
    } catch (err) {
      log.error({ err, event }, 'socket event failed');
      fail(ack, 'internal_error', 'Something went wrong on our side.');
    }
  });

  const run = async (h: SocketHandler, payload: unknown, ack: Ack<unknown> | undefined) => {
    try {
      if (h.verified && opts.requireVerifiedEmail && !socket.data.emailVerified) {
        socket.data.emailVerified = await opts.verifiedNow(socket.data.userId);
        if (!socket.data.emailVerified)
          return fail(
            ack,
            'email_not_verified',
            'Confirm your email address first; we can send the mail again.',
          );
      }
      if (h.rateLimit && opts.multiplier > 0) {
        const max = Math.max(1, Math.floor(h.rateLimit.max * opts.multiplier));
        const result = await opts.rateLimiter.hit(
          `sock:${h.event}:${socket.data.userId}`,
          max,
          h.rateLimit.windowMs,
        );
        if (!result.allowed) return fail(ack, 'rate_limited', 'Too many events; slow down.');
      }
      const data = await h.handle(
        { userId: socket.data.userId, sessionId: socket.data.sessionId, socket, log },
        payload as never,
      );
      reply(ack, { ok: true, data });
    } catch (err) {
      if (err instanceof AppError && err.status < 500) return fail(ack, err.code, err.message);
      if (err instanceof AppError) return fail(ack, err.code, 'Temporarily unavailable; try again shortly.');
      log.error({ err, event: h.event }, 'socket event failed');
      fail(ack, 'internal_error', 'Something went wrong on our side.');
    }
  };
}
