import type { Queryable } from '../../lib/db.js';
import { PUBLIC_USER_COLUMNS, type PublicUserRow } from './users.summary.js';

export interface ProfileRow extends PublicUserRow {
  about: string;
  profileVisibility: 'public' | 'friends' | 'private';
}

/** A user by username, ignoring case (the unique index on lower(username)). */
export async function findByUsername(q: Queryable, username: string): Promise<ProfileRow | undefined> {
  const { rows } = await q.query<ProfileRow>(
    `SELECT ${PUBLIC_USER_COLUMNS}, u.about, u.profile_visibility FROM users u WHERE lower(u.username) = lower($1)`,
    [username],
  );
  return rows[0];
}

/** Which of the two prefix matches found a row; the name arm never repeats a username match. */
export type SearchArm = 'u' | 'n';

export interface SearchRow extends PublicUserRow {
  arm: SearchArm;
  /** lower(username) for the username arm, lower(name) for the name arm. */
  key: string;
}

export interface SearchFilter {
  viewerId: string;
  /** The text to match at the start, LIKE wildcards already escaped with `\`. */
  prefix: string;
  /** Where the username arm stopped on earlier pages. */
  afterUsername?: string;
  /** Where the name arm stopped on earlier pages. */
  afterName?: { key: string; id: string };
  limit: number;
}

/** The order both indexes of 0006_friends.sql keep, in the "C" collation whatever the database's. */
const USERNAME_KEY = `lower(u.username) COLLATE "C"`;
const NAME_KEY = `lower(u.name) COLLATE "C"`;

/**
 * Search is two keyset scans merged: users whose username starts with the text (index
 * users_search_username_idx, in username order) and users whose name does but whose username does
 * not (users_search_name_idx, in (name, id) order). Each arm reads at most `limit` rows past its own
 * cursor; the merge keeps the first `limit`. Each arm's position is carried in the page cursor, so no
 * page ever sorts more than 2 × limit rows, and a user appears once in the whole listing.
 * Exposed so tests can EXPLAIN exactly what runs.
 */
export function searchUsersQuery(f: SearchFilter): { sql: string; params: unknown[] } {
  const params: unknown[] = [];
  const param = (value: unknown, cast: string) => {
    params.push(value);
    return `$${params.length}::${cast}`;
  };
  const viewer = param(f.viewerId, 'uuid');
  const pattern = `${param(f.prefix, 'text')} || '%'`;
  const limit = param(f.limit, 'int');
  const visible = `u.discoverable AND u.id <> ${viewer}
      AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.blocker_id = ${viewer} AND b.blocked_id = u.id)
      AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.blocker_id = u.id AND b.blocked_id = ${viewer})`;
  const usernameMatches = `${USERNAME_KEY} LIKE lower(${pattern}) ESCAPE '\\'`;
  const nameMatches = `${NAME_KEY} LIKE lower(${pattern}) ESCAPE '\\'`;
  const afterU =
    f.afterUsername === undefined ? '' : ` AND ${USERNAME_KEY} > ${param(f.afterUsername, 'text')}`;
  const afterN =
    f.afterName === undefined
      ? ''
      : ` AND (${NAME_KEY}, u.id) > (${param(f.afterName.key, 'text')}, ${param(f.afterName.id, 'uuid')})`;
  const sql = `SELECT id, username, name, avatar_key, arm, key FROM (
    (SELECT ${PUBLIC_USER_COLUMNS}, 'u' AS arm, ${USERNAME_KEY} AS key FROM users u
      WHERE ${usernameMatches}${afterU} AND ${visible}
      ORDER BY ${USERNAME_KEY} LIMIT ${limit})
    UNION ALL
    (SELECT ${PUBLIC_USER_COLUMNS}, 'n' AS arm, ${NAME_KEY} AS key FROM users u
      WHERE ${nameMatches} AND NOT (${usernameMatches})${afterN} AND ${visible}
      ORDER BY ${NAME_KEY}, u.id LIMIT ${limit})
  ) AS found ORDER BY key COLLATE "C", id LIMIT ${limit}`;
  return { sql, params };
}

export async function searchUsers(q: Queryable, f: SearchFilter): Promise<SearchRow[]> {
  const { sql, params } = searchUsersQuery(f);
  return (await q.query<SearchRow>(sql, params)).rows;
}
