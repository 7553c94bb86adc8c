import type { Logger } from 'pino';
import { uuidv7 } from 'uuidv7';
import type { Clock } from '../../lib/clock.js';
import type { Db, Queryable } from '../../lib/db.js';
import { invalid, notFound } from '../../lib/errors.js';
import { UUID } from '../../lib/formats.js';
import { type IdempotencyKey, idempotent, type Outcome } from '../../lib/idempotency.js';
import type { Realtime } from '../../realtime/port.js';
import type { AccountsService } from '../accounts/accounts.service.js';
import { POINTS, type StatsService } from '../stats/stats.service.js';
import type { TaskChanges, TaskPosition, TaskRow } from './tasks.repo.js';
import * as repo from './tasks.repo.js';
import type {
  CreateTask,
  ListTasksQuery,
  Priority,
  Task,
  TaskList,
  TaskSort,
  UpdateTask,
} from './tasks.schemas.js';

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const PRIORITIES = new Set<string>(['low', 'medium', 'high']);
const SORTS = new Set<string>(['createdAt', '-createdAt', 'dueAt', '-dueAt', 'priority']);

const iso = (d: Date | null) => (d ? d.toISOString() : null);

export const toTask = (r: TaskRow): Task => ({
  id: r.id,
  title: r.title,
  description: r.description,
  priority: r.priority,
  dueAt: iso(r.dueAt),
  tags: r.tags,
  status: r.status,
  completedAt: iso(r.completedAt),
  completedOn: r.completedOn,
  createdAt: r.createdAt.toISOString(),
  updatedAt: r.updatedAt.toISOString(),
});

const taskNotFound = () => notFound('task');

/** The schema checked the format; a few valid-looking instants (leap seconds) still are not dates. */
function instant(value: string, field: string): Date {
  const d = new Date(value);
  if (Number.isNaN(d.getTime()))
    throw invalid('validation_failed', `${field} is not a valid instant.`, [
      { field, message: 'is not a valid instant' },
    ]);
  return d;
}

function notInPast(value: string, now: Date): Date {
  const d = instant(value, 'body/dueAt');
  if (d.getTime() < now.getTime())
    throw invalid('due_in_past', 'dueAt is in the past.', [
      { field: 'body/dueAt', message: 'is in the past' },
    ]);
  return d;
}

const normaliseTags = (tags: string[]) => [...new Set(tags.map((t) => t.trim().toLowerCase()))];

// Cursors are opaque to clients: base64url JSON of the sort and the last task's position in it.
interface CursorPayload {
  s: TaskSort;
  i: string;
  c: string;
  d: string | null;
  p: Priority;
}

function encodeCursor(sort: TaskSort, r: TaskRow): string {
  const payload: CursorPayload = {
    s: sort,
    i: r.id,
    c: r.createdAt.toISOString(),
    d: iso(r.dueAt),
    p: r.priority,
  };
  return Buffer.from(JSON.stringify(payload)).toString('base64url');
}

function decodeCursor(cursor: string, sort: TaskSort): TaskPosition {
  const bad = () =>
    invalid('invalid_cursor', 'The cursor is not one this list handed out (or was for another sort).', [
      { field: 'query/cursor', message: 'is invalid' },
    ]);
  let p: Partial<CursorPayload>;
  try {
    p = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw bad();
  }
  if (
    !p ||
    typeof p !== 'object' ||
    typeof p.s !== 'string' ||
    !SORTS.has(p.s) ||
    p.s !== sort ||
    typeof p.i !== 'string' ||
    !UUID.test(p.i) ||
    typeof p.c !== 'string' ||
    !ISO.test(p.c) ||
    !(p.d === null || (typeof p.d === 'string' && ISO.test(p.d))) ||
    typeof p.p !== 'string' ||
    !PRIORITIES.has(p.p)
  ) {
    throw bad();
  }
  const createdAt = new Date(p.c);
  const dueAt = p.d === null ? null : new Date(p.d);
  if (Number.isNaN(createdAt.getTime()) || (dueAt && Number.isNaN(dueAt.getTime()))) throw bad();
  return { id: p.i, createdAt, dueAt, priority: p.p };
}

export type TasksService = ReturnType<typeof makeTasksService>;

