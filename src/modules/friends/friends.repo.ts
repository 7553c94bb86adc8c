import type { Queryable } from '../../lib/db.js';
import { PUBLIC_USER_COLUMNS, type PublicUserRow } from '../users/users.summary.js';
import type { FriendRequestStatus } from './friends.schemas.js';

export interface FriendRequestRow {
  id: string;
  fromUserId: string;
  toUserId: string;
  status: FriendRequestStatus;
  createdAt: Date;
  respondedAt: Date | null;
}

const REQUEST_COLUMNS = 'id, from_user_id, to_user_id, status, created_at, responded_at';
/** The namespace of the pair locks (pg_advisory_xact_lock's first key). */
const PAIR_LOCK_SPACE = 730006;

const ordered = (a: string, b: string): [string, string] => (a < b ? [a, b] : [b, a]);

/**
 * Serialises everything that changes how two people relate (requests, friendship, blocks) for the
 * rest of the transaction. Readers that must not act on a relation that is being ended (a chat
 * message, an invitation) take it shared; writers take it exclusive. Held until commit or rollback.
 */
export async function lockPair(q: Queryable, a: string, b: string, mode: 'shared' | 'exclusive') {
  const [x, y] = ordered(a.toLowerCase(), b.toLowerCase());
  const fn = mode === 'shared' ? 'pg_advisory_xact_lock_shared' : 'pg_advisory_xact_lock';
  await q.query(`SELECT ${fn}($1, hashtext($2))`, [PAIR_LOCK_SPACE, `${x}:${y}`]);
}

/**
 * The user, share-locked until the transaction ends: an account deletion waits for it, so rows this
 * transaction then writes about the user never meet a user that vanished in between.
 */
export async function lockUser(q: Queryable, id: string): Promise<PublicUserRow | undefined> {
  const { rows } = await q.query<PublicUserRow>(
    `SELECT ${PUBLIC_USER_COLUMNS} FROM users u WHERE u.id = $1 FOR KEY SHARE`,
    [id],
  );
  return rows[0];
}

/** These users (those that exist); only those with a public profile when `publicOnly`. */
export async function findUsers(q: Queryable, ids: string[], publicOnly = false): Promise<PublicUserRow[]> {
  const { rows } = await q.query<PublicUserRow>(
    `SELECT ${PUBLIC_USER_COLUMNS} FROM users u WHERE u.id = ANY($1::uuid[])
       ${publicOnly ? `AND u.profile_visibility = 'public'` : ''}`,
    [ids],
  );
  return rows;
}

export interface RelationRow {
  isFriend: boolean;
  blocking: boolean;
  blockedBy: boolean;
  requestId: string | null;
  requestFrom: string | null;
}

/** How `a` relates to `b`, in one round trip: each part is a primary-key or unique-index probe. */
export async function relation(q: Queryable, a: string, b: string): Promise<RelationRow> {
  const { rows } = await q.query<RelationRow>(
    `SELECT
       EXISTS (SELECT 1 FROM friendships WHERE user_a = least($1::uuid, $2::uuid) AND user_b = greatest($1::uuid, $2::uuid)) AS is_friend,
       EXISTS (SELECT 1 FROM blocks WHERE blocker_id = $1 AND blocked_id = $2) AS blocking,
       EXISTS (SELECT 1 FROM blocks WHERE blocker_id = $2 AND blocked_id = $1) AS blocked_by,
       r.id AS request_id, r.from_user_id AS request_from
     FROM (SELECT 1) AS one
     LEFT JOIN friend_requests r
       ON least(r.from_user_id, r.to_user_id) = least($1::uuid, $2::uuid)
      AND greatest(r.from_user_id, r.to_user_id) = greatest($1::uuid, $2::uuid)
      AND r.status = 'pending'`,
    [a, b],
  );
  return rows[0] as RelationRow;
}

export async function insertRequest(
  q: Queryable,
  r: { id: string; fromUserId: string; toUserId: string; now: Date },
): Promise<FriendRequestRow> {
  const { rows } = await q.query<FriendRequestRow>(
    `INSERT INTO friend_requests (id, from_user_id, to_user_id, status, created_at)
     VALUES ($1, $2, $3, 'pending', $4) RETURNING ${REQUEST_COLUMNS}`,
    [r.id, r.fromUserId, r.toUserId, r.now],
  );
  return rows[0] as FriendRequestRow;
}

