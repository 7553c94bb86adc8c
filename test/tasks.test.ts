import { randomUUID } from 'node:crypto';
import { Value } from '@sinclair/typebox/value';
import { io as connect, type Socket } from 'socket.io-client';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { listTasksQuery, type TaskListFilter } from '../src/modules/tasks/tasks.repo.js';
import { Task, TaskList, type TaskSort } from '../src/modules/tasks/tasks.schemas.js';
import { aUser, eventually, fakeClock, lane, signIn, startTestApp, type TestApp } from './helpers.js';

// Tasks through HTTP on a real database, in both lanes. One app for the file on a hand-moved clock;
// every test makes its own users, so no test depends on another's data.
const T0 = new Date('2026-03-01T09:00:00Z');
const clock = fakeClock(T0);
let t: TestApp;

beforeAll(async () => {
  t = await startTestApp({ clock, listen: true, env: { RATE_LIMIT_MULTIPLIER: '0' } });
});
afterAll(() => t?.close());
afterEach(() => {
  vi.restoreAllMocks();
});

type Caller = { userId: string; token: string; headers: Record<string, string> };
type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE';

const caller = async (overrides: { timezone?: string } = {}): Promise<Caller> =>
  signIn(t.deps, (await aUser(t.deps, overrides)).id);

const call = (
  who: Caller,
  method: Method,
  url: string,
  payload?: unknown,
  headers: Record<string, string> = {},
) =>
  t.app.inject({
    method,
    url,
    headers: { ...who.headers, ...headers },
    ...(payload === undefined ? {} : { payload: payload as object }),
  });

async function create(who: Caller, body: Record<string, unknown>): Promise<Task> {
  const res = await call(who, 'POST', '/v1/tasks', body);
  expect(res.statusCode, res.body).toBe(201);
  const task = res.json();
  expect(Value.Check(Task, task), res.body).toBe(true);
  return task;
}

async function stored(id: string) {
  const { rows } = await t.deps.db.query<Record<string, unknown>>('SELECT * FROM tasks WHERE id = $1', [id]);
  return rows[0];
}

const countTasks = async (userId: string) =>
  (await t.deps.db.query<{ n: number }>('SELECT count(*)::int AS n FROM tasks WHERE user_id = $1', [userId]))
    .rows[0]?.n;

const ledger = async (userId: string) =>
  (
    await t.deps.db.query<{ sourceKey: string; points: number; localDate: string }>(
      `SELECT source_key, points, local_date FROM score_events WHERE user_id = $1 AND source = 'task_done'`,
      [userId],
    )
  ).rows;

const inMinutes = (n: number) => new Date(clock.now().getTime() + n * 60_000).toISOString();

function expectProblem(
  res: { statusCode: number; json(): unknown },
  status: number,
  code: string,
  field?: string,
) {
  expect(res.statusCode).toBe(status);
  const body = res.json() as { code: string; errors?: { field: string }[] };
  expect(body.code).toBe(code);
  if (field) expect(body.errors?.map((e: { field: string }) => e.field)).toContain(field);
}

