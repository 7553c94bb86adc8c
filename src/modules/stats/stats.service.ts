import { uuidv7 } from 'uuidv7';
import type { Clock } from '../../lib/clock.js';
import type { Db, Queryable } from '../../lib/db.js';
import type { ScoreSource } from './stats.repo.js';
import * as repo from './stats.repo.js';

/** Points per source (PRODUCT.md); group ranks pass their own amount. */
export const POINTS = { task_done: 10, daily_done: 10, perfect_day: 20 } as const;

export type StatsService = ReturnType<typeof makeStatsService>;

export function makeStatsService(deps: { db: Db; clock: Clock }) {
  return {
    /**
     * Pays `points` for one source, once ever: call it inside the transaction that records what
     * earned them. Returns whether this call paid (false = already paid earlier).
     */
    award(
      q: Queryable,
      e: { userId: string; source: ScoreSource; sourceKey: string; points: number; localDate: string },
    ): Promise<boolean> {
      return repo.insertScoreEvent(q, { ...e, id: uuidv7(), now: deps.clock.now() });
    },

    /** Takes back points whose reason was undone within its window (a check-in undone the same day). */
    revoke: (q: Queryable, e: { userId: string; source: ScoreSource; sourceKey: string }) =>
      repo.deleteScoreEvent(q, e.userId, e.source, e.sourceKey),

    score: (userId: string) => repo.totalScore(deps.db, userId),

    countSource: (userId: string, source: ScoreSource) => repo.countSource(deps.db, userId, source),
  };
}
