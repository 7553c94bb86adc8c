import type { Logger } from 'pino';
import { uuidv7 } from 'uuidv7';
import type { Cache } from '../../lib/cache.js';
import type { Clock } from '../../lib/clock.js';
import type { Db, Queryable } from '../../lib/db.js';
import { AppError, conflict, forbidden, invalid, notFound } from '../../lib/errors.js';
import { UUID } from '../../lib/formats.js';
import { type IdempotencyKey, idempotent, type Outcome } from '../../lib/idempotency.js';
import type { Outbox } from '../../lib/outbox.js';
import type { ServerEventData } from '../../realtime/events.js';
import type { Realtime } from '../../realtime/port.js';
import type { AccountsService } from '../accounts/accounts.service.js';
import type { BadgesService } from '../badges/badges.service.js';
import type { FeedService } from '../feed/feed.service.js';
import type { FriendsService } from '../friends/friends.service.js';
import type { NudgesService } from '../maa/maa.nudges.js';
import type { NotificationsService } from '../notifications/notifications.service.js';
import type { StatsService } from '../stats/stats.service.js';
import { makeGroupsCache } from './groups.cache.js';
import type { GroupRow, GroupView, InvitationRow, MemberRow } from './groups.repo.js';
import * as repo from './groups.repo.js';
import type {
  CloseDuePayload,
  Completion,
  CreateGroupTask,
  GroupTask,
  GroupTaskList,
  Invitation,
  InvitationList,
  InvitationPage,
  ListGroupTasksQuery,
  ListInvitationsQuery,
  Member,
  MemberList,
  UpdateGroupTask,
} from './groups.schemas.js';

export const CLOSE_DUE_JOB = 'groups.close_due';

type GroupEvent =
  | 'group:member_joined'
  | 'group:member_left'
  | 'group:member_completed'
  | 'group:updated'
  | 'group:closed';

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const iso = (d: Date | null) => (d ? d.toISOString() : null);

/** Points at close (PRODUCT.md): with more than 3 members 30/20/10 for the podium, 5 for later finishers. */
export function pointsFor(rank: number, memberCount: number): number {
  if (memberCount > 3) return rank === 1 ? 30 : rank === 2 ? 20 : rank === 3 ? 10 : 5;
  return 5;
}

const toGroup = (r: GroupView): GroupTask => ({
  id: r.id,
  ownerId: r.ownerId,
  title: r.title,
  description: r.description,
  visibility: r.visibility,
  priority: r.priority,
  dueAt: r.dueAt.toISOString(),
  status: r.status,
  closedAt: iso(r.closedAt),
  createdAt: r.createdAt.toISOString(),
  updatedAt: r.updatedAt.toISOString(),
  memberCount: r.memberCount,
  myRole: r.myRole,
});

const toMember = (m: MemberRow): Member => ({
  userId: m.userId,
  username: m.username,
  role: m.role,
  joinedAt: m.joinedAt.toISOString(),
  completedAt: iso(m.completedAt),
  rank: m.rank,
});

const toInvitation = (i: InvitationRow): Invitation => ({
  id: i.id,
  groupTaskId: i.groupTaskId,
  groupTitle: i.groupTitle,
  fromUserId: i.fromUserId,
  toUserId: i.toUserId,
  status: i.status,
  createdAt: i.createdAt.toISOString(),
});

const groupNotFound = () => notFound('group task');
const closed = () => conflict('group_closed', 'This group task is closed.');

/** Joining, inviting and finishing end at the close or the due time, whichever comes first. */
function requireOpen(group: GroupRow, now: Date) {
  if (group.status === 'closed') throw closed();
  if (group.dueAt.getTime() <= now.getTime())
    throw conflict('group_past_due', 'This group task is past its due time.');
}

function futureInstant(value: string, now: Date, field: string): Date {
  const d = new Date(value);
  if (Number.isNaN(d.getTime()))
    throw invalid('validation_failed', `${field} is not a valid instant.`, [
      { field, message: 'is not a valid instant' },
    ]);
  if (d.getTime() <= now.getTime())
    throw invalid('due_in_past', 'dueAt must be in the future.', [{ field, message: 'is in the past' }]);
  return d;
}

function encodeCursor(r: { createdAt: Date; id: string }): string {
  return Buffer.from(JSON.stringify({ c: r.createdAt.toISOString(), i: r.id })).toString('base64url');
}