describe('CRUD', () => {
  it('creates with defaults and normalised tags, reads, updates, deletes', async () => {
    const me = await caller();
    const due = inMinutes(60);
    const task = await create(me, {
      title: '  Buy milk  ',
      tags: ['Groceries', 'groceries ', 'HOME'],
      dueAt: due,
    });
    expect(task).toMatchObject({
      title: 'Buy milk',
      description: '',
      priority: 'medium',
      dueAt: due,
      tags: ['groceries', 'home'],
      status: 'open',
      completedAt: null,
      completedOn: null,
    });
    expect(task.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(task.createdAt).toBe(clock.now().toISOString());
    expect(await stored(task.id)).toMatchObject({ userId: me.userId, title: 'Buy milk', status: 'open' });

    const got = await call(me, 'GET', `/v1/tasks/${task.id}`);
    expect(got.statusCode).toBe(200);
    expect(got.json()).toEqual(task);

    clock.advance(1000);
    const patched = await call(me, 'PATCH', `/v1/tasks/${task.id}`, {
      title: 'Buy oat milk',
      description: 'the barista one',
      priority: 'high',
      tags: ['Shop'],
    });
    expect(patched.statusCode).toBe(200);
    expect(patched.json()).toEqual({
      ...task,
      title: 'Buy oat milk',
      description: 'the barista one',
      priority: 'high',
      tags: ['shop'],
      updatedAt: clock.now().toISOString(),
    });
    const cleared = await call(me, 'PATCH', `/v1/tasks/${task.id}`, { dueAt: null });
    expect(cleared.json()).toMatchObject({ dueAt: null, title: 'Buy oat milk' });
    expect((await stored(task.id))?.dueAt).toBeNull();

    const deleted = await call(me, 'DELETE', `/v1/tasks/${task.id}`);
    expect(deleted.statusCode).toBe(204);
    expect(deleted.body).toBe('');
    expect(await stored(task.id)).toBeUndefined();
    expectProblem(await call(me, 'GET', `/v1/tasks/${task.id}`), 404, 'not_found');
    expectProblem(await call(me, 'DELETE', `/v1/tasks/${task.id}`), 404, 'not_found');
    await eventually(() =>
      expect(t.logs().some((l) => l.msg === 'task deleted' && l.taskId === task.id)).toBe(true),
    );
  });

  it('refuses invalid input, naming the field, and stores nothing', async () => {
    const me = await caller();
    const cases: [unknown, string][] = [
      [{}, 'body/title'],
      [{ title: '' }, 'body/title'],
      [{ title: '   ' }, 'body/title'],
      [{ title: 'x'.repeat(201) }, 'body/title'],
      [{ title: 'nul \u0000 inside' }, 'body/title'],
      [{ title: 'ok', description: 'd'.repeat(5001) }, 'body/description'],
      [{ title: 'ok', priority: 'urgent' }, 'body/priority'],
      [{ title: 'ok', tags: Array.from({ length: 11 }, (_, i) => `t${i}`) }, 'body/tags'],
      [{ title: 'ok', tags: ['x'.repeat(31)] }, 'body/tags/0'],
      [{ title: 'ok', tags: [''] }, 'body/tags/0'],
      [{ title: 'ok', tags: ['fine', 'nul\u0000'] }, 'body/tags/1'],
      [{ title: 'ok', description: 'nul \u0000' }, 'body/description'],
      [{ title: 'ok', dueAt: 'tomorrow' }, 'body/dueAt'],
      [{ title: 'ok', dueAt: '2026-02-30T10:00:00Z' }, 'body/dueAt'],
    ];
    for (const [body, field] of cases) {
      const res = await call(me, 'POST', '/v1/tasks', body);
      expectProblem(res, 400, 'validation_failed', field);
      expect(res.headers['content-type']).toContain('application/problem+json');
    }
    expect(await countTasks(me.userId)).toBe(0);

    const task = await create(me, { title: 'ok', tags: Array.from({ length: 10 }, (_, i) => `t${i}`) });
    expect(task.tags).toHaveLength(10);
    expect((await create(me, { title: 'x'.repeat(200), description: 'd'.repeat(5000) })).title).toHaveLength(
      200,
    );
    expectProblem(await call(me, 'PATCH', `/v1/tasks/${task.id}`, {}), 400, 'validation_failed');
    expectProblem(
      await call(me, 'PATCH', `/v1/tasks/${task.id}`, { title: '' }),
      400,
      'validation_failed',
      'body/title',
    );
    expectProblem(
      await call(me, 'PATCH', `/v1/tasks/${task.id}`, { priority: 'HIGH' }),
      400,
      'validation_failed',
      'body/priority',
    );
    const queries: [string, string][] = [
      ['limit=0', 'query/limit'],
      ['limit=101', 'query/limit'],
      ['limit=100000', 'query/limit'],
      ['limit=ten', 'query/limit'],
      ['status=closed', 'query/status'],
      ['sort=title', 'query/sort'],
      ['priority=urgent', 'query/priority'],
      ['overdue=maybe', 'query/overdue'],
      ['dueBefore=soon', 'query/dueBefore'],
      ['q=', 'query/q'],
      ['userId=someone', 'query/userId'],
      ['cursor=not%20base64', 'query/cursor'],
    ];
    for (const [qs, field] of queries) {
      expectProblem(await call(me, 'GET', `/v1/tasks?${qs}`), 400, 'validation_failed', field);
    }
    expect((await call(me, 'GET', '/v1/tasks?limit=100')).statusCode).toBe(200);
  });

  it('validates hostile 100 KB strings quickly (C7)', async () => {
    const me = await caller();
    for (const title of [
      `${'a'.repeat(100_000)}\u0000`,
      `${' '.repeat(100_000)}\u0000`,
      'a '.repeat(50_000),
    ]) {
      const started = performance.now();
      const res = await call(me, 'POST', '/v1/tasks', { title, tags: [title] });
      expect(performance.now() - started).toBeLessThan(500);
      expectProblem(res, 400, 'validation_failed', 'body/title');
    }
  });

  it('refuses a due date in the past, on create and on update', async () => {
    const me = await caller();
    const past = new Date(clock.now().getTime() - 1).toISOString();
    expectProblem(
      await call(me, 'POST', '/v1/tasks', { title: 'late', dueAt: past }),
      400,
      'due_in_past',
      'body/dueAt',
    );
    expectProblem(
      await call(me, 'POST', '/v1/tasks', { title: 'late', dueAt: '2020-01-01T00:00:00+05:30' }),
      400,
      'due_in_past',
    );
    expect(await countTasks(me.userId)).toBe(0);
    const now = await create(me, { title: 'due right now', dueAt: clock.now().toISOString() });
    expect(now.dueAt).toBe(clock.now().toISOString());

    const task = await create(me, { title: 'soon', dueAt: inMinutes(1) });
    expectProblem(
      await call(me, 'PATCH', `/v1/tasks/${task.id}`, { dueAt: past }),
      400,
      'due_in_past',
      'body/dueAt',
    );
    expectProblem(
      await call(me, 'PATCH', `/v1/tasks/${task.id}`, { title: 'changed', dueAt: past }),
      400,
      'due_in_past',
    );
    expect((await call(me, 'GET', `/v1/tasks/${task.id}`)).json()).toEqual(task);

    // Once the due date has passed, sending the task back unchanged is not setting a past date.
    clock.advance(2 * 60_000);
    const same = await call(me, 'PATCH', `/v1/tasks/${task.id}`, { title: 'soon!', dueAt: task.dueAt });
    expect(same.statusCode).toBe(200);
    expect(same.json()).toMatchObject({ title: 'soon!', dueAt: task.dueAt });
    const later = await call(me, 'PATCH', `/v1/tasks/${task.id}`, { dueAt: inMinutes(5) });
    expect(later.json().dueAt).toBe(inMinutes(5));
  });

  it('refuses fields a client may not set (mass assignment), changing nothing', async () => {
    const me = await caller();
    for (const extra of [
      { status: 'done' },
      { userId: randomUUID() },
      { completedAt: clock.now().toISOString() },
      { completedOn: '2026-03-01' },
      { score: 1000 },
      { id: randomUUID() },
      { createdAt: '2020-01-01T00:00:00Z' },
    ]) {
      const field = `body/${Object.keys(extra)[0]}`;
      expectProblem(
        await call(me, 'POST', '/v1/tasks', { title: 'x', ...extra }),
        400,
        'validation_failed',
        field,
      );
    }
    expect(await countTasks(me.userId)).toBe(0);
    const task = await create(me, { title: 'mine' });
    const before = await stored(task.id);
    for (const extra of [{ status: 'done' }, { userId: randomUUID() }, { completedAt: null }, { score: 5 }]) {
      const field = `body/${Object.keys(extra)[0]}`;
      expectProblem(
        await call(me, 'PATCH', `/v1/tasks/${task.id}`, { title: 'hijack', ...extra }),
        400,
        'validation_failed',
        field,
      );
    }
    expect(await stored(task.id)).toEqual(before);
    expect(await ledger(me.userId)).toEqual([]);
  });
});

describe('authorization (A1, A2)', () => {
  it("another user's task, or a malformed or unknown id, is 404 on every operation, and nothing changes", async () => {
    const owner = await caller();
    const stranger = await caller();
    const emitted = vi.spyOn(t.deps.realtime, 'toUser');
    const task = await create(owner, { title: 'private diary entry', dueAt: inMinutes(30) });
    const before = await stored(task.id);

    const ops = (id: string): [Method, string, unknown][] => [
      ['GET', `/v1/tasks/${id}`, undefined],
      ['PATCH', `/v1/tasks/${id}`, { title: 'pwned' }],
      ['POST', `/v1/tasks/${id}/complete`, undefined],
      ['POST', `/v1/tasks/${id}/reopen`, undefined],
      ['DELETE', `/v1/tasks/${id}`, undefined],
    ];
    const ids = [
      task.id,
      randomUUID(),
      '00000000-0000-0000-0000-000000000000',
      'nope',
      '123',
      encodeURIComponent("' OR 1=1 --"),
      task.id.toUpperCase().replace(/-/g, ''),
    ];
    let cells = 0;
    for (const id of ids) {
      for (const [method, url, body] of ops(id)) {
        const who = id === task.id ? stranger : owner;
        const res = await call(
          who,
          method,
          url,
          body,
          method === 'POST' ? { 'idempotency-key': randomUUID() } : {},
        );
        expect(`${method} ${url} ${res.statusCode}`).toBe(`${method} ${url} 404`);
        expect(res.json().code).toBe('not_found');
        cells++;
      }
    }
    // A stranger completing with a key stores no key: the same key then works for their own task.
    const key = randomUUID();
    expect(
      (await call(stranger, 'POST', `/v1/tasks/${task.id}/complete`, undefined, { 'idempotency-key': key }))
        .statusCode,
    ).toBe(404);
    const theirs = await create(stranger, { title: 'their own' });
    expect(
      (await call(stranger, 'POST', `/v1/tasks/${theirs.id}/complete`, undefined, { 'idempotency-key': key }))
        .statusCode,
    ).toBe(200);

    expect(cells).toBe(ids.length * 5);
    expect(await stored(task.id)).toEqual(before);
    expect(await ledger(owner.userId)).toEqual([]);
    const list = (await call(stranger, 'GET', '/v1/tasks?status=all&limit=100')).json();
    expect(list.items.map((i: Task) => i.id)).toEqual([theirs.id]);
    await new Promise((r) => setTimeout(r, 20));
    // The only word of this task ever sent is its creation, to its owner.
    expect(emitted.mock.calls.filter(([, , data]) => JSON.stringify(data).includes(task.id))).toEqual([
      [owner.userId, 'task:created', { task }],
    ]);
  });

  it('needs a signed-in caller', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/v1/tasks' });
    expectProblem(res, 401, 'unauthorized');
    expectProblem(
      await t.app.inject({ method: 'POST', url: '/v1/tasks', payload: { title: 'x' } }),
      401,
      'unauthorized',
    );
  });
});

