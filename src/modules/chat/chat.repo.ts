import type { Queryable } from '../../lib/db.js';
import { PUBLIC_USER_COLUMNS, type PublicUserRow } from '../users/users.summary.js';

export interface ConversationRow {
  id: string;
  kind: 'direct' | 'group';
  groupTaskId: string | null;
  directKey: string | null;
  lastSeq: number;
  updatedAt: Date;
}

export interface MembershipRow {
  fromSeq: number;
  deliveredSeq: number;
  readSeq: number;
}

export interface MessageRow {
  id: string;
  conversationId: string;
  seq: number;
  senderId: string | null;
  clientMessageId: string | null;
  body: string;
  createdAt: Date;
  deletedAt: Date | null;
  mediaId: string | null;
  mediaMime: string | null;
  mediaBytes: number | null;
  mediaWidth: number | null;
  mediaHeight: number | null;
}

export interface ListedConversationRow extends ConversationRow {
  title: string | null;
  memberCount: number;
  readSeq: number;
  unreadCount: number;
  lastMessageId: string | null;
  canSend: boolean;
}

export interface MemberRow extends PublicUserRow {
  conversationId: string;
  deliveredSeq: number;
  readSeq: number;
}

export const MEMBERS_SHOWN = 50;

const CONVERSATION_COLUMNS = 'c.id, c.kind, c.group_task_id, c.direct_key, c.last_seq, c.updated_at';

const MESSAGE_COLUMNS = `m.id, m.conversation_id, m.seq, m.sender_id, m.client_message_id, m.body,
  m.created_at, m.deleted_at, md.id AS media_id, md.mime AS media_mime, md.bytes AS media_bytes,
  md.width AS media_width, md.height AS media_height`;

/** Messages visible to member $2: from their joining on, not hidden by them. */
const VISIBLE_TO = (alias: string, fromSeq: string) =>
  `${alias}.seq >= ${fromSeq} AND NOT EXISTS (
     SELECT 1 FROM message_hidden h WHERE h.user_id = $2 AND h.message_id = ${alias}.id)`;

/** Unread for member $2: others' messages after their read cursor, not deleted, not hidden. */
const UNREAD_FOR = (alias: string, readSeq: string) =>
  `${alias}.seq > ${readSeq} AND ${alias}.deleted_at IS NULL AND ${alias}.sender_id IS DISTINCT FROM $2
   AND NOT EXISTS (SELECT 1 FROM message_hidden h WHERE h.user_id = $2 AND h.message_id = ${alias}.id)`;

export const directKey = (a: string, b: string) => (a < b ? `${a}:${b}` : `${b}:${a}`);

export async function findDirect(q: Queryable, key: string): Promise<ConversationRow | undefined> {
  const { rows } = await q.query<ConversationRow>(
    `SELECT ${CONVERSATION_COLUMNS} FROM conversations c WHERE c.direct_key = $1`,
    [key],
  );
  return rows[0];
}

/** The pair's conversation and both memberships; false when it already existed (a concurrent open). */
export async function insertDirect(
  q: Queryable,
  c: { id: string; key: string; userIds: [string, string]; now: Date },
): Promise<boolean> {
  const { rowCount } = await q.query(
    `INSERT INTO conversations (id, kind, direct_key, created_at, updated_at)
     VALUES ($1, 'direct', $2, $3, $3) ON CONFLICT (direct_key) DO NOTHING`,
    [c.id, c.key, c.now],
  );
  if (rowCount === 0) return false;
  await q.query(
    `INSERT INTO conversation_members (conversation_id, user_id, joined_at)
     SELECT $1, unnest($2::uuid[]), $3`,
    [c.id, c.userIds, c.now],
  );
  return true;
}

/** The conversation, locked: sends into one conversation take their seq one at a time. */
/**
 * The conversation locked for a send (sends to it go one at a time, in seq order), with what the send
 * needs to know in the same round trip: whether the sender is a member, the other member of a direct
 * conversation, and whether this clientMessageId is already stored.
 */
export async function lockForSend(
  q: Queryable,
  conversationId: string,
  senderId: string,
  clientMessageId: string,
): Promise<
  { kind: 'direct' | 'group'; isMember: boolean; otherId: string | null; stored: boolean } | undefined
> {
  const { rows } = await q.query<{
    kind: 'direct' | 'group';
    isMember: boolean;
    otherId: string | null;
    stored: boolean;
  }>(
    `SELECT c.kind,
            EXISTS (SELECT 1 FROM conversation_members cm
                     WHERE cm.conversation_id = c.id AND cm.user_id = $2) AS is_member,
            CASE WHEN c.kind = 'direct' THEN (SELECT cm.user_id FROM conversation_members cm
                     WHERE cm.conversation_id = c.id AND cm.user_id <> $2 LIMIT 1) END AS other_id,
            EXISTS (SELECT 1 FROM messages m
                     WHERE m.conversation_id = c.id AND m.sender_id = $2 AND m.client_message_id = $3) AS stored
       FROM conversations c WHERE c.id = $1 FOR UPDATE OF c`,
    [conversationId, senderId, clientMessageId],
  );
  return rows[0];
}

