import { type Cache, cachedUntil, versionTokens } from '../../lib/cache.js';
import type { Clock } from '../../lib/clock.js';
import type { Queryable } from '../../lib/db.js';
import type { GroupTask, Member } from './groups.schemas.js';

/**
 * The group reads many people repeat: public discovery pages and member lists, kept fresh by version
 * tokens (`versionTokens` in lib/cache.ts) that every write changing a list bumps after it commits.
 * The Db port awaits afterCommit hooks in tx(), so the writer's own next read is fresh.
 *
 * TTLs stay short anyway: a bump lost while Redis is away is bounded by them, and a discovery entry
 * never outlives the earliest `dueAt` in it (the passage of the due date takes a task out of
 * discovery with no write at all).
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

  const versions = versionTokens(cache, VERSION_TTL_MS);
  const through = <T>(
    key: string,
    compute: (now: Date) => Promise<{ value: T; until: number } | undefined>,
  ) => {
    const now = clock.now();
    return cachedUntil(cache, key, now.getTime(), () => compute(now));
  };

  // The groups (and whether discovery) each open transaction has changed: one bump per key at commit.
  const pending = new WeakMap<Queryable, { groups: Set<string>; discovery: boolean }>();

  return {
    /** Read once per list request, before any chunk: every chunk of the request uses it. */
    discoveryVersion: () => versions.read(DISCOVERY_VERSION),

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
      const v = await versions.read(membersVersion(id));
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
          ...[...registered.groups].map((id) => versions.bump(membersVersion(id))),
          ...(registered.discovery ? [versions.bump(DISCOVERY_VERSION)] : []),
        ]);
      });
    },
  };
}
