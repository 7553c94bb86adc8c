import type { Db, Queryable } from './db.js';
import { AppError } from './errors.js';

/** A client's retry key for one mutation, with a fingerprint of what it asked. */
export interface IdempotencyKey {
  userId: string;
  key: string;
  /** Hash of method, route, parameters and body: the same key with another request is refused. */
  fingerprint: string;
}

export interface Outcome<T> {
  status: number;
  body: T;
  /** True when this is the stored answer to an earlier request with the same key. */
  replayed: boolean;
}

const KEEP_MS = 24 * 3600_000;

/**
 * Runs `fn` in a transaction that also records its answer under the key. A second request with the
 * same key waits for the first to commit (the unique key's row lock), then gets the stored answer;
 * with a different request it gets 422. A failed request stores nothing, so it may be retried.
 */
export async function idempotent<T>(
  db: Db,
  key: IdempotencyKey | undefined,
  now: Date,
  fn: (tx: Queryable) => Promise<{ status: number; body: T }>,
): Promise<Outcome<T>> {
  if (!key) return db.tx(async (tx) => ({ ...(await fn(tx)), replayed: false }));
  return db.tx(async (tx) => {
    // Expired keys are forgotten first, so an old key works again after a day, as promised.
    await tx.query('DELETE FROM idempotency_keys WHERE user_id = $1 AND key = $2 AND created_at < $3', [
      key.userId,
      key.key,
      new Date(now.getTime() - KEEP_MS),
    ]);
    const claimed = await tx.query(
      `INSERT INTO idempotency_keys (user_id, key, request_hash, status_code, response, created_at)
       VALUES ($1, $2, $3, 0, 'null', $4) ON CONFLICT (user_id, key) DO NOTHING`,
      [key.userId, key.key, key.fingerprint, now],
    );
    if (claimed.rowCount === 0) {
      const { rows } = await tx.query<{ requestHash: string; statusCode: number; response: T }>(
        'SELECT request_hash, status_code, response FROM idempotency_keys WHERE user_id = $1 AND key = $2',
        [key.userId, key.key],
      );
      const stored = rows[0];
      if (!stored || stored.requestHash !== key.fingerprint) {
        throw new AppError(
          422,
          'idempotency_key_mismatch',
          'This Idempotency-Key was used for a different request.',
        );
      }
      return { status: stored.statusCode, body: stored.response, replayed: true };
    }
    const result = await fn(tx);
    await tx.query(
      'UPDATE idempotency_keys SET status_code = $3, response = $4 WHERE user_id = $1 AND key = $2',
      [key.userId, key.key, result.status, JSON.stringify(result.body)],
    );
    return { ...result, replayed: false };
  });
}

/** Deletes keys past keeping. */
export async function pruneIdempotencyKeys(q: Queryable, now: Date): Promise<number> {
  const { rowCount } = await q.query('DELETE FROM idempotency_keys WHERE created_at < $1', [
    new Date(now.getTime() - KEEP_MS),
  ]);
  return rowCount;
}
