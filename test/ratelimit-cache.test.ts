import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { memoryCache, redisCache } from '../src/lib/cache.js';
import { memoryRateLimiter, redisRateLimiter } from '../src/lib/ratelimit.js';
import { lane } from './helpers.js';

const prefix = `t${randomBytes(5).toString('hex')}`;
const clients: Redis[] = [];
const client = (url: string) => {
  const c = new Redis(url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  c.on('error', () => {});
  clients.push(c);
  return c;
};
afterAll(async () => {
  if (lane.redisUrl) {
    const c = client(lane.redisUrl);
    await c.connect();
    const keys = await c.keys(`${prefix}:*`);
    if (keys.length) await c.del(...keys);
  }
  for (const c of clients) c.disconnect();
});

describe('rate limiter', () => {
  it('counts a fixed window and resets after it', async () => {
    let now = 0;
    const limiter = memoryRateLimiter(() => now);
    const results = [];
    for (let i = 0; i < 4; i++) results.push(await limiter.hit('k', 3, 1000));
    expect(results.map((r) => r.allowed)).toEqual([true, true, true, false]);
    expect(results[3]).toMatchObject({ remaining: 0, limit: 3, resetMs: 1000 });
    now = 1000;
    expect((await limiter.hit('k', 3, 1000)).allowed).toBe(true);
  });

  it('forgets expired windows, so memory stays bounded', async () => {
    let now = 0;
    const limiter = memoryRateLimiter(() => now);
    for (let i = 0; i < 1000; i++) await limiter.hit(`ip:${i}`, 5, 1000);
    now = 20_000;
    await limiter.hit('fresh', 5, 1000);
    expect(limiter.size()).toBe(1);
  });

  it('with Redis unreachable, falls back to a per-process limit at the reduced budget (never fails open)', async () => {
    const dead = client('redis://127.0.0.1:1');
    const errors: unknown[] = [];
    const limiter = redisRateLimiter(dead, prefix, (e) => errors.push(e));
    const allowed = [];
    for (let i = 0; i < 6; i++)
      allowed.push((await limiter.hit('login:ip:1', 4, 60_000, { onStoreFailure: 0.5 })).allowed);
    expect(allowed).toEqual([true, true, false, false, false, false]);
    expect(errors.length).toBe(6);
  });

  it.runIf(lane.services)('shares one budget between processes through Redis', async () => {
    const a = client(lane.redisUrl as string);
    const b = client(lane.redisUrl as string);
    await Promise.all([a.connect(), b.connect()]);
    const [la, lb] = [redisRateLimiter(a, prefix, () => {}), redisRateLimiter(b, prefix, () => {})];
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) => (i % 2 ? la : lb).hit('shared', 6, 60_000)),
    );
    expect(results.filter((r) => r.allowed).length).toBe(6);
    const ttl = await a.pttl(`${prefix}:rl:shared`);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(60_000);
  });
});

describe('cache', () => {
  it('expires entries and evicts the least recently used', async () => {
    let now = 0;
    const cache = memoryCache(2, () => now);
    await cache.set('a', { n: 1 }, 1000);
    await cache.set('b', { n: 2 }, 1000);
    expect(await cache.get('a')).toEqual({ n: 1 }); // a is now the most recent
    await cache.set('c', { n: 3 }, 1000);
    expect(await cache.get('b')).toBeUndefined();
    expect(await cache.get('a')).toEqual({ n: 1 });
    now = 1000;
    expect(await cache.get('a')).toBeUndefined();
  });

  it('treats an unreachable Redis as a miss, never an error', async () => {
    const errors: unknown[] = [];
    const cache = redisCache(client('redis://127.0.0.1:1'), prefix, (e) => errors.push(e));
    await cache.set('k', 1, 1000);
    expect(await cache.get('k')).toBeUndefined();
    await cache.del('k');
    expect(errors.length).toBe(3);
  });

  it.runIf(lane.services)('stores JSON with a TTL in Redis', async () => {
    const c = client(lane.redisUrl as string);
    await c.connect();
    const cache = redisCache(c, prefix, (e) => {
      throw e;
    });
    await cache.set('user:1', { name: 'Asha' }, 5000);
    expect(await cache.get('user:1')).toEqual({ name: 'Asha' });
    expect(await c.pttl(`${prefix}:cache:user:1`)).toBeGreaterThan(4000);
    await cache.del('user:1');
    expect(await cache.get('user:1')).toBeUndefined();
  });
});
