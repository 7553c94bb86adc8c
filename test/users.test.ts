import { randomBytes, randomUUID } from 'node:crypto';
import { Value } from '@sinclair/typebox/value';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { searchUsersQuery } from '../src/modules/users/users.repo.js';
import { Profile, UserList } from '../src/modules/users/users.schemas.js';
import { aUser, signIn, startTestApp, type TestApp } from './helpers.js';

// Search and profiles through HTTP on a real database, in both lanes. Each test searches for names
// under a prefix of its own, so other tests' people never show up in its results.
let t: TestApp;

beforeAll(async () => {
  t = await startTestApp({ env: { RATE_LIMIT_MULTIPLIER: '0' } });
});
afterAll(() => t?.close());

type Caller = { userId: string; username: string; headers: Record<string, string> };

const prefix = () => `q${randomBytes(3).toString('hex')}`;

async function person(
  o: {
    username?: string;
    name?: string;
    verified?: boolean;
    discoverable?: boolean;
    visibility?: string;
  } = {},
): Promise<Caller> {
  const user = await aUser(t.deps, {
    ...(o.username ? { username: o.username } : {}),
    ...(o.name !== undefined ? { name: o.name } : {}),
    ...(o.verified === false ? { verified: false } : {}),
  });
  if (o.discoverable === false || o.visibility) {
    await t.deps.db.query(
      'UPDATE users SET discoverable = coalesce($2, discoverable), profile_visibility = coalesce($3, profile_visibility) WHERE id = $1',
      [user.id, o.discoverable ?? null, o.visibility ?? null],
    );
  }
  return { ...(await signIn(t.deps, user.id)), username: user.username };
}

const get = (who: Caller | null, url: string) =>
  t.app.inject({ method: 'GET', url, headers: who?.headers ?? {} });
const post = (who: Caller, url: string, payload?: object) =>
  t.app.inject({ method: 'POST', url, headers: who.headers, ...(payload ? { payload } : {}) });

async function search(who: Caller, q: string, extra = ''): Promise<UserList> {
  const res = await get(who, `/v1/users?q=${encodeURIComponent(q)}${extra}`);
  expect(res.statusCode, res.body).toBe(200);
  expect(Value.Check(UserList, res.json()), res.body).toBe(true);
  return res.json();
}

async function searchAll(who: Caller, q: string, limit: number): Promise<string[]> {
  const seen: string[] = [];
  let cursor: string | null = null;
  for (let pages = 0; pages < 50; pages++) {
    const page: UserList = await search(who, q, `&limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`);
    expect(page.items.length).toBeLessThanOrEqual(limit);
    seen.push(...page.items.map((i) => i.username));
    cursor = page.nextCursor;
    if (!cursor) return seen;
  }
  throw new Error('search never ended');
}

async function befriend(a: Caller, b: Caller) {
  const req = await post(a, '/v1/friend-requests', { userId: b.userId });
  expect(req.statusCode, req.body).toBe(201);
  expect((await post(b, `/v1/friend-requests/${req.json().id}/accept`)).statusCode).toBe(200);
}

