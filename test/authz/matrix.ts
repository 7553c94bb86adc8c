/**
 * The authorization matrix (RELIABILITY A1): who may do what to which resource, as one table.
 * test/authz-matrix.test.ts runs every row as one HTTP request in a world of its own and compares
 * the outcome. To cover a new resource, add it to `resources` (how to build it and how each operation
 * is requested), any new kind of actor to `actors`, and its rows to `matrix`; the runner stays as is.
 *
 * Outcomes are strings: the status, then for a problem its `code` ('404 not_found'), or what the
 * operation says about the body ('200 full', '200 listed').
 */

import { uuidv7 } from 'uuidv7';
import type { Deps } from '../../src/deps.js';
import { aUser, signIn } from '../helpers.js';

/** Someone who can send requests; null is the anonymous caller. */
export interface Person {
  userId: string;
  username: string;
  headers: Record<string, string>;
}

/**
 * One row's world: the resource's owner and every other actor are made on first use, each in the
 * relation to the owner its name says. Nothing is shared between rows, so rows may mutate freely.
 */
export interface World {
  deps: Deps;
  /** The person playing `role` in this row's world (made on first use); null for anonymous. */
  person(role: string): Promise<Person | null>;
  /** Like person(), for roles that are always somebody. */
  someone(role: string): Promise<Person>;
  /** Ids and names a resource's setup keeps for its operations. */
  vars: Record<string, string>;
}

export interface Request {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  url: string;
  body?: unknown;
}

export interface Response {
  statusCode: number;
  body: string;
  json(): unknown;
}

export interface Operation {
  request(w: World): Request | Promise<Request>;
  /** How a successful response is named in the table; default: its status alone. */
  success?(res: Response, w: World): string | Promise<string>;
}

export interface Resource {
  /** Makes what the operations act on, in the row's fresh world. */
  setup?(w: World): Promise<void>;
  operations: Record<string, Operation>;
}

export interface ActorDef {
  /** Makes the actor, related to the world's owner as its name says; null = anonymous. */
  make(w: World): Promise<Person | null>;
}

export interface Row {
  resource: string;
  operation: string;
  actor: string;
  expected: string;
}

// ---------------------------------------------------------------------------------------------------
// Actors

async function newPerson(w: World, o: { verified?: boolean } = {}): Promise<Person> {
  const user = await aUser(w.deps, o.verified === false ? { verified: false } : {});
  const session = await signIn(w.deps, user.id);
  return { userId: user.id, username: user.username, headers: session.headers };
}

export const actors: Record<string, ActorDef> = {
  /** Owns the resource (for a friend request: its sender; for a block: the blocker). */
  owner: { make: (w) => newPerson(w) },
  /** The owner's friend. */
  friend: {
    async make(w) {
      const owner = await w.someone('owner');
      const p = await newPerson(w);
      const asked = await w.deps.friends.sendRequest(owner.userId, p.userId);
      await w.deps.friends.accept(p.userId, asked.body.id);
      return p;
    },
  },
  /** A fellow member of the owner's group task (the setup puts them in it); not a friend. */
  member: { make: (w) => newPerson(w) },
  /** Signed in and verified, with no relation to the owner. */
  stranger: { make: (w) => newPerson(w) },
  /** Someone the owner blocked. */
  blocked: {
    async make(w) {
      const owner = await w.someone('owner');
      const p = await newPerson(w);
      await w.deps.friends.block(owner.userId, p.userId);
      return p;
    },
  },
  /** Someone who blocked the owner. */
  blocker: {
    async make(w) {
      const owner = await w.someone('owner');
      const p = await newPerson(w);
      await w.deps.friends.block(p.userId, owner.userId);
      return p;
    },
  },
  /** The other party of a resource made by the owner (a friend request's recipient); the setup relates them. */
  recipient: { make: (w) => newPerson(w) },
  /** Signed in, email not yet verified. */
  unverified: { make: (w) => newPerson(w, { verified: false }) },
  /** A token whose user was deleted after signing in. */
  deleted: {
    async make(w) {
      const p = await newPerson(w);
      await w.deps.db.query('DELETE FROM users WHERE id = $1', [p.userId]);
      return p;
    },
  },
  anonymous: { make: async () => null },
};

// ---------------------------------------------------------------------------------------------------
// Resources

const ids = (res: Response) => ((res.json() as { items: { id: string }[] }).items ?? []).map((i) => i.id);
const listed = (found: boolean) => (found ? '200 includes' : '200 excludes');

