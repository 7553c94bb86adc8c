import type { Logger } from 'pino';
import type { Clock } from '../../lib/clock.js';
import type { Db, Queryable } from '../../lib/db.js';
import type { Outbox } from '../../lib/outbox.js';
import type { Io } from '../../realtime/port.js';
import { avatarUrl } from '../accounts/accounts.service.js';
import { findUsers, friendIds } from '../friends/friends.repo.js';
import type { PublicUserRow } from '../users/users.summary.js';
import type { Mirror } from './leaderboards.mirror.js';
import type { ScoreRow } from './leaderboards.repo.js';
import * as repo from './leaderboards.repo.js';
import type { BoardEntry, BoardName, Leaderboard, LeaderboardUpdate } from './leaderboards.schemas.js';

export const SYNC_JOB = 'leaderboards.sync';
/** Watchers hear of a board at most this often while it changes. */
export const UPDATE_EVERY_MS = 1000;
const LIVE_TOP = 20;
const FRIENDS_MAX = 100;
const FIRST_UUID = '00000000-0000-0000-0000-000000000000';
const REBUILD_PAGE = 1000;
/** Extra rows read from the mirror, so that leaving out people who just went private still fills a page. */
const MIRROR_SLACK = 20;

/** The ISO 8601 week of an instant, in UTC, as 'YYYY-Www' (PostgreSQL's to_char 'IYYY-"W"IW'). */
export function isoWeek(at: Date): string {
  const d = new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), at.getUTCDate()));
  const weekday = d.getUTCDay() || 7;
  // The week's Thursday decides its year.
  d.setUTCDate(d.getUTCDate() + 4 - weekday);
  const yearStart = Date.UTC(d.getUTCFullYear(), 0, 1);
  const week = Math.ceil(((d.getTime() - yearStart) / 86400_000 + 1) / 7);
  return `${d.getUTCFullYear()}-W${String(week).padStart(2, '0')}`;
}

/** Standard competition ranking over rows already in board order: equal scores share a rank. */
function ranked(rows: ScoreRow[], firstRank = 1): { rank: number; row: ScoreRow }[] {
  const out: { rank: number; row: ScoreRow }[] = [];
  rows.forEach((row, i) => {
    const prev = out[i - 1];
    out.push({ rank: prev && prev.row.score === row.score ? prev.rank : firstRank + i, row });
  });
  return out;
}

const globalRoom = (period: 'week' | 'all') => `lb:global:${period}`;
const friendsRoom = (period: 'week' | 'all', userId: string) => `lb:friends:${period}:${userId}`;

export type LeaderboardsService = ReturnType<typeof makeLeaderboardsService>;

/**
 * Boards from the per-period score rows the ledger keeps (stats.repo). Global boards are served from
 * the Redis mirror once built, from SQL otherwise (embedded mode, an empty or unreachable Redis);
 * friends boards always from SQL (a few hundred rows by primary key). Live updates: any change marks
 * the boards it touches dirty on every node; each node pushes a dirty board to its own watchers at
 * once when it was quiet for a second, else as soon as a second has passed since its last update.
 */
