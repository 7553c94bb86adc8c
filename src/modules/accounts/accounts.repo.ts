import type { Queryable } from '../../lib/db.js';

export interface UserRow {
  id: string;
  username: string;
  email: string;
  emailVerifiedAt: Date | null;
  passwordHash: string;
  name: string;
  about: string;
  timezone: string;
  dayStartHour: number;
  dailyGoal: number;
  profileVisibility: 'public' | 'friends' | 'private';
  discoverable: boolean;
  maaTone: 'gentle' | 'balanced' | 'strict';
  locale: 'en' | 'hi';
  quietHours: { start: string; end: string } | null;
  avatarKey: string | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface SessionRow {
  id: string;
  userId: string;
  userAgent: string;
  createdAt: Date;
  lastUsedAt: Date;
  expiresAt: Date;
  revokedAt: Date | null;
}

export async function insertUser(
  q: Queryable,
  u: Pick<UserRow, 'id' | 'username' | 'email' | 'passwordHash' | 'name' | 'timezone' | 'createdAt'>,
): Promise<UserRow> {
  const { rows } = await q.query<UserRow>(
    `INSERT INTO users (id, username, email, password_hash, name, timezone, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING *`,
    [u.id, u.username, u.email, u.passwordHash, u.name, u.timezone, u.createdAt],
  );
  return rows[0] as UserRow;
}

export async function findUserById(q: Queryable, id: string): Promise<UserRow | undefined> {
  const { rows } = await q.query<UserRow>('SELECT * FROM users WHERE id = $1', [id]);
  return rows[0];
}

export async function findUserByLogin(q: Queryable, login: string): Promise<UserRow | undefined> {
  const { rows } = await q.query<UserRow>(
    'SELECT * FROM users WHERE lower(email) = lower($1) OR lower(username) = lower($1) LIMIT 1',
    [login],
  );
  return rows[0];
}

export async function findUserByEmail(q: Queryable, email: string): Promise<UserRow | undefined> {
  const { rows } = await q.query<UserRow>('SELECT * FROM users WHERE lower(email) = lower($1)', [email]);
  return rows[0];
}

export async function usernameOrEmailTaken(q: Queryable, username: string, email: string) {
  const { rows } = await q.query<{ username: boolean; email: boolean }>(
    `SELECT bool_or(lower(username) = lower($1)) AS username, bool_or(lower(email) = lower($2)) AS email
     FROM users WHERE lower(username) = lower($1) OR lower(email) = lower($2)`,
    [username, email],
  );
  return { username: rows[0]?.username === true, email: rows[0]?.email === true };
}

export async function updatePasswordHash(q: Queryable, userId: string, passwordHash: string, now: Date) {
  await q.query('UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1', [
    userId,
    passwordHash,
    now,
  ]);
}

export async function markEmailVerified(q: Queryable, userId: string, now: Date) {
  await q.query(
    'UPDATE users SET email_verified_at = coalesce(email_verified_at, $2), updated_at = $2 WHERE id = $1',
    [userId, now],
  );
}

const SETTABLE = {
  name: 'name',
  about: 'about',
  timezone: 'timezone',
  dayStartHour: 'day_start_hour',
  dailyGoal: 'daily_goal',
  profileVisibility: 'profile_visibility',
  discoverable: 'discoverable',
  maaTone: 'maa_tone',
  locale: 'locale',
  quietHours: 'quiet_hours',
  avatarKey: 'avatar_key',
} as const;
export type SettableUserFields = Partial<{ [K in keyof typeof SETTABLE]: UserRow[K] }>;

export async function updateUser(q: Queryable, userId: string, fields: SettableUserFields, now: Date) {
  const sets: string[] = [];
  const params: unknown[] = [userId, now];
  for (const [key, column] of Object.entries(SETTABLE)) {
    const value = fields[key as keyof SettableUserFields];
    if (value === undefined) continue;
    params.push(key === 'quietHours' && value !== null ? JSON.stringify(value) : value);
    sets.push(`${column} = $${params.length}`);
  }
  const { rows } = await q.query<UserRow>(
    `UPDATE users SET ${[...sets, 'updated_at = $2'].join(', ')} WHERE id = $1 RETURNING *`,
    params,
  );
  return rows[0];
}

export async function insertSession(
  q: Queryable,
  s: { id: string; userId: string; userAgent: string; ip: string; now: Date; expiresAt: Date },
) {
  await q.query(
    `INSERT INTO sessions (id, user_id, user_agent, ip, created_at, last_used_at, expires_at)
     VALUES ($1, $2, $3, $4, $5, $5, $6)`,
    [s.id, s.userId, s.userAgent, s.ip, s.now, s.expiresAt],
  );
}

/** The live session behind an access token, with what requests need to know of its user. */
export async function findLiveSession(q: Queryable, sessionId: string, userId: string, now: Date) {
  const { rows } = await q.query<{ emailVerified: boolean; expiresAt: Date }>(
    `SELECT u.email_verified_at IS NOT NULL AS email_verified, s.expires_at
     FROM sessions s JOIN users u ON u.id = s.user_id
     WHERE s.id = $1 AND s.user_id = $2 AND s.revoked_at IS NULL AND s.expires_at > $3`,
    [sessionId, userId, now],
  );
  return rows[0];
}

export async function listLiveSessions(q: Queryable, userId: string, now: Date): Promise<SessionRow[]> {
  const { rows } = await q.query<SessionRow>(
    `SELECT * FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2
     ORDER BY last_used_at DESC LIMIT 100`,
    [userId, now],
  );
  return rows;
}

/** Revokes sessions of a user (all, or one, or all but one); returns the ids it revoked. */
export async function revokeSessions(
  q: Queryable,
  userId: string,
  reason: string,
  now: Date,
  which: { only?: string; except?: string } = {},
): Promise<string[]> {
  const { rows } = await q.query<{ id: string }>(
    `UPDATE sessions SET revoked_at = $2, revoked_reason = $3
     WHERE user_id = $1 AND revoked_at IS NULL
       AND ($4::uuid IS NULL OR id = $4) AND ($5::uuid IS NULL OR id <> $5)
     RETURNING id`,
    [userId, now, reason, which.only ?? null, which.except ?? null],
  );
  return rows.map((r) => r.id);
}

export async function insertRefreshToken(q: Queryable, tokenHash: string, sessionId: string, now: Date) {
  await q.query('INSERT INTO refresh_tokens (token_hash, session_id, created_at) VALUES ($1, $2, $3)', [
    tokenHash,
    sessionId,
    now,
  ]);
}

/** Locks the token's row so two refreshes with the same token are decided one after the other. */
export async function lockRefreshToken(q: Queryable, tokenHash: string) {
  const { rows } = await q.query<{
    sessionId: string;
    rotatedAt: Date | null;
    userId: string;
    revokedAt: Date | null;
    expiresAt: Date;
  }>(
    `SELECT t.session_id, t.rotated_at, s.user_id, s.revoked_at, s.expires_at
     FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id
     WHERE t.token_hash = $1 FOR UPDATE OF t, s`,
    [tokenHash],
  );
  return rows[0];
}

export async function rotateRefreshToken(q: Queryable, tokenHash: string, now: Date) {
  await q.query('UPDATE refresh_tokens SET rotated_at = coalesce(rotated_at, $2) WHERE token_hash = $1', [
    tokenHash,
    now,
  ]);
}

export async function touchSession(q: Queryable, sessionId: string, now: Date, expiresAt: Date) {
  await q.query('UPDATE sessions SET last_used_at = $2, expires_at = $3 WHERE id = $1', [
    sessionId,
    now,
    expiresAt,
  ]);
}

/** Whether the mail carrying this token went out already (a job run again after its completion was lost). */
export async function wasMailed(q: Queryable, tokenHash: string): Promise<boolean> {
  const { rows } = await q.query<{ mailed: boolean }>(
    'SELECT mailed_at IS NOT NULL AS mailed FROM mail_tokens WHERE token_hash = $1',
    [tokenHash],
  );
  return rows[0]?.mailed === true;
}

export async function markMailed(q: Queryable, tokenHash: string, now: Date) {
  await q.query('UPDATE mail_tokens SET mailed_at = $2 WHERE token_hash = $1', [tokenHash, now]);
}

export async function insertMailToken(
  q: Queryable,
  t: {
    tokenHash: string;
    userId: string;
    purpose: 'verify_email' | 'reset_password';
    now: Date;
    expiresAt: Date;
  },
) {
  await q.query(
    `INSERT INTO mail_tokens (token_hash, user_id, purpose, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (token_hash) DO NOTHING`,
    [t.tokenHash, t.userId, t.purpose, t.now, t.expiresAt],
  );
}

/** Uses a mail token once: only an unused, unexpired token of that purpose matches. */
export async function consumeMailToken(
  q: Queryable,
  tokenHash: string,
  purpose: 'verify_email' | 'reset_password',
  now: Date,
): Promise<string | undefined> {
  const { rows } = await q.query<{ userId: string }>(
    `UPDATE mail_tokens SET used_at = $3
     WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3 RETURNING user_id`,
    [tokenHash, purpose, now],
  );
  return rows[0]?.userId;
}

/** After a token works, its siblings of the same purpose stop working too. */
export async function retireMailTokens(
  q: Queryable,
  userId: string,
  purpose: 'verify_email' | 'reset_password',
  now: Date,
) {
  await q.query(
    'UPDATE mail_tokens SET used_at = $3 WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL',
    [userId, purpose, now],
  );
}

export async function findLiveMailToken(
  q: Queryable,
  tokenHash: string,
  purpose: 'verify_email' | 'reset_password',
  now: Date,
): Promise<string | undefined> {
  const { rows } = await q.query<{ userId: string }>(
    'SELECT user_id FROM mail_tokens WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3',
    [tokenHash, purpose, now],
  );
  return rows[0]?.userId;
}

export async function clearAvatar(q: Queryable, userId: string, now: Date): Promise<UserRow | undefined> {
  const { rows } = await q.query<UserRow>(
    'UPDATE users SET avatar_key = NULL, updated_at = $2 WHERE id = $1 RETURNING *',
    [userId, now],
  );
  return rows[0];
}

/**
 * Deletes what no longer proves anything: sessions ended or expired a month ago (with their refresh
 * tokens), rotated refresh tokens past the session lifetime, and mail tokens a week after use or expiry.
 */
export async function pruneAccounts(q: Queryable, now: Date) {
  const monthAgo = new Date(now.getTime() - 30 * 86400_000);
  const weekAgo = new Date(now.getTime() - 7 * 86400_000);
  const sessions = await q.query(
    'DELETE FROM sessions WHERE (revoked_at IS NOT NULL AND revoked_at < $1) OR expires_at < $1',
    [monthAgo],
  );
  const tokens = await q.query('DELETE FROM refresh_tokens WHERE rotated_at < $1', [monthAgo]);
  const mail = await q.query('DELETE FROM mail_tokens WHERE coalesce(used_at, expires_at) < $1', [weekAgo]);
  return { sessions: sessions.rowCount, refreshTokens: tokens.rowCount, mailTokens: mail.rowCount };
}

export async function insertDaySettings(
  q: Queryable,
  userId: string,
  s: { effectiveOn: string; timezone: string; dayStartHour: number },
) {
  // A second change on the same day replaces the first: only the last one takes effect tomorrow.
  await q.query(
    `INSERT INTO day_settings (user_id, effective_on, timezone, day_start_hour) VALUES ($1, $2, $3, $4)
     ON CONFLICT (user_id, effective_on) DO UPDATE SET timezone = EXCLUDED.timezone, day_start_hour = EXCLUDED.day_start_hour`,
    [userId, s.effectiveOn, s.timezone, s.dayStartHour],
  );
}

export async function listDaySettings(q: Queryable, userId: string) {
  const { rows } = await q.query<{ effectiveOn: string; timezone: string; dayStartHour: number }>(
    'SELECT effective_on, timezone, day_start_hour FROM day_settings WHERE user_id = $1 ORDER BY effective_on',
    [userId],
  );
  return rows;
}

/** A user's own account rows, for export. */
export async function exportAccountRows(q: Queryable, userId: string) {
  const sessions = await q.query(
    'SELECT id, user_agent, created_at, last_used_at, expires_at, revoked_at FROM sessions WHERE user_id = $1 ORDER BY created_at',
    [userId],
  );
  const daySettings = await q.query(
    'SELECT effective_on, timezone, day_start_hour FROM day_settings WHERE user_id = $1 ORDER BY effective_on',
    [userId],
  );
  return { sessions: sessions.rows, daySettings: daySettings.rows };
}

export async function deleteUser(q: Queryable, userId: string): Promise<boolean> {
  const { rowCount } = await q.query('DELETE FROM users WHERE id = $1', [userId]);
  return rowCount === 1;
}