function profile(visibility: 'public' | 'friends' | 'private'): Resource {
  return {
    async setup(w) {
      const owner = await w.someone('owner');
      await w.deps.db.query('UPDATE users SET profile_visibility = $2 WHERE id = $1', [
        owner.userId,
        visibility,
      ]);
    },
    operations: {
      read: {
        request: async (w) => ({ method: 'GET', url: `/v1/users/${(await w.someone('owner')).username}` }),
        success: (res) => ('about' in (res.json() as object) ? '200 full' : '200 basic'),
      },
    },
  };
}

function search(discoverable: boolean): Resource {
  return {
    async setup(w) {
      const owner = await w.someone('owner');
      await w.deps.db.query('UPDATE users SET discoverable = $2 WHERE id = $1', [owner.userId, discoverable]);
    },
    operations: {
      'find the owner': {
        request: async (w) => ({ method: 'GET', url: `/v1/users?q=${(await w.someone('owner')).username}` }),
        success: async (res, w) =>
          ids(res).includes((await w.someone('owner')).userId) ? '200 listed' : '200 hidden',
      },
    },
  };
}

/** A group task the owner made; a second person, `member`, is in it too. */
function groupTask(visibility: 'public' | 'private', skip: string[] = []): Resource {
  const url = (w: World, rest = '') => `/v1/group-tasks/${w.vars.groupId}${rest}`;
  return {
    async setup(w) {
      const [owner, member] = [await w.someone('owner'), await w.someone('member')];
      // Made in one statement (the service's create is covered in test/groups.test.ts): the owner
      // and a second member, as if invited and accepted.
      w.vars.groupId = uuidv7();
      await w.deps.db.query(
        `WITH g AS (
           INSERT INTO group_tasks (id, owner_id, title, visibility, due_at, created_at, updated_at)
           VALUES ($1, $2, 'Race', $4, now() + interval '1 hour', now(), now()) RETURNING id)
         INSERT INTO group_members (group_task_id, user_id, role, joined_at)
         SELECT g.id, m.user_id, m.role, now() FROM g,
           (VALUES ($2::uuid, 'owner'), ($3::uuid, 'member')) AS m (user_id, role)`,
        [w.vars.groupId, owner.userId, member.userId, visibility],
      );
    },
    get operations() {
      return Object.fromEntries(
        Object.entries(groupOperations(url)).filter(([name]) => !skip.includes(name)),
      );
    },
  };
}

function groupOperations(url: (w: World, rest?: string) => string): Record<string, Operation> {
  return {
    read: { request: (w) => ({ method: 'GET', url: url(w) }) },
    edit: { request: (w) => ({ method: 'PATCH', url: url(w), body: { title: 'Edited' } }) },
    delete: { request: (w) => ({ method: 'DELETE', url: url(w) }) },
    join: { request: (w) => ({ method: 'POST', url: url(w, '/join') }) },
    complete: { request: (w) => ({ method: 'POST', url: url(w, '/complete') }) },
    'remove the member': {
      request: async (w) => ({
        method: 'DELETE',
        url: url(w, `/members/${(await w.someone('member')).userId}`),
      }),
    },
  };
}

