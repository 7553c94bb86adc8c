import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { MirrorRow, ScoreRow } from './leaderboards.repo.js';

/**
 * The global boards mirrored in Redis sorted sets (production). PostgreSQL stays the truth: a board
 * is read from here only while it is whole, and every write carries the row's version, so writes
 * that arrive late or twice (retried jobs, a rebuild racing live updates) never move a user back.
 *
 * Redis may lose any key at any moment (a flush, a key-by-key drop of the prefix, eviction), not only
 * all of them at once. A board is whole only when all of these hold, checked in the same script that
 * reads it:
 * - the built marker names the rebuild that filled the versions hash (`~build`): a lost hash, or a
 *   marker left from before a loss, does not match;
 * - the sorted set holds as many members as the hash counted in (`~n`): every write moves both in one
 *   script, so a lost sorted set (even one refilled by later writes) shows as a shortfall.
 * A rebuild starts from an empty board under its own token and marks it built only if nothing was
 * lost while it ran.
 */
export interface Mirror {
  /** Whether the period's board is whole (built since Redis last lost any of it). */
  built(period: string): Promise<boolean>;
  /** Writes each user's row (null: remove them), unless Redis already holds a newer version. */
  apply(
    period: string,
    rows: { userId: string; row: Pick<MirrorRow, 'score' | 'version' | 'public'> }[],
  ): Promise<void>;
  /** A deleted account: gone from every board, version included (nothing of theirs stays). */
  forget(periods: string[], userId: string): Promise<void>;
  /** The top of the board, or null when the board is not whole (read SQL then). */
  top(period: string, limit: number): Promise<ScoreRow[] | null>;
  /** How many score more than `score`, or null when the board is not whole. */
  above(period: string, score: number): Promise<number | null>;
  /**
   * The top and, if the user is on the mirrored board, their score there and how many score more, in
   * one call (a board read's whole Redis part); null when the board is not whole.
   */
  board(
    period: string,
    limit: number,
    userId: string,
  ): Promise<{ top: ScoreRow[]; mine: { score: number; above: number } | null } | null>;
  /**
   * Takes the rebuild of a period for a while (one process rebuilds) and empties the board for it:
   * the rebuild's token, or null when another has it.
   */
  startRebuild(period: string): Promise<string | null>;
  /**
   * Marks the board built if the rebuild still holds its lease and nothing of the board was lost
   * while it ran (else it stays unbuilt, for the next rebuild); releases the lease either way.
   */
  finishRebuild(period: string, token: string): Promise<boolean>;
}

// A week's board is kept a little past its week (clients may still look at last week).
const WEEK_TTL_MS = 15 * 24 * 3600_000;
const REBUILD_LEASE_MS = 60_000;

// KEYS: zset, versions hash, built marker. The board is whole (returns 1) or not (0).
const WHOLE = `
local function whole()
  local marker = redis.call('GET', KEYS[3])
  if not marker or redis.call('HGET', KEYS[2], '~build') ~= marker then return false end
  return tonumber(redis.call('HGET', KEYS[2], '~n') or '-1') == redis.call('ZCARD', KEYS[1])
end`;

// KEYS: zset, versions. ARGV: user, score, version, present ('1'/'0'), ttl ms (0: none).
const APPLY = `
local current = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local version = tonumber(ARGV[3])
if version <= current then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
local was = redis.call('ZSCORE', KEYS[1], ARGV[1])
if ARGV[4] == '1' then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  if not was then redis.call('HINCRBY', KEYS[2], '~n', 1) end
elseif was then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HINCRBY', KEYS[2], '~n', -1)
end
if ARGV[5] ~= '0' then
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
end
return 1`;

// KEYS: zset, versions. ARGV: user.
const FORGET = `
redis.call('HDEL', KEYS[2], ARGV[1])
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then redis.call('HINCRBY', KEYS[2], '~n', -1) end
return 1`;

// KEYS: zset, versions, marker. ARGV: 'top' limit | 'above' score | 'board' limit user. Nil when the
// board is not whole. 'board': {top, the user's score or nil, how many score more or nil}.
const READ = `${WHOLE}
if not whole() then return nil end
if ARGV[1] == 'top' then
  return redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1, 'WITHSCORES')
end
if ARGV[1] == 'board' then
  local mine = redis.call('ZSCORE', KEYS[1], ARGV[3])
  local above = false
  if mine then above = redis.call('ZCOUNT', KEYS[1], '(' .. mine, '+inf') end
  return {redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1, 'WITHSCORES'), mine or false, above}
end
return redis.call('ZCOUNT', KEYS[1], '(' .. ARGV[2], '+inf')`;

const BUILT = `${WHOLE}
if whole() then return 1 end
return 0`;

