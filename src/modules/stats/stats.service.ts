import { uuidv7 } from 'uuidv7';
import { type Cache, versionTokens } from '../../lib/cache.js';
import type { Clock } from '../../lib/clock.js';
import type { Db, Queryable } from '../../lib/db.js';
import type { ScoreSource } from './stats.repo.js';
import * as repo from './stats.repo.js';

/** Points per source (PRODUCT.md); group ranks pass their own amount. */
export const POINTS = { task_done: 10, daily_done: 10, perfect_day: 20 } as const;

export type StatsService = ReturnType<typeof makeStatsService>;

const CACHE_MS = 60_000;
const versionKey = (userId: string) => `stats:v3:version:${userId}`;
// One entry per user, holding the version it was computed under: deleting an account drops both keys.
const statsKey = (userId: string) => `stats:v3:${userId}`;

export function makeStatsService(deps: {
  db: Db;
  clock: Clock;
  cache: Cache;
  /**
   * Told, in the same transaction, whenever a score moved (the ledger has already moved the board
   * rows): leaderboards and badges hang off it.
   */
  onScore: (q: Queryable, userId: string, points: number, paidOn?: string) => Promise<void>;
}) {
  const versions = versionTokens(deps.cache);
  // Bumped after the commit (a read racing the write cannot store the old stats under the new token).
  const changedOnCommit = (q: Queryable, userId: string) =>
    q.afterCommit(() => versions.bump(versionKey(userId)));

  return {
    /**
     * The user's stats from the cache, or computed and cached until the next write that changes them
     * (see `changed`), at most a minute, and never past the end of the user's day.
     */
    async cached<T>(userId: string, validUntil: Date, compute: () => Promise<T>): Promise<T> {
      // The end is on the injected clock, or the cache's wall-clock TTL alone would serve yesterday's
      // stats after the service's clock passed midnight.
      const now = deps.clock.now().getTime();
      const version = await versions.read(versionKey(userId));
      const hit = await deps.cache.get<{ version: string; value: T; until: number }>(statsKey(userId));
      if (hit?.version === version && hit.until > now) return hit.value;
      const value = await compute();
      const until = Math.min(now + CACHE_MS, validUntil.getTime());
      // A read that began before a write stores its stats under the version it read, which that
      // write's bump has already replaced: the next read sees the mismatch and computes again.
      if (until > now) await deps.cache.set(statsKey(userId), { version, value, until }, until - now);
      return value;
    },

    /** Every write that moves a user's stats calls this in its transaction. */
    changed: changedOnCommit,

    /** Account deletion, in its transaction: nothing cached of the user stays once it commits. */
    forget(q: Queryable, userId: string) {
      q.afterCommit(() => deps.cache.del(statsKey(userId), versionKey(userId)));
    },

    /**
     * Pays `points` for one source, once ever: call it inside the transaction that records what
     * earned them. Returns whether this call paid (false = already paid earlier).
     */
    async award(
      q: Queryable,
      e: { userId: string; source: ScoreSource; sourceKey: string; points: number; localDate: string },
    ): Promise<boolean> {
      changedOnCommit(q, e.userId);
      const paid = await repo.insertScoreEvent(q, { ...e, id: uuidv7(), now: deps.clock.now() });
      if (paid) await deps.onScore(q, e.userId, e.points, e.localDate);
      return paid;
    },

    /** Takes back points whose reason was undone within its window (a check-in undone the same day). */
    async revoke(q: Queryable, e: { userId: string; source: ScoreSource; sourceKey: string }) {
      changedOnCommit(q, e.userId);
      const taken = await repo.deleteScoreEvent(q, e.userId, e.source, e.sourceKey);
      if (taken) await deps.onScore(q, e.userId, -taken);
      return taken > 0;
    },

    score: (userId: string) => repo.totalScore(deps.db, userId),

    /** In `q`: completions and check-ins paid on `today`, and from `from` up to it (Maa's comeback). */
    doneAround: (q: Queryable, userId: string, from: string, today: string) =>
      repo.doneAround(q, userId, from, today),

    countSource: (userId: string, source: ScoreSource) => repo.countSource(deps.db, userId, source),

    exportFor: (userId: string) => repo.exportScoreEvents(deps.db, userId),
  };
}