export const resources: Record<string, Resource> = {
  'group task (private)': groupTask('private'),
  // Public: the rows that differ from private; test/groups.test.ts covers the rest.
  'group task (public)': groupTask('public', ['delete', 'join', 'remove the member']),

  /** A pending invitation from the owner to their friend (the recipient of this row). */
  'group invitation': {
    async setup(w) {
      const [owner, friend] = [await w.someone('owner'), await w.someone('friend')];
      const made = await w.deps.groups.create(owner.userId, {
        title: 'Race',
        visibility: 'private',
        dueAt: new Date(w.deps.clock.now().getTime() + 3600_000).toISOString(),
        inviteUserIds: [friend.userId],
      });
      w.vars.groupId = made.body.id;
      w.vars.invitationId = (await w.deps.groups.listInvitations(friend.userId)).items[0]?.id ?? '';
    },
    operations: {
      accept: {
        request: (w) => ({ method: 'POST', url: `/v1/group-invitations/${w.vars.invitationId}/accept` }),
      },
      'invite the stranger': {
        request: async (w) => ({
          method: 'POST',
          url: `/v1/group-tasks/${w.vars.groupId}/invitations`,
          body: { userIds: [(await w.someone('stranger')).userId] },
        }),
      },
    },
  },

  'user profile (public)': profile('public'),
  'user profile (friends)': profile('friends'),
  'user profile (private)': profile('private'),
  search: search(true),
  'search (owner not discoverable)': search(false),

  /** A pending request from the owner to the recipient. */
  'friend request': {
    async setup(w) {
      const [owner, recipient] = [await w.someone('owner'), await w.someone('recipient')];
      w.vars.requestId = (await w.deps.friends.sendRequest(owner.userId, recipient.userId)).body.id;
    },
    operations: {
      accept: { request: (w) => ({ method: 'POST', url: `/v1/friend-requests/${w.vars.requestId}/accept` }) },
      decline: {
        request: (w) => ({ method: 'POST', url: `/v1/friend-requests/${w.vars.requestId}/decline` }),
      },
      cancel: { request: (w) => ({ method: 'DELETE', url: `/v1/friend-requests/${w.vars.requestId}` }) },
      'list incoming': {
        request: () => ({ method: 'GET', url: '/v1/friend-requests?direction=incoming' }),
        success: (res, w) => listed(ids(res).includes(w.vars.requestId as string)),
      },
      'list outgoing': {
        request: () => ({ method: 'GET', url: '/v1/friend-requests?direction=outgoing' }),
        success: (res, w) => listed(ids(res).includes(w.vars.requestId as string)),
      },
      'ask the owner': {
        request: async (w) => ({
          method: 'POST',
          url: '/v1/friend-requests',
          body: { userId: (await w.someone('owner')).userId },
        }),
        success: (res) => `${res.statusCode} ${(res.json() as { status: string }).status}`,
      },
    },
  },

  /** The owner and the friend are friends. */
  friendship: {
    async setup(w) {
      await w.someone('friend');
    },
    operations: {
      list: {
        request: () => ({ method: 'GET', url: '/v1/friends' }),
        success: async (res, w) => {
          const pair = [(await w.someone('owner')).userId, (await w.someone('friend')).userId];
          return listed(ids(res).some((id) => pair.includes(id)));
        },
      },
      'unfriend the friend': {
        request: async (w) => ({
          method: 'DELETE',
          url: `/v1/friends/${(await w.someone('friend')).userId}`,
        }),
      },
      'unfriend the owner': {
        request: async (w) => ({ method: 'DELETE', url: `/v1/friends/${(await w.someone('owner')).userId}` }),
      },
    },
  },

  /** The owner blocked the blocked one. */
  block: {
    async setup(w) {
      await w.someone('blocked');
    },
    operations: {
      list: {
        request: () => ({ method: 'GET', url: '/v1/blocks' }),
        success: async (res, w) => listed(ids(res).includes((await w.someone('blocked')).userId)),
      },
      unblock: {
        request: async (w) => ({
          method: 'DELETE',
          url: `/v1/blocks/${(await w.someone('blocked')).userId}`,
        }),
      },
      'block the owner': {
        request: async (w) => ({
          method: 'POST',
          url: '/v1/blocks',
          body: { userId: (await w.someone('owner')).userId },
        }),
      },
    },
  },
};

// ---------------------------------------------------------------------------------------------------
// The table

const NOT_FOUND = '404 not_found';
const UNVERIFIED = '403 email_not_verified';
const SIGNED_OUT = '401 unauthorized';

/** Rows for one operation, actor by actor. */
const cells = (resource: string, operation: string, expected: Record<string, string>): Row[] =>
  Object.entries(expected).map(([actor, outcome]) => ({ resource, operation, actor, expected: outcome }));

/** Search and profiles need a sign-in but not a verified email; the blocked and blockers see nothing. */
const readable = (o: Record<'owner' | 'friend' | 'stranger' | 'unverified', string>, hidden: string) => ({
  ...o,
  blocked: hidden,
  blocker: hidden,
  deleted: SIGNED_OUT,
  anonymous: SIGNED_OUT,
});

/** Social routes: an unverified caller is refused before anything else is looked at. */
const social = (o: Record<string, string>) => ({
  ...o,
  unverified: UNVERIFIED,
  deleted: SIGNED_OUT,
  anonymous: SIGNED_OUT,
});

/** Only `allowed` (an actor) gets `outcome`; every other signed-in, verified actor gets `others`. */
const onlyFor = (allowed: string, outcome: string, others: string, actorsHere: string[]) =>
  social(Object.fromEntries(actorsHere.map((a) => [a, a === allowed ? outcome : others])));

const REQUEST_ACTORS = ['owner', 'recipient', 'friend', 'stranger', 'blocked', 'blocker'];
const OTHER_ACTORS = ['owner', 'friend', 'stranger', 'blocked', 'blocker'];

/**
 * Group tasks: the owner, a fellow member (the friend, for invitations), and everyone else (hidden
 * when private). Blocks play no part in group tasks, so the stranger stands for all outsiders; the unverified caller is checked on
 * one operation (the same route option guards them all).
 */