// ---------------------------------------------------------------------------------------------------
// Listing: every filter and sort against an expectation computed here from the created tasks.

type Query = {
  status?: 'open' | 'done' | 'all';
  priority?: 'low' | 'medium' | 'high';
  tag?: string;
  q?: string;
  dueBefore?: string;
  dueAfter?: string;
  overdue?: boolean;
  sort?: TaskSort;
};

const RANK = { high: 1, medium: 2, low: 3 } as const;
const cmp = (a: string | number, b: string | number) => (a < b ? -1 : a > b ? 1 : 0);

function expected(tasks: Task[], f: Query, now: Date): string[] {
  const ms = (s: string | null) => (s === null ? null : Date.parse(s));
  const status = f.status ?? 'open';
  const rows = tasks.filter((x) => {
    const due = ms(x.dueAt);
    if (status !== 'all' && x.status !== status) return false;
    if (f.priority && x.priority !== f.priority) return false;
    if (f.tag && !x.tags.includes(f.tag.toLowerCase())) return false;
    if (f.q && !`${x.title}\n${x.description}`.toLowerCase().includes(f.q.toLowerCase())) return false;
    if (f.dueBefore && !(due !== null && due < Date.parse(f.dueBefore))) return false;
    if (f.dueAfter && !(due !== null && due > Date.parse(f.dueAfter))) return false;
    const overdue = x.status === 'open' && due !== null && due < now.getTime();
    if (f.overdue !== undefined && overdue !== f.overdue) return false;
    return true;
  });
  const sort = f.sort ?? 'createdAt';
  const created = (x: Task) => Date.parse(x.createdAt);
  rows.sort((a, b) => {
    switch (sort) {
      case 'createdAt':
        return cmp(created(a), created(b)) || cmp(a.id, b.id);
      case '-createdAt':
        return cmp(created(b), created(a)) || cmp(b.id, a.id);
      case 'dueAt':
        return cmp(ms(a.dueAt) ?? Infinity, ms(b.dueAt) ?? Infinity) || cmp(a.id, b.id);
      case '-dueAt':
        return cmp(ms(b.dueAt) ?? -Infinity, ms(a.dueAt) ?? -Infinity) || cmp(b.id, a.id);
      default:
        return cmp(RANK[a.priority], RANK[b.priority]) || cmp(created(a), created(b)) || cmp(a.id, b.id);
    }
  });
  return rows.map((x) => x.id);
}

