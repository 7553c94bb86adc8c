import type { Queryable } from '../../lib/db.js';
import type { Priority, TaskSort, TaskStatus } from './tasks.schemas.js';

export interface TaskRow {
  id: string;
  userId: string;
  title: string;
  description: string;
  priority: Priority;
  dueAt: Date | null;
  tags: string[];
  status: TaskStatus;
  completedAt: Date | null;
  /** 'YYYY-MM-DD'. */
  completedOn: string | null;
  createdAt: Date;
  updatedAt: Date;
}

const COLUMNS = `id, user_id, title, description, priority, due_at, tags, status, completed_at, completed_on,
  created_at, updated_at`;

export async function insertTask(
  q: Queryable,
  t: Pick<TaskRow, 'id' | 'userId' | 'title' | 'description' | 'priority' | 'dueAt' | 'tags' | 'createdAt'>,
): Promise<TaskRow> {
  const { rows } = await q.query<TaskRow>(
    `INSERT INTO tasks (id, user_id, title, description, priority, due_at, tags, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7::text[], $8, $8) RETURNING ${COLUMNS}`,
    [t.id, t.userId, t.title, t.description, t.priority, t.dueAt, t.tags, t.createdAt],
  );
  return rows[0] as TaskRow;
}

/** The user's task; `lock` holds its row until the transaction ends. */
export async function findTask(
  q: Queryable,
  userId: string,
  id: string,
  opts: { lock?: boolean } = {},
): Promise<TaskRow | undefined> {
  const { rows } = await q.query<TaskRow>(
    `SELECT ${COLUMNS} FROM tasks WHERE id = $1 AND user_id = $2${opts.lock ? ' FOR UPDATE' : ''}`,
    [id, userId],
  );
  return rows[0];
}

export type TaskChanges = Partial<Pick<TaskRow, 'title' | 'description' | 'priority' | 'dueAt' | 'tags'>>;

// The only columns an update may name; the SQL text is built from these constants, values are parameters.
const UPDATABLE: Record<keyof TaskChanges, string> = {
  title: 'title',
  description: 'description',
  priority: 'priority',
  dueAt: 'due_at',
  tags: 'tags',
};

export async function updateTask(
  q: Queryable,
  userId: string,
  id: string,
  changes: TaskChanges,
  now: Date,
): Promise<TaskRow | undefined> {
  const params: unknown[] = [id, userId, now];
  const sets = ['updated_at = $3'];
  for (const field of Object.keys(UPDATABLE) as (keyof TaskChanges)[]) {
    if (changes[field] === undefined) continue;
    params.push(changes[field]);
    sets.push(`${UPDATABLE[field]} = $${params.length}${field === 'tags' ? '::text[]' : ''}`);
  }
  const { rows } = await q.query<TaskRow>(
    `UPDATE tasks SET ${sets.join(', ')} WHERE id = $1 AND user_id = $2 RETURNING ${COLUMNS}`,
    params,
  );
  return rows[0];
}

/** Marks an open task done; undefined when it is not the user's or was already done. */
export async function markDone(
  q: Queryable,
  userId: string,
  id: string,
  now: Date,
  completedOn: string,
): Promise<TaskRow | undefined> {
  const { rows } = await q.query<TaskRow>(
    `UPDATE tasks SET status = 'done', completed_at = $3, completed_on = $4, updated_at = $3
     WHERE id = $1 AND user_id = $2 AND status = 'open' RETURNING ${COLUMNS}`,
    [id, userId, now, completedOn],
  );
  return rows[0];
}

/** Marks a done task open again; undefined when it is not the user's or was already open. */
export async function markOpen(
  q: Queryable,
  userId: string,
  id: string,
  now: Date,
): Promise<TaskRow | undefined> {
  const { rows } = await q.query<TaskRow>(
    `UPDATE tasks SET status = 'open', completed_at = NULL, completed_on = NULL, updated_at = $3
     WHERE id = $1 AND user_id = $2 AND status = 'done' RETURNING ${COLUMNS}`,
    [id, userId, now],
  );
  return rows[0];
}

export async function deleteTask(q: Queryable, userId: string, id: string): Promise<boolean> {
  const { rowCount } = await q.query('DELETE FROM tasks WHERE id = $1 AND user_id = $2', [id, userId]);
  return rowCount === 1;
}

/** Where the previous page ended: the fields of its last task that its sort orders by. */
export interface TaskPosition {
  id: string;
  createdAt: Date;
  dueAt: Date | null;
  priority: Priority;
}

export interface TaskListFilter {
  userId: string;
  status: TaskStatus | 'all';
  priority?: Priority;
  tag?: string;
  q?: string;
  dueBefore?: Date;
  dueAfter?: Date;
  overdue?: boolean;
  /** What "overdue" is measured against. */
  now: Date;
  sort: TaskSort;
  after?: TaskPosition;
  limit: number;
}

const RANK: Record<Priority, number> = { high: 1, medium: 2, low: 3 };

/**
 * Each sort is a tuple of index columns in one direction, ending in the id, so that a page starts
 * strictly after the previous page's last tuple (keyset pagination) and rows inserted meanwhile can
 * never shift a task into a page already read. The expressions match the indexes of 0004_tasks.sql.
 */
