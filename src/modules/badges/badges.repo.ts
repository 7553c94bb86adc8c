import type { Queryable } from '../../lib/db.js';
import type { Facts } from './badges.rules.js';

export interface AwardRow {
  code: string;
  awardedAt: Date;
}

/** Completions paid today (the user's logical day) and the day's goal. */
export interface Today {
  done: number;
  goal: number;
}

/**
 * Everything the rules need about one user, the badges they hold and their day so far, in one read
 * of indexed subqueries; undefined for a user that no longer exists.
 */
export async function facts(
  q: Queryable,
  userId: string,
  today: string,
): Promise<{ facts: Facts; held: Set<string>; today: Today } | undefined> {
  const { rows } = await q.query<Facts & { held: string[]; doneToday: number; dailyGoal: number }>(
    `SELECT (SELECT count(*) FROM score_events WHERE user_id = u.id AND source = 'task_done')::int AS tasks_done,
            (SELECT count(*) FROM score_events WHERE user_id = u.id AND source = 'daily_done')::int AS daily_check_ins,
            coalesce((SELECT (state->>'longest')::int FROM overall_streaks WHERE user_id = u.id), 0) AS longest_streak,
            ARRAY(SELECT local_date::text FROM score_events
                   WHERE user_id = u.id AND source = 'perfect_day' ORDER BY local_date) AS perfect_dates,
            ARRAY(SELECT date::text FROM day_summaries
                   WHERE user_id = u.id AND outcome IN ('met', 'frozen') ORDER BY date) AS kept_dates,
            g.wins AS group_wins, g.podiums AS group_podiums, g.finished AS groups_finished,
            (SELECT count(*) FROM friendships WHERE user_a = u.id OR user_b = u.id)::int AS friends,
            ARRAY(SELECT code FROM user_badges WHERE user_id = u.id) AS held,
            (SELECT count(*) FROM score_events WHERE user_id = u.id AND local_date = $2
                AND source IN ('task_done', 'daily_done'))::int AS done_today,
            u.daily_goal
       FROM users u,
            LATERAL (SELECT count(*) FILTER (WHERE m.rank = 1 AND size >= 2)::int AS wins,
                            count(*) FILTER (WHERE m.rank <= 3 AND size >= 4)::int AS podiums,
                            count(*)::int AS finished
                       FROM group_members m
                       JOIN LATERAL (SELECT count(*) AS size FROM group_members x
                                      WHERE x.group_task_id = m.group_task_id) s ON true
                      WHERE m.user_id = u.id AND m.rank IS NOT NULL) g
      WHERE u.id = $1`,
    [userId, today],
  );
  const row = rows[0];
  if (!row) return undefined;
  const { held, doneToday, dailyGoal, ...facts } = row;
  return { facts, held: new Set(held), today: { done: doneToday, goal: dailyGoal } };
}

/** Awards one badge; false when the user already had it. */
export async function award(q: Queryable, userId: string, code: string, now: Date): Promise<boolean> {
  const { rowCount } = await q.query(
    'INSERT INTO user_badges (user_id, code, awarded_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING',
    [userId, code, now],
  );
  return rowCount === 1;
}

export async function awardsOf(q: Queryable, userId: string): Promise<AwardRow[]> {
  const { rows } = await q.query<AwardRow>(
    'SELECT code, awarded_at FROM user_badges WHERE user_id = $1 ORDER BY awarded_at, code',
    [userId],
  );
  return rows;
}
