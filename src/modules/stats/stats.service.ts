import { uuidv7 } from 'uuidv7';
import type { Cache } from '../../lib/cache.js';
import type { Clock } from '../../lib/clock.js';
import type { Db, Queryable } from '../../lib/db.js';
import type { ScoreSource } from './stats.repo.js';
import * as repo from './stats.repo.js';

/** Points per source (PRODUCT.md); group ranks pass their own amount. */
export const POINTS = { task_done: 10, daily_done: 10, perfect_day: 20 } as const;

export type StatsService = ReturnType<typeof makeStatsService>;

const CACHE_MS = 60_000;
const statsKey = (userId: string) => `stats:v2:${userId}`;

export function makeStatsService(deps: {
  db: Db;
  clock: Clock;
  cache: Cache;
  /**
   * Told, in the same transaction, whenever a score moved (the ledger has already moved the board
   * rows): leaderboards and badges hang off it.
   */
  onScore: (q: Queryable, userId: string, points: number) => Promise<void>;
}) {
  return {
    /**
     * The user's stats from the cache, or computed and cached until the next write that changes them
     * (see `changed`), at most a minute, and never past the end of the user's day.
     */
    async cached<T>(userId: string, validUntil: Date, compute: () => Promise<T>): Promise<T> {
      // The entry carries its end on the injected clock: the cache's own TTL runs on the wall clock
      // (or Redis's), which alone would serve yesterday's stats after the service's clock passed midnight.
      const hit = await deps.cache.get<{ value: T; until: number }>(statsKey(userId));
      const now = deps.clock.now().getTime();
      if (hit !== undefined && hit.until > now) return hit.value;
      const value = await compute();
      const until = Math.min(now + CACHE_MS, validUntil.getTime());
      if (until > now) await deps.cache.set(statsKey(userId), { value, until }, until - now);
      return value;
    },

    /** Every write that moves a user's stats calls this in its transaction; the cache drops them on commit. */
    changed(q: Queryable, userId: string) {
      q.afterCommit(() => void deps.cache.del(statsKey(userId)));
    },

    /**
     * Pays `points` for one source, once ever: call it inside the transaction that records what
     * earned them. Returns whether this call paid (false = already paid earlier).
     */
    async award(
      q: Queryable,
      e: { userId: string; source: ScoreSource; sourceKey: string; points: number; localDate: string },
    ): Promise<boolean> {
      q.afterCommit(() => void deps.cache.del(statsKey(e.userId)));
      const paid = await repo.insertScoreEvent(q, { ...e, id: uuidv7(), now: deps.clock.now() });
      if (paid) await deps.onScore(q, e.userId, e.points);
      return paid;
    },

    /** Takes back points whose reason was undone within its window (a check-in undone the same day). */
    async revoke(q: Queryable, e: { userId: string; source: ScoreSource; sourceKey: string }) {
      q.afterCommit(() => void deps.cache.del(statsKey(e.userId)));
      const taken = await repo.deleteScoreEvent(q, e.userId, e.source, e.sourceKey);
      if (taken) await deps.onScore(q, e.userId, -taken);
      return taken > 0;
    },

    score: (userId: string) => repo.totalScore(deps.db, userId),

    countSource: (userId: string, source: ScoreSource) => repo.countSource(deps.db, userId, source),

    exportFor: (userId: string) => repo.exportScoreEvents(deps.db, userId),
  };
}
