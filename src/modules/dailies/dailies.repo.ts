import type { Queryable } from '../../lib/db.js';
import type { OverallState } from './streaks.js';

export interface DailyRow {
  id: string;
  userId: string;
  title: string;
  description: string;
  priority: 'low' | 'medium' | 'high';
  weekdays: number[];
  createdOn: string;
  createdAt: Date;
  updatedAt: Date;
  deletedAt: Date | null;
}

export interface CheckInRow {
  dailyId: string;
  userId: string;
  date: string;
  late: boolean;
  createdAt: Date;
}

export async function insertDaily(
  q: Queryable,
  d: Pick<DailyRow, 'id' | 'userId' | 'title' | 'description' | 'priority' | 'weekdays' | 'createdOn'> & {
    now: Date;
  },
): Promise<DailyRow> {
  const { rows } = await q.query<DailyRow>(
    `INSERT INTO dailies (id, user_id, title, description, priority, weekdays, created_on, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6::smallint[], $7, $8, $8) RETURNING *`,
    [d.id, d.userId, d.title, d.description, d.priority, d.weekdays, d.createdOn, d.now],
  );
  return rows[0] as DailyRow;
}

/** A live daily of this user; another user's, or a deleted one, is not found. */
export async function findDaily(
  q: Queryable,
  userId: string,
  id: string,
  lock = false,
): Promise<DailyRow | undefined> {
  const { rows } = await q.query<DailyRow>(
    `SELECT * FROM dailies WHERE id = $1 AND user_id = $2 AND deleted_at IS NULL${lock ? ' FOR UPDATE' : ''}`,
    [id, userId],
  );
  return rows[0];
}

export async function listDailies(q: Queryable, userId: string): Promise<DailyRow[]> {
  const { rows } = await q.query<DailyRow>(
    'SELECT * FROM dailies WHERE user_id = $1 AND deleted_at IS NULL ORDER BY created_at, id LIMIT 500',
    [userId],
  );
  return rows;
}

export async function updateDaily(
  q: Queryable,
  userId: string,
  id: string,
  patch: Partial<Pick<DailyRow, 'title' | 'description' | 'priority' | 'weekdays'>>,
  now: Date,
): Promise<DailyRow | undefined> {
  const { rows } = await q.query<DailyRow>(
    `UPDATE dailies SET title = coalesce($3, title), description = coalesce($4, description),
       priority = coalesce($5, priority), weekdays = coalesce($6::smallint[], weekdays), updated_at = $7
     WHERE id = $1 AND user_id = $2 AND deleted_at IS NULL RETURNING *`,
    [
      id,
      userId,
      patch.title ?? null,
      patch.description ?? null,
      patch.priority ?? null,
      patch.weekdays ?? null,
      now,
    ],
  );
  return rows[0];
}

export async function softDeleteDaily(q: Queryable, userId: string, id: string, now: Date): Promise<boolean> {
  const { rowCount } = await q.query(
    'UPDATE dailies SET deleted_at = $3 WHERE id = $1 AND user_id = $2 AND deleted_at IS NULL',
    [id, userId, now],
  );
  return rowCount === 1;
}

/** Records a check-in once; false when that day was already checked in. */
export async function insertCheckIn(q: Queryable, c: CheckInRow): Promise<boolean> {
  const { rowCount } = await q.query(
    `INSERT INTO daily_check_ins (daily_id, user_id, date, late, created_at) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (daily_id, date) DO NOTHING`,
    [c.dailyId, c.userId, c.date, c.late, c.createdAt],
  );
  return rowCount === 1;
}

export async function findCheckIn(
  q: Queryable,
  dailyId: string,
  date: string,
): Promise<CheckInRow | undefined> {
  const { rows } = await q.query<CheckInRow>(
    'SELECT * FROM daily_check_ins WHERE daily_id = $1 AND date = $2',
    [dailyId, date],
  );
  return rows[0];
}

export async function deleteCheckIn(q: Queryable, dailyId: string, date: string): Promise<boolean> {
  const { rowCount } = await q.query('DELETE FROM daily_check_ins WHERE daily_id = $1 AND date = $2', [
    dailyId,
    date,
  ]);
  return rowCount === 1;
}

/** Check-ins of the given dailies from a date on (all of them when from is null). */
export async function checkInsOf(
  q: Queryable,
  dailyIds: string[],
  from: string | null = null,
): Promise<CheckInRow[]> {
  if (dailyIds.length === 0) return [];
  const { rows } = await q.query<CheckInRow>(
    'SELECT * FROM daily_check_ins WHERE daily_id = ANY($1::uuid[]) AND ($2::date IS NULL OR date >= $2) ORDER BY date',
    [dailyIds, from],
  );
  return rows;
}

/** Check-ins per logical date for a user (deleted dailies included: what was done stays done). */
export async function checkInCountsByDate(q: Queryable, userId: string, from: string, to: string) {
  const { rows } = await q.query<{ date: string; count: number }>(
    `SELECT date, count(*)::int AS count FROM daily_check_ins WHERE user_id = $1 AND date BETWEEN $2 AND $3
     GROUP BY date`,
    [userId, from, to],
  );
  return new Map(rows.map((r) => [r.date, r.count]));
}