describe('search', () => {
  it('matches the start of username or name, ignoring case; discoverable people only; never me', async () => {
    const p = prefix();
    const viewer = await person({ username: `${p}_viewer` });
    const byUsername = await person({ username: `${p}_Alpha`, name: 'Someone' });
    const byName = await person({ name: `${p.toUpperCase()} Smith` });
    const both = await person({ username: `${p}_both`, name: `${p} Both` });
    await person({ username: `x${p}_inside`, name: `Mr ${p}` }); // contains, does not start with
    await person({ username: `${p}_hidden`, discoverable: false });

    const found = await search(viewer, p.toUpperCase());
    const names = found.items.map((i) => i.username);
    expect(names.sort()).toEqual([byUsername.username, byName.username, both.username].sort());
    expect(found.nextCursor).toBeNull();
    const item = found.items.find((i) => i.id === byUsername.userId);
    expect(item).toEqual({ id: byUsername.userId, username: `${p}_Alpha`, name: 'Someone', avatarUrl: null });
    // A3/A7: an item is the public summary, nothing more.
    for (const i of found.items)
      expect(Object.keys(i).sort()).toEqual(['avatarUrl', 'id', 'name', 'username']);
    expect(JSON.stringify(found)).not.toContain('@');
    // Surrounding spaces are ignored; a longer prefix narrows.
    expect((await search(viewer, `  ${p}_al `)).items.map((i) => i.id)).toEqual([byUsername.userId]);
    expect((await search(viewer, `${p} sm`)).items.map((i) => i.id)).toEqual([byName.userId]);
  });

  it('never shows people I blocked or who blocked me', async () => {
    const p = prefix();
    const viewer = await person();
    const blockedByMe = await person({ username: `${p}_one` });
    const blockerOfMe = await person({ username: `${p}_two` });
    const visible = await person({ username: `${p}_three` });
    expect((await search(viewer, p)).items).toHaveLength(3);
    expect((await post(viewer, '/v1/blocks', { userId: blockedByMe.userId })).statusCode).toBe(201);
    expect((await post(blockerOfMe, '/v1/blocks', { userId: viewer.userId })).statusCode).toBe(201);
    expect((await search(viewer, p)).items.map((i) => i.id)).toEqual([visible.userId]);
    // Both ways: the blocked ones do not find the viewer either.
    const viewerName = viewer.username;
    expect((await search(blockedByMe, viewerName)).items).toEqual([]);
    expect((await search(blockerOfMe, viewerName)).items).toEqual([]);
    expect((await search(visible, viewerName)).items.map((i) => i.id)).toEqual([viewer.userId]);
  });

  it('treats %, _ and \\ as plain characters', async () => {
    const p = prefix();
    const viewer = await person();
    const underscore = await person({ username: `${p}a_b` });
    await person({ username: `${p}axb` });
    const percent = await person({ name: `${p}%off` });
    await person({ name: `${p}zoff` });
    const backslash = await person({ name: `${p}\\path` });
    expect((await search(viewer, `${p}a_`)).items.map((i) => i.id)).toEqual([underscore.userId]);
    expect((await search(viewer, `${p}%`)).items.map((i) => i.id)).toEqual([percent.userId]);
    expect((await search(viewer, `${p}\\`)).items.map((i) => i.id)).toEqual([backslash.userId]);
    expect((await search(viewer, `${p}\\p`)).items.map((i) => i.id)).toEqual([backslash.userId]);
    expect((await search(viewer, '%')).items.every((i) => i.name.startsWith('%'))).toBe(true);
    expect(
      (await search(viewer, '_')).items.every((i) => i.name.startsWith('_') || i.username.startsWith('_')),
    ).toBe(true);
  });

  it('pages with a keyset cursor: every match once, in one order, stable under inserts', async () => {
    const p = prefix();
    const viewer = await person();
    const expected: string[] = [];
    for (let i = 0; i < 7; i++) expected.push((await person({ username: `${p}_u${i}` })).username);
    for (let i = 0; i < 6; i++) expected.push((await person({ name: `${p} n${i}` })).username);
    // Matching by both: listed once.
    expected.push((await person({ username: `${p}_both`, name: `${p} both` })).username);
    for (const limit of [1, 3, 5, 100]) {
      const seen = await searchAll(viewer, p, limit);
      expect(new Set(seen).size, `limit ${limit}`).toBe(seen.length);
      expect([...seen].sort(), `limit ${limit}`).toEqual([...expected].sort());
    }
    // Someone joining mid-listing before the cursor position does not shift a later page.
    const first = await search(viewer, p, '&limit=4');
    await person({ username: `${p}_a0` });
    const rest = await searchAll(viewer, p, 100);
    const second = await search(viewer, p, `&limit=100&cursor=${first.nextCursor}`);
    const firstNames = first.items.map((i) => i.username);
    expect(second.items.map((i) => i.username).some((u) => firstNames.includes(u))).toBe(false);
    expect(rest).toContain(`${p}_a0`);
    // A cursor belongs to its query.
    const other = await get(viewer, `/v1/users?q=${p}x&cursor=${first.nextCursor}`);
    expect(other.statusCode).toBe(400);
    expect(other.json().code).toBe('invalid_cursor');
  });

  it('refuses bad queries', async () => {
    const viewer = await person();
    for (const url of [
      '/v1/users',
      '/v1/users?q=',
      '/v1/users?q=%20%20',
      `/v1/users?q=${'a'.repeat(61)}`,
      '/v1/users?q=a&limit=0',
      '/v1/users?q=a&limit=101',
      '/v1/users?q=a&cursor=!!',
      '/v1/users?q=a&cursor=e30',
      '/v1/users?q=a&email=x',
      '/v1/users?q=a%00b',
    ]) {
      expect((await get(viewer, url)).statusCode, url).toBe(400);
    }
    expect((await get(null, '/v1/users?q=a')).statusCode).toBe(401);
  });

  it('is served by the search indexes (EXPLAIN), both arms, with and without a cursor', async () => {
    // Enough rows that an index is worth it even to a planner that has not been told to avoid scans.
    await t.deps.db.query(
      `INSERT INTO users (id, username, email, password_hash, name, created_at, updated_at)
       SELECT gen_random_uuid(), 'bulk' || g || '_' || $1, 'bulk' || g || '_' || $1 || '@example.test', 'x',
              'Bulk ' || g, now(), now()
       FROM generate_series(1, 2000) AS g`,
      [randomBytes(3).toString('hex')],
    );
    await t.deps.db.query('ANALYZE users');
    const viewerId = randomUUID();
    const shapes = [
      { viewerId, prefix: 'bulk1', limit: 21 },
      {
        viewerId,
        prefix: 'bulk1',
        afterUsername: 'bulk10',
        afterName: { key: 'bulk 1', id: viewerId },
        limit: 21,
      },
    ];
    for (const shape of shapes) {
      const { sql, params } = searchUsersQuery(shape);
      const plan = await t.deps.db.tx(async (tx) => {
        await tx.query('SET LOCAL enable_seqscan = off');
        const { rows } = await tx.query<Record<string, string>>(`EXPLAIN ${sql}`, params);
        return rows.map((r) => Object.values(r)[0]).join('\n');
      });
      expect(plan).toMatch(/users_search_username_idx/);
      expect(plan).toMatch(/users_search_name_idx/);
      expect(plan).not.toMatch(/Seq Scan on users/);
      // The prefix is an index range, not a filter over the whole index.
      expect(plan).toMatch(/Index Cond: .*>= 'bulk1'.*< 'bulk2'/);
    }
  });
});