export async function findConversation(q: Queryable, id: string): Promise<ConversationRow | undefined> {
  const { rows } = await q.query<ConversationRow>(
    `SELECT ${CONVERSATION_COLUMNS} FROM conversations c WHERE c.id = $1`,
    [id],
  );
  return rows[0];
}

export async function membership(
  q: Queryable,
  conversationId: string,
  userId: string,
): Promise<MembershipRow | undefined> {
  const { rows } = await q.query<MembershipRow>(
    `SELECT from_seq, delivered_seq, read_seq FROM conversation_members
      WHERE conversation_id = $1 AND user_id = $2`,
    [conversationId, userId],
  );
  return rows[0];
}

export async function memberIds(q: Queryable, conversationId: string): Promise<string[]> {
  const { rows } = await q.query<{ userId: string }>(
    'SELECT user_id FROM conversation_members WHERE conversation_id = $1',
    [conversationId],
  );
  return rows.map((r) => r.userId);
}

/**
 * Who hears of a member's cursor moving: everyone in a group; in a direct conversation both only
 * while they are friends (after an unfriend or a block, only the mover's own devices).
 */
export async function receiptAudience(
  q: Queryable,
  conversationId: string,
  userId: string,
): Promise<string[]> {
  const { rows } = await q.query<{ userId: string }>(
    `SELECT cm.user_id FROM conversation_members cm JOIN conversations c ON c.id = cm.conversation_id
      WHERE cm.conversation_id = $1 AND (c.kind = 'group' OR cm.user_id = $2 OR EXISTS (
        SELECT 1 FROM friendships f
         WHERE f.user_a = least(cm.user_id, $2::uuid) AND f.user_b = greatest(cm.user_id, $2::uuid)))`,
    [conversationId, userId],
  );
  return rows.map((r) => r.userId);
}

/** The other member of a direct conversation, if they still have an account. */
export async function otherMember(q: Queryable, conversationId: string, userId: string) {
  const { rows } = await q.query<{ userId: string }>(
    'SELECT user_id FROM conversation_members WHERE conversation_id = $1 AND user_id <> $2',
    [conversationId, userId],
  );
  return rows[0]?.userId;
}

export async function findByClientId(
  q: Queryable,
  conversationId: string,
  senderId: string,
  clientMessageId: string,
): Promise<MessageRow | undefined> {
  const { rows } = await q.query<MessageRow>(
    `SELECT ${MESSAGE_COLUMNS} FROM messages m LEFT JOIN media md ON md.id = m.media_id
      WHERE m.conversation_id = $1 AND m.sender_id = $2 AND m.client_message_id = $3`,
    [conversationId, senderId, clientMessageId],
  );
  return rows[0];
}

/**
 * Stores the message as seq last_seq + 1 and moves the sender's cursors to it (writing into a
 * conversation reads it), in one statement; the caller holds the conversation lock. Nothing is
 * written (undefined) when this clientMessageId is stored already. Returns the seq
 * and everyone in the conversation, share-locked until the transaction ends: a removal (which deletes
 * a membership row) waits for it, so nobody removed before the commit is among the recipients and
 * nobody receives a message committed after their removal.
 */
export async function insertMessage(
  q: Queryable,
  m: {
    id: string;
    conversationId: string;
    senderId: string;
    clientMessageId: string;
    body: string;
    mediaId: string | null;
    now: Date;
  },
): Promise<{ seq: number; memberIds: string[] } | undefined> {
  const { rows } = await q.query<{ seq: number | null; memberIds: string[] }>(
    `WITH members AS (
       SELECT user_id FROM conversation_members WHERE conversation_id = $2 FOR SHARE
     ), next AS (
       UPDATE conversations SET last_seq = last_seq + 1, updated_at = $7
        WHERE id = $2 AND NOT EXISTS (SELECT 1 FROM messages
                WHERE conversation_id = $2 AND sender_id = $3 AND client_message_id = $4)
       RETURNING last_seq
     ), message AS (
       INSERT INTO messages (id, conversation_id, seq, sender_id, client_message_id, body, media_id, created_at)
       SELECT $1, $2, next.last_seq, $3, $4, $5, $6, $7 FROM next
       RETURNING seq
     ), mine AS (
       -- Data-modifying: runs whether or not the query reads it.
       UPDATE conversation_members cm
          SET delivered_seq = GREATEST(cm.delivered_seq, message.seq), read_seq = GREATEST(cm.read_seq, message.seq)
         FROM message WHERE cm.conversation_id = $2 AND cm.user_id = $3
       RETURNING cm.user_id
     )
     SELECT (SELECT seq FROM message) AS seq,
            (SELECT array_agg(user_id) FROM members) AS member_ids`,
    [m.id, m.conversationId, m.senderId, m.clientMessageId, m.body, m.mediaId, m.now],
  );
  const row = rows[0] as { seq: number | null; memberIds: string[] };
  return row.seq === null ? undefined : { seq: row.seq, memberIds: row.memberIds };
}