export function makeLeaderboardsService(deps: {
  db: Db;
  clock: Clock;
  io: Io;
  outbox: Outbox;
  mirror: Mirror | undefined;
  log: Logger;
  publicUrl: string;
}) {
  const { db, clock, io, outbox, mirror, log, publicUrl } = deps;
  const periodKey = (period: 'week' | 'all') => (period === 'all' ? 'all' : isoWeek(clock.now()));

  const dirty = new Set<string>();
  /** When each board was last pushed from this node (Date.now() at the emit). */
  const lastSent = new Map<string, number>();
  const rebuilding = new Set<string>();
  let live = false;
  let timer: NodeJS.Timeout | undefined;
  let timerAt = Number.POSITIVE_INFINITY;
  let pushing: Promise<void> | undefined;

  const byId = (people: PublicUserRow[]) => new Map(people.map((p) => [p.id, p]));

  /** Board entries with names: of `people` when the caller has read them already. */
  async function entries(
    rows: { rank: number; row: ScoreRow }[],
    known?: Map<string, PublicUserRow>,
  ): Promise<BoardEntry[]> {
    const people =
      known ??
      byId(
        await findUsers(
          db,
          rows.map((r) => r.row.userId),
        ),
      );
    return rows.flatMap(({ rank, row }) => {
      const p = people.get(row.userId);
      // Gone between the two reads (a deleted account): left out.
      return p
        ? [
            {
              rank,
              userId: row.userId,
              username: p.username,
              avatarUrl: avatarUrl(publicUrl, p.avatarKey),
              score: row.score,
            },
          ]
        : [];
    });
  }

  /**
   * Rebuilds a period's mirror from SQL, once across processes; reads use SQL meanwhile. A rebuild
   * that lost part of the board to Redis while it ran leaves it unbuilt: the next read or sync
   * starts another.
   */
  async function rebuild(period: string) {
    if (!mirror || rebuilding.has(period)) return;
    rebuilding.add(period);
    try {
      const token = await mirror.startRebuild(period);
      if (!token) return;
      let after = FIRST_UUID;
      let count = 0;
      for (;;) {
        const rows = await repo.periodPage(db, period, after, REBUILD_PAGE);
        if (rows.length === 0) break;
        await mirror.apply(
          period,
          rows.map((row) => ({ userId: row.userId, row })),
        );
        count += rows.length;
        after = (rows[rows.length - 1] as { userId: string }).userId;
      }
      if (await mirror.finishRebuild(period, token))
        log.info({ period, rows: count }, 'leaderboard mirror rebuilt');
      else log.warn({ period }, 'leaderboard mirror lost keys while rebuilding; it will be rebuilt again');
    } catch (err) {
      log.warn({ err, period }, 'leaderboard rebuild failed; boards are served from SQL');
    } finally {
      rebuilding.delete(period);
    }
  }

  /**
   * The top of a global board: from the mirror when it is whole and reachable (checked in the same
   * Redis script that reads it), from SQL otherwise, starting a rebuild when the mirror is not whole.
   */
  async function globalTop(
    period: string,
    limit: number,
  ): Promise<{ rows: ScoreRow[]; people: Map<string, PublicUserRow> | undefined }> {
    if (mirror) {
      try {
        const rows = await mirror.top(period, limit + MIRROR_SLACK);
        if (rows) {
          // The mirror may lag a visibility change by a job: SQL has the last word on who is public,
          // and the same read brings their names.
          const people = byId(
            await findUsers(
              db,
              rows.map((r) => r.userId),
              true,
            ),
          );
          return { rows: rows.filter((r) => people.has(r.userId)).slice(0, limit), people };
        }
        void rebuild(period);
      } catch (err) {
        log.warn({ err }, 'leaderboard mirror unavailable; reading SQL');
      }
    }
    return { rows: await repo.globalTop(db, period, limit), people: undefined };
  }

  /** How many on a global board score more than `score`: the mirror when whole, SQL otherwise. */
  async function globalAbove(period: string, score: number): Promise<number> {
    if (mirror) {
      try {
        const above = await mirror.above(period, score);
        if (above !== null) return above;
      } catch (err) {
        log.warn({ err }, 'leaderboard mirror unavailable; reading SQL');
      }
    }
    return repo.globalAbove(db, period, score);
  }

  async function friendsBoard(userId: string, name: BoardName, period: string, limit: number) {
    const all = ranked(await repo.friendsBoard(db, userId, period));
    const mine = all.find((r) => r.row.userId === userId);
    return {
      shown: { board: name, period, entries: await entries(all.slice(0, Math.min(limit, FRIENDS_MAX))) },
      me: { rank: mine?.rank ?? null, score: mine?.row.score ?? 0 },
    };
  }

  async function board(userId: string, name: BoardName, limit = LIVE_TOP): Promise<Leaderboard> {
    const [kind, p] = name.split(':') as ['global' | 'friends', 'week' | 'all'];
    const period = periodKey(p);
    if (kind === 'friends') {
      const { shown, me } = await friendsBoard(userId, name, period, limit);
      return { ...shown, me };
    }
    const mirrored = await mirroredBoard(userId, period, limit);
    if (mirrored) return { board: name, period, ...mirrored };
    const [rows, mine] = await Promise.all([
      repo.globalTop(db, period, limit),
      repo.mirrorRows(db, userId, [period]),
    ]);
    const score = mine[0]?.score ?? 0;
    const rank = mine[0]?.public === true ? (await repo.globalAbove(db, period, score)) + 1 : null;
    return { board: name, period, entries: await entries(ranked(rows)), me: { rank, score } };
  }

  /**
   * A global board read from the mirror: its top, my score and the count above it come in one Redis
   * call, then the top's names and my own row in SQL (which has the last word on who is public, and my
   * fresh score). Null when the mirror is not whole or not reachable (read SQL then).
   */
  async function mirroredBoard(userId: string, period: string, limit: number) {
    if (!mirror) return null;
    let read: Awaited<ReturnType<Mirror['board']>>;
    try {
      read = await mirror.board(period, limit + MIRROR_SLACK, userId);
    } catch (err) {
      log.warn({ err }, 'leaderboard mirror unavailable; reading SQL');
      return null;
    }
    if (!read) {
      void rebuild(period);
      return null;
    }
    const [people, mine] = await Promise.all([
      findUsers(
        db,
        read.top.map((r) => r.userId),
        true,
      ).then(byId),
      repo.mirrorRows(db, userId, [period]),
    ]);
    const rows = read.top.filter((r) => people.has(r.userId)).slice(0, limit);
    const score = mine[0]?.score ?? 0;
    let rank: number | null = null;
    // The count came with the read when the mirror already had my score; a job behind, it is asked again.
    if (mine[0]?.public === true)
      rank = (read.mine?.score === score ? read.mine.above : await globalAbove(period, score)) + 1;
    return { entries: await entries(ranked(rows), people), me: { rank, score } };
  }

  /** The boards one user's change touches: both global ones, and the friends boards of them and their friends. */
  async function touched(userId: string): Promise<string[]> {
    const people = [userId, ...(await friendIds(db, userId))];
    return [
      globalRoom('week'),
      globalRoom('all'),
      ...people.flatMap((id) => [friendsRoom('week', id), friendsRoom('all', id)]),
    ];
  }

  async function signal(userId: string) {
    const rooms = await touched(userId);
    markDirty(rooms);
    // Other nodes exist only behind the Redis adapter (the in-memory one refuses server-side emits).
    if (mirror) io.serverSideEmit('leaderboards:dirty', rooms);
  }

  /** What a room's watchers are shown (no `me`: one broadcast serves every watcher of a board). */
  async function update(room: string): Promise<LeaderboardUpdate> {
    const [, kind, p, owner] = room.split(':') as [string, 'global' | 'friends', 'week' | 'all', string?];
    const name = `${kind}:${p}` as BoardName;
    const period = periodKey(p);
    if (kind === 'friends' && owner) return (await friendsBoard(owner, name, period, FRIENDS_MAX)).shown;
    const { rows, people } = await globalTop(period, LIVE_TOP);
    return { board: name, period, entries: await entries(ranked(rows), people) };
  }

  /** When a dirty board may go next: a second after its last update, or now. */
  const dueAt = (room: string) => (lastSent.get(room) ?? Number.NEGATIVE_INFINITY) + UPDATE_EVERY_MS;

  function markDirty(rooms: string[]) {
    // Only nodes with a socket server push (a worker-only process has no watchers).
    if (!live) return;
    for (const room of rooms) dirty.add(room);
    schedule();
  }

  /**
   * Starts a pass now if a dirty board may go now (not on a timer: a timer waits behind whatever
   * else the process is busy with), else arms the timer for the earliest one. One pass at a time;
   * each pass ends by scheduling the next.
   */
  function schedule() {
    if (!live || pushing || dirty.size === 0) return;
    const now = Date.now();
    let at = Number.POSITIVE_INFINITY;
    for (const room of dirty) at = Math.min(at, dueAt(room));
    if (at <= now) {
      disarm();
      pushing = pushDirty()
        .catch((err) => log.warn({ err }, 'leaderboard updates failed'))
        .finally(() => {
          pushing = undefined;
          schedule();
        });
      return;
    }
    if (timer && timerAt <= at) return;
    disarm();
    timerAt = at;
    timer = setTimeout(() => {
      timer = undefined;
      timerAt = Number.POSITIVE_INFINITY;
      schedule();
    }, at - now);
    timer.unref();
  }

  function disarm() {
    clearTimeout(timer);
    timer = undefined;
    timerAt = Number.POSITIVE_INFINITY;
  }

  /** Pushes each dirty board watched on this node whose second has passed; the others wait. */
  async function pushDirty() {
    const local = io.of('/').adapter.rooms;
    for (const room of [...dirty]) {
      if (!local.has(room)) {
        dirty.delete(room);
        continue;
      }
      // Timers may fire a little early: such a board waits for the next pass.
      if (Date.now() < dueAt(room)) continue;
      dirty.delete(room);
      try {
        const data = await update(room);
        io.local.to(room).emit('leaderboard:update', data);
        // The second counts from once the emit has been written out, so two updates of a board are
        // always a second apart however long each took to compute or write; a change meanwhile
        // marked the board dirty again.
        lastSent.set(room, Date.now());
      } catch (err) {
        log.warn({ err, room }, 'leaderboard update failed; retrying in a second');
        lastSent.set(room, Date.now());
        dirty.add(room);
      }
    }
    const now = Date.now();
    for (const [room, at] of lastSent) if (now - at > 10 * UPDATE_EVERY_MS) lastSent.delete(room);
  }

  /**
   * Called in every transaction that moves someone's score (stats) or visibility. Embedded: the SQL
   * rows are the boards, so watchers hear of it after commit. Production: a job brings the Redis
   * mirror up to date (through the outbox: not lost if the process dies or Redis is down), then
   * tells watchers.
   */
  async function changed(q: Queryable, userId: string) {
    if (mirror) await outbox.add(q, SYNC_JOB, { userId });
    else q.afterCommit(() => signal(userId).catch((err) => log.warn({ err }, 'leaderboard signal failed')));
  }

  return {
    board,

    changed,

    /** In the transaction that paid `userId` these points: the friends they passed on this week's board. */
    passedFriends: (q: Queryable, userId: string, points: number, limit: number) =>
      repo.friendsJustPassed(q, userId, periodKey('week'), points, limit),

    /** A profile's visibility changed: it may join or leave the global boards. */
    async profileChanged(q: Queryable, userId: string) {
      await repo.bumpVersions(q, userId);
      await changed(q, userId);
    },

    /** The sync job: the user's current rows into the mirror (versions keep it monotonic). */
    async sync(userId: string) {
      if (!mirror) return;
      const periods = ['all', periodKey('week')];
      const rows = await repo.mirrorRows(db, userId, periods);
      const exists = rows.length > 0 || (await findUsers(db, [userId])).length > 0;
      if (!exists) {
        // A deleted account: off every board still kept (this week's and the two before).
        const week = 7 * 86400_000;
        const now = clock.now().getTime();
        await mirror.forget(['all', ...[0, 1, 2].map((n) => isoWeek(new Date(now - n * week)))], userId);
        return;
      }
      for (const row of rows) await mirror.apply(row.period, [{ userId, row }]);
      for (const period of periods) if (!(await mirror.built(period))) void rebuild(period);
      await signal(userId);
    },

    /** Live updates on this node: a socket watches a board. */
    rooms: { global: globalRoom, friends: friendsRoom },
    /** Boards another node saw change (its `leaderboards:dirty`). */
    markDirty(rooms: string[]) {
      markDirty(rooms.filter((room) => typeof room === 'string' && room.startsWith('lb:')));
    },
    startLive() {
      live = true;
      schedule();
    },
    stopLive() {
      live = false;
      disarm();
      dirty.clear();
    },
  };
}
