/**
 * Sessions this process saw live a moment ago, so an authenticated request does not pay a database
 * round trip for the revocation check (the one on every request: half the work of a task read).
 *
 * Only verified accounts' sessions are kept: an account never goes from verified back to unverified,
 * so a kept entry can only be wrong by the session having ended. Every way a session ends (logout,
 * revocation, refresh-token reuse, a password change or reset, deleting the account) ends it through
 * `Realtime.endSession` / `endUser`, which reach this process at once and every other one through the
 * socket.io adapter (`onAccessEnded`). Should that message be lost (Redis down at that moment), an
 * entry still lives at most `ttlMs`: the bound RELIABILITY.md B2 gives open sockets.
 */
export const SESSION_CACHE_MS = 5_000;
const MAX_ENTRIES = 50_000;

export interface LiveSessions {
  /** Whether this session of this user was seen live and verified within the last `ttlMs`. */
  has(sessionId: string, userId: string): boolean;
  /** Seen live and verified now; `expiresAt` is the session's own end. */
  remember(sessionId: string, userId: string, expiresAt: Date): void;
  forget(ended: { sessionId: string } | { userId: string }): void;
}

export function liveSessions(now: () => number, ttlMs = SESSION_CACHE_MS, max = MAX_ENTRIES): LiveSessions {
  const entries = new Map<string, { userId: string; until: number }>();
  return {
    has(sessionId, userId) {
      const entry = entries.get(sessionId);
      if (!entry) return false;
      if (entry.userId === userId && entry.until > now()) return true;
      entries.delete(sessionId);
      return false;
    },
    remember(sessionId, userId, expiresAt) {
      // Insertion order is age order: when full, the oldest entry goes.
      entries.delete(sessionId);
      entries.set(sessionId, { userId, until: Math.min(now() + ttlMs, expiresAt.getTime()) });
      if (entries.size > max) entries.delete(entries.keys().next().value as string);
    },
    forget(ended) {
      if ('sessionId' in ended) {
        entries.delete(ended.sessionId);
        return;
      }
      // Rare (an account deleted), so a scan beats keeping a second index up to date on every request.
      for (const [id, entry] of entries) if (entry.userId === ended.userId) entries.delete(id);
    },
  };
}