/** Reads every page; `between` runs after each page (to insert tasks during the walk). */
async function walk(who: Caller, f: Query, limit: number, between?: () => Promise<void>) {
  const ids: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(f)) if (v !== undefined) params.set(k, String(v));
    params.set('limit', String(limit));
    if (cursor) params.set('cursor', cursor);
    const res = await call(who, 'GET', `/v1/tasks?${params}`);
    expect(res.statusCode, res.body).toBe(200);
    const body = res.json();
    expect(Value.Check(TaskList, body)).toBe(true);
    if (body.nextCursor) expect(body.items).toHaveLength(limit);
    ids.push(...body.items.map((x: Task) => x.id));
    cursor = body.nextCursor;
    pages++;
    await between?.();
  } while (cursor && pages < 500);
  return { ids, pages };
}

describe('listing', () => {
  it('applies every filter and sort, page by page, exactly as computed from the tasks', async () => {
    const me = await caller();
    const other = await caller();
    await create(other, { title: 'milk for someone else', tags: ['work'] });
    const titles = ['Buy milk', 'call MOM', 'Milk the cow', 'file taxes', 'walk', 'Read', 'plan trip'];
    const tagSets = [['work'], ['home', 'Work'], [], ['errand'], ['home']];
    const priorities = ['low', 'medium', 'high'] as const;
    const made: Task[] = [];
    for (let i = 0; i < 34; i++) {
      // Some share a creation instant, so ties are broken by id.
      if (i % 3 !== 0) clock.advance(1000);
      const due =
        i % 4 === 0 ? undefined : i % 4 === 1 ? inMinutes(1 + (i % 5)) : inMinutes(60 * 24 * (1 + (i % 7)));
      made.push(
        await create(me, {
          title: titles[i % titles.length] as string,
          ...(i % 5 === 0 ? { description: 'with MILK and honey' } : {}),
          priority: priorities[i % 3] as string,
          tags: tagSets[i % tagSets.length] as string[],
          ...(due ? { dueAt: due } : {}),
        }),
      );
    }
    // Two due dates equal, to tie the due sorts too.
    await call(me, 'PATCH', `/v1/tasks/${made[2]?.id}`, { dueAt: made[3]?.dueAt });
    for (const i of [1, 4, 7, 10, 12, 20, 33]) {
      expect((await call(me, 'POST', `/v1/tasks/${made[i]?.id}/complete`)).statusCode).toBe(200);
    }
    // Some due dates pass: those tasks are now overdue unless done.
    clock.advance(3 * 60_000);
    const now = clock.now();
    expect((await walk(me, { status: 'all' }, 100)).ids).toHaveLength(34);
    const current: Task[] = [];
    for (const x of made) current.push((await call(me, 'GET', `/v1/tasks/${x.id}`)).json());
    expect(current.some((x) => x.status === 'open' && x.dueAt && Date.parse(x.dueAt) < now.getTime())).toBe(
      true,
    );

    const sorts: TaskSort[] = ['createdAt', '-createdAt', 'dueAt', '-dueAt', 'priority'];
    const queries: Query[] = [];
    for (const status of ['open', 'done', 'all'] as const)
      for (const sort of sorts) queries.push({ status, sort });
    const somewhen = inMinutes(60 * 24 * 3);
    for (const f of [
      {},
      { priority: 'high' },
      { priority: 'low', status: 'all' },
      { tag: 'WORK' },
      { tag: 'home', status: 'all' },
      { tag: 'nothing' },
      { q: 'milk' },
      { q: 'MILK', status: 'all' },
      { q: '%' },
      { dueBefore: somewhen },
      { dueAfter: somewhen, status: 'all' },
      { dueAfter: now.toISOString(), dueBefore: somewhen },
      { overdue: true },
      { overdue: true, status: 'all' },
      { overdue: false, status: 'all' },
      { overdue: false },
      { status: 'all', priority: 'medium', tag: 'work', overdue: false },
    ] as Query[]) {
      queries.push(f, { ...f, sort: 'dueAt' }, { ...f, sort: 'priority' });
    }
    let nonEmpty = 0;
    for (const f of queries) {
      const want = expected(current, f, now);
      const { ids } = await walk(me, f, 4);
      expect(ids, JSON.stringify(f)).toEqual(want);
      if (want.length > 0) nonEmpty++;
    }
    expect(nonEmpty).toBeGreaterThan(queries.length * 0.8);

    // Default: open, oldest first, 20 a page.
    const page = (await call(me, 'GET', '/v1/tasks')).json();
    expect(page.items.map((x: Task) => x.id)).toEqual(expected(current, {}, now).slice(0, 20));
    expect(page.nextCursor).toEqual(expect.any(String));
  });

  it('walks every page once even while tasks are inserted meanwhile, for every sort', async () => {
    const me = await caller();
    const priorities = ['low', 'medium', 'high'];
    let n = 0;
    const insert = async () => {
      n++;
      if (n % 2) clock.advance(7);
      return create(me, {
        title: `task ${n}`,
        priority: priorities[n % 3] as string,
        ...(n % 3 === 0 ? {} : { dueAt: inMinutes(1 + (n % 11)) }),
      });
    };
    for (let i = 0; i < 25; i++) await insert();
    for (const sort of ['createdAt', '-createdAt', 'dueAt', '-dueAt', 'priority'] as TaskSort[]) {
      const before = (await walk(me, { status: 'all', sort }, 100)).ids;
      const inserted: string[] = [];
      const { ids, pages } = await walk(me, { sort }, 6, async () => {
        inserted.push((await insert()).id, (await insert()).id);
      });
      expect(pages).toBeGreaterThan(4);
      expect(new Set(ids).size, `${sort}: no duplicates`).toBe(ids.length);
      expect(
        before.filter((id) => !ids.includes(id)),
        `${sort}: no gaps`,
      ).toEqual([]);
      expect(ids.filter((id) => !before.includes(id) && !inserted.includes(id))).toEqual([]);
      // What was read is in the sort's order.
      const all = (await walk(me, { status: 'all', sort }, 100)).ids;
      expect(ids).toEqual(all.filter((id) => ids.includes(id)));
    }
  });

  it('refuses cursors it did not hand out, or from another sort', async () => {
    const me = await caller();
    for (let i = 0; i < 3; i++) await create(me, { title: `t${i}` });
    const first = (await call(me, 'GET', '/v1/tasks?limit=1&sort=dueAt')).json();
    expect(first.nextCursor).toEqual(expect.any(String));
    expectProblem(
      await call(me, 'GET', `/v1/tasks?limit=1&sort=priority&cursor=${first.nextCursor}`),
      400,
      'invalid_cursor',
      'query/cursor',
    );
    const forged = (payload: unknown) => Buffer.from(JSON.stringify(payload)).toString('base64url');
    for (const cursor of [
      'abc',
      forged({ s: 'createdAt', i: "x' OR 1=1 --", c: '2026-03-01T09:00:00.000Z', d: null, p: 'low' }),
      forged({ s: 'createdAt', i: randomUUID(), c: 'yesterday', d: null, p: 'low' }),
      forged({ s: 'createdAt', i: randomUUID(), c: '2026-03-01T09:00:00.000Z', d: null, p: 'urgent' }),
      forged(['createdAt']),
      forged(null),
    ]) {
      expectProblem(await call(me, 'GET', `/v1/tasks?limit=1&cursor=${cursor}`), 400, 'invalid_cursor');
    }
  });
});

