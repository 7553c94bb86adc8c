import type { Queryable } from '../../lib/db.js';

export type MediaMime = 'image/webp' | 'image/gif' | 'application/pdf';

export interface MediaRow {
  id: string;
  ownerId: string;
  storageKey: string;
  mime: MediaMime;
  bytes: number;
  width: number | null;
  height: number | null;
  createdAt: Date;
}

const COLUMNS = 'id, owner_id, storage_key, mime, bytes, width, height, created_at';
/** The namespace of the per-owner media locks (pg_advisory_xact_lock's first key). */
const OWNER_LOCK_SPACE = 730009;

/**
 * Serialises, per owner, what counts or lists their files (the quota check and insert of an upload,
 * the key collection of an account deletion) until the transaction ends. Returns whether the owner
 * still exists.
 */
export async function lockOwner(q: Queryable, ownerId: string): Promise<boolean> {
  await q.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [OWNER_LOCK_SPACE, ownerId]);
  // A statement of its own: its snapshot is taken once the lock is held.
  const { rows } = await q.query('SELECT 1 FROM users WHERE id = $1', [ownerId]);
  return rows.length > 0;
}

export async function storedBytes(q: Queryable, ownerId: string): Promise<number> {
  const { rows } = await q.query<{ total: number }>(
    'SELECT COALESCE(sum(bytes), 0)::bigint AS total FROM media WHERE owner_id = $1',
    [ownerId],
  );
  return rows[0]?.total ?? 0;
}

export async function insertMedia(q: Queryable, m: MediaRow): Promise<MediaRow> {
  const { rows } = await q.query<MediaRow>(
    `INSERT INTO media (${COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ${COLUMNS}`,
    [m.id, m.ownerId, m.storageKey, m.mime, m.bytes, m.width, m.height, m.createdAt],
  );
  return rows[0] as MediaRow;
}

export async function exists(q: Queryable, id: string): Promise<boolean> {
  const { rows } = await q.query('SELECT 1 FROM media WHERE id = $1', [id]);
  return rows.length > 0;
}

/**
 * The file if `userId` may see it: they uploaded it, or they are a member of a conversation holding
 * a message that carries it, not deleted, not hidden by them, and not older than their membership.
 */
export async function findVisible(q: Queryable, id: string, userId: string): Promise<MediaRow | undefined> {
  const { rows } = await q.query<MediaRow>(
    `SELECT ${COLUMNS} FROM media m
      WHERE m.id = $1
        AND (m.owner_id = $2 OR EXISTS (
          SELECT 1 FROM messages msg
            JOIN conversation_members cm ON cm.conversation_id = msg.conversation_id AND cm.user_id = $2
           WHERE msg.media_id = m.id
             AND msg.deleted_at IS NULL
             AND msg.seq >= cm.from_seq
             AND NOT EXISTS (SELECT 1 FROM message_hidden h WHERE h.user_id = $2 AND h.message_id = msg.id)))`,
    [id, userId],
  );
  return rows[0];
}

/** The owner's file, locked until the transaction ends. */
export async function findOwnedForUpdate(
  q: Queryable,
  id: string,
  ownerId: string,
): Promise<MediaRow | undefined> {
  const { rows } = await q.query<MediaRow>(
    `SELECT ${COLUMNS} FROM media WHERE id = $1 AND owner_id = $2 FOR UPDATE`,
    [id, ownerId],
  );
  return rows[0];
}

/** Whether a message (deleted or not) carries the file. */
export async function isAttached(q: Queryable, id: string): Promise<boolean> {
  const { rows } = await q.query('SELECT 1 FROM messages WHERE media_id = $1', [id]);
  return rows.length > 0;
}

/** Deletes the row; returns its storage key, or undefined when there was none. */
export async function deleteMedia(q: Queryable, id: string): Promise<string | undefined> {
  const { rows } = await q.query<{ storageKey: string }>(
    'DELETE FROM media WHERE id = $1 RETURNING storage_key',
    [id],
  );
  return rows[0]?.storageKey;
}

export async function keysOf(q: Queryable, ownerId: string): Promise<string[]> {
  const { rows } = await q.query<{ storageKey: string }>(
    'SELECT storage_key FROM media WHERE owner_id = $1 ORDER BY created_at',
    [ownerId],
  );
  return rows.map((r) => r.storageKey);
}

export async function listOwned(q: Queryable, ownerId: string): Promise<MediaRow[]> {
  const { rows } = await q.query<MediaRow>(
    `SELECT ${COLUMNS} FROM media WHERE owner_id = $1 ORDER BY created_at, id`,
    [ownerId],
  );
  return rows;
}

/**
 * Up to `limit` files created before `before` that no message carries, locked; rows another
 * transaction holds (a send claiming one right now) are skipped.
 */
export async function lockUnattached(q: Queryable, before: Date, limit: number): Promise<string[]> {
  const { rows } = await q.query<{ id: string }>(
    `SELECT id FROM media m
      WHERE created_at < $1 AND NOT EXISTS (SELECT 1 FROM messages WHERE media_id = m.id)
      ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED`,
    [before, limit],
  );
  return rows.map((r) => r.id);
}

/**
 * Deletes those of `ids` that are still unattached (checked again by this statement, which sees
 * sends that committed before the rows were locked); returns their storage keys.
 */
export async function deleteUnattached(q: Queryable, ids: string[]): Promise<string[]> {
  const { rows } = await q.query<{ storageKey: string }>(
    `DELETE FROM media m
      WHERE id = ANY($1::uuid[]) AND NOT EXISTS (SELECT 1 FROM messages WHERE media_id = m.id)
      RETURNING storage_key`,
    [ids],
  );
  return rows.map((r) => r.storageKey);
}
