import type { Redis } from 'ioredis';

export interface RateLimitResult {
  allowed: boolean;
  limit: number;
  remaining: number;
  /** Milliseconds until the window resets. */
  resetMs: number;
}

export interface RateLimiter {
  /**
   * Counts one hit against `key` in a fixed window. `onStoreFailure` is the share of the budget kept
   * when the shared store is unreachable: auth routes pass less than 1 so they never fail open.
   */
  hit(
    key: string,
    limit: number,
    windowMs: number,
    opts?: { onStoreFailure?: number },
  ): Promise<RateLimitResult>;
  /** Drops every counter whose key contains one of the fragments (a deleted account's traces). */
  forget(fragments: string[]): Promise<void>;
}

export function memoryRateLimiter(now = () => Date.now()): RateLimiter & { size(): number } {
  const windows = new Map<string, { count: number; resetAt: number }>();
  let lastSweep = now();
  const sweep = (t: number) => {
    if (t - lastSweep < 10_000) return;
    lastSweep = t;
    for (const [key, w] of windows) if (w.resetAt <= t) windows.delete(key);
  };
  return {
    async hit(key, limit, windowMs) {
      const t = now();
      sweep(t);
      let w = windows.get(key);
      if (!w || w.resetAt <= t) {
        w = { count: 0, resetAt: t + windowMs };
        windows.set(key, w);
      }
      w.count++;
      return {
        allowed: w.count <= limit,
        limit,
        remaining: Math.max(0, limit - w.count),
        resetMs: w.resetAt - t,
      };
    },
    async forget(fragments) {
      for (const key of windows.keys()) if (fragments.some((f) => key.includes(f))) windows.delete(key);
    },
    size: () => windows.size,
  };
}

// INCR and PEXPIRE in one round trip, atomically, so a crash between them cannot leave a key that
// never expires.
const HIT_SCRIPT = `
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return { count, ttl }`;

export function redisRateLimiter(redis: Redis, prefix: string, onError: (err: unknown) => void): RateLimiter {
  const fallback = memoryRateLimiter();
  return {
    async hit(key, limit, windowMs, opts) {
      try {
        const [count, ttl] = (await redis.eval(HIT_SCRIPT, 1, `${prefix}:rl:${key}`, windowMs)) as [
          number,
          number,
        ];
        return { allowed: count <= limit, limit, remaining: Math.max(0, limit - count), resetMs: ttl };
      } catch (err) {
        onError(err);
        const reduced = Math.max(1, Math.floor(limit * (opts?.onStoreFailure ?? 1)));
        return fallback.hit(key, reduced, windowMs);
      }
    },
    // A SCAN over the limiter's keys: O(keys), acceptable for the rare account deletion.
    async forget(fragments) {
      await fallback.forget(fragments);
      for (const fragment of fragments) {
        const pattern = `${prefix}:rl:*${fragment.replace(/[*?[\]\\]/g, '\\$&')}*`;
        let cursor = '0';
        do {
          const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
          if (keys.length) await redis.del(...keys);
          cursor = next;
        } while (cursor !== '0');
      }
    },
  };
}