// ---------------------------------------------------------------------------------------------------

describe('completing and points', () => {
  it('complete ⇄ reopen 100 times pays once; both are idempotent; deleting keeps the points (A9)', async () => {
    const me = await caller();
    const task = await create(me, { title: 'farm me' });
    const scoreBefore = await t.deps.stats.score(me.userId);
    expect(scoreBefore).toBe(0);
    let done: Task | undefined;
    for (let i = 0; i < 100; i++) {
      const c = await call(me, 'POST', `/v1/tasks/${task.id}/complete`);
      expect(c.statusCode).toBe(200);
      done = c.json();
      expect(done).toMatchObject({
        status: 'done',
        completedAt: clock.now().toISOString(),
        completedOn: '2026-03-01',
      });
      if (i === 0) {
        const again = await call(me, 'POST', `/v1/tasks/${task.id}/complete`);
        expect(again.statusCode).toBe(200);
        expect(again.json()).toEqual(done);
      }
      const r = await call(me, 'POST', `/v1/tasks/${task.id}/reopen`);
      expect(r.statusCode).toBe(200);
      expect(r.json()).toMatchObject({ status: 'open', completedAt: null, completedOn: null });
    }
    const reopenedTwice = await call(me, 'POST', `/v1/tasks/${task.id}/reopen`);
    expect(reopenedTwice.json().status).toBe('open');
    expect((await call(me, 'POST', `/v1/tasks/${task.id}/complete`)).json().status).toBe('done');

    expect(await t.deps.stats.score(me.userId)).toBe(10);
    expect(await ledger(me.userId)).toEqual([{ sourceKey: task.id, points: 10, localDate: '2026-03-01' }]);
    expect(await stored(task.id)).toMatchObject({ status: 'done', completedOn: '2026-03-01' });

    expect((await call(me, 'DELETE', `/v1/tasks/${task.id}`)).statusCode).toBe(204);
    expect(await t.deps.stats.score(me.userId)).toBe(10);
    expect(await ledger(me.userId)).toHaveLength(1);
  });

  it('50 concurrent completes of one task: one ledger row, one state, no 5xx (G4)', async () => {
    const me = await caller();
    const task = await create(me, { title: 'race me' });
    const emitted = vi.spyOn(t.deps.realtime, 'toUser');
    const results = await Promise.all(
      Array.from({ length: 50 }, () => call(me, 'POST', `/v1/tasks/${task.id}/complete`)),
    );
    expect(results.map((r) => r.statusCode)).toEqual(Array(50).fill(200));
    const bodies = results.map((r) => r.json());
    expect(new Set(bodies.map((b) => JSON.stringify(b))).size).toBe(1);
    expect(bodies[0]).toMatchObject({ id: task.id, status: 'done' });
    expect(await ledger(me.userId)).toHaveLength(1);
    expect(await t.deps.stats.score(me.userId)).toBe(10);
    await eventually(() =>
      expect(emitted.mock.calls.filter(([, event]) => event === 'task:completed')).toEqual([
        [me.userId, 'task:completed', { task: bodies[0], pointsAwarded: 10 }],
      ]),
    );
  });

  it("completedOn is the user's own logical date", async () => {
    // 10:00:30 UTC is 00:00:30 the next day in Kiritimati (UTC+14) and 00:00:30 the same day in Honolulu.
    clock.set(new Date('2026-03-01T10:00:30Z'));
    const kiritimati = await caller({ timezone: 'Pacific/Kiritimati' });
    const honolulu = await caller({ timezone: 'Pacific/Honolulu' });
    const a = await create(kiritimati, { title: 'new day' });
    const b = await create(honolulu, { title: 'new day too' });
    const doneA = (await call(kiritimati, 'POST', `/v1/tasks/${a.id}/complete`)).json();
    const doneB = (await call(honolulu, 'POST', `/v1/tasks/${b.id}/complete`)).json();
    expect(doneA).toMatchObject({ completedAt: '2026-03-01T10:00:30.000Z', completedOn: '2026-03-02' });
    expect(doneB).toMatchObject({ completedAt: '2026-03-01T10:00:30.000Z', completedOn: '2026-03-01' });
    expect((await ledger(kiritimati.userId))[0]?.localDate).toBe('2026-03-02');

    // A millisecond before local midnight it is still the day before.
    clock.set(new Date('2026-03-01T09:59:59.999Z'));
    const c = await create(kiritimati, { title: 'last minute' });
    expect((await call(kiritimati, 'POST', `/v1/tasks/${c.id}/complete`)).json().completedOn).toBe(
      '2026-03-01',
    );
    clock.set(new Date('2026-03-01T10:05:00Z'));
  });
});