describe('profiles', () => {
  const FULL = [
    'about',
    'avatarUrl',
    'badges',
    'currentStreak',
    'id',
    'longestStreak',
    'name',
    'relationship',
    'score',
    'username',
  ];
  const BASIC = ['avatarUrl', 'id', 'name', 'relationship', 'username'];

  async function profile(viewer: Caller | null, username: string) {
    const res = await get(viewer, `/v1/users/${username}`);
    if (res.statusCode === 200) expect(Value.Check(Profile, res.json()), res.body).toBe(true);
    return res;
  }

  it('shows the full profile by visibility × viewer; the owner always sees theirs', async () => {
    for (const visibility of ['public', 'friends', 'private'] as const) {
      const owner = await person({ name: 'Owner', visibility });
      await t.deps.db.query(`UPDATE users SET about = 'hello there' WHERE id = $1`, [owner.userId]);
      const friend = await person();
      const stranger = await person();
      const unverified = await person({ verified: false });
      await befriend(owner, friend);
      // Earn some points, so score is real.
      const task = await post(owner, '/v1/tasks', { title: 'one' });
      expect((await post(owner, `/v1/tasks/${task.json().id}/complete`)).statusCode).toBe(200);

      const stats = (await get(owner, '/v1/me/stats')).json();
      expect(stats).toMatchObject({ score: 10, currentStreak: 1, longestStreak: 1 });
      const mine = await profile(owner, owner.username);
      expect(mine.statusCode).toBe(200);
      expect(mine.json()).toEqual({
        id: owner.userId,
        username: owner.username,
        name: 'Owner',
        avatarUrl: null,
        about: 'hello there',
        badges: [],
        score: 10,
        currentStreak: 1,
        longestStreak: 1,
        relationship: null,
      });
      const expectations: [Caller, boolean][] = [
        [friend, visibility !== 'private'],
        [stranger, visibility === 'public'],
        [unverified, visibility === 'public'],
      ];
      for (const [viewer, full] of expectations) {
        const res = await profile(viewer, owner.username);
        expect(res.statusCode, `${visibility} ${viewer === friend ? 'friend' : 'stranger'}`).toBe(200);
        expect(Object.keys(res.json()).sort(), `${visibility}`).toEqual(full ? FULL : BASIC);
        if (full) expect(res.json()).toMatchObject({ about: 'hello there', score: 10, currentStreak: 1 });
        expect(res.json().relationship).toEqual({ isFriend: viewer === friend, request: null });
      }
      expect((await profile(null, owner.username)).statusCode).toBe(401);
    }
  });

  it('is 404 both ways across a block, and for unknown or malformed names', async () => {
    const owner = await person({ visibility: 'public' });
    const blocked = await person();
    const blocker = await person();
    expect((await post(owner, '/v1/blocks', { userId: blocked.userId })).statusCode).toBe(201);
    expect((await post(blocker, '/v1/blocks', { userId: owner.userId })).statusCode).toBe(201);
    for (const [viewer, target] of [
      [blocked, owner],
      [owner, blocked],
      [blocker, owner],
      [owner, blocker],
    ] as const) {
      const res = await profile(viewer, target.username);
      expect(res.statusCode).toBe(404);
      expect(res.json().code).toBe('not_found');
    }
    for (const name of ['nobody_here_at_all', 'x', '%27%20OR%201%3D1', 'a'.repeat(90)]) {
      expect((await profile(owner, name)).statusCode, name).toBe(404);
    }
  });

  it('finds the username ignoring case, even when not discoverable, and says how we relate', async () => {
    const p = prefix();
    const owner = await person({ username: `${p}_Mixed`, discoverable: false });
    const asker = await person();
    const asked = await person();
    expect((await post(asker, '/v1/friend-requests', { userId: owner.userId })).statusCode).toBe(201);
    expect((await post(owner, '/v1/friend-requests', { userId: asked.userId })).statusCode).toBe(201);
    const byAsker = await profile(asker, `${p}_mIXED`);
    expect(byAsker.statusCode).toBe(200);
    expect(byAsker.json()).toMatchObject({ id: owner.userId, username: `${p}_Mixed` });
    expect(byAsker.json().relationship).toEqual({ isFriend: false, request: 'outgoing' });
    expect((await profile(asked, owner.username)).json().relationship).toEqual({
      isFriend: false,
      request: 'incoming',
    });
    expect((await profile(owner, asker.username)).json().relationship).toEqual({
      isFriend: false,
      request: 'incoming',
    });
  });

  it('gives the same avatarUrl as /v1/me', async () => {
    const owner = await person({ visibility: 'public' });
    const viewer = await person();
    await t.deps.db.query('UPDATE users SET avatar_key = $2 WHERE id = $1', [
      owner.userId,
      `avatars/${randomUUID()}.webp`,
    ]);
    const me = (await get(owner, '/v1/me')).json();
    expect(me.avatarUrl).toMatch(/^http/);
    expect((await profile(viewer, owner.username)).json().avatarUrl).toBe(me.avatarUrl);
    const [item] = (await search(viewer, owner.username)).items;
    expect(item?.avatarUrl).toBe(me.avatarUrl);
  });
});
