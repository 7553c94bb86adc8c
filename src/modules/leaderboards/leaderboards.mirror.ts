import type { Redis } from 'ioredis';
import type { MirrorRow, ScoreRow } from './leaderboards.repo.js';

/**
 * The global boards mirrored in Redis sorted sets (production). PostgreSQL stays the truth: a board
 * is read from here only once it was built, and every write carries the row's version, so writes
 * that arrive late or twice (retried jobs, a rebuild racing live updates) never move a user back.
 */
export interface Mirror {
  /** Whether the period's board was built since Redis last lost it. */
  built(period: string): Promise<boolean>;
  markBuilt(period: string): Promise<void>;
  /** Writes each user's row (null: remove them), unless Redis already holds a newer version. */
  apply(
    period: string,
    rows: { userId: string; row: Pick<MirrorRow, 'score' | 'version' | 'public'> }[],
  ): Promise<void>;
  /** A deleted account: gone from every board, version included (nothing of theirs stays). */
  forget(periods: string[], userId: string): Promise<void>;
  top(period: string, limit: number): Promise<ScoreRow[]>;
  /** How many score more than `score`. */
  above(period: string, score: number): Promise<number>;
  /** Takes the rebuild of a period for a while (one process rebuilds); false when another has it. */
  claimRebuild(period: string): Promise<boolean>;
  /**
   * Marks the board built if the rebuild's lease is still there: a flush during the rebuild took the
   * lease with the half-written board, and the board must not pass for complete.
   */
  finishRebuild(period: string): Promise<boolean>;
}

// A week's board is kept a little past its week (clients may still look at last week).
const WEEK_TTL_MS = 15 * 24 * 3600_000;
const REBUILD_LEASE_MS = 60_000;

const APPLY = `
local current = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local version = tonumber(ARGV[3])
if version <= current then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
if ARGV[4] == '1' then redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1]) else redis.call('ZREM', KEYS[1], ARGV[1]) end
if ARGV[5] ~= '0' then
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
end
return 1`;

type WithApply = Redis & {
  lbApply(
    zset: string,
    versions: string,
    userId: string,
    score: number,
    version: number,
    present: string,
    ttl: number,
  ): Promise<number>;
};

export function redisMirror(redis: Redis, prefix: string): Mirror {
  const r = redis as WithApply;
  if (typeof r.lbApply !== 'function') redis.defineCommand('lbApply', { numberOfKeys: 2, lua: APPLY });
  const zset = (period: string) => `${prefix}:lb:${period}`;
  const versions = (period: string) => `${prefix}:lb:${period}:v`;
  const marker = (period: string) => `${prefix}:lb:${period}:built`;
  const lease = (period: string) => `${prefix}:lb:${period}:rebuilding`;
  const ttl = (period: string) => (period === 'all' ? 0 : WEEK_TTL_MS);
  return {
    async built(period) {
      return (await redis.exists(marker(period))) === 1;
    },
    async markBuilt(period) {
      const ms = ttl(period);
      if (ms) await redis.set(marker(period), '1', 'PX', ms);
      else await redis.set(marker(period), '1');
    },
    async apply(period, rows) {
      if (rows.length === 0) return;
      const pipeline = redis.pipeline() as unknown as WithApply & {
        exec(): Promise<[Error | null, unknown][]>;
      };
      for (const { userId, row } of rows)
        pipeline.lbApply(
          zset(period),
          versions(period),
          userId,
          row.score,
          row.version,
          row.public ? '1' : '0',
          ttl(period),
        );
      for (const [err] of (await pipeline.exec()) ?? []) if (err) throw err;
    },
    async forget(periods, userId) {
      const multi = redis.multi();
      for (const p of periods) multi.zrem(zset(p), userId).hdel(versions(p), userId);
      await multi.exec();
    },
    async top(period, limit) {
      const flat = await redis.zrevrange(zset(period), 0, limit - 1, 'WITHSCORES');
      const out: ScoreRow[] = [];
      for (let i = 0; i < flat.length; i += 2)
        out.push({ userId: flat[i] as string, score: Number(flat[i + 1]) });
      return out;
    },
    async above(period, score) {
      return redis.zcount(zset(period), `(${score}`, '+inf');
    },
    async claimRebuild(period) {
      return (await redis.set(lease(period), '1', 'PX', REBUILD_LEASE_MS, 'NX')) === 'OK';
    },
    async finishRebuild(period) {
      if ((await redis.del(lease(period))) !== 1) return false;
      await this.markBuilt(period);
      return true;
    },
  };
}