// KEYS: zset, versions, marker, lease. ARGV: token, lease ms, ttl ms (0: none).
const START = `
if not redis.call('SET', KEYS[4], ARGV[1], 'PX', ARGV[2], 'NX') then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('HSET', KEYS[2], '~build', ARGV[1], '~n', 0)
if ARGV[3] ~= '0' then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
return 1`;

// KEYS: zset, versions, marker, lease. ARGV: token, ttl ms (0: none).
const FINISH = `
if redis.call('GET', KEYS[4]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[4])
if redis.call('HGET', KEYS[2], '~build') ~= ARGV[1] then return 0 end
if tonumber(redis.call('HGET', KEYS[2], '~n') or '-1') ~= redis.call('ZCARD', KEYS[1]) then return 0 end
if ARGV[2] ~= '0' then redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[2]) else redis.call('SET', KEYS[3], ARGV[1]) end
return 1`;

type Commands = {
  lbApply(
    zset: string,
    versions: string,
    userId: string,
    score: number,
    version: number,
    present: string,
    ttl: number,
  ): Promise<number>;
  lbForget(zset: string, versions: string, userId: string): Promise<number>;
  lbRead(
    zset: string,
    versions: string,
    marker: string,
    what: 'top',
    limit: number,
  ): Promise<string[] | null>;
  lbRead(
    zset: string,
    versions: string,
    marker: string,
    what: 'above',
    score: number,
  ): Promise<number | null>;
  lbRead(
    zset: string,
    versions: string,
    marker: string,
    what: 'board',
    limit: number,
    userId: string,
  ): Promise<[string[], string | null, number | null] | null>;
  lbBuilt(zset: string, versions: string, marker: string): Promise<number>;
  lbStart(
    zset: string,
    versions: string,
    marker: string,
    lease: string,
    token: string,
    leaseMs: number,
    ttl: number,
  ): Promise<number>;
  lbFinish(
    zset: string,
    versions: string,
    marker: string,
    lease: string,
    token: string,
    ttl: number,
  ): Promise<number>;
};
type WithCommands = Redis & Commands;

const SCRIPTS: [keyof Commands, number, string][] = [
  ['lbApply', 2, APPLY],
  ['lbForget', 2, FORGET],
  ['lbRead', 3, READ],
  ['lbBuilt', 3, BUILT],
  ['lbStart', 4, START],
  ['lbFinish', 4, FINISH],
];

export function redisMirror(redis: Redis, prefix: string): Mirror {
  const r = redis as WithCommands;
  for (const [name, numberOfKeys, lua] of SCRIPTS)
    if (typeof r[name] !== 'function') redis.defineCommand(name, { numberOfKeys, lua });
  const zset = (period: string) => `${prefix}:lb:${period}`;
  const versions = (period: string) => `${prefix}:lb:${period}:v`;
  const marker = (period: string) => `${prefix}:lb:${period}:built`;
  const lease = (period: string) => `${prefix}:lb:${period}:rebuilding`;
  const board = (period: string) => [zset(period), versions(period), marker(period)] as const;
  const ttl = (period: string) => (period === 'all' ? 0 : WEEK_TTL_MS);
  return {
    async built(period) {
      return (await r.lbBuilt(...board(period))) === 1;
    },
    async apply(period, rows) {
      if (rows.length === 0) return;
      const pipeline = redis.pipeline() as unknown as Commands & {
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
      const pipeline = redis.pipeline() as unknown as Commands & {
        exec(): Promise<[Error | null, unknown][]>;
      };
      for (const p of periods) pipeline.lbForget(zset(p), versions(p), userId);
      for (const [err] of (await pipeline.exec()) ?? []) if (err) throw err;
    },
    async top(period, limit) {
      const flat = await r.lbRead(...board(period), 'top', limit);
      return flat ? scoreRows(flat) : null;
    },
    async above(period, score) {
      return r.lbRead(...board(period), 'above', score);
    },
    async board(period, limit, userId) {
      const read = await r.lbRead(...board(period), 'board', limit, userId);
      if (!read) return null;
      const [flat, score, above] = read;
      return {
        top: scoreRows(flat),
        mine: score === null || above === null ? null : { score: Number(score), above },
      };
    },
    async startRebuild(period) {
      const token = randomUUID();
      const started = await r.lbStart(...board(period), lease(period), token, REBUILD_LEASE_MS, ttl(period));
      return started === 1 ? token : null;
    },
    async finishRebuild(period, token) {
      return (await r.lbFinish(...board(period), lease(period), token, ttl(period))) === 1;
    },
  };
}

/** ZREVRANGE … WITHSCORES: member, score, member, score… */
function scoreRows(flat: string[]): ScoreRow[] {
  const out: ScoreRow[] = [];
  for (let i = 0; i < flat.length; i += 2)
    out.push({ userId: flat[i] as string, score: Number(flat[i + 1]) });
  return out;
}