describe('Idempotency-Key (G6)', () => {
  it('replays the same request, refuses another with the key, and keeps keys per user', async () => {
    const me = await caller();
    const key = randomUUID();
    const body = { title: 'once only', tags: ['a'] };
    const first = await call(me, 'POST', '/v1/tasks', body, { 'idempotency-key': key });
    expect(first.statusCode).toBe(201);
    expect(first.headers['idempotent-replayed']).toBeUndefined();
    clock.advance(1000);
    const again = await call(
      me,
      'POST',
      '/v1/tasks',
      { tags: ['a'], title: 'once only' },
      { 'idempotency-key': key },
    );
    expect(again.statusCode).toBe(201);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.json()).toEqual(first.json());
    expect(await countTasks(me.userId)).toBe(1);

    expectProblem(
      await call(me, 'POST', '/v1/tasks', { title: 'something else' }, { 'idempotency-key': key }),
      422,
      'idempotency_key_mismatch',
    );
    const task = first.json() as Task;
    expectProblem(
      await call(me, 'POST', `/v1/tasks/${task.id}/complete`, undefined, { 'idempotency-key': key }),
      422,
      'idempotency_key_mismatch',
    );
    expect(await countTasks(me.userId)).toBe(1);
    expect((await stored(task.id))?.status).toBe('open');

    // Another user's identical key and body is their own request.
    const other = await caller();
    const theirs = await call(other, 'POST', '/v1/tasks', body, { 'idempotency-key': key });
    expect(theirs.statusCode).toBe(201);
    expect(theirs.headers['idempotent-replayed']).toBeUndefined();
    expect(theirs.json().id).not.toBe(task.id);
    expect(await countTasks(other.userId)).toBe(1);

    // A refused request stores no key, so a corrected retry with it goes through.
    const retryKey = randomUUID();
    const past = new Date(clock.now().getTime() - 60_000).toISOString();
    expectProblem(
      await call(me, 'POST', '/v1/tasks', { title: 'r', dueAt: past }, { 'idempotency-key': retryKey }),
      400,
      'due_in_past',
    );
    expect(
      (await call(me, 'POST', '/v1/tasks', { title: 'r' }, { 'idempotency-key': retryKey })).statusCode,
    ).toBe(201);

    expectProblem(
      await call(me, 'POST', '/v1/tasks', body, { 'idempotency-key': 'x'.repeat(256) }),
      400,
      'validation_failed',
      'headers/idempotency-key',
    );
  });

  it('runs concurrent requests with one key once', async () => {
    const me = await caller();
    const key = randomUUID();
    const results = await Promise.all(
      Array.from({ length: 10 }, () =>
        call(me, 'POST', '/v1/tasks', { title: 'double click' }, { 'idempotency-key': key }),
      ),
    );
    expect(results.map((r) => r.statusCode)).toEqual(Array(10).fill(201));
    expect(new Set(results.map((r) => r.json().id)).size).toBe(1);
    expect(results.filter((r) => r.headers['idempotent-replayed'] === 'true')).toHaveLength(9);
    expect(await countTasks(me.userId)).toBe(1);
  });

  it('a retried completion clears stats that a crash left stale (killed between commit and invalidation)', async () => {
    const me = await caller();
    const score = async () => (await call(me, 'GET', '/v1/me/stats')).json().score as number;
    const before = (await call(me, 'GET', '/v1/me/stats')).json();
    let paid = before.score as number;
    for (const key of [randomUUID(), undefined]) {
      const task = await create(me, { title: 'crash window' });
      const headers: Record<string, string> = key ? { 'idempotency-key': key } : {};
      const url = `/v1/tasks/${task.id}/complete`;
      expect((await call(me, 'POST', url, undefined, headers)).statusCode).toBe(200);
      paid += 10;
      // The crash window: the completion committed, but its invalidation never ran, so the cache
      // still holds the stats from before it (written after the real invalidation, which came first).
      await t.deps.stats.cached(me.userId, new Date(clock.now().getTime() + 3600_000), async () => before);
      expect(await score()).toBe(before.score);
      // The client never heard back and retries: with its key (a replay) or without (already done).
      const retry = await call(me, 'POST', url, undefined, headers);
      expect(retry.headers['idempotent-replayed']).toBe(key ? 'true' : undefined);
      await eventually(async () => expect(await score()).toBe(paid));
    }
  });

  it('replays a completion with its key', async () => {
    const me = await caller();
    const task = await create(me, { title: 'complete with a key' });
    const key = randomUUID();
    const results = await Promise.all(
      Array.from({ length: 5 }, () =>
        call(me, 'POST', `/v1/tasks/${task.id}/complete`, undefined, { 'idempotency-key': key }),
      ),
    );
    expect(results.map((r) => r.statusCode)).toEqual(Array(5).fill(200));
    expect(new Set(results.map((r) => r.body)).size).toBe(1);
    expect(results.filter((r) => r.headers['idempotent-replayed'] === 'true')).toHaveLength(4);
    expect(await ledger(me.userId)).toHaveLength(1);
    const other = await create(me, { title: 'other' });
    expectProblem(
      await call(me, 'POST', `/v1/tasks/${other.id}/complete`, undefined, { 'idempotency-key': key }),
      422,
      'idempotency_key_mismatch',
    );
    expect((await stored(other.id))?.status).toBe('open');
  });
});