function decodeCursor(cursor: string): repo.Position {
  const bad = () =>
    invalid('invalid_cursor', 'The cursor is not one this list handed out.', [
      { field: 'query/cursor', message: 'is invalid' },
    ]);
  let p: { c?: unknown; i?: unknown };
  try {
    p = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw bad();
  }
  if (!p || typeof p.c !== 'string' || !ISO.test(p.c) || typeof p.i !== 'string' || !UUID.test(p.i))
    throw bad();
  const createdAt = new Date(p.c);
  if (Number.isNaN(createdAt.getTime())) throw bad();
  return { createdAt, id: p.i };
}

export type GroupsService = ReturnType<typeof makeGroupsService>;

/** The largest discovery slice read after the first (the largest page plus one). */
const MAX_DISCOVERY_SLICE = 101;

export function makeGroupsService(deps: {
  db: Db;
  clock: Clock;
  /** Discovery pages and member lists (groups.cache.ts says how they stay fresh). */
  cache: Cache;
  outbox: Outbox;
  realtime: Realtime;
  accounts: Pick<AccountsService, 'dayCalendar'>;
  stats: Pick<StatsService, 'award' | 'changed'>;
  friends: Pick<FriendsService, 'relation'>;
  notifications: Pick<NotificationsService, 'notify'>;
  badges: Pick<BadgesService, 'queue'>;
  feed: Pick<FeedService, 'share'>;
  /** Maa has a word for a podium finish. */
  maa: Pick<NudgesService, 'react'>;
  log: Logger;
}) {
  const { db, clock, outbox, realtime, accounts, stats, friends, notifications, log } = deps;
  const cached = makeGroupsCache({ cache: deps.cache, clock });
  const isPublic = (g: { visibility: string }) => g.visibility === 'public';

  /**
   * Group events go to the members' own rooms, read in the transaction that changes the group: a
   * member removed in it hears nothing more, one added hears everything after, with no room state
   * that could fall out of step (a socket connecting during a removal).
   */
  async function toMembers<E extends GroupEvent>(
    q: Queryable,
    groupId: string,
    event: E,
    data: ServerEventData<E>,
  ) {
    const members = await repo.memberIds(q, groupId);
    q.afterCommit(() => realtime.toUsers(members, event, data));
  }

  /**
   * The group and the caller's membership. Not visible (private, not a member) → 404; visible but
   * not allowed → 403 with `code`.
   */
  async function access(q: Queryable, userId: string, id: string, opts: { lock?: boolean } = {}) {
    if (!UUID.test(id)) throw groupNotFound();
    const group = await repo.findGroup(q, id, opts);
    if (!group) throw groupNotFound();
    const member = await repo.findMember(q, id, userId);
    if (!member && group.visibility !== 'public') throw groupNotFound();
    return { group, member };
  }

  const requireRole = (member: MemberRow | undefined, roles: string[], code: string, what: string) => {
    if (!member || !roles.includes(member.role)) throw forbidden(code, what);
    return member;
  };

  async function view(q: Queryable, userId: string, id: string): Promise<GroupTask> {
    const v = await repo.viewGroup(q, userId, id);
    if (!v) throw groupNotFound();
    return toGroup(v);
  }

  async function scheduleClose(q: Queryable, groupId: string, dueAt: Date, now: Date) {
    await outbox.add(
      q,
      CLOSE_DUE_JOB,
      { groupTaskId: groupId },
      { delayMs: Math.max(0, dueAt.getTime() - now.getTime()) },
    );
  }

  /** Closes the locked group and pays each finisher once (the ledger is unique per source key). */
  async function closeLocked(q: Queryable, group: GroupRow, now: Date): Promise<boolean> {
    if (!(await repo.closeGroup(q, group.id, now))) return false;
    cached.changed(q, group.id, { discovery: isPublic(group) });
    const members = await repo.listMembers(q, group.id, 'rank');
    for (const m of members) {
      if (m.rank === null) continue;
      const localDate = (await accounts.dayCalendar(m.userId, q)).dateOf(now);
      const points = pointsFor(m.rank, members.length);
      await stats.award(q, {
        userId: m.userId,
        source: 'group_rank',
        sourceKey: group.id,
        points,
        localDate,
      });
      stats.changed(q, m.userId);
      await notifications.notify(q, {
        userId: m.userId,
        kind: 'group_rank',
        data: { groupTaskId: group.id, title: group.title, rank: m.rank, points },
      });
    }
    await toMembers(q, group.id, 'group:closed', { groupTaskId: group.id });
    q.afterCommit(() => log.info({ groupTaskId: group.id }, 'group task closed'));
    return true;
  }

  /** Removes a member in `q`; the owner's leaving hands the group over (or deletes it when empty). */
  async function dropMember(q: Queryable, group: GroupRow, userId: string, now: Date) {
    if (!(await repo.removeMember(q, group.id, userId))) return;
    // Members, the member count, and perhaps the owner or the group itself.
    cached.changed(q, group.id, { discovery: isPublic(group) });
    if (group.ownerId === userId) {
      const next = (await repo.listMembers(q, group.id, 'joined'))[0];
      if (next) await repo.setOwner(q, group.id, next.userId, now);
      else await repo.deleteGroup(q, group.id);
    }
    // The remaining members (A4: the one who left hears no more group events).
    await toMembers(q, group.id, 'group:member_left', { groupTaskId: group.id, userId });
  }

  async function addMemberLocked(q: Queryable, group: GroupRow, userId: string, now: Date) {
    if (!(await repo.addMember(q, group.id, userId, 'member', now))) return false;
    cached.changed(q, group.id, { discovery: isPublic(group) });
    await repo.settleInvitations(q, group.id, userId, now);
    await toMembers(q, group.id, 'group:member_joined', { groupTaskId: group.id, userId });
    return true;
  }

  async function invite(q: Queryable, group: GroupRow, fromUserId: string, userIds: string[], now: Date) {
    for (const to of userIds) {
      if (to === fromUserId) throw invalid('cannot_invite_self', 'You cannot invite yourself.');
      // Under the pair lock: a block or unfriend committing now waits, or wins and is seen here.
      if (!(await friends.relation(fromUserId, to, q, { lock: 'shared' })).isFriend)
        throw forbidden('not_friends', 'Invitations go to friends only.');
    }
    for (const to of userIds) {
      if (await repo.findMember(q, group.id, to)) continue;
      const id = uuidv7();
      // Someone already invited (pending) is skipped, and not told again.
      if (await repo.insertInvitation(q, { id, groupId: group.id, fromUserId, toUserId: to, now }))
        await notifications.notify(q, {
          userId: to,
          kind: 'group_invitation',
          actorId: fromUserId,
          data: { invitationId: id, groupTaskId: group.id, groupTitle: group.title },
        });
    }
    return repo.pendingInvitationsFor(q, group.id, userIds);
  }

  /**
   * Public discovery: open public tasks not yet due, that I am not in, newest first. The shared part
   * (what everyone sees) comes from the cache in slices keyed by position and size; the per-caller
   * part, leaving out the tasks I am in, is read for each request and never stored, so one person's
   * memberships never shape another's page. Private tasks never enter a slice (the SQL). When my own
   * tasks thin a slice out, the next slices are read until the page is full.
   */
  async function discover(
    userId: string,
    o: { limit: number; after: repo.Position | undefined; q: string | undefined; status: string | undefined },
  ): Promise<GroupTaskList> {
    // Discovery lists open tasks only.
    if (o.status === 'closed') return { items: [], nextCursor: null };
    const version = await cached.discoveryVersion();
    const visible: GroupTask[] = [];
    let after = o.after;
    // The first slice is the page itself (plus one to know there is more), shared by everyone who
    // asks for that page; the rest, needed only by someone in many public tasks, are the largest.
    for (let size = o.limit + 1; ; size = MAX_DISCOVERY_SLICE) {
      const slice = await cached.discoveryChunk(version, { q: o.q, after, size }, async (now) =>
        (await repo.listDiscoverable(db, { q: o.q, now, after, limit: size })).map(toGroup),
      );
      const mine = slice.length
        ? await repo.memberOf(
            db,
            userId,
            slice.map((g) => g.id),
          )
        : new Set();
      for (const g of slice) if (!mine.has(g.id)) visible.push(g);
      const last = slice[slice.length - 1];
      if (visible.length > o.limit || slice.length < size || !last) break;
      after = { createdAt: new Date(last.createdAt), id: last.id };
    }
    const page = visible.slice(0, o.limit);
    const end = page[page.length - 1];
    return {
      items: page,
      nextCursor:
        visible.length > o.limit && end
          ? encodeCursor({ createdAt: new Date(end.createdAt), id: end.id })
          : null,
    };
  }

  return {
    /**
     * Ends what two people had pending between them when they stop being friends (an unfriend or a
     * block, in that transaction): an invitation is an offer between friends, so it cannot outlive
     * the friendship. Accepting one afterwards is a 409 `invitation_answered`.
     */
    cancelInvitationsBetween(q: Queryable, a: string, b: string): Promise<void> {
      return repo.cancelInvitationsBetween(q, a, b, clock.now());
    },

    create(userId: string, input: CreateGroupTask, key?: IdempotencyKey): Promise<Outcome<GroupTask>> {
      const now = clock.now();
      return idempotent(db, key, now, async (tx) => {
        const dueAt = futureInstant(input.dueAt, now, 'body/dueAt');
        const id = uuidv7();
        await repo.insertGroup(tx, {
          id,
          ownerId: userId,
          title: input.title.trim(),
          description: input.description ?? '',
          visibility: input.visibility,
          priority: input.priority ?? 'medium',
          dueAt,
          createdAt: now,
        });
        await repo.insertConversation(tx, uuidv7(), id, now);
        await repo.addMember(tx, id, userId, 'owner', now);
        cached.changed(tx, id, { discovery: input.visibility === 'public' });
        const group = (await repo.findGroup(tx, id)) as GroupRow;
        if (input.inviteUserIds?.length) await invite(tx, group, userId, input.inviteUserIds, now);
        await scheduleClose(tx, id, dueAt, now);
        return { status: 201, body: await view(tx, userId, id) };
      });
    },

    async get(userId: string, id: string): Promise<GroupTask> {
      await access(db, userId, id);
      return view(db, userId, id);
    },

    async list(userId: string, query: ListGroupTasksQuery): Promise<GroupTaskList> {
      const limit = query.limit ?? 20;
      const after = query.cursor ? decodeCursor(query.cursor) : undefined;
      if (query.scope === 'public')
        return discover(userId, { limit, after, q: query.q, status: query.status });
      const rows = await repo.listGroups(db, {
        userId,
        ...(query.status ? { status: query.status } : {}),
        ...(query.q ? { q: query.q } : {}),
        ...(after ? { after } : {}),
        limit: limit + 1,
      });
      const page = rows.slice(0, limit);
      const last = page[page.length - 1];
      return {
        items: page.map(toGroup),
        nextCursor: rows.length > limit && last ? encodeCursor(last) : null,
      };
    },

    async update(userId: string, id: string, patch: UpdateGroupTask): Promise<GroupTask> {
      const now = clock.now();
      return db.tx(async (tx) => {
        const { group, member } = await access(tx, userId, id, { lock: true });
        requireRole(member, ['owner', 'admin'], 'not_group_admin', 'Only the owner or an admin may edit.');
        if (group.status === 'closed') throw closed();
        const dueAt =
          patch.dueAt === undefined || new Date(patch.dueAt).getTime() === group.dueAt.getTime()
            ? undefined
            : futureInstant(patch.dueAt, now, 'body/dueAt');
        await repo.updateGroup(
          tx,
          id,
          {
            ...(patch.title !== undefined ? { title: patch.title.trim() } : {}),
            ...(patch.description !== undefined ? { description: patch.description } : {}),
            ...(patch.visibility !== undefined ? { visibility: patch.visibility } : {}),
            ...(patch.priority !== undefined ? { priority: patch.priority } : {}),
            ...(dueAt ? { dueAt } : {}),
          },
          now,
        );
        if (dueAt) await scheduleClose(tx, id, dueAt, now);
        // Public before or after: a task turned private leaves discovery, one turned public enters it.
        cached.changed(tx, id, { discovery: isPublic(group) || patch.visibility === 'public' });
        await toMembers(tx, id, 'group:updated', { groupTaskId: id });
        return view(tx, userId, id);
      });
    },

    async remove(userId: string, id: string): Promise<void> {
      await db.tx(async (tx) => {
        const { group, member } = await access(tx, userId, id, { lock: true });
        requireRole(member, ['owner'], 'not_group_owner', 'Only the owner may delete the group task.');
        // Told before the rows go (the members are read now).
        await toMembers(tx, id, 'group:closed', { groupTaskId: id });
        await repo.deleteGroup(tx, id);
        cached.changed(tx, group.id, { discovery: isPublic(group) });
      });
    },

    async invite(userId: string, id: string, userIds: string[]): Promise<InvitationList> {
      const now = clock.now();
      return db.tx(async (tx) => {
        const { group, member } = await access(tx, userId, id, { lock: true });
        requireRole(member, ['owner', 'admin'], 'not_group_admin', 'Only the owner or an admin may invite.');
        requireOpen(group, now);
        const items = await invite(tx, group, userId, userIds, now);
        return { items: items.map(toInvitation) };
      });
    },

    async listInvitations(userId: string, query: ListInvitationsQuery = {}): Promise<InvitationPage> {
      const limit = query.limit ?? 20;
      const rows = await repo.listIncoming(
        db,
        userId,
        limit + 1,
        query.cursor ? decodeCursor(query.cursor) : undefined,
      );
      const page = rows.slice(0, limit);
      const last = page[page.length - 1];
      return {
        items: page.map(toInvitation),
        nextCursor: rows.length > limit && last ? encodeCursor(last) : null,
      };
    },

    /** The owner makes a member an admin (they may invite, edit and remove members) or takes it back. */
    async setRole(userId: string, id: string, targetId: string, role: 'admin' | 'member'): Promise<Member> {
      return db.tx(async (tx) => {
        const { member } = await access(tx, userId, id, { lock: true });
        requireRole(member, ['owner'], 'not_group_owner', 'Only the owner may change roles.');
        if (!UUID.test(targetId)) throw notFound('member');
        const target = await repo.findMember(tx, id, targetId.toLowerCase());
        if (!target) throw notFound('member');
        if (target.role === 'owner') throw forbidden('cannot_change_owner', 'The owner stays the owner.');
        if (target.role !== role) {
          await repo.setRole(tx, id, target.userId, role);
          // Roles show in member lists only.
          cached.changed(tx, id, { discovery: false });
          await toMembers(tx, id, 'group:updated', { groupTaskId: id });
        }
        return toMember({ ...target, role });
      });
    },

    async answer(userId: string, invitationId: string, answer: 'accepted' | 'declined'): Promise<Invitation> {
      if (!UUID.test(invitationId)) throw notFound('invitation');
      const now = clock.now();
      return db.tx(async (tx) => {
        const found = await repo.findInvitation(tx, invitationId, userId);
        if (!found) throw notFound('invitation');
        if (found.status === answer) return toInvitation(found);
        if (found.status !== 'pending')
          throw conflict('invitation_answered', `This invitation was already ${found.status}.`);
        if (answer === 'accepted') {
          const group = (await repo.findGroup(tx, found.groupTaskId, { lock: true })) as GroupRow;
          requireOpen(group, now);
          await repo.answerInvitation(tx, invitationId, answer, now);
          await addMemberLocked(tx, group, userId, now);
        } else await repo.answerInvitation(tx, invitationId, answer, now);
        return toInvitation({ ...found, status: answer });
      });
    },

    async join(userId: string, id: string): Promise<GroupTask> {
      const now = clock.now();
      return db.tx(async (tx) => {
        const { group, member } = await access(tx, userId, id, { lock: true });
        if (!member) {
          requireOpen(group, now);
          await addMemberLocked(tx, group, userId, now);
        }
        return view(tx, userId, id);
      });
    },

    async leave(userId: string, id: string): Promise<void> {
      const now = clock.now();
      await db.tx(async (tx) => {
        const { group, member } = await access(tx, userId, id, { lock: true });
        if (!member) throw forbidden('not_member', 'You are not a member of this group task.');
        await dropMember(tx, group, userId, now);
      });
    },

    async removeMember(userId: string, id: string, targetId: string): Promise<void> {
      const now = clock.now();
      await db.tx(async (tx) => {
        const { group, member } = await access(tx, userId, id, { lock: true });
        const me = requireRole(
          member,
          ['owner', 'admin'],
          'not_group_admin',
          'Only the owner or an admin may remove members.',
        );
        if (!UUID.test(targetId)) throw notFound('member');
        const target = await repo.findMember(tx, id, targetId);
        if (!target) throw notFound('member');
        if (target.role === 'owner' || (me.role === 'admin' && target.role === 'admin'))
          throw forbidden('cannot_remove_member', 'That member cannot be removed by you.');
        await dropMember(tx, group, targetId, now);
      });
    },

    /**
     * Members from the shared cache: the entry holds the same list for everyone plus the group's
     * visibility, and the caller's right to see it (a member, or a public group) is checked on it
     * for each request, so nothing of one caller reaches another.
     */
    async members(userId: string, id: string, order: 'joined' | 'rank'): Promise<MemberList> {
      if (!UUID.test(id)) throw groupNotFound();
      const entry = await cached.members(id, order, async () => {
        const group = await repo.findGroup(db, id);
        if (!group) return undefined;
        const items = (await repo.listMembers(db, id, order)).map(toMember);
        return { visibility: group.visibility, items };
      });
      if (!entry) throw groupNotFound();
      if (entry.visibility !== 'public' && !entry.items.some((m) => m.userId === userId))
        throw groupNotFound();
      return { items: entry.items };
    },

    /**
     * The caller's rank, given under the group row's lock: one past the highest, so two members
     * finishing at once never share or skip one. Asking again answers the same rank.
     */
    complete(userId: string, id: string, key?: IdempotencyKey): Promise<Outcome<Completion>> {
      const now = clock.now();
      return idempotent(db, key, now, async (tx) => {
        const { group, member } = await access(tx, userId, id, { lock: true });
        if (!member) throw forbidden('not_member', 'Join the group task first.');
        if (member.rank !== null && member.completedAt)
          return { status: 200, body: { rank: member.rank, completedAt: member.completedAt.toISOString() } };
        requireOpen(group, now);
        const done = await repo.markCompleted(tx, id, userId, now);
        if (!done) throw new AppError(500, 'internal', 'completion lost');
        // Completion and rank show in member lists; discovery shows neither.
        cached.changed(tx, id, { discovery: false });
        await deps.badges.queue(tx, userId);
        if (done.rank <= 3) await deps.maa.react(tx, userId, 'group_rank', { rank: done.rank });
        // A private group's title stays with its members.
        const title = group.visibility === 'public' ? group.title : null;
        await deps.feed.share(tx, userId, {
          kind: 'group_rank',
          data: { groupTaskId: id, rank: done.rank, title },
        });
        await toMembers(tx, id, 'group:member_completed', { groupTaskId: id, userId, rank: done.rank });
        return { status: 200, body: { rank: done.rank, completedAt: done.completedAt.toISOString() } };
      });
    },

    async close(userId: string, id: string): Promise<GroupTask> {
      const now = clock.now();
      return db.tx(async (tx) => {
        const { group, member } = await access(tx, userId, id, { lock: true });
        requireRole(member, ['owner'], 'not_group_owner', 'Only the owner may close the group task.');
        await closeLocked(tx, group, now);
        return view(tx, userId, id);
      });
    },

    /** The job at dueAt: closes the group if it is due and still open; harmless to run twice. */
    async closeIfDue(payload: CloseDuePayload): Promise<void> {
      const now = clock.now();
      await db.tx(async (tx) => {
        const group = await repo.findGroup(tx, payload.groupTaskId, { lock: true });
        if (!group || group.status === 'closed') return;
        // Early (its due time moved later, or clocks differ): a later job is or gets scheduled.
        if (group.dueAt.getTime() > now.getTime()) {
          await scheduleClose(tx, group.id, group.dueAt, now);
          return;
        }
        await closeLocked(tx, group, now);
      });
    },

    exportFor: (userId: string) => repo.exportGroups(db, userId),

    /**
     * Account deletion step, inside its transaction and before the user row goes: each group task
     * the user owns passes to its earliest other member, or is deleted when there is none. Their
     * other memberships then cascade with the user row, so the caches of those groups (member
     * lists, member counts in discovery) are marked changed here, while the rows still say which.
     */
    async releaseOwned(q: Queryable, userId: string): Promise<void> {
      const now = clock.now();
      for (const g of await repo.membershipsOf(q, userId))
        cached.changed(q, g.id, { discovery: isPublic(g) });
      for (const id of await repo.ownedGroupIds(q, userId)) {
        const group = (await repo.findGroup(q, id, { lock: true })) as GroupRow;
        await dropMember(q, group, userId, now);
      }
    },
  };
}
