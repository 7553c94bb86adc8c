import { createHash } from 'node:crypto';
import { Type as T } from '@sinclair/typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { invalid } from '../lib/errors.js';
import type { IdempotencyKey, Outcome } from '../lib/idempotency.js';

/** Declared in a route's `headers` schema so the key shows in the API description. */
export const IdempotencyHeaders = T.Object({
  'idempotency-key': T.Optional(
    T.String({
      minLength: 1,
      maxLength: 255,
      pattern: '^[\\x21-\\x7E]+$',
      description:
        'Any unique string (a UUID is ideal). A retry with the same key and body returns the first response.',
    }),
  ),
});

// Sorted keys, so the same body sent with its fields in another order is the same request.
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value ?? null);
}

/** The request's Idempotency-Key, if it sent one (signed-in routes only). */
export function idempotencyKey(request: FastifyRequest): IdempotencyKey | undefined {
  const key = request.headers['idempotency-key'];
  if (key === undefined) return undefined;
  if (typeof key !== 'string' || !request.principal)
    throw invalid('invalid_idempotency_key', 'Send one Idempotency-Key.');
  const fingerprint = createHash('sha256')
    .update(
      `${request.method} ${request.routeOptions.url}\n${canonical(request.params)}\n${canonical(request.body)}`,
    )
    .digest('hex');
  return { userId: request.principal.userId, key, fingerprint };
}

/** Sends an idempotent outcome; a replay says so in a header. */
export function sendOutcome<T>(reply: FastifyReply, outcome: Outcome<T>) {
  if (outcome.replayed) reply.header('idempotent-replayed', 'true');
  return reply.code(outcome.status).send(outcome.body as never);
}
