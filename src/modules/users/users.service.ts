import type { Db } from '../../lib/db.js';
import { notFound } from '../../lib/errors.js';
import type { BadgesService } from '../badges/badges.service.js';
import type { DailiesService } from '../dailies/dailies.service.js';
import type { FriendsService } from '../friends/friends.service.js';
import type { StatsService } from '../stats/stats.service.js';
import * as repo from './users.repo.js';
import type { Profile, SearchUsersQuery, UserList } from './users.schemas.js';
import { badCursor, decodeCursor, encodeCursor, isString, summaryMaker, UUID } from './users.summary.js';

const USERNAME = /^[A-Za-z0-9_.]{3,30}$/;

// LIKE's wildcards and its escape character are plain characters in a search.
const escapeLike = (text: string) => text.replace(/[\\%_]/g, (c) => `\\${c}`);

interface SearchCursor {
  /** The query the cursor belongs to. */
  q: string;
  /** Last username key read by the username arm, if it read any yet. */
  u?: string;
  /** Last (name key, id) read by the name arm, if it read any yet. */
  n?: [string, string];
}

const isSearchCursor = (v: unknown): v is SearchCursor => {
  const c = v as Record<string, unknown>;
  const n = c.n as unknown[] | undefined;
  return (
    isString(c.q) &&
    (c.u === undefined || isString(c.u)) &&
    (n === undefined ||
      (Array.isArray(n) && n.length === 2 && isString(n[0]) && isString(n[1]) && UUID.test(n[1])))
  );
};

export type UsersService = ReturnType<typeof makeUsersService>;

export function makeUsersService(deps: {
  db: Db;
  friends: Pick<FriendsService, 'relation'>;
  stats: Pick<StatsService, 'score'>;
  dailies: Pick<DailiesService, 'stats'>;
  badges: Pick<BadgesService, 'of'>;
  publicUrl: string;
}) {
  const { db, friends } = deps;
  const toSummary = summaryMaker(deps.publicUrl);

  return {
    /**
     * Discoverable people whose username or name starts with `q`, ignoring case: never the viewer,
     * nobody the viewer blocked and nobody who blocked the viewer. Username matches and name matches
     * are merged in one order (the matched text, then id); see users.repo.ts searchUsersQuery.
     */
    async search(viewerId: string, query: SearchUsersQuery): Promise<UserList> {
      const text = query.q.trim();
      const limit = query.limit ?? 20;
      const cursor = query.cursor ? decodeCursor(query.cursor, isSearchCursor) : undefined;
      if (cursor && cursor.q !== text) throw badCursor();
      const rows = await repo.searchUsers(db, {
        viewerId,
        prefix: escapeLike(text),
        ...(cursor?.u !== undefined ? { afterUsername: cursor.u } : {}),
        ...(cursor?.n !== undefined ? { afterName: { key: cursor.n[0], id: cursor.n[1] } } : {}),
        limit: limit + 1,
      });
      const page = rows.slice(0, limit);
      if (rows.length <= limit) return { items: page.map(toSummary), nextCursor: null };
      // Each arm resumes after the last row of its own that this page showed.
      const next: SearchCursor = { q: text, ...cursor };
      for (const r of page) {
        if (r.arm === 'u') next.u = r.key;
        else next.n = [r.key, r.id];
      }
      return { items: page.map(toSummary), nextCursor: encodeCursor(next) };
    },

    /**
     * A profile by username (ignoring case). Everyone who can see the person gets the summary and the
     * relationship; the rest (about, badges, score, streaks) follows the owner's visibility: public,
     * friends (the viewer is a friend) or private; the owner always sees it all. A person who blocked
     * the viewer, or whom the viewer blocked, does not exist for the viewer (404).
     */
    async profile(viewerId: string, username: string): Promise<Profile> {
      if (!USERNAME.test(username)) throw notFound('user');
      const row = await repo.findByUsername(db, username);
      if (!row) throw notFound('user');
      const own = row.id === viewerId;
      const rel = own ? undefined : await friends.relation(viewerId, row.id);
      if (rel?.blocked) throw notFound('user');
      const profile: Profile = { ...toSummary(row), relationship: null };
      if (rel) {
        profile.relationship = { isFriend: rel.isFriend, request: rel.pendingRequest?.direction ?? null };
      }
      const full =
        own ||
        row.profileVisibility === 'public' ||
        (row.profileVisibility === 'friends' && rel?.isFriend === true);
      if (!full) return profile;
      const [score, stats, badges] = await Promise.all([
        deps.stats.score(row.id),
        deps.dailies.stats(row.id),
        deps.badges.of(row.id),
      ]);
      return {
        ...profile,
        about: row.about,
        badges,
        score,
        currentStreak: stats.currentStreak,
        longestStreak: stats.longestStreak,
      };
    },
  };
}