export async function findMessage(
  q: Queryable,
  conversationId: string,
  messageId: string,
  opts: { lock?: boolean } = {},
): Promise<MessageRow | undefined> {
  const { rows } = await q.query<MessageRow>(
    `SELECT ${MESSAGE_COLUMNS} FROM messages m LEFT JOIN media md ON md.id = m.media_id
      WHERE m.conversation_id = $1 AND m.id = $2${opts.lock ? ' FOR UPDATE OF m' : ''}`,
    [conversationId, messageId],
  );
  return rows[0];
}

export async function messagesByIds(q: Queryable, ids: string[]): Promise<MessageRow[]> {
  if (ids.length === 0) return [];
  const { rows } = await q.query<MessageRow>(
    `SELECT ${MESSAGE_COLUMNS} FROM messages m LEFT JOIN media md ON md.id = m.media_id
      WHERE m.id = ANY($1::uuid[])`,
    [ids],
  );
  return rows;
}

/** A page of the messages member $2 can see, always returned oldest first. */
export async function history(
  q: Queryable,
  p: {
    conversationId: string;
    userId: string;
    fromSeq: number;
    before?: number;
    after?: number;
    limit: number;
  },
): Promise<MessageRow[]> {
  const newestFirst = p.after === undefined;
  const bound = newestFirst ? `m.seq < $4` : `m.seq > $4`;
  const { rows } = await q.query<MessageRow>(
    `SELECT ${MESSAGE_COLUMNS} FROM messages m LEFT JOIN media md ON md.id = m.media_id
      WHERE m.conversation_id = $1 AND ${VISIBLE_TO('m', '$3')} AND ${bound}
      ORDER BY m.seq ${newestFirst ? 'DESC' : 'ASC'} LIMIT $5`,
    [
      p.conversationId,
      p.userId,
      p.fromSeq,
      newestFirst ? (p.before ?? Number.MAX_SAFE_INTEGER) : p.after,
      p.limit,
    ],
  );
  return newestFirst ? rows.reverse() : rows;
}

/**
 * Moves a member's cursors forward to `seq` (clamped to the newest message); never backwards, however
 * reads arrive. Read implies delivered. Returns the cursors and whether they moved.
 */
export async function advanceCursor(
  q: Queryable,
  p: { conversationId: string; userId: string; seq: number; read: boolean },
): Promise<{ deliveredSeq: number; readSeq: number; moved: boolean } | undefined> {
  const target = 'LEAST($3::bigint, c.last_seq)';
  const { rows } = await q.query<{ deliveredSeq: number; readSeq: number }>(
    `UPDATE conversation_members cm
        SET delivered_seq = GREATEST(cm.delivered_seq, ${target}),
            read_seq = ${p.read ? `GREATEST(cm.read_seq, ${target})` : 'cm.read_seq'}
       FROM conversations c
      WHERE c.id = cm.conversation_id AND cm.conversation_id = $1 AND cm.user_id = $2
        AND (cm.delivered_seq < ${target}${p.read ? ` OR cm.read_seq < ${target}` : ''})
      RETURNING cm.delivered_seq, cm.read_seq`,
    [p.conversationId, p.userId, p.seq],
  );
  if (rows[0]) return { ...rows[0], moved: true };
  const current = await membership(q, p.conversationId, p.userId);
  return current && { deliveredSeq: current.deliveredSeq, readSeq: current.readSeq, moved: false };
}

