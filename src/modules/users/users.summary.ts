import { invalid } from '../../lib/errors.js';
import { avatarUrl } from '../accounts/accounts.service.js';
import type { UserSummary } from './users.schemas.js';

/** The columns of a user that any module may show to other people. */
export interface PublicUserRow {
  id: string;
  username: string;
  name: string;
  avatarKey: string | null;
}

/** SQL select list for PublicUserRow from a users table aliased `u`. */
export const PUBLIC_USER_COLUMNS = 'u.id, u.username, u.name, u.avatar_key';

export const summaryMaker =
  (publicUrl: string) =>
  (r: PublicUserRow): UserSummary => ({
    id: r.id,
    username: r.username,
    name: r.name,
    avatarUrl: avatarUrl(publicUrl, r.avatarKey),
  });

export { UUID } from '../../lib/formats.js';
export const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/** Cursors are opaque to clients: base64url JSON of where the previous page ended. */
export const encodeCursor = (payload: unknown) => Buffer.from(JSON.stringify(payload)).toString('base64url');

export const badCursor = () =>
  invalid('invalid_cursor', 'The cursor is not one this list handed out (or was for other filters).', [
    { field: 'query/cursor', message: 'is invalid' },
  ]);

/** The decoded cursor if `check` accepts it; a 400 invalid_cursor otherwise. */
export function decodeCursor<T>(cursor: string, check: (value: unknown) => value is T): T {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    value = undefined;
  }
  if (value === undefined || value === null || typeof value !== 'object' || !check(value)) throw badCursor();
  return value;
}

export const isString = (v: unknown): v is string => typeof v === 'string';
export const isInstant = (v: unknown): v is string =>
  typeof v === 'string' && ISO.test(v) && !Number.isNaN(new Date(v).getTime());
