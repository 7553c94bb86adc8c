import type { Queryable } from '../../lib/db.js';

export interface ScoreRow {
  userId: string;
  score: number;
}

export interface MirrorRow {
  period: string;
  score: number;
  version: number;
  public: boolean;
}

// The boards' order: score, then user id, both descending (what a Redis sorted set's reverse range
// gives for equal scores).
const ORDER = 'ORDER BY s.score DESC, s.user_id DESC';

/** The top of the global board of a period (public profiles only). */
export async function globalTop(q: Queryable, period: string, limit: number): Promise<ScoreRow[]> {
  const { rows } = await q.query<ScoreRow>(
    `SELECT s.user_id, s.score FROM leaderboard_scores s JOIN users u ON u.id = s.user_id
      WHERE s.period = $1 AND u.profile_visibility = 'public' ${ORDER} LIMIT $2`,
    [period, limit],
  );
  return rows;
}

/** How many on the global board score more than `score` (a rank is one more). */
export async function globalAbove(q: Queryable, period: string, score: number): Promise<number> {
  const { rows } = await q.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM leaderboard_scores s JOIN users u ON u.id = s.user_id
      WHERE s.period = $1 AND s.score > $2 AND u.profile_visibility = 'public'`,
    [period, score],
  );
  return rows[0]?.n ?? 0;
}

/**
 * A friends board: the user and their friends, except friends whose profile is private; everyone
 * with a row, best first.
 */
export async function friendsBoard(q: Queryable, userId: string, period: string): Promise<ScoreRow[]> {
  const { rows } = await q.query<ScoreRow>(
    `SELECT s.user_id, s.score FROM leaderboard_scores s JOIN users u ON u.id = s.user_id
      WHERE s.period = $1 AND (s.user_id = $2 OR (u.profile_visibility <> 'private' AND s.user_id IN (
        SELECT user_b FROM friendships WHERE user_a = $2 UNION ALL SELECT user_a FROM friendships WHERE user_b = $2)))
      ${ORDER}`,
    [period, userId],
  );
  return rows;
}

/**
 * Friends whom `userId` just passed on a board by gaining `points` (their score is in [before, now)),
 * at most `limit`; nobody when the user's own profile is private (their progress is not told).
 */
export async function friendsJustPassed(
  q: Queryable,
  userId: string,
  period: string,
  points: number,
  limit: number,
): Promise<string[]> {
  const { rows } = await q.query<{ id: string }>(
    `WITH me AS (
       SELECT s.score FROM leaderboard_scores s JOIN users u ON u.id = s.user_id
        WHERE s.period = $2 AND s.user_id = $1 AND u.profile_visibility <> 'private')
     SELECT s.user_id AS id FROM leaderboard_scores s, me
      WHERE s.period = $2 AND s.score >= me.score - $3 AND s.score < me.score
        AND s.user_id IN (SELECT user_b FROM friendships WHERE user_a = $1
                          UNION ALL SELECT user_a FROM friendships WHERE user_b = $1)
      LIMIT $4`,
    [userId, period, points, limit],
  );
  return rows.map((r) => r.id);
}

/** What the Redis mirror should hold for one user, in the given periods. */
export async function mirrorRows(q: Queryable, userId: string, periods: string[]): Promise<MirrorRow[]> {
  const { rows } = await q.query<MirrorRow>(
    `SELECT s.period, s.score, s.version, u.profile_visibility = 'public' AS public
       FROM leaderboard_scores s JOIN users u ON u.id = s.user_id
      WHERE s.user_id = $1 AND s.period = ANY($2::text[])`,
    [userId, periods],
  );
  return rows;
}

/** Every row of a period, for a rebuild of its mirror, a page at a time (by user id). */
export async function periodPage(
  q: Queryable,
  period: string,
  afterUserId: string,
  limit: number,
): Promise<(MirrorRow & { userId: string })[]> {
  const { rows } = await q.query<MirrorRow & { userId: string }>(
    `SELECT s.user_id, s.period, s.score, s.version, u.profile_visibility = 'public' AS public
       FROM leaderboard_scores s JOIN users u ON u.id = s.user_id
      WHERE s.period = $1 AND s.user_id > $2 ORDER BY s.user_id LIMIT $3`,
    [period, afterUserId, limit],
  );
  return rows;
}

/** A visibility change is a change of every board row of the user: the mirror must hear of it. */
export async function bumpVersions(q: Queryable, userId: string) {
  await q.query('UPDATE leaderboard_scores SET version = version + 1 WHERE user_id = $1', [userId]);
}
