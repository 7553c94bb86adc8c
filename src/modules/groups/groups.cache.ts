import { randomUUID } from 'node:crypto';
import type { Cache } from '../../lib/cache.js';
import type { Clock } from '../../lib/clock.js';
import type { Queryable } from '../../lib/db.js';
import type { GroupTask, Member } from './groups.schemas.js';

/**
 * The group reads many people repeat: public discovery pages and member lists.
 *
 * Invalidation is by version, not by deleting entries. Each entry's key carries a version token read
 * from the cache *before* the database is read; every write that changes a list replaces the token
 * with a fresh random one *after* its transaction commits (the Db port's afterCommit, awaited by tx(),
 * so the writer's next read is fresh). A plain delete-after-commit has a hole: a reader that queried
 * just before the commit can store the old rows just after the delete, and they would be served until
 * the TTL. Here that late reader stores them under the old token, which nobody reads again: a
 * token that is still current was written after every committed-and-bumped write, so whatever was
 * read under it is at least that new. A missing token (never set, evicted, flushed) becomes a fresh
 * random one, never a fixed default that could revive entries cached under it earlier. With Redis
 * (production) every process shares the tokens, so one process's write is every process's miss.
 *
 * TTLs stay short anyway: a bump lost while Redis is away is bounded by them, and a discovery entry
 * never outlives the earliest `dueAt` in it (the passage of the due date takes a task out of
 * discovery with no write at all). Ends are kept on the injected clock, like stats: the cache's own
 * TTL runs on the wall clock (or Redis's).
 */
export const DISCOVERY_TTL_MS = 60_000;
export const MEMBERS_TTL_MS = 60_000;
// Longer than any entry: a token that expires only costs one miss.
const VERSION_TTL_MS = 24 * 3600_000;

const DISCOVERY_VERSION = 'groups:v1:discovery:version';
const membersVersion = (groupId: string) => `groups:v1:members:version:${groupId}`;

/** What a member list entry holds: the same for everyone (no caller, no "am I in it"). */
export interface MembersEntry {
  visibility: 'public' | 'private';
  items: Member[];
}

export interface ChunkQuery {
  q?: string | undefined;
  after?: { createdAt: Date; id: string } | undefined;
  size: number;
}

export type GroupsCache = ReturnType<typeof makeGroupsCache>;

export function makeGroupsCache(deps: { cache: Cache; clock: Clock }) {
  const { cache, clock } = deps;

  async function version(key: string): Promise<string> {
    const current = await cache.get<unknown>(key);
    if (typeof current === 'string') return current;
    const fresh = randomUUID();
    await cache.set(key, fresh, VERSION_TTL_MS);
    return fresh;
  }

  const bump = (key: string) => cache.set(key, randomUUID(), VERSION_TTL_MS);

  /** The entry under `key` if it has not ended on the injected clock, or computed and stored. */
  async function through<T>(
    key: string,
    compute: (now: Date) => Promise<{ value: T; until: number } | undefined>,
  ): Promise<T | undefined> {
    const now = clock.now();
    const hit = await cache.get<{ value: T; until: number }>(key);
    if (hit && typeof hit.until === 'number' && hit.until > now.getTime()) return hit.value;
    const fresh = await compute(now);
    if (!fresh) return undefined;
    const ttl = fresh.until - now.getTime();
    if (ttl > 0) await cache.set(key, { value: fresh.value, until: fresh.until }, ttl);
    return fresh.value;
  }

  // The groups (and whether discovery) each open transaction has changed: one bump per key at commit.
  const pending = new WeakMap<Queryable, { groups: Set<string>; discovery: boolean }>();

  return {
    /** Read once per list request, before any chunk: every chunk of the request uses it. */
    discoveryVersion: () => version(DISCOVERY_VERSION),

    /**
     * One shared slice of public discovery (public, open, not yet due, newest first), the same for
     * every caller: the per-caller part (leaving out what I am in) is applied by the service after.
     * It ends at the earliest `dueAt` it holds, so a task never shows in discovery past its due time.
     */
    async discoveryChunk(
      version: string,
      query: ChunkQuery,
      compute: (now: Date) => Promise<GroupTask[]>,
    ): Promise<GroupTask[]> {
      const after = query.after ? `${query.after.createdAt.toISOString()}/${query.after.id}` : '-';
      // The search text last and JSON-quoted: no two queries share a key.
      const key = `groups:v1:discovery:${version}:${query.size}:${after}:${JSON.stringify(query.q ?? null)}`;
      const value = await through(key, async (now) => {
        const items = await compute(now);
        let until = now.getTime() + DISCOVERY_TTL_MS;
        for (const g of items) until = Math.min(until, Date.parse(g.dueAt));
        return { value: items, until };
      });
      return value ?? [];
    },

    /** A group's members in one order, with its visibility; undefined (not cached) for no such group. */
    async members(
      groupId: string,
      order: 'joined' | 'rank',
      compute: () => Promise<MembersEntry | undefined>,
    ): Promise<MembersEntry | undefined> {
      const id = groupId.toLowerCase();
      const v = await version(membersVersion(id));
      return through(`groups:v1:members:${v}:${id}:${order}`, async (now) => {
        const entry = await compute();
        return entry && { value: entry, until: now.getTime() + MEMBERS_TTL_MS };
      });
    },

    /**
     * Call in the transaction of every write that changes a group's members (who, role, completion,
     * rank) or the group itself; `discovery` when the group is or was public (private ones never
     * appear there). The versions are bumped once the transaction commits.
     */
    changed(q: Queryable, groupId: string, opts: { discovery: boolean }) {
      let entry = pending.get(q);
      const first = !entry;
      entry ??= { groups: new Set(), discovery: false };
      pending.set(q, entry);
      entry.groups.add(groupId.toLowerCase());
      entry.discovery ||= opts.discovery;
      if (!first) return;
      const registered = entry;
      q.afterCommit(() => {
        pending.delete(q);
        return Promise.all([
          ...[...registered.groups].map((id) => bump(membersVersion(id))),
          ...(registered.discovery ? [bump(DISCOVERY_VERSION)] : []),
        ]);
      });
    },
  };
}
