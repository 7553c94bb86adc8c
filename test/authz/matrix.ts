/**
 * The authorization matrix (RELIABILITY A1): who may do what to which resource, as one table.
 * test/authz-matrix.test.ts runs every row as one HTTP request, or one socket event, in a world of its
 * own and compares the outcome. To cover a new resource, add it to `resources` (how to build it and how
 * each operation is requested; larger families may live in a file of their own under test/authz/, like
 * chat.ts and boards.ts), any new kind of actor to `actors`, and its rows to `matrix`; the runner stays
 * as is.
 *
 * Outcomes are strings: the status, then for a problem its `code` ('404 not_found'), or what the
 * operation says about the body ('200 full', '200 listed'). A socket event is emitted by the actor on a
 * fresh socket.io connection of their own: 'ack ok' (or what the operation's `acked` says about the
 * ack's data: 'ack shown'), 'ack <code>' for an error ack, or 'refused' when the handshake itself fails.
 */

import { uuidv7 } from 'uuidv7';
import type { Deps } from '../../src/deps.js';
import { aUser, signIn } from '../helpers.js';
import { boardResources } from './boards.js';
import { chatResources } from './chat.js';
import { personalResources } from './personal.js';

/** Someone who can send requests; null is the anonymous caller. */
export interface Person {
  userId: string;
  username: string;
  /** The access token, for socket handshakes; `headers` carries it as a bearer. */
  token: string;
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
  /** The role of the row's actor ('owner', 'friend'...): who sends the request being named. */
  actor: string;
}

export interface Request {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  url: string;
  /** JSON, or a Buffer sent as it is (with its content-type in `headers`). */
  body?: unknown;
  /** Added to the actor's own (which carry their token). */
  headers?: Record<string, string>;
}

/** A client→server socket event, emitted with an ack. */
export interface SocketEvent {
  event: string;
  payload: unknown;
}

export interface Response {
  statusCode: number;
  body: string;
  json(): unknown;
}

export interface Operation {
  request(w: World): Request | SocketEvent | Promise<Request | SocketEvent>;
  /** How a successful HTTP response is named in the table; default: its status alone. */
  success?(res: Response, w: World): string | Promise<string>;
  /** How an ok ack's data is named (after 'ack '); default: 'ok'. */
  acked?(data: unknown, w: World): string | Promise<string>;
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
  return { userId: user.id, username: user.username, token: session.token, headers: session.headers };
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

  // The friend and the member once something changed. They are the same person as `friend` or
  // `member` (made by the setup, with whatever the setup gave them: a conversation, messages), and
  // the change happens after the setup, as it would while a chat is going on.

  /** The friend, after the owner unfriended them. */
  'former friend': {
    async make(w) {
      const [owner, friend] = [await w.someone('owner'), await w.someone('friend')];
      await w.deps.friends.unfriend(owner.userId, friend.userId);
      return friend;
    },
  },
  /** The friend, after the owner blocked them (which ends the friendship). */
  'blocked friend': {
    async make(w) {
      const [owner, friend] = [await w.someone('owner'), await w.someone('friend')];
      await w.deps.friends.block(owner.userId, friend.userId);
      return friend;
    },
  },
  /** The friend, after they blocked the owner. */
  'blocking friend': {
    async make(w) {
      const [owner, friend] = [await w.someone('owner'), await w.someone('friend')];
      await w.deps.friends.block(friend.userId, owner.userId);
      return friend;
    },
  },
  /**
   * The friend with an email that is not verified (any more). Unreachable through the API today (every
   * social route needs a verified email), but real for accounts made while REQUIRE_VERIFIED_EMAIL was
   * off, which the earlier version shipped with: they keep their friendships and conversations.
   */
  'unverified friend': {
    async make(w) {
      const friend = await w.someone('friend');
      await w.deps.db.query('UPDATE users SET email_verified_at = NULL WHERE id = $1', [friend.userId]);
      return friend;
    },
  },
  /** The member, after the owner removed them from the group task (setup keeps its id in groupId). */
  'removed member': {
    async make(w) {
      const [owner, member] = [await w.someone('owner'), await w.someone('member')];
      const groupId = w.vars.groupId;
      if (!groupId) throw new Error('"removed member" needs a resource whose setup keeps a groupId');
      await w.deps.groups.removeMember(owner.userId, groupId, member.userId);
      return member;
    },
  },
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
    'make the member admin': {
      request: async (w) => ({
        method: 'PATCH',
        url: url(w, `/members/${(await w.someone('member')).userId}`),
        body: { role: 'admin' },
      }),
    },
    members: { request: (w) => ({ method: 'GET', url: url(w, '/members') }) },
    leaderboard: { request: (w) => ({ method: 'GET', url: url(w, '/leaderboard') }) },
    leave: { request: (w) => ({ method: 'POST', url: url(w, '/leave') }) },
    close: { request: (w) => ({ method: 'POST', url: url(w, '/close') }) },
  };
}