export async function countCheckIns(q: Queryable, userId: string): Promise<number> {
  const { rows } = await q.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM daily_check_ins WHERE user_id = $1',
    [userId],
  );
  return rows[0]?.n ?? 0;
}

/** Live dailies due on a date that have no check-in for it (for perfect days). */
export async function countDueUndone(
  q: Queryable,
  userId: string,
  date: string,
  isoWeekday: number,
): Promise<number> {
  const { rows } = await q.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM dailies d
     WHERE d.user_id = $1 AND d.deleted_at IS NULL AND d.created_on <= $2 AND $3::smallint = ANY(d.weekdays)
       AND NOT EXISTS (SELECT 1 FROM daily_check_ins c WHERE c.daily_id = d.id AND c.date = $2)`,
    [userId, date, isoWeekday],
  );
  return rows[0]?.n ?? 0;
}

export async function frozenDates(
  q: Queryable,
  userId: string,
  from: string,
  to: string,
): Promise<Set<string>> {
  const { rows } = await q.query<{ date: string }>(
    `SELECT date FROM day_summaries WHERE user_id = $1 AND outcome = 'frozen' AND date BETWEEN $2 AND $3`,
    [userId, from, to],
  );
  return new Set(rows.map((r) => r.date));
}

export async function countSummaries(q: Queryable, userId: string) {
  const { rows } = await q.query<{ met: number }>(
    `SELECT count(*) FILTER (WHERE outcome = 'met')::int AS met FROM day_summaries WHERE user_id = $1`,
    [userId],
  );
  return { met: rows[0]?.met ?? 0 };
}

export async function insertSummaries(
  q: Queryable,
  userId: string,
  days: { date: string; completed: number; goal: number; outcome: string }[],
) {
  for (const d of days) {
    await q.query(
      `INSERT INTO day_summaries (user_id, date, completed, goal, outcome) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (user_id, date) DO NOTHING`,
      [userId, d.date, d.completed, d.goal, d.outcome],
    );
  }
}

/** The stored overall streak, locked so two rollovers of one user run one after the other. */
export async function lockOverall(
  q: Queryable,
  userId: string,
  now: Date,
): Promise<{ state: OverallState | null; gone: boolean }> {
  // Only for a user who still exists: an account deleted meanwhile has no row and nothing to close.
  await q.query(
    `INSERT INTO overall_streaks (user_id, state, last_closed_date, updated_at)
     SELECT id, 'null', NULL, $2 FROM users WHERE id = $1
     ON CONFLICT (user_id) DO NOTHING`,
    [userId, now],
  );
  const { rows } = await q.query<{ state: OverallState | null }>(
    'SELECT state FROM overall_streaks WHERE user_id = $1 FOR UPDATE',
    [userId],
  );
  return { state: rows[0]?.state ?? null, gone: rows.length === 0 };
}

export async function readOverall(q: Queryable, userId: string): Promise<OverallState | null> {
  const { rows } = await q.query<{ state: OverallState | null }>(
    'SELECT state FROM overall_streaks WHERE user_id = $1',
    [userId],
  );
  return rows[0]?.state ?? null;
}

export async function saveOverall(q: Queryable, userId: string, state: OverallState, now: Date) {
  await q.query(
    'UPDATE overall_streaks SET state = $2, last_closed_date = $3, updated_at = $4 WHERE user_id = $1',
    [userId, JSON.stringify(state), state.lastClosedDate, now],
  );
}

/**
 * Users whose stored streak may be behind: never closed, or last closed before the last day whose
 * grace window is over, as their current settings count days. The job then decides per user with
 * the exact calendar.
 */
export async function usersBehind(
  q: Queryable,
  now: Date,
  graceHours: number,
  afterUserId: string | null,
  limit: number,
) {
  const { rows } = await q.query<{ id: string }>(
    `SELECT u.id FROM users u LEFT JOIN overall_streaks o ON o.user_id = u.id
     WHERE ($3::uuid IS NULL OR u.id > $3)
       AND (o.last_closed_date IS NULL
            OR o.last_closed_date < ((($1::timestamptz - make_interval(hours => $4)) AT TIME ZONE u.timezone
                                      - make_interval(hours => u.day_start_hour))::date - 1))
     ORDER BY u.id LIMIT $2`,
    [now, limit, afterUserId, graceHours],
  );
  return rows.map((r) => r.id);
}

/** Everything of a user's dailies, deleted ones included (their history is still theirs). */
export async function exportDailies(q: Queryable, userId: string) {
  const dailies = await q.query('SELECT * FROM dailies WHERE user_id = $1 ORDER BY created_at, id', [userId]);
  const checkIns = await q.query(
    'SELECT daily_id, date, late, created_at FROM daily_check_ins WHERE user_id = $1 ORDER BY date',
    [userId],
  );
  const days = await q.query(
    'SELECT date, completed, goal, outcome FROM day_summaries WHERE user_id = $1 ORDER BY date',
    [userId],
  );
  return { dailies: dailies.rows, checkIns: checkIns.rows, closedDays: days.rows };
}
