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
