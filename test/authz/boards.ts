/**
 * The matrix's notifications, leaderboards and badges (RELIABILITY A1, A3). Only how each resource is
 * built and requested lives here; who gets what is in the table, test/authz/matrix.ts.
 *
 * - A notification of the owner's: the one the friend caused by accepting the owner's friend request
 *   (the `friend` actor is made that way), so its cause is one of the actors.
 * - Leaderboards: the owner, with a profile of the given visibility, has points (a ledger event through
 *   the stats service, as a completion pays them) and more than anyone before them, so they are at the
 *   top of any board they belong on; what the table records is whether they are among its `entries`.
 * - Badges: the owner earned one; the public catalogue, my badges, and the badges on the owner's
 *   profile.
 */

import { randomUUID } from 'node:crypto';
import type { Leaderboard } from '../../src/modules/leaderboards/leaderboards.schemas.js';
import type { Operation, Resource, Response, World } from './matrix.js';

type Visibility = 'public' | 'friends' | 'private';

const vars = (w: World, name: string): string => {
  const v = w.vars[name];
  if (v === undefined) throw new Error(`The setup kept no ${name}`);
  return v;
};

async function setVisibility(w: World, visibility: Visibility) {
  const owner = await w.someone('owner');
  await w.deps.db.query('UPDATE users SET profile_visibility = $2 WHERE id = $1', [owner.userId, visibility]);
}

// ---------------------------------------------------------------------------------------------------
// Notifications

/** What became of the owner's notification after the request (read from the database). */
async function readState(w: World): Promise<string> {
  const { rows } = await w.deps.db.query<{ readAt: Date | null }>(
    'SELECT read_at FROM notifications WHERE id = $1',
    [vars(w, 'notificationId')],
  );
  const row = rows[0];
  return row ? (row.readAt ? '200 marked' : '200 untouched') : '200 gone';
}

const notification: Resource = {
  async setup(w) {
    const [owner, friend] = [await w.someone('owner'), await w.someone('friend')];
    const { rows } = await w.deps.db.query<{ id: string }>(
      `SELECT id FROM notifications WHERE user_id = $1 AND actor_id = $2 AND kind = 'friend_accepted'`,
      [owner.userId, friend.userId],
    );
    const id = rows[0]?.id;
    if (!id) throw new Error('Accepting the friend request told the owner nothing');
    w.vars.notificationId = id;
  },
  operations: {
    list: {
      request: () => ({ method: 'GET', url: '/v1/notifications?limit=100' }),
      success: (res, w) =>
        (res.json() as { items: { id: string }[] }).items.some((n) => n.id === w.vars.notificationId)
          ? '200 listed'
          : '200 absent',
    },
    'mark read': {
      request: (w) => ({
        method: 'POST',
        url: '/v1/notifications/read',
        body: { ids: [vars(w, 'notificationId')] },
      }),
      success: (_res, w) => readState(w),
    },
    'mark all read': {
      request: () => ({ method: 'POST', url: '/v1/notifications/read', body: { all: true } }),
      success: (_res, w) => readState(w),
    },
  },
};

// ---------------------------------------------------------------------------------------------------
// Leaderboards

/**
 * Points for each owner, more than every owner before them: rows run a few at once, so an owner is at
 * worst a few places from the top of the global boards (their limit, 100 over HTTP and 20 over the
 * socket, leaves room), whatever other rows did before.
 */
let lastPoints = 100_000;

const BOARDS = ['global:week', 'global:all', 'friends:week', 'friends:all'] as const;
type Board = (typeof BOARDS)[number];

/**
 * Whether the owner is among the board's entries: '200 shown' / '200 hidden' (the socket's ack: 'ack
 * shown' / 'ack hidden'). Read by the owner, also whether their own `me` has a rank ('me ranked' /
 * 'me unranked').
 */
async function onBoard(board: Leaderboard, w: World): Promise<string> {
  const owner = await w.someone('owner');
  const shown = board.entries.some((e) => e.userId === owner.userId) ? 'shown' : 'hidden';
  if (w.actor !== 'owner') return shown;
  return `${shown}, me ${board.me.rank === null ? 'unranked' : 'ranked'}`;
}

