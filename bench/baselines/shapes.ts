import type { TaskListFilter } from '../../src/modules/tasks/tasks.repo.js';

// What the app's scenarios ask for, so that each baseline runs the same statement on the same rows.

/** The columns the tasks repo reads for a task. */
export const TASK_COLUMNS = `id, user_id, title, description, priority, due_at, tags, status, completed_at,
  completed_on, created_at, updated_at`;

/** tasks.list's filter: `?status=open&priority=high`, first page, as the service turns it into SQL (limit + 1). */
export const PAGE: Omit<TaskListFilter, 'userId' | 'now'> = {
  status: 'open',
  priority: 'high',
  sort: 'createdAt',
  limit: 21,
};
export const PAGE_QUERY = '?status=open&priority=high';