export async function unreadCount(
  q: Queryable,
  conversationId: string,
  userId: string,
  readSeq: number,
): Promise<number> {
  const { rows } = await q.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM messages m WHERE m.conversation_id = $1 AND ${UNREAD_FOR('m', '$3')}`,
    [conversationId, userId, readSeq],
  );
  return rows[0]?.n ?? 0;
}

export interface Position {
  updatedAt: Date;
  id: string;
}

/** My conversations, newest activity first, with my unread count and the newest message I can see. */
export async function listConversations(
  q: Queryable,
  p: { userId: string; ids?: string[]; after?: Position; limit: number },
): Promise<ListedConversationRow[]> {
  const params: unknown[] = [p.limit, p.userId];
  const where: string[] = [];
  if (p.ids) {
    params.push(p.ids);
    where.push(`c.id = ANY($${params.length}::uuid[])`);
  }
  if (p.after) {
    params.push(p.after.updatedAt, p.after.id);
    where.push(`(c.updated_at, c.id) < ($${params.length - 1}, $${params.length})`);
  }
  const { rows } = await q.query<ListedConversationRow>(
    `SELECT ${CONVERSATION_COLUMNS}, g.title, cm.read_seq,
            (SELECT count(*)::int FROM conversation_members x WHERE x.conversation_id = c.id) AS member_count,
            (SELECT count(*)::int FROM messages m WHERE m.conversation_id = c.id AND ${UNREAD_FOR('m', 'cm.read_seq')})
              AS unread_count,
            (SELECT m.id FROM messages m WHERE m.conversation_id = c.id AND ${VISIBLE_TO('m', 'cm.from_seq')}
              ORDER BY m.seq DESC LIMIT 1) AS last_message_id,
            (c.kind = 'group' OR EXISTS (
              SELECT 1 FROM conversation_members o JOIN friendships f
                ON f.user_a = least(o.user_id, cm.user_id) AND f.user_b = greatest(o.user_id, cm.user_id)
              WHERE o.conversation_id = c.id AND o.user_id <> cm.user_id)) AS can_send
       FROM conversation_members cm
       JOIN conversations c ON c.id = cm.conversation_id
       LEFT JOIN group_tasks g ON g.id = c.group_task_id
      WHERE cm.user_id = $2${where.length ? ` AND ${where.join(' AND ')}` : ''}
      ORDER BY c.updated_at DESC, c.id DESC
      LIMIT $1`,
    params,
  );
  return rows;
}

/** The first members of each conversation (by joining time), with their cursors. */
export async function membersOf(q: Queryable, conversationIds: string[]): Promise<MemberRow[]> {
  if (conversationIds.length === 0) return [];
  const { rows } = await q.query<MemberRow>(
    `SELECT conversation_id, ${PUBLIC_USER_COLUMNS}, delivered_seq, read_seq FROM (
       SELECT cm.*, row_number() OVER (PARTITION BY cm.conversation_id ORDER BY cm.joined_at, cm.user_id) AS n
         FROM conversation_members cm WHERE cm.conversation_id = ANY($1::uuid[])
     ) cm JOIN users u ON u.id = cm.user_id
     WHERE cm.n <= ${MEMBERS_SHOWN}
     ORDER BY cm.conversation_id, cm.n`,
    [conversationIds],
  );
  return rows;
}

/** Erases a message for everyone, leaving its tombstone; returns its media id (to discard). */
export async function tombstone(q: Queryable, messageId: string, now: Date) {
  await q.query(`UPDATE messages SET body = '', media_id = NULL, deleted_at = $2 WHERE id = $1`, [
    messageId,
    now,
  ]);
}

export async function hide(q: Queryable, userId: string, messageId: string) {
  await q.query('INSERT INTO message_hidden (user_id, message_id) VALUES ($1, $2) ON CONFLICT DO NOTHING', [
    userId,
    messageId,
  ]);
}

/**
 * Account deletion: every message the user sent becomes a tombstone (body, media and client id erased)
 * before the user row goes and sender_id turns NULL; their direct conversations lose the pair key.
 */
export async function forgetSender(q: Queryable, userId: string, now: Date) {
  await q.query(
    `UPDATE messages SET body = '', media_id = NULL, client_message_id = NULL,
            deleted_at = coalesce(deleted_at, $2)
      WHERE sender_id = $1`,
    [userId, now],
  );
  await q.query(
    `UPDATE conversations c SET direct_key = NULL FROM conversation_members cm
      WHERE cm.conversation_id = c.id AND cm.user_id = $1 AND c.kind = 'direct'`,
    [userId],
  );
}

export async function exportChat(q: Queryable, userId: string) {
  const { rows: conversations } = await q.query<{ id: string; kind: string; joinedAt: Date }>(
    `SELECT c.id, c.kind, cm.joined_at FROM conversation_members cm JOIN conversations c ON c.id = cm.conversation_id
      WHERE cm.user_id = $1 ORDER BY cm.joined_at`,
    [userId],
  );
  const { rows: messages } = await q.query<{
    id: string;
    conversationId: string;
    seq: number;
    body: string;
    mediaId: string | null;
    createdAt: Date;
    deletedAt: Date | null;
  }>(
    `SELECT id, conversation_id, seq, body, media_id, created_at, deleted_at FROM messages
      WHERE sender_id = $1 ORDER BY created_at, id`,
    [userId],
  );
  return { conversations, messages };
}