describe('live events', () => {
  it('tells only the owner, after each change commits', async () => {
    const owner = await caller();
    const stranger = await caller();
    const sockets: Socket[] = [];
    const open = (token: string) =>
      new Promise<{ socket: Socket; got: [string, unknown][] }>((resolve, reject) => {
        const socket = connect(t.url, {
          transports: ['websocket'],
          reconnection: false,
          forceNew: true,
          auth: { token },
        });
        sockets.push(socket);
        const got: [string, unknown][] = [];
        socket.onAny((event: string, data: unknown) => got.push([event, data]));
        socket.once('system:welcome', () => resolve({ socket, got }));
        socket.once('connect_error', reject);
      });
    try {
      const mine = await open(owner.token);
      const theirs = await open(stranger.token);
      const task = await create(owner, { title: 'secret plan' });
      await call(owner, 'PATCH', `/v1/tasks/${task.id}`, { priority: 'high' });
      const done = (await call(owner, 'POST', `/v1/tasks/${task.id}/complete`)).json();
      await call(owner, 'POST', `/v1/tasks/${task.id}/complete`); // no change, no event
      await call(owner, 'POST', `/v1/tasks/${task.id}/reopen`);
      await call(owner, 'DELETE', `/v1/tasks/${task.id}`);
      const own = await create(stranger, { title: 'their own' });

      const events = await eventually(() => {
        const names = mine.got.filter(([e]) => e.startsWith('task:'));
        expect(names).toHaveLength(5);
        return names;
      });
      expect(events.map(([e]) => e)).toEqual([
        'task:created',
        'task:updated',
        'task:completed',
        'task:reopened',
        'task:deleted',
      ]);
      expect(events[0]?.[1]).toEqual({ task });
      expect(events[1]?.[1]).toMatchObject({ task: { id: task.id, priority: 'high' } });
      expect(events[2]?.[1]).toEqual({ task: done, pointsAwarded: 10 });
      expect(events[4]?.[1]).toEqual({ id: task.id });
      await eventually(() =>
        expect(theirs.got.filter(([e]) => e.startsWith('task:'))).toEqual([['task:created', { task: own }]]),
      );
      expect(JSON.stringify(theirs.got)).not.toContain('secret plan');
    } finally {
      for (const s of sockets) s.disconnect();
    }
  });
});

