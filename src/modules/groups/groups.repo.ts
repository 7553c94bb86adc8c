import type { Queryable } from '../../lib/db.js';
import type { GroupRole } from './groups.schemas.js';

export interface GroupRow {
  id: string;
  ownerId: string;
  title: string;
  description: string;
  visibility: 'public' | 'private';
  priority: 'low' | 'medium' | 'high';
  dueAt: Date;
  status: 'open' | 'closed';
  closedAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface GroupView extends GroupRow {
  memberCount: number;
  myRole: GroupRole | null;
}

export interface MemberRow {
  userId: string;
  username: string;
  role: GroupRole;
  joinedAt: Date;
  completedAt: Date | null;
  rank: number | null;
}

export interface InvitationRow {
  id: string;
  groupTaskId: string;
  groupTitle: string;
  fromUserId: string;
  toUserId: string;
  status: 'pending' | 'accepted' | 'declined' | 'cancelled';
  createdAt: Date;
}

const G = `g.id, g.owner_id, g.title, g.description, g.visibility, g.priority, g.due_at, g.status, g.closed_at,
  g.created_at, g.updated_at`;
const VIEW = `${G},
  (SELECT count(*)::int FROM group_members c WHERE c.group_task_id = g.id) AS member_count,
  (SELECT m.role FROM group_members m WHERE m.group_task_id = g.id AND m.user_id = $1) AS my_role`;

export async function insertGroup(
  q: Queryable,
  g: Omit<GroupRow, 'status' | 'closedAt' | 'updatedAt'>,
): Promise<void> {
  await q.query(
    `INSERT INTO group_tasks (id, owner_id, title, description, visibility, priority, due_at, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)`,
    [g.id, g.ownerId, g.title, g.description, g.visibility, g.priority, g.dueAt, g.createdAt],
  );
}

/** The group task; `lock` holds its row (ranks and membership changes serialise on it). */
export async function findGroup(q: Queryable, id: string, opts: { lock?: boolean } = {}) {
  const { rows } = await q.query<GroupRow>(
    `SELECT ${G} FROM group_tasks g WHERE g.id = $1${opts.lock ? ' FOR UPDATE' : ''}`,
    [id],
  );
  return rows[0];
}

export async function viewGroup(q: Queryable, viewerId: string, id: string) {
  const { rows } = await q.query<GroupView>(`SELECT ${VIEW} FROM group_tasks g WHERE g.id = $2`, [
    viewerId,
    id,
  ]);
  return rows[0];
}

export async function findMember(q: Queryable, groupId: string, userId: string) {
  const { rows } = await q.query<MemberRow>(
    `SELECT m.user_id, '' AS username, m.role, m.joined_at, m.completed_at, m.rank
       FROM group_members m WHERE m.group_task_id = $1 AND m.user_id = $2`,
    [groupId, userId],
  );
  return rows[0];
}

/** Adds the member and their place in the group conversation; false when already a member. */
export async function addMember(
  q: Queryable,
  groupId: string,
  userId: string,
  role: GroupRole,
  now: Date,
): Promise<boolean> {
  const { rowCount } = await q.query(
    `INSERT INTO group_members (group_task_id, user_id, role, joined_at) VALUES ($1, $2, $3, $4)
     ON CONFLICT DO NOTHING`,
    [groupId, userId, role, now],
  );
  if (rowCount === 0) return false;
  // Under the conversation's lock, like a send: the newcomer sees messages from their join on, and
  // every message committed after it reaches them (no gap between history and live delivery).
  const { rows } = await q.query<{ id: string; lastSeq: number }>(
    'SELECT id, last_seq FROM conversations WHERE group_task_id = $1 FOR UPDATE',
    [groupId],
  );
  const conversation = rows[0];
  if (conversation)
    await q.query(
      `INSERT INTO conversation_members (conversation_id, user_id, joined_at, from_seq, delivered_seq, read_seq)
       VALUES ($1, $2, $3, $4 + 1, $4, $4) ON CONFLICT DO NOTHING`,
      [conversation.id, userId, now, conversation.lastSeq],
    );
  return true;
}

export async function removeMember(q: Queryable, groupId: string, userId: string): Promise<boolean> {
  const { rowCount } = await q.query('DELETE FROM group_members WHERE group_task_id = $1 AND user_id = $2', [
    groupId,
    userId,
  ]);
  await q.query(
    `DELETE FROM conversation_members cm USING conversations c
      WHERE cm.conversation_id = c.id AND c.group_task_id = $1 AND cm.user_id = $2`,
    [groupId, userId],
  );
  return rowCount > 0;
}

export async function insertConversation(q: Queryable, id: string, groupId: string, now: Date) {
  await q.query(
    `INSERT INTO conversations (id, kind, group_task_id, created_at, updated_at) VALUES ($1, 'group', $2, $3, $3)`,
    [id, groupId, now],
  );
}

/** Next rank = one past the highest given (gapless while nobody who finished leaves). Needs the group lock. */
export async function markCompleted(q: Queryable, groupId: string, userId: string, now: Date) {
  const { rows } = await q.query<{ rank: number; completedAt: Date }>(
    `UPDATE group_members SET completed_at = $3,
            rank = (SELECT coalesce(max(rank), 0) + 1 FROM group_members WHERE group_task_id = $1)
      WHERE group_task_id = $1 AND user_id = $2 AND completed_at IS NULL
      RETURNING rank, completed_at`,
    [groupId, userId, now],
  );
  return rows[0];
}

const MEMBER_COLS = 'm.user_id, u.username, m.role, m.joined_at, m.completed_at, m.rank';

export async function listMembers(q: Queryable, groupId: string, order: 'joined' | 'rank') {
  const orderBy =
    order === 'rank' ? 'm.rank ASC NULLS LAST, m.joined_at, m.user_id' : 'm.joined_at, m.user_id';
  const { rows } = await q.query<MemberRow>(
    `SELECT ${MEMBER_COLS} FROM group_members m JOIN users u ON u.id = m.user_id
      WHERE m.group_task_id = $1 ORDER BY ${orderBy}`,
    [groupId],
  );
  return rows;
}

export async function updateGroup(
  q: Queryable,
  id: string,
  c: Partial<Pick<GroupRow, 'title' | 'description' | 'visibility' | 'priority' | 'dueAt'>>,
  now: Date,
) {
  await q.query(
    `UPDATE group_tasks SET title = coalesce($2, title), description = coalesce($3, description),
            visibility = coalesce($4, visibility), priority = coalesce($5, priority),
            due_at = coalesce($6, due_at), updated_at = $7
      WHERE id = $1`,
    [
      id,
      c.title ?? null,
      c.description ?? null,
      c.visibility ?? null,
      c.priority ?? null,
      c.dueAt ?? null,
      now,
    ],
  );
}

export async function closeGroup(q: Queryable, id: string, now: Date): Promise<boolean> {
  const { rowCount } = await q.query(
    `UPDATE group_tasks SET status = 'closed', closed_at = $2, updated_at = $2 WHERE id = $1 AND status = 'open'`,
    [id, now],
  );
  return rowCount > 0;
}

export async function deleteGroup(q: Queryable, id: string) {
  await q.query('DELETE FROM group_tasks WHERE id = $1', [id]);
}

export async function setOwner(q: Queryable, id: string, userId: string, now: Date) {
  await q.query('UPDATE group_tasks SET owner_id = $2, updated_at = $3 WHERE id = $1', [id, userId, now]);
  await q.query(`UPDATE group_members SET role = 'owner' WHERE group_task_id = $1 AND user_id = $2`, [
    id,
    userId,
  ]);
}

export async function ownedGroupIds(q: Queryable, userId: string): Promise<string[]> {
  const { rows } = await q.query<{ id: string }>(
    'SELECT id FROM group_tasks WHERE owner_id = $1 ORDER BY id FOR UPDATE',
    [userId],
  );
  return rows.map((r) => r.id);
}

export async function memberIds(q: Queryable, groupId: string): Promise<string[]> {
  const { rows } = await q.query<{ userId: string }>(
    'SELECT user_id FROM group_members WHERE group_task_id = $1',
    [groupId],
  );
  return rows.map((r) => r.userId);
}

export interface Position {
  createdAt: Date;
  id: string;
}

/** `text` anywhere in a title: `%`, `_` and `\\` are plain characters. */
const titleLike = (text: string) => `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;

/**
 * The title search and keyset position the group lists share, added to `params` and `where`; returns
 * the LIMIT placeholder.
 */
function searchAndPage(
  params: unknown[],
  where: string[],
  o: { q?: string | undefined; after?: Position | undefined; limit: number },
): string {
  if (o.q) {
    params.push(titleLike(o.q));
    where.push(`g.title ILIKE $${params.length}`);
  }
  if (o.after) {
    params.push(o.after.createdAt, o.after.id);
    where.push(`(g.created_at, g.id) < ($${params.length - 1}, $${params.length})`);
  }
  params.push(o.limit);
  return `$${params.length}`;
}

/** Group tasks I am in (owned or joined), newest first, after a keyset position. */
export async function listGroups(
  q: Queryable,
  o: { userId: string; status?: 'open' | 'closed'; q?: string; after?: Position; limit: number },
) {
  const params: unknown[] = [o.userId];
  const where = ['EXISTS (SELECT 1 FROM group_members me WHERE me.group_task_id = g.id AND me.user_id = $1)'];
  if (o.status) {
    params.push(o.status);
    where.push(`g.status = $${params.length}`);
  }
  const limit = searchAndPage(params, where, o);
  const { rows } = await q.query<GroupView>(
    `SELECT ${VIEW} FROM group_tasks g WHERE ${where.join(' AND ')}
      ORDER BY g.created_at DESC, g.id DESC LIMIT ${limit}`,
    params,
  );
  return rows;
}

/**
 * Public discovery as everyone sees it: public, open, not yet due at `now`, newest first. Nothing
 * in it depends on who asks (`myRole` is null; leaving out the caller's own is the service's part),
 * so the service may share it through the cache.
 */
export async function listDiscoverable(
  q: Queryable,
  o: { q?: string | undefined; now: Date; after?: Position | undefined; limit: number },
): Promise<GroupView[]> {
  const params: unknown[] = [o.now];
  const where = [`g.visibility = 'public'`, `g.status = 'open'`, 'g.due_at > $1'];
  const limit = searchAndPage(params, where, o);
  const { rows } = await q.query<GroupView>(
    `SELECT ${G}, (SELECT count(*)::int FROM group_members c WHERE c.group_task_id = g.id) AS member_count,
            NULL AS my_role
       FROM group_tasks g WHERE ${where.join(' AND ')}
      ORDER BY g.created_at DESC, g.id DESC LIMIT ${limit}`,
    params,
  );
  return rows;
}

/** Which of these group tasks the user is a member of. */
export async function memberOf(q: Queryable, userId: string, groupIds: string[]): Promise<Set<string>> {
  const { rows } = await q.query<{ groupTaskId: string }>(
    'SELECT group_task_id FROM group_members WHERE user_id = $1 AND group_task_id = ANY($2::uuid[])',
    [userId, groupIds],
  );
  return new Set(rows.map((r) => r.groupTaskId));
}

/** Every group task the user is in, with its visibility (account deletion's cache step). */
export async function membershipsOf(q: Queryable, userId: string) {
  const { rows } = await q.query<{ id: string; visibility: 'public' | 'private' }>(
    `SELECT g.id, g.visibility FROM group_members m JOIN group_tasks g ON g.id = m.group_task_id
      WHERE m.user_id = $1`,
    [userId],
  );
  return rows;
}

const INV = `i.id, i.group_task_id, g.title AS group_title, i.from_user_id, i.to_user_id, i.status, i.created_at`;

/** A new pending invitation; false (nothing written) when that person is already invited (pending). */
export async function insertInvitation(
  q: Queryable,
  i: { id: string; groupId: string; fromUserId: string; toUserId: string; now: Date },
): Promise<boolean> {
  const { rowCount } = await q.query(
    `INSERT INTO group_invitations (id, group_task_id, from_user_id, to_user_id, created_at)
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`,
    [i.id, i.groupId, i.fromUserId, i.toUserId, i.now],
  );
  return rowCount > 0;
}

export async function pendingInvitationsFor(q: Queryable, groupId: string, userIds: string[]) {
  const { rows } = await q.query<InvitationRow>(
    `SELECT ${INV} FROM group_invitations i JOIN group_tasks g ON g.id = i.group_task_id
      WHERE i.group_task_id = $1 AND i.to_user_id = ANY($2::uuid[]) AND i.status = 'pending'
      ORDER BY i.created_at, i.id`,
    [groupId, userIds],
  );
  return rows;
}

/** Pending invitations to me, newest first, after a keyset position. */
export async function listIncoming(q: Queryable, userId: string, limit: number, after?: Position) {
  const { rows } = await q.query<InvitationRow>(
    `SELECT ${INV} FROM group_invitations i JOIN group_tasks g ON g.id = i.group_task_id
      WHERE i.to_user_id = $1 AND i.status = 'pending'
        ${after ? 'AND (i.created_at, i.id) < ($3, $4)' : ''}
      ORDER BY i.created_at DESC, i.id DESC LIMIT $2`,
    after ? [userId, limit, after.createdAt, after.id] : [userId, limit],
  );
  return rows;
}

export async function setRole(q: Queryable, groupId: string, userId: string, role: 'admin' | 'member') {
  await q.query('UPDATE group_members SET role = $3 WHERE group_task_id = $1 AND user_id = $2', [
    groupId,
    userId,
    role,
  ]);
}

export async function findInvitation(q: Queryable, id: string, toUserId: string) {
  const { rows } = await q.query<InvitationRow>(
    `SELECT ${INV} FROM group_invitations i JOIN group_tasks g ON g.id = i.group_task_id
      WHERE i.id = $1 AND i.to_user_id = $2 FOR UPDATE OF i`,
    [id, toUserId],
  );
  return rows[0];
}

export async function answerInvitation(q: Queryable, id: string, status: 'accepted' | 'declined', now: Date) {
  await q.query(
    `UPDATE group_invitations SET status = $2, responded_at = $3 WHERE id = $1 AND status = 'pending'`,
    [id, status, now],
  );
}

/** Pending invitations either of two people sent the other: invitations go to friends only. */
export async function cancelInvitationsBetween(q: Queryable, a: string, b: string, now: Date) {
  await q.query(
    `UPDATE group_invitations SET status = 'cancelled', responded_at = $3
      WHERE status = 'pending'
        AND ((from_user_id = $1 AND to_user_id = $2) OR (from_user_id = $2 AND to_user_id = $1))`,
    [a, b, now],
  );
}

/** Pending invitations of a member who joined some other way are moot. */
export async function settleInvitations(q: Queryable, groupId: string, userId: string, now: Date) {
  await q.query(
    `UPDATE group_invitations SET status = 'accepted', responded_at = $3
      WHERE group_task_id = $1 AND to_user_id = $2 AND status = 'pending'`,
    [groupId, userId, now],
  );
}

/** The user's group tasks (owned or joined), memberships and invitations, for export. */
export async function exportGroups(q: Queryable, userId: string) {
  const memberships = await q.query(
    `SELECT g.id, g.title, g.description, g.visibility, g.due_at, g.status, g.owner_id, m.role, m.joined_at,
            m.completed_at, m.rank
     FROM group_members m JOIN group_tasks g ON g.id = m.group_task_id WHERE m.user_id = $1 ORDER BY m.joined_at`,
    [userId],
  );
  const invitations = await q.query(
    `SELECT id, group_task_id, from_user_id, to_user_id, status, created_at FROM group_invitations
     WHERE from_user_id = $1 OR to_user_id = $1 ORDER BY created_at`,
    [userId],
  );
  return { groupTasks: memberships.rows, groupInvitations: invitations.rows };
}