export async function findRequest(q: Queryable, id: string): Promise<FriendRequestRow | undefined> {
  const { rows } = await q.query<FriendRequestRow>(
    `SELECT ${REQUEST_COLUMNS} FROM friend_requests WHERE id = $1`,
    [id],
  );
  return rows[0];
}

/** Answers a pending request; undefined when it was no longer pending. */
export async function answerRequest(
  q: Queryable,
  id: string,
  status: Exclude<FriendRequestStatus, 'pending'>,
  now: Date,
): Promise<FriendRequestRow | undefined> {
  const { rows } = await q.query<FriendRequestRow>(
    `UPDATE friend_requests SET status = $2, responded_at = $3 WHERE id = $1 AND status = 'pending'
     RETURNING ${REQUEST_COLUMNS}`,
    [id, status, now],
  );
  return rows[0];
}

/** Cancels whatever is pending between two people, either way; returns the requests it ended. */
export async function cancelPendingBetween(q: Queryable, a: string, b: string, now: Date) {
  const { rows } = await q.query<FriendRequestRow>(
    `UPDATE friend_requests SET status = 'cancelled', responded_at = $3
     WHERE least(from_user_id, to_user_id) = least($1::uuid, $2::uuid)
       AND greatest(from_user_id, to_user_id) = greatest($1::uuid, $2::uuid)
       AND status = 'pending'
     RETURNING ${REQUEST_COLUMNS}`,
    [a, b, now],
  );
  return rows;
}

/** Makes two people friends; false when they already were. */
export async function insertFriendship(q: Queryable, a: string, b: string, now: Date): Promise<boolean> {
  const { rowCount } = await q.query(
    `INSERT INTO friendships (user_a, user_b, created_at)
     VALUES (least($1::uuid, $2::uuid), greatest($1::uuid, $2::uuid), $3) ON CONFLICT DO NOTHING`,
    [a, b, now],
  );
  return rowCount === 1;
}

export async function deleteFriendship(q: Queryable, a: string, b: string): Promise<boolean> {
  const { rowCount } = await q.query(
    'DELETE FROM friendships WHERE user_a = least($1::uuid, $2::uuid) AND user_b = greatest($1::uuid, $2::uuid)',
    [a, b],
  );
  return rowCount === 1;
}

/** The block, new or existing; `created` says which. */
export async function insertBlock(q: Queryable, blockerId: string, blockedId: string, now: Date) {
  const inserted = await q.query<{ createdAt: Date }>(
    `INSERT INTO blocks (blocker_id, blocked_id, created_at) VALUES ($1, $2, $3)
     ON CONFLICT DO NOTHING RETURNING created_at`,
    [blockerId, blockedId, now],
  );
  if (inserted.rows[0]) return { created: true, createdAt: inserted.rows[0].createdAt };
  const { rows } = await q.query<{ createdAt: Date }>(
    'SELECT created_at FROM blocks WHERE blocker_id = $1 AND blocked_id = $2',
    [blockerId, blockedId],
  );
  return { created: false, createdAt: (rows[0] as { createdAt: Date }).createdAt };
}

export async function deleteBlock(q: Queryable, blockerId: string, blockedId: string): Promise<boolean> {
  const { rowCount } = await q.query('DELETE FROM blocks WHERE blocker_id = $1 AND blocked_id = $2', [
    blockerId,
    blockedId,
  ]);
  return rowCount === 1;
}