// ---------------------------------------------------------------------------------------------------

describe('indexes', () => {
  it.runIf(lane.services)('serves every list query shape from an index on tasks', async () => {
    const users = await Promise.all(Array.from({ length: 6 }, () => aUser(t.deps)));
    for (const u of users) {
      await t.deps.db.query(
        `INSERT INTO tasks (id, user_id, title, description, priority, due_at, tags, status, completed_at,
                            completed_on, created_at, updated_at)
         SELECT gen_random_uuid(), $1, 'task ' || g, CASE WHEN g % 5 = 0 THEN 'notes' ELSE '' END,
                (ARRAY['low', 'medium', 'high'])[1 + g % 3],
                CASE WHEN g % 4 = 0 THEN NULL ELSE $2::timestamptz + (g - 500) * interval '1 hour' END,
                ARRAY['t' || (g % 7), 'u' || (g % 3)],
                CASE WHEN g % 3 = 0 THEN 'done' ELSE 'open' END,
                CASE WHEN g % 3 = 0 THEN $2::timestamptz END, CASE WHEN g % 3 = 0 THEN date '2026-03-01' END,
                $2::timestamptz - g * interval '1 minute', $2::timestamptz
         FROM generate_series(1, 2500) AS g`,
        [u.id, clock.now()],
      );
    }
    await t.deps.db.query('ANALYZE tasks');
    const userId = users[0]?.id as string;
    const base: TaskListFilter = { userId, status: 'open', now: clock.now(), sort: 'createdAt', limit: 21 };
    const after = {
      id: randomUUID(),
      createdAt: clock.now(),
      dueAt: clock.now(),
      priority: 'medium' as const,
    };
    const shapes: TaskListFilter[] = [];
    for (const status of ['open', 'done', 'all'] as const) {
      for (const sort of ['createdAt', '-createdAt', 'dueAt', '-dueAt', 'priority'] as TaskSort[]) {
        shapes.push({ ...base, status, sort }, { ...base, status, sort, after });
        shapes.push({ ...base, status, sort, after: { ...after, dueAt: null } });
      }
    }
    const day = new Date(clock.now().getTime() + 86400_000);
    for (const f of [
      { priority: 'high' as const },
      { tag: 't3' },
      { q: 'task 12' },
      { dueBefore: day },
      { dueAfter: day },
      { overdue: true },
      { overdue: false },
      {
        priority: 'low' as const,
        tag: 'u1',
        q: 'notes',
        dueBefore: day,
        dueAfter: clock.now(),
        overdue: false,
      },
    ]) {
      for (const sort of ['createdAt', 'dueAt', 'priority'] as TaskSort[]) {
        shapes.push({ ...base, ...f, sort }, { ...base, ...f, sort, status: 'all', after });
      }
    }
    const plans: string[] = [];
    for (const shape of shapes) {
      const { sql, params } = listTasksQuery(shape);
      const plan = await t.deps.db.tx(async (tx) => {
        await tx.query('SET LOCAL enable_seqscan = off');
        const { rows } = await tx.query<Record<string, string>>(`EXPLAIN ${sql}`, params);
        return rows.map((r) => Object.values(r)[0]).join('\n');
      });
      const label = `${shape.status} ${shape.sort}${shape.after ? ' +cursor' : ''} ${sql.split('WHERE')[1]?.split('ORDER')[0]}`;
      expect(plan, label).toMatch(
        /Index (Only )?Scan( Backward)? using tasks_\w+ on tasks|Bitmap Index Scan on tasks_/,
      );
      expect(plan, label).not.toMatch(/Seq Scan on tasks/);
      // Without filters a page is read in index order and stops at the limit: no sort step, except
      // for status=all, which merges (at most) a page from the open range and one from the done range.
      if (Object.keys(shape).length === Object.keys(base).length + (shape.after ? 1 : 0)) {
        expect(plan, label).not.toMatch(/Bitmap/);
        if (shape.status === 'all')
          expect(plan.match(/Index Scan (Backward )?using/g), label).toHaveLength(2);
        else expect(plan, label).not.toMatch(/^\s*(->\s+)?(Incremental )?Sort\s+\(/m);
      }
      plans.push(`${label}\n${plan}`);
    }
    if (process.env.SHOW_PLANS) console.log(plans.join('\n\n'));
    expect(shapes.length).toBeGreaterThan(60);
  });
});
