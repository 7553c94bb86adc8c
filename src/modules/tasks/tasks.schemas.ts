import { type Static, Type as T } from '@sinclair/typebox';
import { NO_NUL, NOT_BLANK } from '../../http/schemas.js';

const strict = { additionalProperties: false } as const;

export const TASK_TITLE_MAX = 200;
export const TASK_DESCRIPTION_MAX = 5000;
export const TASK_TAGS_MAX = 10;
export const TASK_TAG_MAX = 30;
export const TASK_LIST_MAX = 100;

export const Priority = T.Union([T.Literal('low'), T.Literal('medium'), T.Literal('high')]);
export type Priority = Static<typeof Priority>;
export const TaskStatus = T.Union([T.Literal('open'), T.Literal('done')]);
export type TaskStatus = Static<typeof TaskStatus>;

const Title = T.String({
  minLength: 1,
  maxLength: TASK_TITLE_MAX,
  pattern: NOT_BLANK,
  description: '1–200 characters, not blank; stored trimmed.',
});
const Description = T.String({ maxLength: TASK_DESCRIPTION_MAX, pattern: NO_NUL });
const Tag = T.String({
  minLength: 1,
  maxLength: TASK_TAG_MAX,
  pattern: NOT_BLANK,
  description: '1–30 characters; stored trimmed and in lower case.',
});
const Tags = T.Array(Tag, {
  maxItems: TASK_TAGS_MAX,
  description: 'At most 10; duplicates (ignoring case) are merged.',
});
const Instant = T.String({ format: 'date-time' });

export const Task = T.Object(
  {
    id: T.String({ format: 'uuid' }),
    title: T.String(),
    description: T.String({ description: 'Empty when none.' }),
    priority: Priority,
    dueAt: T.Union([Instant, T.Null()]),
    tags: T.Array(T.String()),
    status: TaskStatus,
    completedAt: T.Union([Instant, T.Null()]),
    completedOn: T.Union([T.String({ format: 'date' }), T.Null()], {
      description: "The owner's logical date (YYYY-MM-DD) when it was completed.",
    }),
    createdAt: Instant,
    updatedAt: Instant,
  },
  { ...strict, $id: 'Task' },
);
export type Task = Static<typeof Task>;

export const CreateTaskBody = T.Object(
  {
    title: Title,
    description: T.Optional(Description),
    priority: T.Optional(T.Union(Priority.anyOf, { default: 'medium' })),
    dueAt: T.Optional(T.String({ format: 'date-time', description: 'Not in the past.' })),
    tags: T.Optional(Tags),
  },
  strict,
);
export type CreateTask = Static<typeof CreateTaskBody>;

export const UpdateTaskBody = T.Object(
  {
    title: T.Optional(Title),
    description: T.Optional(Description),
    priority: T.Optional(Priority),
    dueAt: T.Optional(
      T.Union([T.String({ format: 'date-time' }), T.Null()], {
        description: 'Not in the past (unless unchanged); null removes the due date.',
      }),
    ),
    tags: T.Optional(Tags),
  },
  { ...strict, minProperties: 1 },
);
export type UpdateTask = Static<typeof UpdateTaskBody>;

export const TaskSort = T.Union(
  [
    T.Literal('createdAt'),
    T.Literal('-createdAt'),
    T.Literal('dueAt'),
    T.Literal('-dueAt'),
    T.Literal('priority'),
  ],
  {
    default: 'createdAt',
    description:
      'createdAt (oldest first, the default), -createdAt, dueAt (soonest first), -dueAt (latest first) — ' +
      'tasks without a due date come last in both —, or priority (high to low, then oldest first).',
  },
);
export type TaskSort = Static<typeof TaskSort>;

export const ListTasksQuery = T.Object(
  {
    status: T.Optional(
      T.Union([T.Literal('open'), T.Literal('done'), T.Literal('all')], { default: 'open' }),
    ),
    priority: T.Optional(Priority),
    tag: T.Optional(T.String({ minLength: 1, maxLength: TASK_TAG_MAX, pattern: NOT_BLANK })),
    q: T.Optional(
      T.String({
        minLength: 1,
        maxLength: 200,
        pattern: NOT_BLANK,
        description: 'Text contained in the title or description, ignoring case.',
      }),
    ),
    dueBefore: T.Optional(T.String({ format: 'date-time', description: 'Due strictly before.' })),
    dueAfter: T.Optional(T.String({ format: 'date-time', description: 'Due strictly after.' })),
    overdue: T.Optional(
      T.Boolean({ description: 'true: open and due in the past; false: every other task.' }),
    ),
    sort: T.Optional(TaskSort),
    limit: T.Optional(T.Integer({ minimum: 1, maximum: TASK_LIST_MAX, default: 20 })),
    cursor: T.Optional(
      T.String({
        minLength: 1,
        maxLength: 300,
        pattern: '^[A-Za-z0-9_-]+$',
        description: 'nextCursor of the previous page; use it with the same sort and filters.',
      }),
    ),
  },
  strict,
);
export type ListTasksQuery = Static<typeof ListTasksQuery>;

export const TaskList = T.Object(
  { items: T.Array(Task), nextCursor: T.Union([T.String(), T.Null()]) },
  strict,
);
export type TaskList = Static<typeof TaskList>;

// Any string: a malformed id is simply not found, like someone else's.
export const TaskParams = T.Object({ id: T.String() }, strict);