/** The group-task lists: the owner's private group task (with its member) in them or not. */
function groupLists(): Resource {
  const inList = (res: Response, w: World) => listed(ids(res).includes(w.vars.groupId ?? ''));
  return {
    setup: groupTask('private').setup,
    operations: {
      create: {
        request: (w) => ({
          method: 'POST',
          url: '/v1/group-tasks',
          body: {
            title: 'Theirs',
            visibility: 'private',
            dueAt: new Date(w.deps.clock.now().getTime() + 3600_000).toISOString(),
          },
        }),
      },
      'list mine': { request: () => ({ method: 'GET', url: '/v1/group-tasks?scope=mine' }), success: inList },
      discover: { request: () => ({ method: 'GET', url: '/v1/group-tasks?scope=public' }), success: inList },
    },
  };
}

export const resources: Record<string, Resource> = {
  'group task (private)': groupTask('private'),
  // Public: the rows that differ from private; test/groups.test.ts covers the rest.
  'group task (public)': groupTask('public', [
    'delete',
    'join',
    'remove the member',
    'make the member admin',
    'leave',
    'close',
  ]),
  'group tasks': groupLists(),

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
      w.vars.invitationId = (await w.deps.groups.listInvitations(friend.userId, {})).items[0]?.id ?? '';
    },
    operations: {
      accept: {
        request: (w) => ({ method: 'POST', url: `/v1/group-invitations/${w.vars.invitationId}/accept` }),
      },
      list: {
        request: () => ({ method: 'GET', url: '/v1/group-invitations' }),
        success: (res, w) => listed(ids(res).includes(w.vars.invitationId ?? '')),
      },
      decline: {
        request: (w) => ({ method: 'POST', url: `/v1/group-invitations/${w.vars.invitationId}/decline` }),
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

  ...chatResources,
  ...boardResources,
  ...personalResources,
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

/** Chat: refusals with codes of their own. */
const NOT_FRIENDS = '403 not_friends';
const NOT_SENDER = '403 not_sender';
/** Socket rows: the ack's outcome, or the handshake refusing the connection. */
const ACK_OK = 'ack ok';
const REFUSED = 'refused';
const ack = (outcome: string) => (/^\d{3} /.test(outcome) ? `ack ${outcome.slice(4)}` : outcome);

const each = (names: string[], outcome: string) => Object.fromEntries(names.map((n) => [n, outcome]));
/** A direct conversation's former friends: it stays theirs to read, not to write in (A4). */
const ENDED = ['former friend', 'blocked friend', 'blocking friend'];
/** Outsiders to a direct conversation, blocks either way included: it is not theirs, so 404. */
const OUTSIDERS = ['stranger', 'blocked', 'blocker'];
/** Outsiders to a group conversation: a removed member is one like any other (A4), 404 everywhere. */
const GROUP_OUTSIDERS = ['removed member', 'friend', 'stranger'];

/**
 * A socket event answers as its HTTP twin would: an unverified caller gets email_not_verified before
 * anything is looked at (the twins are all social routes), and the handshake refuses a signed-out
 * caller or a dead token, so no event is ever heard from them.
 */
const overSocket = (o: Record<string, string>) => ({
  ...Object.fromEntries(Object.entries(o).map(([actor, outcome]) => [actor, ack(outcome)])),
  unverified: ack(UNVERIFIED),
  deleted: REFUSED,
  anonymous: REFUSED,
});

/** The direct conversation: the owner, the friend, the friend once it ended, and outsiders. */
const directRows = (owner: string, friend: string, ended: string, outsiders: string) => ({
  owner,
  friend,
  ...each(ENDED, ended),
  ...each(OUTSIDERS, outsiders),
  'unverified friend': UNVERIFIED,
});
const directHttp = (...o: Parameters<typeof directRows>) => social(directRows(...o));
const directSocket = (...o: Parameters<typeof directRows>) => overSocket(directRows(...o));

/** The group conversation: its two members, and outsiders. */
const groupRows = (members: string, outsiders: string) => ({
  owner: members,
  member: members,
  ...each(GROUP_OUTSIDERS, outsiders),
});
const groupHttp = (...o: Parameters<typeof groupRows>) => social(groupRows(...o));
const groupSocket = (...o: Parameters<typeof groupRows>) => overSocket(groupRows(...o));

/** Rows of one resource, operation by operation. */
const table = (resource: string, byOperation: Record<string, Record<string, string>>): Row[] =>
  Object.entries(byOperation).flatMap(([operation, expected]) => cells(resource, operation, expected));

const chatRows: Row[] = [
  ...table('direct conversation', {
    read: directHttp('200 can send', '200 can send', '200 read-only', NOT_FOUND),
    list: directHttp('200 listed', '200 listed', '200 listed', '200 absent'),
    history: directHttp('200', '200', '200', NOT_FOUND),
    send: directHttp('201', '201', NOT_FRIENDS, NOT_FOUND),
    'read cursor': directHttp('200', '200', '200', NOT_FOUND),
    // Non-friends all hear not_friends, whoever they are (an unknown id too): no block oracle.
    'open direct': directHttp('400 cannot_message_self', '200 same', NOT_FRIENDS, NOT_FRIENDS),
    'chat:send': directSocket(ACK_OK, ACK_OK, NOT_FRIENDS, NOT_FOUND),
    // Typing goes only where one could send: a former friend sees none and shows none.
    'chat:typing': directSocket(ACK_OK, ACK_OK, NOT_FRIENDS, NOT_FOUND),
    'chat:read': directSocket(ACK_OK, ACK_OK, ACK_OK, NOT_FOUND),
    'chat:delivered': directSocket(ACK_OK, ACK_OK, ACK_OK, NOT_FOUND),
    'chat:sync': directSocket(ACK_OK, ACK_OK, ACK_OK, NOT_FOUND),
  }),
  // The owner's side once they blocked the friend: they keep the history and cannot write either.
  ...table('direct conversation (owner blocked the friend)', {
    read: social({ owner: '200 read-only' }),
    list: social({ owner: '200 listed' }),
    history: social({ owner: '200' }),
    send: social({ owner: NOT_FRIENDS }),
    'read cursor': social({ owner: '200' }),
    'open direct with the friend': social({ owner: NOT_FRIENDS }),
    'chat:send': overSocket({ owner: NOT_FRIENDS }),
    'chat:typing': overSocket({ owner: NOT_FRIENDS }),
    'chat:sync': overSocket({ owner: ACK_OK }),
  }),
  ...table('group conversation', {
    read: groupHttp('200 can send', NOT_FOUND),
    list: groupHttp('200 listed', '200 absent'),
    history: groupHttp('200', NOT_FOUND),
    send: groupHttp('201', NOT_FOUND),
    'read cursor': groupHttp('200', NOT_FOUND),
    'chat:send': groupSocket(ACK_OK, NOT_FOUND),
    'chat:typing': groupSocket(ACK_OK, NOT_FOUND),
    'chat:read': groupSocket(ACK_OK, NOT_FOUND),
    'chat:delivered': groupSocket(ACK_OK, NOT_FOUND),
    'chat:sync': groupSocket(ACK_OK, NOT_FOUND),
  }),

  // Deleting for me is open to every member who can see the message; for everyone, to its sender
  // alone (a member knows the message exists, so 403), whatever became of the friendship.
  ...table('message (direct)', {
    'delete for me': social({
      owner: '204',
      friend: '204',
      'former friend': '204',
      'blocked friend': '204',
      stranger: NOT_FOUND,
      blocked: NOT_FOUND,
    }),
    'delete for everyone': social({
      owner: '204',
      friend: NOT_SENDER,
      'former friend': NOT_SENDER,
      'blocked friend': NOT_SENDER,
      stranger: NOT_FOUND,
      blocked: NOT_FOUND,
    }),
  }),
  ...table("message (direct, the friend's)", {
    'delete for everyone': social({
      owner: NOT_SENDER,
      friend: '204',
      'former friend': '204',
      'blocked friend': '204',
      stranger: NOT_FOUND,
    }),
  }),
  ...table('message (group)', {
    'delete for me': social({
      owner: '204',
      member: '204',
      'removed member': NOT_FOUND,
      stranger: NOT_FOUND,
    }),
    'delete for everyone': social({
      owner: '204',
      member: NOT_SENDER,
      'removed member': NOT_FOUND,
      stranger: NOT_FOUND,
    }),
  }),

  // A5. GET /v1/media/:id is a chat route like the others (verified email required). Signed out it is
  // 401, not 404: the route requires a sign-in (the platform's 401 comes before any lookup, for every
  // id alike, known or not), so it is no existence oracle. A deliberate choice; RELIABILITY A5's
  // "logged out → 404" predates it.
  ...table('media', {
    'read attached': social({
      owner: '200',
      friend: '200',
      'former friend': '200',
      'blocked friend': '200',
      'unverified friend': UNVERIFIED,
      stranger: NOT_FOUND,
      blocked: NOT_FOUND,
    }),
    // In no message yet: its uploader's alone.
    'read unattached': social({ owner: '200', friend: NOT_FOUND, stranger: NOT_FOUND }),
    upload: social({ owner: '201', friend: '201', stranger: '201' }),
  }),
  ...table('media (group)', {
    'read attached': social({
      owner: '200',
      member: '200',
      'removed member': NOT_FOUND,
      friend: NOT_FOUND,
      stranger: NOT_FOUND,
    }),
  }),
];

// Notifications, leaderboards and badges (test/authz/boards.ts).

/** Personal routes: signed in is enough, verified or not. */
const personal = (o: Record<string, string>) => ({ ...o, deleted: SIGNED_OUT, anonymous: SIGNED_OUT });

/** Whether the owner is among a board's entries; read by the owner, also whether their `me` is ranked. */
const SHOWN = '200 shown';
const HIDDEN = '200 hidden';
const OWN_SHOWN = '200 shown, me ranked';
const OWN_HIDDEN = '200 hidden, me unranked';
/** The friends boards of the friend once the friendship ended, and of a stranger: the owner is on none. */
const NOT_FRIENDS_NOW = ['stranger', ...ENDED];

/**
 * A3. The global boards are one list for everyone, of public profiles only: a friends-only or private
 * owner is on no one's, their own included (only their `me` has their score, unranked). Blocks do not
 * filter it: a public profile's name and score are public. Friends boards: the caller and their friends,
 * private profiles left out (the owner always sees themselves on their own). Both need a verified email.
 */
const globalBoard = (owner: string, others: string) =>
  social({ owner, ...each(['friend', 'stranger', 'blocked'], others) });
const friendsBoard = (owner: string, friend: string) =>
  social({ owner, friend, ...each(NOT_FRIENDS_NOW, HIDDEN) });
/** Watching a board answers with the board, as the caller would read it over HTTP. */
const watchGlobal = (owner: string, others: string) =>
  overSocket({ owner, friend: others, stranger: others });
const watchFriends = (owner: string, friend: string) =>
  overSocket({ owner, friend, stranger: HIDDEN, 'former friend': HIDDEN });

const boardsOf = (resource: string, global: [string, string], friends: [string, string]): Row[] =>
  (['week', 'all'] as const).flatMap((period) =>
    table(resource, {
      [`global ${period}`]: globalBoard(...global),
      [`friends ${period}`]: friendsBoard(...friends),
      [`watch global ${period}`]: watchGlobal(...global),
      [`watch friends ${period}`]: watchFriends(...friends),
    }),
  );

const BADGES = '200 badges';
const NO_BADGES = '200 no badges';

const boardRows: Row[] = [
  // The owner's notification, caused by the friend: its cause is no one it belongs to. Marking another
  // user's notification read answers like marking an unknown id (200, nothing changed): no oracle.
  ...table('notification', {
    list: personal({
      owner: '200 listed',
      friend: '200 absent',
      stranger: '200 absent',
      unverified: '200 absent',
    }),
    'mark read': personal({
      owner: '200 marked',
      friend: '200 untouched',
      stranger: '200 untouched',
      unverified: '200 untouched',
    }),
    'mark all read': personal({
      owner: '200 marked',
      friend: '200 untouched',
      stranger: '200 untouched',
      unverified: '200 untouched',
    }),
  }),

  ...boardsOf('leaderboards (owner public)', [OWN_SHOWN, SHOWN], [OWN_SHOWN, SHOWN]),
  ...boardsOf('leaderboards (owner friends-only)', [OWN_HIDDEN, HIDDEN], [OWN_SHOWN, SHOWN]),
  ...boardsOf('leaderboards (owner private)', [OWN_HIDDEN, HIDDEN], [OWN_SHOWN, HIDDEN]),
  // Going private takes effect at once, like any revocation (A4): off every board from the next read.
  ...table('leaderboards (owner went private)', {
    'global week': globalBoard(OWN_HIDDEN, HIDDEN),
    'global all': globalBoard(OWN_HIDDEN, HIDDEN),
    'watch global all': watchGlobal(OWN_HIDDEN, HIDDEN),
  }),

  // The catalogue needs no sign-in: a dead token is not even looked at.
  ...cells('badge catalogue', 'read', {
    ...each(['owner', 'stranger', 'unverified', 'deleted', 'anonymous'], '200 catalogue'),
  }),
  ...cells(
    'my badges',
    'read',
    personal({ owner: "200 owner's", friend: '200 none', stranger: '200 none', unverified: '200 none' }),
  ),
  // Badges on a profile follow its visibility, like its about, score and streaks.
  ...cells(
    'badges on a profile (public)',
    'read',
    readable({ owner: BADGES, friend: BADGES, stranger: BADGES, unverified: BADGES }, NOT_FOUND),
  ),
  ...cells('badges on a profile (friends-only)', 'read', {
    ...readable({ owner: BADGES, friend: BADGES, stranger: NO_BADGES, unverified: NO_BADGES }, NOT_FOUND),
    'former friend': NO_BADGES,
  }),
  ...cells(
    'badges on a profile (private)',
    'read',
    readable({ owner: BADGES, friend: NO_BADGES, stranger: NO_BADGES, unverified: NO_BADGES }, NOT_FOUND),
  ),
];

/** The owner's object, by anyone else signed in: verified or not, it does not exist for them. */
const ownerOnly = (outcome: string) =>
  personal({ owner: outcome, ...each(['friend', 'stranger', 'unverified'], NOT_FOUND) });
/** A route about the caller: each signed-in actor gets the same answer, about themselves. */
const everyone = (outcome: string) => personal(each(['owner', 'friend', 'stranger', 'unverified'], outcome));
const connected = (outcome: string) => ({
  ...each(['owner', 'friend', 'stranger', 'unverified'], outcome),
  deleted: REFUSED,
  anonymous: REFUSED,
});
const ownerListed = personal({
  owner: '200 includes',
  ...each(['friend', 'stranger', 'unverified'], '200 excludes'),
});

const personalRows: Row[] = [
  ...table('task', {
    create: everyone('201'),
    list: ownerListed,
    read: ownerOnly('200'),
    edit: ownerOnly('200'),
    complete: ownerOnly('200'),
    reopen: ownerOnly('200'),
    delete: ownerOnly('204'),
  }),
  ...table('daily', {
    create: everyone('201'),
    list: ownerListed,
    today: ownerListed,
    read: ownerOnly('200'),
    edit: ownerOnly('200'),
    history: ownerOnly('200'),
    'check in': ownerOnly('200'),
    'undo the check-in': ownerOnly('204'),
    delete: ownerOnly('204'),
  }),
  ...table('account', {
    read: everyone('200 own'),
    edit: everyone('200 own'),
    stats: everyone('200'),
    export: everyone('200 own'),
    'set the avatar': everyone('200 own'),
    'remove the avatar': everyone('200 own'),
    'list sessions': everyone('200'),
    'change the password': everyone('204'),
    // Signing out never fails: a dead or missing token has nothing left to end, and the cookies go.
    'sign out': { ...everyone('204'), deleted: '204', anonymous: '204' },
    delete: everyone('204'),
    "Maa's word": everyone('200'),
    "Maa's messages": everyone('200'),
  }),
  ...table('session', { 'end it': ownerOnly('204') }),
  // The handshake decides: anyone signed in holds a connection, verified or not (unwatching a board
  // they could not watch changes nothing); nobody else does.
  ...table('connection', { ping: connected(ACK_OK), 'unwatch a board': connected(ACK_OK) }),
];

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
  ...cells('group task (private)', 'make the member admin', group('200', '403 not_group_owner', NOT_FOUND)),
  ...cells('group task (private)', 'members', group('200', '200', NOT_FOUND)),
  ...cells('group task (private)', 'leaderboard', group('200', '200', NOT_FOUND)),
  // An owner who leaves hands the group task to the longest-standing member (the last one deletes it).
  ...cells('group task (private)', 'leave', group('204', '204', NOT_FOUND)),
  ...cells('group task (private)', 'close', group('200', '403 not_group_owner', NOT_FOUND)),
  ...cells('group task (public)', 'members', group('200', '200', '200')),
  ...cells('group task (public)', 'leaderboard', group('200', '200', '200')),
  ...cells('group tasks', 'create', { ...group('201', '201', '201'), unverified: UNVERIFIED }),
  ...cells('group tasks', 'list mine', group('200 includes', '200 includes', '200 excludes')),
  ...cells('group tasks', 'discover', group('200 excludes', '200 excludes', '200 excludes')),
  ...cells('group invitation', 'accept', group(NOT_FOUND, '200', NOT_FOUND, 'friend')),
  ...cells('group invitation', 'decline', group(NOT_FOUND, '200', NOT_FOUND, 'friend')),
  ...cells('group invitation', 'list', group('200 excludes', '200 includes', '200 excludes', 'friend')),
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

  ...chatRows,
  ...boardRows,
  ...personalRows,
];
