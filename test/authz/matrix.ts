/**
 * The authorization matrix (RELIABILITY A1): who may do what to which resource, as one table.
 * test/authz-matrix.test.ts runs every row as one HTTP request in a world of its own and compares
 * the outcome. To cover a new resource, add it to `resources` (how to build it and how each operation
 * is requested), any new kind of actor to `actors`, and its rows to `matrix`; the runner stays as is.
 *
 * Outcomes are strings: the status, then for a problem its `code` ('404 not_found'), or what the
 * operation says about the body ('200 full', '200 listed').
 */
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

export const resources: Record<string, Resource> = {
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

export const matrix: Row[] = [
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
