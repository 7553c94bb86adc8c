import type { Queryable } from '../../lib/db.js';

export type ScoreSource = 'task_done' | 'daily_done' | 'perfect_day' | 'group_rank' | 'streak_milestone';

/** Adds a ledger row unless this source already paid; true when it was added. */
export async function insertScoreEvent(
  q: Queryable,
  e: {
    id: string;
    userId: string;
    source: ScoreSource;
    sourceKey: string;
    points: number;
    localDate: string;
    now: Date;
  },
): Promise<boolean> {
  const { rowCount } = await q.query(
    `INSERT INTO score_events (id, user_id, source, source_key, points, local_date, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (user_id, source, source_key) DO NOTHING`,
    [e.id, e.userId, e.source, e.sourceKey, e.points, e.localDate, e.now],
  );
  return rowCount === 1;
}

export async function totalScore(q: Queryable, userId: string): Promise<number> {
  const { rows } = await q.query<{ score: number }>(
    'SELECT coalesce(sum(points), 0)::int AS score FROM score_events WHERE user_id = $1',
    [userId],
  );
  return rows[0]?.score ?? 0;
}

/** Takes back what one source paid (an undone check-in); true when there was something to take. */
export async function deleteScoreEvent(q: Queryable, userId: string, source: ScoreSource, sourceKey: string) {
  const { rowCount } = await q.query(
    'DELETE FROM score_events WHERE user_id = $1 AND source = $2 AND source_key = $3',
    [userId, source, sourceKey],
  );
  return rowCount === 1;
}

export async function countSource(q: Queryable, userId: string, source: ScoreSource): Promise<number> {
  const { rows } = await q.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM score_events WHERE user_id = $1 AND source = $2',
    [userId, source],
  );
  return rows[0]?.n ?? 0;
}

export async function exportScoreEvents(q: Queryable, userId: string) {
  const { rows } = await q.query(
    'SELECT source, source_key, points, local_date, created_at FROM score_events WHERE user_id = $1 ORDER BY created_at',
    [userId],
  );
  return rows;
}