/** Pending requests to (incoming) or from (outgoing) a user, newest first, after a keyset position. */
export async function listPendingRequests(
  q: Queryable,
  f: {
    userId: string;
    direction: 'incoming' | 'outgoing';
    before?: { createdAt: Date; id: string };
    limit: number;
  },
): Promise<FriendRequestRow[]> {
  const column = f.direction === 'incoming' ? 'to_user_id' : 'from_user_id';
  const params: unknown[] = [f.userId, f.limit];
  let before = '';
  if (f.before) {
    params.push(f.before.createdAt, f.before.id);
    before = ' AND (created_at, id) < ($3::timestamptz, $4::uuid)';
  }
  const { rows } = await q.query<FriendRequestRow>(
    `SELECT ${REQUEST_COLUMNS} FROM friend_requests
     WHERE ${column} = $1 AND status = 'pending'${before}
     ORDER BY created_at DESC, id DESC LIMIT $2`,
    params,
  );
  return rows;
}

export interface FriendRow extends PublicUserRow {
  /** lower(username): the list's order and cursor. */
  key: string;
}

/** Every friend's id (presence announcements go to them). */
export async function friendIds(q: Queryable, userId: string): Promise<string[]> {
  const { rows } = await q.query<{ id: string }>(
    `SELECT user_b AS id FROM friendships WHERE user_a = $1
     UNION ALL
     SELECT user_a FROM friendships WHERE user_b = $1`,
    [userId],
  );
  return rows.map((r) => r.id);
}

/** Presence: when the user's last connection closed (never moves back). */
export async function touchLastSeen(q: Queryable, userId: string, at: Date) {
  await q.query('UPDATE users SET last_seen_at = GREATEST(coalesce(last_seen_at, $2), $2) WHERE id = $1', [
    userId,
    at,
  ]);
}

/** A user's friends in username order (in the "C" collation), after a keyset position. */
export async function listFriends(
  q: Queryable,
  f: { userId: string; after?: string; limit: number },
): Promise<FriendRow[]> {
  const params: unknown[] = [f.userId, f.limit];
  let after = '';
  if (f.after !== undefined) {
    params.push(f.after);
    after = ` WHERE lower(u.username) COLLATE "C" > $3::text`;
  }
  const { rows } = await q.query<FriendRow>(
    `SELECT ${PUBLIC_USER_COLUMNS}, lower(u.username) COLLATE "C" AS key
     FROM (SELECT user_b AS friend_id FROM friendships WHERE user_a = $1
           UNION ALL
           SELECT user_a FROM friendships WHERE user_b = $1) AS f
     JOIN users u ON u.id = f.friend_id${after}
     ORDER BY lower(u.username) COLLATE "C" LIMIT $2`,
    params,
  );
  return rows;
}

export interface BlockRow extends PublicUserRow {
  blockedAt: Date;
}

/** The people a user blocked, newest first, after a keyset position. */
export async function listBlocks(
  q: Queryable,
  f: { userId: string; before?: { blockedAt: Date; id: string }; limit: number },
): Promise<BlockRow[]> {
  const params: unknown[] = [f.userId, f.limit];
  let before = '';
  if (f.before) {
    params.push(f.before.blockedAt, f.before.id);
    before = ' AND (b.created_at, b.blocked_id) < ($3::timestamptz, $4::uuid)';
  }
  const { rows } = await q.query<BlockRow>(
    `SELECT ${PUBLIC_USER_COLUMNS}, b.created_at AS blocked_at
     FROM blocks b JOIN users u ON u.id = b.blocked_id
     WHERE b.blocker_id = $1${before}
     ORDER BY b.created_at DESC, b.blocked_id DESC LIMIT $2`,
    params,
  );
  return rows;
}

/** The user's side of their relationships, for export: requests both ways, friends, blocks they made. */
export async function exportRelations(q: Queryable, userId: string) {
  const requests = await q.query(
    `SELECT id, from_user_id, to_user_id, status, created_at FROM friend_requests
     WHERE from_user_id = $1 OR to_user_id = $1 ORDER BY created_at`,
    [userId],
  );
  const friends = await q.query(
    `SELECT CASE WHEN user_a = $1 THEN user_b ELSE user_a END AS user_id, created_at FROM friendships
     WHERE user_a = $1 OR user_b = $1 ORDER BY created_at`,
    [userId],
  );
  const blocks = await q.query(
    'SELECT blocked_id, created_at FROM blocks WHERE blocker_id = $1 ORDER BY created_at',
    [userId],
  );
  return { friendRequests: requests.rows, friends: friends.rows, blocks: blocks.rows };
}
