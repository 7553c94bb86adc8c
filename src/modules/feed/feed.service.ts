import { uuidv7 } from 'uuidv7';
import type { Clock } from '../../lib/clock.js';
import type { Db, Queryable } from '../../lib/db.js';
import type { Realtime } from '../../realtime/port.js';
import { friendIds } from '../friends/friends.repo.js';

const KEEP_MARKS_MS = 7 * 24 * 3600_000;

/**
 * What friends see live as `feed:activity`. Only these kinds, with ids, numbers and public names:
 * never a personal task's title, never anything of someone whose profile is private.
 */
export type Activity =
  | { kind: 'goal_met'; data: { date: string; goal: number } }
  | { kind: 'group_rank'; data: { groupTaskId: string; rank: number; title: string | null } }
  | { kind: 'badge'; data: { code: string; name: string } };

export type FeedEvent = Activity & { id: string; userId: string; username: string; at: string };

export type FeedService = ReturnType<typeof makeFeedService>;

export function makeFeedService(deps: { db: Db; clock: Clock; realtime: Realtime }) {
  const { clock, realtime } = deps;
  return {
    /**
     * Tells the actor's friends, after `q` commits. `once` names the activity so that telling it
     * again (a retried job) is a no-op.
     */
    async share(q: Queryable, actorId: string, activity: Activity, once?: string): Promise<void> {
      const { rows } = await q.query<{ username: string; visibility: string }>(
        'SELECT username, profile_visibility AS visibility FROM users WHERE id = $1',
        [actorId],
      );
      const actor = rows[0];
      if (!actor || actor.visibility === 'private') return;
      const now = clock.now();
      if (once) {
        const { rowCount } = await q.query(
          'INSERT INTO activity_marks (user_id, mark, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING',
          [actorId, once, now],
        );
        if (rowCount === 0) return;
      }
      const friends = await friendIds(q, actorId);
      const event = {
        ...activity,
        id: uuidv7(),
        userId: actorId,
        username: actor.username,
        at: now.toISOString(),
      } as FeedEvent;
      q.afterCommit(() => realtime.toUsers(friends, 'feed:activity', event));
    },

    /** Marks older than a week go (system prune). */
    async prune(): Promise<number> {
      const { rowCount } = await deps.db.query('DELETE FROM activity_marks WHERE created_at < $1', [
        new Date(clock.now().getTime() - KEEP_MARKS_MS),
      ]);
      return rowCount;
    },
  };
}
