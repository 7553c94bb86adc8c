import { createHash, createHmac, randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { uuidv7 } from 'uuidv7';
import type { Config } from '../../config.js';
import type { SessionCheck } from '../../lib/auth.js';
import type { Clock } from '../../lib/clock.js';
import { DayCalendar } from '../../lib/day-history.js';
import { addDays, type DaySettings, logicalDate } from '../../lib/days.js';
import type { Db, Queryable } from '../../lib/db.js';
import { AppError, conflict, invalid, notFound, tooManyRequests, unauthorized } from '../../lib/errors.js';
import { ImageError, reencode, sniffImage } from '../../lib/images.js';
import type { Outbox } from '../../lib/outbox.js';
import type { RateLimiter } from '../../lib/ratelimit.js';
import { type FileStorage, newKey } from '../../lib/storage.js';
import { canonicalTimeZone } from '../../lib/time.js';
import type { AccessTokens, Principal } from '../../lib/tokens.js';
import type { Realtime } from '../../realtime/port.js';
import type { LeaderboardsService } from '../leaderboards/leaderboards.service.js';
import type { StatsService } from '../stats/stats.service.js';
import {
  dummyHash,
  hashPassword,
  needsRehash,
  normalizePassword,
  passwordProblem,
  verifyPassword,
} from './accounts.passwords.js';
import type { UserRow } from './accounts.repo.js';
import * as repo from './accounts.repo.js';
import type { AuthResult, Me, UpdateMe } from './accounts.schemas.js';
import { liveSessions } from './accounts.sessions.js';

export const SEND_MAIL_JOB = 'accounts.send_mail';
const AVATARS = 'avatars';
export const AVATAR_MAX_BYTES = 5 * 1024 * 1024;
export type MailPurpose = 'verify_email' | 'reset_password';

const SESSION_DAYS = 30;
const MAIL_TOKEN_TTL_MS: Record<MailPurpose, number> = {
  verify_email: 24 * 3600_000,
  reset_password: 3600_000,
};
// Two tabs refreshing with the same token at once is a race, not a theft: within this window the
// loser gets a fresh token of the same session instead of revoking it.
const REFRESH_GRACE_MS = 10_000;
const LIMITS = {
  loginPerAccount: { max: 10, windowMs: 15 * 60_000 },
  mailPerAccount: { max: 3, windowMs: 3600_000 },
  changePasswordPerUser: { max: 5, windowMs: 15 * 60_000 },
};

export interface RequestContext {
  ip: string;
  userAgent: string;
}

export const sha256 = (value: string) => createHash('sha256').update(value).digest('hex');
const randomToken = () => randomBytes(32).toString('base64url');

/** Where an avatar is served (GET /v1/avatars/:file); every module that shows a person uses this. */
export function avatarUrl(publicUrl: string, key: string | null): string | null {
  return key ? `${publicUrl}/v1/avatars/${key.slice(AVATARS.length + 1)}` : null;
}

export type AccountsService = ReturnType<typeof makeAccountsService>;

export function makeAccountsService(deps: {
  db: Db;
  clock: Clock;
  outbox: Outbox;
  rateLimiter: RateLimiter;
  realtime: Realtime;
  tokens: AccessTokens;
  log: Logger;
  storage: FileStorage;
  stats: Pick<StatsService, 'changed'>;
  boards: Pick<LeaderboardsService, 'profileChanged'>;
  config: Pick<Config, 'ACCESS_TOKEN_SECRET' | 'RATE_LIMIT_MULTIPLIER' | 'PUBLIC_URL' | 'APP_URL'>;
}) {
  const { db, clock, outbox, realtime, tokens, config } = deps;

  const toMe = (u: UserRow): Me => ({
    id: u.id,
    username: u.username,
    email: u.email,
    emailVerified: u.emailVerifiedAt !== null,
    name: u.name,
    about: u.about,
    avatarUrl: avatarUrl(config.PUBLIC_URL, u.avatarKey),
    timezone: u.timezone,
    dayStartHour: u.dayStartHour,
    dailyGoal: u.dailyGoal,
    profileVisibility: u.profileVisibility,
    discoverable: u.discoverable,
    maaTone: u.maaTone,
    locale: u.locale,
    quietHours: u.quietHours,
    createdAt: u.createdAt.toISOString(),
  });

  /** A per-account budget; false when spent. Half the budget survives a Redis outage. */
  const withinBudget = async (key: string, limit: { max: number; windowMs: number }) => {
    if (config.RATE_LIMIT_MULTIPLIER === 0) return { allowed: true, resetMs: 0 };
    const max = Math.max(1, Math.floor(limit.max * config.RATE_LIMIT_MULTIPLIER));
    return deps.rateLimiter.hit(key, max, limit.windowMs, { onStoreFailure: 0.5 });
  };

  // Mail tokens are derived from the job's request id, so a retried job sends the same link and the
  // raw token is never stored anywhere, not even in the outbox.
  const mailToken = (purpose: MailPurpose, requestId: string) =>
    createHmac('sha256', config.ACCESS_TOKEN_SECRET)
      .update(`mail:${purpose}:${requestId}`)
      .digest('base64url');

  const queueMail = (q: Parameters<Outbox['add']>[0], userId: string, purpose: MailPurpose) =>
    outbox.add(q, SEND_MAIL_JOB, { userId, purpose, requestId: uuidv7() });

  async function startSession(user: UserRow, ctx: RequestContext): Promise<AuthResult> {
    const now = clock.now();
    const sessionId = uuidv7();
    const refreshToken = randomToken();
    await db.tx(async (tx) => {
      await repo.insertSession(tx, {
        id: sessionId,
        userId: user.id,
        userAgent: ctx.userAgent.slice(0, 200),
        ip: ctx.ip,
        now,
        expiresAt: new Date(now.getTime() + SESSION_DAYS * 86400_000),
      });
      await repo.insertRefreshToken(tx, sha256(refreshToken), sessionId, now);
    });
    const access = tokens.sign({ userId: user.id, sessionId });
    return { accessToken: access.token, expiresIn: access.expiresIn, refreshToken, user: toMe(user) };
  }

  function checkNewPassword(password: string, user: { username: string; email: string }) {
    const problem = passwordProblem(normalizePassword(password), [
      user.username,
      user.email,
      user.email.split('@')[0] ?? '',
    ]);
    if (!problem) return;
    const messages = {
      password_too_short: 'Use at least 8 characters.',
      password_too_long: 'Use at most 128 characters.',
      password_too_common: 'That password is too easy to guess; choose another.',
    };
    throw invalid(problem, messages[problem], [{ field: 'body/password', message: messages[problem] }]);
  }

  async function calendarOf(q: Queryable, userId: string): Promise<DayCalendar> {
    const changes = await repo.listDaySettings(q, userId);
    if (changes.length === 0) throw notFound('user');
    return new DayCalendar(changes);
  }

  const live = liveSessions(() => clock.now().getTime());
  realtime.onAccessEnded((ended) => live.forget(ended));
  const sessionCheck: SessionCheck = {
    async lookup({ sessionId, userId }: Principal) {
      if (live.has(sessionId, userId)) return { emailVerified: true };
      const row = await repo.findLiveSession(db, sessionId, userId, clock.now());
      if (row?.emailVerified) live.remember(sessionId, userId, row.expiresAt);
      return row ? { emailVerified: row.emailVerified } : null;
    },
  };

  return {
    sessionCheck,
    toMe,

    async register(input: {
      username: string;
      email: string;
      password: string;
      name?: string;
      timezone?: string;
    }): Promise<Me> {
      const timezone = input.timezone === undefined ? 'UTC' : canonicalTimeZone(input.timezone);
      if (!timezone)
        throw invalid('invalid_timezone', 'Unknown time zone.', [
          { field: 'body/timezone', message: 'is not an IANA time zone' },
        ]);
      checkNewPassword(input.password, input);
      const taken = await repo.usernameOrEmailTaken(db, input.username, input.email);
      if (taken.username) throw conflict('username_taken', 'That username is taken.');
      if (taken.email)
        throw conflict('email_taken', 'An account with that email exists; sign in or reset the password.');
      const passwordHash = await hashPassword(input.password);
      const now = clock.now();
      try {
        const user = await db.tx(async (tx) => {
          const created = await repo.insertUser(tx, {
            id: uuidv7(),
            username: input.username,
            email: input.email,
            passwordHash,
            name: (input.name ?? '').trim(),
            timezone,
            createdAt: now,
          });
          await repo.insertDaySettings(tx, created.id, {
            effectiveOn: logicalDate(now, { timezone, dayStartHour: created.dayStartHour }),
            timezone,
            dayStartHour: created.dayStartHour,
          });
          await queueMail(tx, created.id, 'verify_email');
          return created;
        });
        return toMe(user);
      } catch (err) {
        // Two registrations racing for the same name: the unique index decides.
        if ((err as { code?: string }).code === '23505') {
          const detail = String(
            (err as { constraint?: string; detail?: string }).constraint ?? (err as Error).message,
          );
          if (detail.includes('username')) throw conflict('username_taken', 'That username is taken.');
          throw conflict('email_taken', 'An account with that email exists; sign in or reset the password.');
        }
        throw err;
      }
    },

    async verifyEmail(token: string) {
      const now = clock.now();
      const ok = await db.tx(async (tx) => {
        const userId = await repo.consumeMailToken(tx, sha256(token), 'verify_email', now);
        if (!userId) return false;
        await repo.markEmailVerified(tx, userId, now);
        await repo.retireMailTokens(tx, userId, 'verify_email', now);
        return true;
      });
      if (!ok) throw invalid('invalid_token', 'This link is invalid, used or expired; ask for a new one.');
    },

    /** Always succeeds from the caller's view, so it cannot tell who has an account. */
    async resendVerification(email: string) {
      const user = await repo.findUserByEmail(db, email);
      if (!user || user.emailVerifiedAt) return;
      if (!(await withinBudget(`mail:verify:${user.id}`, LIMITS.mailPerAccount)).allowed) return;
      await queueMail(db, user.id, 'verify_email');
    },

    async forgotPassword(email: string) {
      const user = await repo.findUserByEmail(db, email);
      if (!user) return;
      if (!(await withinBudget(`mail:reset:${user.id}`, LIMITS.mailPerAccount)).allowed) return;
      await queueMail(db, user.id, 'reset_password');
    },

    async login(input: { login: string; password: string }, ctx: RequestContext): Promise<AuthResult> {
      // Counted per login name, known or not, before any hashing: guessing one account's password
      // from many addresses is throttled, and an unknown name looks the same as a known one.
      const budget = await withinBudget(`login:acct:${input.login.toLowerCase()}`, LIMITS.loginPerAccount);
      if (!budget.allowed) throw tooManyRequests(Math.ceil(budget.resetMs / 1000));
      const user = await repo.findUserByLogin(db, input.login);
      const ok = await verifyPassword(user?.passwordHash ?? (await dummyHash()), input.password);
      if (!user || !ok) throw unauthorized('invalid_credentials', 'Wrong login or password.');
      if (needsRehash(user.passwordHash)) {
        await repo.updatePasswordHash(db, user.id, await hashPassword(input.password), clock.now());
      }
      return startSession(user, ctx);
    },

    async refresh(refreshToken: string): Promise<AuthResult> {
      const now = clock.now();
      const outcome = await db.tx(async (tx) => {
        const row = await repo.lockRefreshToken(tx, sha256(refreshToken));
        if (!row || row.revokedAt || row.expiresAt <= now) return { kind: 'invalid' as const };
        if (row.rotatedAt && now.getTime() - row.rotatedAt.getTime() > REFRESH_GRACE_MS) {
          await repo.revokeSessions(tx, row.userId, 'refresh_token_reused', now, { only: row.sessionId });
          tx.afterCommit(() => realtime.endSession(row.sessionId));
          return { kind: 'reused' as const, userId: row.userId, sessionId: row.sessionId };
        }
        await repo.rotateRefreshToken(tx, sha256(refreshToken), now);
        const next = randomToken();
        await repo.insertRefreshToken(tx, sha256(next), row.sessionId, now);
        await repo.touchSession(tx, row.sessionId, now, new Date(now.getTime() + SESSION_DAYS * 86400_000));
        const user = await repo.findUserById(tx, row.userId);
        return { kind: 'ok' as const, next, sessionId: row.sessionId, user: user as UserRow };
      });
      if (outcome.kind === 'invalid') throw unauthorized('invalid_refresh_token', 'Sign in again.');
      if (outcome.kind === 'reused') {
        deps.log.warn(
          { userId: outcome.userId, sessionId: outcome.sessionId },
          'refresh token reused; session revoked',
        );
        throw unauthorized('refresh_token_reused', 'This sign-in was ended for safety; sign in again.');
      }
      const access = tokens.sign({ userId: outcome.user.id, sessionId: outcome.sessionId });
      return {
        accessToken: access.token,
        expiresIn: access.expiresIn,
        refreshToken: outcome.next,
        user: toMe(outcome.user),
      };
    },

    /** Ends the session named by the access token or, failing that, by the refresh token. */
    async logout(by: { principal?: Principal | null; refreshToken?: string }) {
      const now = clock.now();
      await db.tx(async (tx) => {
        let target: { userId: string; sessionId: string } | undefined;
        if (by.principal) target = { userId: by.principal.userId, sessionId: by.principal.sessionId };
        else if (by.refreshToken) {
          const row = await repo.lockRefreshToken(tx, sha256(by.refreshToken));
          if (row) target = { userId: row.userId, sessionId: row.sessionId };
        }
        if (!target) return;
        const ended = await repo.revokeSessions(tx, target.userId, 'logout', now, { only: target.sessionId });
        for (const id of ended) tx.afterCommit(() => realtime.endSession(id));
      });
    },

    async listSessions(principal: Principal) {
      const rows = await repo.listLiveSessions(db, principal.userId, clock.now());
      return {
        items: rows.map((s) => ({
          id: s.id,
          current: s.id === principal.sessionId,
          createdAt: s.createdAt.toISOString(),
          lastUsedAt: s.lastUsedAt.toISOString(),
          userAgent: s.userAgent,
        })),
        nextCursor: null,
      };
    },

    async revokeSession(principal: Principal, sessionId: string) {
      const ended = await db.tx(async (tx) => {
        const ids = await repo.revokeSessions(tx, principal.userId, 'revoked', clock.now(), {
          only: sessionId,
        });
        for (const id of ids) tx.afterCommit(() => realtime.endSession(id));
        return ids;
      });
      if (ended.length === 0) throw notFound('session');
    },

    async resetPassword(token: string, password: string) {
      const now = clock.now();
      const tokenHash = sha256(token);
      // Looked up before hashing the new password, so a bad token costs no argon2 time.
      const holder = await repo.findLiveMailToken(db, tokenHash, 'reset_password', now);
      const user = holder ? await repo.findUserById(db, holder) : undefined;
      if (!user) throw invalid('invalid_token', 'This link is invalid, used or expired; ask for a new one.');
      checkNewPassword(password, user);
      const passwordHash = await hashPassword(password);
      const ended = await db.tx(async (tx) => {
        const userId = await repo.consumeMailToken(tx, tokenHash, 'reset_password', now);
        if (userId !== user.id) return null;
        await repo.updatePasswordHash(tx, user.id, passwordHash, now);
        await repo.retireMailTokens(tx, user.id, 'reset_password', now);
        // Whoever could read the mail could reset: the address is proven too.
        await repo.markEmailVerified(tx, user.id, now);
        const ids = await repo.revokeSessions(tx, user.id, 'password_reset', now);
        for (const id of ids) tx.afterCommit(() => realtime.endSession(id));
        return ids;
      });
      if (!ended) throw invalid('invalid_token', 'This link is invalid, used or expired; ask for a new one.');
    },

    async changePassword(principal: Principal, currentPassword: string, password: string) {
      const budget = await withinBudget(`password:change:${principal.userId}`, LIMITS.changePasswordPerUser);
      if (!budget.allowed) throw tooManyRequests(Math.ceil(budget.resetMs / 1000));
      const user = await repo.findUserById(db, principal.userId);
      if (!user) throw unauthorized();
      if (!(await verifyPassword(user.passwordHash, currentPassword))) {
        throw invalid('current_password_incorrect', 'The current password is not right.', [
          { field: 'body/currentPassword', message: 'is not right' },
        ]);
      }
      checkNewPassword(password, user);
      const passwordHash = await hashPassword(password);
      const now = clock.now();
      await db.tx(async (tx) => {
        await repo.updatePasswordHash(tx, user.id, passwordHash, now);
        const ids = await repo.revokeSessions(tx, user.id, 'password_changed', now, {
          except: principal.sessionId,
        });
        for (const id of ids) tx.afterCommit(() => realtime.endSession(id));
      });
    },

    /**
     * Confirms a dangerous action with the password (same budget as a password change); returns the
     * user row the caller goes on to act on.
     */
    async confirmPassword(principal: Principal, password: string): Promise<UserRow> {
      const budget = await withinBudget(`password:confirm:${principal.userId}`, LIMITS.changePasswordPerUser);
      if (!budget.allowed) throw tooManyRequests(Math.ceil(budget.resetMs / 1000));
      const user = await repo.findUserById(db, principal.userId);
      if (!user) throw unauthorized();
      if (!(await verifyPassword(user.passwordHash, password))) {
        throw invalid('current_password_incorrect', 'The password is not right.', [
          { field: 'body/password', message: 'is not right' },
        ]);
      }
      return user;
    },

    /** Removes the user row; every table that references it cascades (see test/fk-policies.test.ts). */
    deleteUserRow: (q: Queryable, userId: string) => repo.deleteUser(q, userId),

    async exportFor(userId: string) {
      return { account: await this.getMe(userId), ...(await repo.exportAccountRows(db, userId)) };
    },

    async getMe(userId: string, q: Queryable = db): Promise<Me> {
      const user = await repo.findUserById(q, userId);
      if (!user) throw notFound('user');
      return toMe(user);
    },

    async updateMe(userId: string, patch: UpdateMe): Promise<Me> {
      let timezone: string | undefined;
      if (patch.timezone !== undefined) {
        timezone = canonicalTimeZone(patch.timezone) ?? undefined;
        if (!timezone) {
          throw invalid('invalid_timezone', 'Unknown time zone.', [
            { field: 'body/timezone', message: 'is not an IANA time zone' },
          ]);
        }
      }
      const fields: repo.SettableUserFields = {
        ...patch,
        ...(timezone ? { timezone } : {}),
        ...(patch.name !== undefined ? { name: patch.name.trim() } : {}),
      };
      const now = clock.now();
      const user = await db.tx(async (tx) => {
        const before = await repo.findUserById(tx, userId);
        if (!before) return undefined;
        const updated = await repo.updateUser(tx, userId, fields, now);
        if (updated && updated.profileVisibility !== before.profileVisibility)
          await deps.boards.profileChanged(tx, userId);
        if (
          patch.dailyGoal !== undefined ||
          patch.timezone !== undefined ||
          patch.dayStartHour !== undefined
        ) {
          deps.stats.changed(tx, userId);
        }
        if (
          updated &&
          (updated.timezone !== before.timezone || updated.dayStartHour !== before.dayStartHour)
        ) {
          // Today keeps the boundaries it started with; the new ones apply from tomorrow.
          const today = (await calendarOf(tx, userId)).dateOf(now);
          await repo.insertDaySettings(tx, userId, {
            effectiveOn: addDays(today, 1),
            timezone: updated.timezone,
            dayStartHour: updated.dayStartHour,
          });
        }
        return updated;
      });
      if (!user) throw notFound('user');
      return toMe(user);
    },

    /** Stores a re-encoded square copy of the upload; the old file goes once the new one is in place. */
    async setAvatar(userId: string, upload: Buffer): Promise<Me> {
      const kind = sniffImage(upload);
      if (kind !== 'png' && kind !== 'jpeg' && kind !== 'webp') {
        throw new AppError(415, 'unsupported_image', 'Send a PNG, JPEG or WebP image.');
      }
      let image: Buffer;
      try {
        image = (await reencode(upload, { maxSide: 512, cover: true, format: 'webp' })).data;
      } catch (err) {
        if (err instanceof ImageError) throw invalid('invalid_image', 'That image could not be read.');
        throw err;
      }
      const key = newKey(AVATARS, 'webp');
      await deps.storage.put(key, image);
      const before = await repo.findUserById(db, userId);
      const user = await repo.updateUser(db, userId, { avatarKey: key }, clock.now());
      if (!user) {
        await deps.storage.delete(key);
        throw notFound('user');
      }
      if (before?.avatarKey) await deps.storage.delete(before.avatarKey);
      return toMe(user);
    },

    async deleteAvatar(userId: string): Promise<Me> {
      const before = await repo.findUserById(db, userId);
      if (!before) throw notFound('user');
      const user = await repo.clearAvatar(db, userId, clock.now());
      if (before.avatarKey) await deps.storage.delete(before.avatarKey);
      return toMe(user ?? before);
    },

    /** An avatar by its public file name, or null. */
    avatar: (file: string) => deps.storage.get(`${AVATARS}/${file}`),

    prune: () => repo.pruneAccounts(db, clock.now()),

    /** A user's days over time; `q` lets a caller read it inside its transaction. */
    dayCalendar: (userId: string, q: Queryable = db) => calendarOf(q, userId),

    /** The settings that define today's boundaries for a user. */
    async daySettings(userId: string, q: Queryable = db): Promise<DaySettings> {
      const calendar = await calendarOf(q, userId);
      return calendar.settingsOn(calendar.dateOf(clock.now()));
    },

    /** The job behind every account mail: idempotent, as a retried job sends the same link. */
    async sendAccountMail(
      payload: { userId: string; purpose: MailPurpose; requestId: string },
      send: (user: UserRow, link: string) => Promise<void>,
    ) {
      const user = await repo.findUserById(db, payload.userId);
      if (!user) return;
      if (payload.purpose === 'verify_email' && user.emailVerifiedAt) return;
      const token = mailToken(payload.purpose, payload.requestId);
      const tokenHash = sha256(token);
      const now = clock.now();
      await repo.insertMailToken(db, {
        tokenHash,
        userId: user.id,
        purpose: payload.purpose,
        now,
        expiresAt: new Date(now.getTime() + MAIL_TOKEN_TTL_MS[payload.purpose]),
      });
      // Sent once: a run after a failed send sends the same link; a run after a sent one, nothing. Only
      // a process dying between the send and the mark can still send it twice.
      if (await repo.wasMailed(db, tokenHash)) return;
      const path = payload.purpose === 'verify_email' ? 'verify-email' : 'reset-password';
      await send(user, `${config.APP_URL}/${path}?token=${token}`);
      await repo.markMailed(db, tokenHash, clock.now());
    },
  };
}