const ORDERS: Record<
  TaskSort,
  { columns: string[]; casts: string[]; desc: boolean; key: (p: TaskPosition) => unknown[] }
> = {
  createdAt: {
    columns: ['created_at', 'id'],
    casts: ['timestamptz', 'uuid'],
    desc: false,
    key: (p) => [p.createdAt.toISOString(), p.id],
  },
  '-createdAt': {
    columns: ['created_at', 'id'],
    casts: ['timestamptz', 'uuid'],
    desc: true,
    key: (p) => [p.createdAt.toISOString(), p.id],
  },
  dueAt: {
    columns: [`coalesce(due_at, 'infinity'::timestamptz)`, 'id'],
    casts: ['timestamptz', 'uuid'],
    desc: false,
    key: (p) => [p.dueAt ? p.dueAt.toISOString() : 'infinity', p.id],
  },
  '-dueAt': {
    columns: [`coalesce(due_at, '-infinity'::timestamptz)`, 'id'],
    casts: ['timestamptz', 'uuid'],
    desc: true,
    key: (p) => [p.dueAt ? p.dueAt.toISOString() : '-infinity', p.id],
  },
  priority: {
    columns: ['priority_rank', 'created_at', 'id'],
    casts: ['smallint', 'timestamptz', 'uuid'],
    desc: false,
    key: (p) => [RANK[p.priority], p.createdAt.toISOString(), p.id],
  },
};

/**
 * The list query for a filter, exposed so tests can EXPLAIN exactly what runs. Open and done tasks
 * are each one range of the sort's index; status=all reads a page from each range and merges them,
 * so no page ever reads more than 2 × limit index entries before its filters.
 */
export function listTasksQuery(f: TaskListFilter): { sql: string; params: unknown[] } {
  const params: unknown[] = [];
  const param = (value: unknown, cast: string) => {
    params.push(value);
    return `$${params.length}::${cast}`;
  };
  const where = [`user_id = ${param(f.userId, 'uuid')}`];
  if (f.priority) where.push(`priority = ${param(f.priority, 'text')}`);
  if (f.tag) where.push(`tags @> ARRAY[${param(f.tag, 'text')}]`);
  if (f.q) {
    const text = param(f.q, 'text');
    where.push(
      `(strpos(lower(title), lower(${text})) > 0 OR strpos(lower(description), lower(${text})) > 0)`,
    );
  }
  if (f.dueBefore) where.push(`due_at < ${param(f.dueBefore.toISOString(), 'timestamptz')}`);
  if (f.dueAfter) where.push(`due_at > ${param(f.dueAfter.toISOString(), 'timestamptz')}`);
  if (f.overdue !== undefined) {
    const now = param(f.now.toISOString(), 'timestamptz');
    where.push(
      f.overdue
        ? `(status = 'open' AND due_at < ${now})`
        : `(status <> 'open' OR due_at IS NULL OR due_at >= ${now})`,
    );
  }
  const order = ORDERS[f.sort];
  if (f.after) {
    const key = order.key(f.after).map((value, i) => param(value, order.casts[i] as string));
    where.push(`(${order.columns.join(', ')}) ${order.desc ? '<' : '>'} (${key.join(', ')})`);
  }
  const orderBy = `ORDER BY ${order.columns.map((c) => (order.desc ? `${c} DESC` : c)).join(', ')}`;
  const limit = `LIMIT ${param(f.limit, 'int')}`;
  const conditions = where.join(' AND ');
  if (f.status !== 'all') {
    return {
      sql: `SELECT ${COLUMNS} FROM tasks WHERE ${conditions} AND status = ${param(f.status, 'text')} ${orderBy} ${limit}`,
      params,
    };
  }
  const arm = (status: TaskStatus) =>
    `(SELECT ${COLUMNS}, priority_rank FROM tasks WHERE ${conditions} AND status = '${status}' ${orderBy} ${limit})`;
  return {
    sql: `SELECT ${COLUMNS} FROM (${arm('open')} UNION ALL ${arm('done')}) AS t ${orderBy} ${limit}`,
    params,
  };
}

export async function listTasks(q: Queryable, f: TaskListFilter): Promise<TaskRow[]> {
  const { sql, params } = listTasksQuery(f);
  return (await q.query<TaskRow>(sql, params)).rows;
}

/** Done tasks per completion date in [from, to]. */
export async function completedCountsByDate(q: Queryable, userId: string, from: string, to: string) {
  const { rows } = await q.query<{ date: string; count: number }>(
    `SELECT completed_on AS date, count(*)::int AS count FROM tasks
     WHERE user_id = $1 AND status = 'done' AND completed_on BETWEEN $2 AND $3 GROUP BY completed_on`,
    [userId, from, to],
  );
  return new Map(rows.map((r) => [r.date, r.count]));
}

export async function exportTasks(q: Queryable, userId: string) {
  const { rows } = await q.query(
    `SELECT id, title, description, priority, due_at, tags, status, completed_at, completed_on, created_at, updated_at
     FROM tasks WHERE user_id = $1 ORDER BY created_at, id`,
    [userId],
  );
  return rows;
}