const boardOperations = (): Record<string, Operation> =>
  Object.fromEntries(
    BOARDS.flatMap((board): [string, Operation][] => {
      const [kind, period] = board.split(':') as [string, string];
      return [
        [
          `${kind} ${period}`,
          {
            request: () => ({ method: 'GET', url: `/v1/leaderboards/${kind}?period=${period}&limit=100` }),
            success: async (res: Response, w: World) => `200 ${await onBoard(res.json() as Leaderboard, w)}`,
          },
        ],
        [
          `watch ${kind} ${period}`,
          {
            request: () => ({ event: 'leaderboard:watch', payload: { board: board satisfies Board } }),
            acked: (data: unknown, w: World) => onBoard(data as Leaderboard, w),
          },
        ],
      ];
    }),
  );

const pickOperations = (ops: Record<string, Operation>, names: string[]) =>
  Object.fromEntries(names.map((n) => [n, ops[n] as Operation]));

/** The owner, whose profile is `visibility`, has points on every board (this week's and all time). */
function leaderboard(visibility: Visibility): Resource {
  return {
    async setup(w) {
      const owner = await w.someone('owner');
      // Before the points: the board rows (and the Redis mirror) take the visibility they are made with.
      await setVisibility(w, visibility);
      lastPoints += 10;
      const points = lastPoints;
      const now = w.deps.clock.now();
      await w.deps.db.tx((tx) =>
        w.deps.stats.award(tx, {
          userId: owner.userId,
          source: 'group_rank',
          sourceKey: `authz-${randomUUID()}`,
          points,
          localDate: now.toISOString().slice(0, 10),
        }),
      );
      // The matrix runs no worker: bring the Redis mirror up to date as the outbox's sync job would
      // (versioned, so a later run of the job changes nothing). Without Redis it does nothing.
      await w.deps.leaderboards.sync(owner.userId);
    },
    operations: boardOperations(),
  };
}

// ---------------------------------------------------------------------------------------------------
// Badges

const BADGE = 'first_task';

async function awardBadge(w: World) {
  const owner = await w.someone('owner');
  await w.deps.db.query('INSERT INTO user_badges (user_id, code, awarded_at) VALUES ($1, $2, $3)', [
    owner.userId,
    BADGE,
    w.deps.clock.now(),
  ]);
}

/** A profile's badges: 'no badges' (not shown), 'badges' (with the owner's), 'badges empty'. */
const badgesNamed = (badges: { code: string }[] | undefined) =>
  badges === undefined ? 'no badges' : badges.some((b) => b.code === BADGE) ? 'badges' : 'badges empty';

/** The owner's badges on their profile, with the profile `visibility`. */
function profileBadges(visibility: Visibility): Resource {
  return {
    async setup(w) {
      await setVisibility(w, visibility);
      await awardBadge(w);
    },
    operations: {
      read: {
        request: async (w) => ({ method: 'GET', url: `/v1/users/${(await w.someone('owner')).username}` }),
        success: (res) => `200 ${badgesNamed((res.json() as { badges?: { code: string }[] }).badges)}`,
      },
    },
  };
}

export const boardResources: Record<string, Resource> = {
  /** The owner's notification that the friend accepted their friend request. */
  notification,

  'leaderboards (owner public)': leaderboard('public'),
  'leaderboards (owner friends-only)': leaderboard('friends'),
  'leaderboards (owner private)': leaderboard('private'),
  /**
   * The owner was public, with points on the boards (the Redis mirror's included), then made their
   * profile private (PATCH /v1/me, through the service): from then on they are a private profile.
   */
  'leaderboards (owner went private)': {
    async setup(w) {
      await leaderboard('public').setup?.(w);
      await w.deps.accounts.updateMe((await w.someone('owner')).userId, { profileVisibility: 'private' });
    },
    operations: pickOperations(boardOperations(), ['global week', 'global all', 'watch global all']),
  },

  /** Every badge there is: public, no sign-in. */
  'badge catalogue': {
    operations: {
      read: {
        request: () => ({ method: 'GET', url: '/v1/badges' }),
        success: (res) =>
          (res.json() as { items: { code: string }[] }).items.some((b) => b.code === BADGE)
            ? '200 catalogue'
            : '200 empty',
      },
    },
  },
  /** The owner earned a badge; GET /v1/me/badges is each caller's own. */
  'my badges': {
    setup: awardBadge,
    operations: {
      read: {
        request: () => ({ method: 'GET', url: '/v1/me/badges' }),
        success: (res) => {
          const items = (res.json() as { items: { code: string }[] }).items;
          return items.length === 0
            ? '200 none'
            : `200 ${badgesNamed(items) === 'badges' ? "owner's" : 'other'}`;
        },
      },
    },
  },
  'badges on a profile (public)': profileBadges('public'),
  'badges on a profile (friends-only)': profileBadges('friends'),
  'badges on a profile (private)': profileBadges('private'),
};