const group = (
  owner: string,
  member: string,
  others: string,
  memberActor = 'member',
): Record<string, string> => ({
  owner,
  [memberActor]: member,
  stranger: others,
  deleted: SIGNED_OUT,
  anonymous: SIGNED_OUT,
});

export const matrix: Row[] = [
  ...cells('group task (private)', 'read', { ...group('200', '200', NOT_FOUND), unverified: UNVERIFIED }),
  ...cells('group task (private)', 'edit', group('200', '403 not_group_admin', NOT_FOUND)),
  ...cells('group task (private)', 'delete', group('204', '403 not_group_owner', NOT_FOUND)),
  ...cells('group task (private)', 'join', group('200', '200', NOT_FOUND)),
  ...cells('group task (private)', 'complete', group('200', '200', NOT_FOUND)),
  ...cells('group task (private)', 'remove the member', group('204', '403 not_group_admin', NOT_FOUND)),
  ...cells('group task (public)', 'read', group('200', '200', '200')),
  ...cells('group task (public)', 'edit', group('200', '403 not_group_admin', '403 not_group_admin')),
  ...cells('group task (public)', 'complete', group('200', '200', '403 not_member')),
  ...cells('group invitation', 'accept', group(NOT_FOUND, '200', NOT_FOUND, 'friend')),
  // Only the owner or an admin invites (the stranger is not the owner's friend); a pending invitee
  // is not a member yet, so the private group stays hidden from them.
  ...cells(
    'group invitation',
    'invite the stranger',
    group('403 not_friends', NOT_FOUND, NOT_FOUND, 'friend'),
  ),

  ...cells(
    'user profile (public)',
    'read',
    readable(
      { owner: '200 full', friend: '200 full', stranger: '200 full', unverified: '200 full' },
      NOT_FOUND,
    ),
  ),
  ...cells(
    'user profile (friends)',
    'read',
    readable(
      { owner: '200 full', friend: '200 full', stranger: '200 basic', unverified: '200 basic' },
      NOT_FOUND,
    ),
  ),
  ...cells(
    'user profile (private)',
    'read',
    readable(
      { owner: '200 full', friend: '200 basic', stranger: '200 basic', unverified: '200 basic' },
      NOT_FOUND,
    ),
  ),
  ...cells(
    'search',
    'find the owner',
    readable(
      { owner: '200 hidden', friend: '200 listed', stranger: '200 listed', unverified: '200 listed' },
      '200 hidden',
    ),
  ),
  ...cells(
    'search (owner not discoverable)',
    'find the owner',
    readable(
      { owner: '200 hidden', friend: '200 hidden', stranger: '200 hidden', unverified: '200 hidden' },
      '200 hidden',
    ),
  ),

  ...cells('friend request', 'accept', onlyFor('recipient', '200', NOT_FOUND, REQUEST_ACTORS)),
  ...cells('friend request', 'decline', onlyFor('recipient', '200', NOT_FOUND, REQUEST_ACTORS)),
  ...cells('friend request', 'cancel', onlyFor('owner', '204', NOT_FOUND, REQUEST_ACTORS)),
  ...cells(
    'friend request',
    'list incoming',
    onlyFor('recipient', '200 includes', '200 excludes', REQUEST_ACTORS),
  ),
  ...cells(
    'friend request',
    'list outgoing',
    onlyFor('owner', '200 includes', '200 excludes', REQUEST_ACTORS),
  ),
  ...cells(
    'friend request',
    'ask the owner',
    social({
      owner: '400 cannot_befriend_self',
      recipient: '201 accepted',
      friend: '409 already_friends',
      stranger: '201 pending',
      blocked: NOT_FOUND,
      blocker: NOT_FOUND,
    }),
  ),

  ...cells(
    'friendship',
    'list',
    social({
      owner: '200 includes',
      friend: '200 includes',
      stranger: '200 excludes',
      blocked: '200 excludes',
      blocker: '200 excludes',
    }),
  ),
  ...cells('friendship', 'unfriend the friend', onlyFor('owner', '204', NOT_FOUND, OTHER_ACTORS)),
  ...cells('friendship', 'unfriend the owner', onlyFor('friend', '204', NOT_FOUND, OTHER_ACTORS)),

  ...cells('block', 'list', onlyFor('owner', '200 includes', '200 excludes', OTHER_ACTORS)),
  ...cells('block', 'unblock', onlyFor('owner', '204', NOT_FOUND, OTHER_ACTORS)),
  ...cells(
    'block',
    'block the owner',
    social({
      owner: '400 cannot_block_self',
      friend: '201',
      stranger: '201',
      // Blocking back is allowed: refusing it would tell them they are blocked.
      blocked: '201',
      blocker: '200',
    }),
  ),
];
