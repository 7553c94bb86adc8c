import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';

/** A cache is never the truth: a miss, an error or a flush only costs a trip to PostgreSQL. */
export interface Cache {
  get<T>(key: string): Promise<T | undefined>;
  set(key: string, value: unknown, ttlMs: number): Promise<void>;
  del(...keys: string[]): Promise<void>;
}

export function memoryCache(maxEntries = 10_000, now = () => Date.now()): Cache {
  const entries = new Map<string, { value: string; expiresAt: number }>();
  return {
    async get<T>(key: string) {
      const entry = entries.get(key);
      if (!entry) return undefined;
      if (entry.expiresAt <= now()) {
        entries.delete(key);
        return undefined;
      }
      // Re-insert so Map order tracks recency: the first key is always the least recently used.
      entries.delete(key);
      entries.set(key, entry);
      return JSON.parse(entry.value) as T;
    },
    async set(key, value, ttlMs) {
      entries.delete(key);
      entries.set(key, { value: JSON.stringify(value), expiresAt: now() + ttlMs });
      while (entries.size > maxEntries) {
        const oldest = entries.keys().next().value as string;
        entries.delete(oldest);
      }
    },
    async del(...keys) {
      for (const key of keys) entries.delete(key);
    },
  };
}

export function redisCache(redis: Redis, prefix: string, onError: (err: unknown) => void): Cache {
  const k = (key: string) => `${prefix}:cache:${key}`;
  return {
    async get<T>(key: string) {
      try {
        const raw = await redis.get(k(key));
        return raw === null ? undefined : (JSON.parse(raw) as T);
      } catch (err) {
        onError(err);
        return undefined;
      }
    },
    async set(key, value, ttlMs) {
      try {
        await redis.set(k(key), JSON.stringify(value), 'PX', Math.max(1, Math.round(ttlMs)));
      } catch (err) {
        onError(err);
      }
    },
    async del(...keys) {
      if (keys.length === 0) return;
      // Callers keep TTLs short for anything whose invalidation matters, so a failed delete while
      // Redis is away is bounded by the TTL rather than turned into a failed request.
      try {
        await redis.del(...keys.map(k));
      } catch (err) {
        onError(err);
      }
    },
  };
}

/**
 * Invalidation by version token, for entries a read computes from the database. The reader reads
 * the token *before* the database and keys its entry by it; a write bumps the token (a fresh random
 * value) *after* its transaction commits. Deleting the entry after the commit instead has a hole: a
 * reader that queried just before the commit can store the old rows just after the delete, served
 * until the TTL. Here that late reader stores them under the old token, which nobody reads again. A
 * missing token (never set, evicted, flushed) becomes a fresh random one, never a fixed default
 * that could revive entries stored under it earlier. With Redis every process shares the tokens.
 */
export function versionTokens(cache: Cache, ttlMs = 24 * 3600_000) {
  return {
    async read(key: string): Promise<string> {
      const current = await cache.get<unknown>(key);
      if (typeof current === 'string') return current;
      const fresh = randomUUID();
      await cache.set(key, fresh, ttlMs);
      return fresh;
    },
    bump: (key: string) => cache.set(key, randomUUID(), ttlMs),
  };
}

/**
 * The entry under `key` while it has not ended at `now`, or computed and stored until the end that
 * `compute` gives. Ends are kept on the caller's (injected) clock: the cache's own TTL runs on the
 * wall clock, or Redis's.
 */
export async function cachedUntil<T>(
  cache: Cache,
  key: string,
  now: number,
  compute: () => Promise<{ value: T; until: number } | undefined>,
): Promise<T | undefined> {
  const hit = await cache.get<{ value: T; until: number }>(key);
  if (hit && typeof hit.until === 'number' && hit.until > now) return hit.value;
  const fresh = await compute();
  if (!fresh) return undefined;
  if (fresh.until > now) await cache.set(key, fresh, fresh.until - now);
  return fresh.value;
}
