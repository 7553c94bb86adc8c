import type { Queryable } from '../../lib/db.js';

export type ScoreSource = 'task_done' | 'daily_done' | 'perfect_day' | 'group_rank' | 'streak_milestone';

// The ISO week (UTC) an instant falls in: the same expression as migration 0011's backfill, so both
// agree on the week.
const isoWeek = (at: string) => `to_char(${at} AT TIME ZONE 'UTC', 'IYYY-"W"IW')`;

/** Adds each row's score (period, user_id, score, from `rows`) to that user's board row of the period. */
const addScores = (rows: string) => `INSERT INTO leaderboard_scores (period, user_id, score) ${rows}
  ON CONFLICT (period, user_id) DO UPDATE
    SET score = leaderboard_scores.score + EXCLUDED.score, version = leaderboard_scores.version + 1`;

/**
 * Adds a ledger row unless this source already paid, and moves the user's board rows (all-time and
 * the row's ISO week) with it, in one statement; true when it was added.
 */
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
  const { rows } = await q.query<{ paid: boolean }>(
    `WITH paid AS (
       INSERT INTO score_events (id, user_id, source, source_key, points, local_date, created_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (user_id, source, source_key) DO NOTHING
       RETURNING user_id, points, created_at
     ), boards AS (
       ${addScores(`SELECT p.period, paid.user_id, paid.points
                      FROM paid, LATERAL (VALUES ('all'), (${isoWeek('paid.created_at')})) p (period)`)}
     )
     SELECT EXISTS (SELECT 1 FROM paid) AS paid`,
    [e.id, e.userId, e.source, e.sourceKey, e.points, e.localDate, e.now],
  );
  return rows[0]?.paid === true;
}

/** Moves the user's leaderboard rows by `points`: all-time, and the ISO week the ledger row is dated in. */
async function addToBoards(q: Queryable, userId: string, points: number, at: Date) {
  await q.query(addScores(`VALUES ('all', $1, $2), (${isoWeek('$3::timestamptz')}, $1, $2)`), [
    userId,
    points,
    at,
  ]);
}

export async function totalScore(q: Queryable, userId: string): Promise<number> {
  const { rows } = await q.query<{ score: number }>(
    'SELECT coalesce(sum(points), 0)::int AS score FROM score_events WHERE user_id = $1',
    [userId],
  );
  return rows[0]?.score ?? 0;
}

/** Takes back what one source paid (an undone check-in); the points taken, 0 when there was nothing. */
export async function deleteScoreEvent(
  q: Queryable,
  userId: string,
  source: ScoreSource,
  sourceKey: string,
): Promise<number> {
  const { rows } = await q.query<{ points: number; createdAt: Date }>(
    'DELETE FROM score_events WHERE user_id = $1 AND source = $2 AND source_key = $3 RETURNING points, created_at',
    [userId, source, sourceKey],
  );
  const taken = rows[0];
  if (taken) await addToBoards(q, userId, -taken.points, taken.createdAt);
  return taken?.points ?? 0;
}

/** Completions and check-ins paid on `today`, and on the days from `from` up to it. */
export async function doneAround(
  q: Queryable,
  userId: string,
  from: string,
  today: string,
): Promise<{ today: number; before: number }> {
  const { rows } = await q.query<{ today: number; before: number }>(
    `SELECT count(*) FILTER (WHERE local_date = $2)::int AS today,
            count(*) FILTER (WHERE local_date < $2)::int AS before
       FROM score_events
      WHERE user_id = $1 AND local_date BETWEEN $3 AND $2 AND source IN ('task_done', 'daily_done')`,
    [userId, today, from],
  );
  return rows[0] ?? { today: 0, before: 0 };
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