export function makeTasksService(deps: {
  db: Db;
  clock: Clock;
  accounts: Pick<AccountsService, 'dayCalendar'>;
  stats: Pick<StatsService, 'award' | 'changed'>;
  realtime: Realtime;
  log: Logger;
}) {
  const { db, clock, accounts, stats, realtime, log } = deps;

  return {
    /** Creates a task; with an Idempotency-Key a retry gets the first answer and creates nothing. */
    async create(userId: string, input: CreateTask, key?: IdempotencyKey): Promise<Outcome<Task>> {
      const now = clock.now();
      const insert = async (q: Queryable) => {
        const row = await repo.insertTask(q, {
          id: uuidv7(),
          userId,
          title: input.title.trim(),
          description: input.description ?? '',
          priority: input.priority ?? 'medium',
          dueAt: input.dueAt === undefined ? null : notInPast(input.dueAt, now),
          tags: normaliseTags(input.tags ?? []),
          createdAt: now,
        });
        const task = toTask(row);
        q.afterCommit(() => {
          log.info({ taskId: task.id }, 'task created');
          realtime.toUser(userId, 'task:created', { task });
        });
        return { status: 201, body: task };
      };
      // One statement is a transaction by itself: BEGIN and COMMIT were two of its three round trips.
      // The Idempotency-Key's record must commit with the task, so a keyed request takes one.
      return key ? idempotent(db, key, now, insert) : { ...(await insert(db)), replayed: false };
    },

    async get(userId: string, id: string): Promise<Task> {
      if (!UUID.test(id)) throw taskNotFound();
      const row = await repo.findTask(db, userId, id);
      if (!row) throw taskNotFound();
      return toTask(row);
    },

    async list(userId: string, query: ListTasksQuery): Promise<TaskList> {
      const sort = query.sort ?? 'createdAt';
      const limit = query.limit ?? 20;
      const rows = await repo.listTasks(db, {
        userId,
        status: query.status ?? 'open',
        ...(query.priority ? { priority: query.priority } : {}),
        ...(query.tag ? { tag: query.tag.trim().toLowerCase() } : {}),
        ...(query.q ? { q: query.q } : {}),
        ...(query.dueBefore ? { dueBefore: instant(query.dueBefore, 'query/dueBefore') } : {}),
        ...(query.dueAfter ? { dueAfter: instant(query.dueAfter, 'query/dueAfter') } : {}),
        ...(query.overdue !== undefined ? { overdue: query.overdue } : {}),
        now: clock.now(),
        sort,
        ...(query.cursor ? { after: decodeCursor(query.cursor, sort) } : {}),
        limit: limit + 1,
      });
      const page = rows.slice(0, limit);
      const last = page[page.length - 1];
      return {
        items: page.map(toTask),
        nextCursor: rows.length > limit && last ? encodeCursor(sort, last) : null,
      };
    },

    async update(userId: string, id: string, patch: UpdateTask): Promise<Task> {
      if (!UUID.test(id)) throw taskNotFound();
      const now = clock.now();
      return db.tx(async (tx) => {
        const current = await repo.findTask(tx, userId, id, { lock: true });
        if (!current) throw taskNotFound();
        const changes: TaskChanges = {};
        if (patch.title !== undefined) changes.title = patch.title.trim();
        if (patch.description !== undefined) changes.description = patch.description;
        if (patch.priority !== undefined) changes.priority = patch.priority;
        if (patch.tags !== undefined) changes.tags = normaliseTags(patch.tags);
        if (patch.dueAt === null) changes.dueAt = null;
        else if (patch.dueAt !== undefined) {
          // Sending back the due date it already has is not setting one in the past.
          const due = instant(patch.dueAt, 'body/dueAt');
          changes.dueAt = due.getTime() === current.dueAt?.getTime() ? due : notInPast(patch.dueAt, now);
        }
        const row = await repo.updateTask(tx, userId, id, changes, now);
        if (!row) throw taskNotFound();
        const task = toTask(row);
        tx.afterCommit(() => realtime.toUser(userId, 'task:updated', { task }));
        return task;
      });
    },

    async remove(userId: string, id: string): Promise<void> {
      if (!UUID.test(id)) throw taskNotFound();
      await db.tx(async (tx) => {
        if (!(await repo.deleteTask(tx, userId, id))) throw taskNotFound();
        stats.changed(tx, userId);
        tx.afterCommit(() => {
          log.info({ taskId: id }, 'task deleted');
          realtime.toUser(userId, 'task:deleted', { id });
        });
      });
    },

    /**
     * Marks the task done on the owner's logical date and pays its points, once per task ever (the
     * ledger is unique per task). Completing a done task answers it unchanged.
     */
    async complete(userId: string, id: string, key?: IdempotencyKey): Promise<Outcome<Task>> {
      const now = clock.now();
      const outcome = await idempotent<Task>(db, key, now, async (tx) => {
        if (!UUID.test(id)) throw taskNotFound();
        // The user's own day, across any time-zone change they made (day-history.ts).
        const completedOn = (await accounts.dayCalendar(userId, tx)).dateOf(now);
        const done = await repo.markDone(tx, userId, id, now, completedOn);
        if (!done) {
          const current = await repo.findTask(tx, userId, id);
          if (!current) throw taskNotFound();
          stats.changed(tx, userId);
          return { status: 200, body: toTask(current) };
        }
        const paid = await stats.award(tx, {
          userId,
          source: 'task_done',
          sourceKey: id,
          points: POINTS.task_done,
          localDate: completedOn,
        });
        const task = toTask(done);
        stats.changed(tx, userId);
        tx.afterCommit(() => {
          log.info({ taskId: id, paid }, 'task completed');
          realtime.toUser(userId, 'task:completed', { task, pointsAwarded: paid ? POINTS.task_done : 0 });
        });
        return { status: 200, body: task };
      });
      // A process killed between a commit and its cache invalidation leaves the stats stale; the
      // client's retry (a replay, or finding the task done above) invalidates them again.
      if (outcome.replayed) stats.changed(db, userId);
      return outcome;
    },

    exportFor: (userId: string) => repo.exportTasks(db, userId),

    /** Tasks done per logical date (those still done), for the daily goal and the week's progress. */
    completedCountsByDate: (userId: string, from: string, to: string, q: Queryable = db) =>
      repo.completedCountsByDate(q, userId, from, to),

    /** Opens a done task again; points already paid stay paid. Reopening an open task is a no-op. */
    async reopen(userId: string, id: string): Promise<Task> {
      if (!UUID.test(id)) throw taskNotFound();
      const now = clock.now();
      return db.tx(async (tx) => {
        const reopened = await repo.markOpen(tx, userId, id, now);
        if (!reopened) {
          const current = await repo.findTask(tx, userId, id);
          if (!current) throw taskNotFound();
          return toTask(current);
        }
        const task = toTask(reopened);
        stats.changed(tx, userId);
        tx.afterCommit(() => realtime.toUser(userId, 'task:reopened', { task }));
        return task;
      });
    },
  };
}
