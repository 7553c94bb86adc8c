import type { Queryable } from '../../lib/db.js';
import type { NotificationKind } from './notifications.schemas.js';

export interface NotificationRow {
  id: string;
  kind: NotificationKind;
  data: Record<string, string | number | boolean | null>;
  createdAt: Date;
  readAt: Date | null;
}

export interface Position {
  createdAt: Date;
  id: string;
}

const COLUMNS = 'n.id, n.kind, n.data, n.created_at, n.read_at';

/**
 * Stores one notification, with the actor's current display name merged into its data. Both users
 * are key-share locked first, so an account deleted meanwhile means no row (and no error) rather
 * than a foreign-key failure that would undo the event itself.
 */
export async function insert(
  q: Queryable,
  n: { id: string; userId: string; kind: NotificationKind; actorId: string | null; data: string; now: Date },
): Promise<NotificationRow | undefined> {
  const { rows } = await q.query<NotificationRow>(
    `WITH target AS (SELECT id FROM users WHERE id = $2::uuid FOR KEY SHARE),
          actor AS (SELECT id, username, name FROM users WHERE id = $4::uuid FOR KEY SHARE)
     INSERT INTO notifications AS n (id, user_id, kind, actor_id, data, created_at)
     SELECT $1, t.id, $3, a.id,
            $5::jsonb || CASE WHEN a.id IS NULL THEN '{}'::jsonb
                              ELSE jsonb_build_object('userId', a.id, 'username', a.username, 'name', a.name) END,
            $6
       FROM target t LEFT JOIN actor a ON true
      WHERE $4::uuid IS NULL OR a.id IS NOT NULL
     RETURNING ${COLUMNS}`,
    [n.id, n.userId, n.kind, n.actorId, n.data, n.now],
  );
  return rows[0];
}

/** A page of a user's notifications, newest first, after `before` when given. */
export async function list(
  q: Queryable,
  o: { userId: string; unread: boolean; before?: Position; limit: number },
): Promise<NotificationRow[]> {
  const params: unknown[] = [o.userId];
  let where = 'n.user_id = $1';
  if (o.unread) where += ' AND n.read_at IS NULL';
  if (o.before) {
    params.push(o.before.createdAt, o.before.id);
    where += ' AND (n.created_at, n.id) < ($2, $3)';
  }
  params.push(o.limit);
  const { rows } = await q.query<NotificationRow>(
    `SELECT ${COLUMNS} FROM notifications n WHERE ${where}
      ORDER BY n.created_at DESC, n.id DESC LIMIT $${params.length}`,
    params,
  );
  return rows;
}

export async function countUnread(q: Queryable, userId: string): Promise<number> {
  const { rows } = await q.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM notifications WHERE user_id = $1 AND read_at IS NULL',
    [userId],
  );
  return rows[0]?.n ?? 0;
}

/** Marks these of the user's unread notifications read; other ids (anyone else's, unknown) match nothing. */
export async function markRead(q: Queryable, userId: string, ids: string[], now: Date): Promise<number> {
  const { rowCount } = await q.query(
    `UPDATE notifications SET read_at = $3
      WHERE user_id = $1 AND id = ANY($2::uuid[]) AND read_at IS NULL`,
    [userId, ids, now],
  );
  return rowCount;
}

export async function markAllRead(q: Queryable, userId: string, now: Date): Promise<number> {
  const { rowCount } = await q.query(
    'UPDATE notifications SET read_at = $2 WHERE user_id = $1 AND read_at IS NULL',
    [userId, now],
  );
  return rowCount;
}

/** Drops what `actorId` caused `userId` to be told (a block). */
export async function deleteByActor(q: Queryable, userId: string, actorId: string): Promise<number> {
  const { rowCount } = await q.query('DELETE FROM notifications WHERE actor_id = $2 AND user_id = $1', [
    userId,
    actorId,
  ]);
  return rowCount;
}

/** One batch of the age prune: read ones created before `readBefore`, any created before `before`. */
export async function deleteAged(
  q: Queryable,
  o: { readBefore: Date; before: Date; batch: number },
): Promise<number> {
  const { rowCount } = await q.query(
    `DELETE FROM notifications WHERE id IN (
       SELECT id FROM notifications
        WHERE created_at < $1 AND (read_at IS NOT NULL OR created_at < $2)
        LIMIT $3)`,
    [o.readBefore, o.before, o.batch],
  );
  return rowCount;
}

export async function usersOver(q: Queryable, cap: number): Promise<string[]> {
  const { rows } = await q.query<{ userId: string }>(
    'SELECT user_id FROM notifications GROUP BY user_id HAVING count(*) > $1',
    [cap],
  );
  return rows.map((r) => r.userId);
}

/** Keeps the user's newest `cap` notifications and deletes the rest. */
export async function trimUser(q: Queryable, userId: string, cap: number): Promise<number> {
  const { rowCount } = await q.query(
    `DELETE FROM notifications WHERE user_id = $1 AND (created_at, id) < (
       SELECT created_at, id FROM notifications WHERE user_id = $1
        ORDER BY created_at DESC, id DESC OFFSET $2 LIMIT 1)`,
    [userId, cap - 1],
  );
  return rowCount;
}

export async function exportFor(q: Queryable, userId: string) {
  const { rows } = await q.query(
    `SELECT id, kind, actor_id, data, created_at, read_at FROM notifications
      WHERE user_id = $1 ORDER BY created_at, id`,
    [userId],
  );
  return rows;
}
