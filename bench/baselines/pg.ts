// B-pk, B-page, B-insert: bare Fastify + pg on the bench's own database, the statements the tasks
// repo runs for one task, a filtered page of 20 and a create, without auth, transactions or mapping.
import { randomUUID } from 'node:crypto';
import Fastify from 'fastify';
import pg from 'pg';
import { listTasksQuery } from '../../src/modules/tasks/tasks.repo.js';
import { announce, port, required } from './serve.js';
import { PAGE, TASK_COLUMNS } from './shapes.js';

// The app's pool size (DATABASE_POOL_MAX's default).
const pool = new pg.Pool({ connectionString: required('DATABASE_URL'), max: 10 });
const app = Fastify({ logger: false });

app.get<{ Params: { userId: string; id: string } }>('/pk/:userId/:id', async (request) => {
  const { rows } = await pool.query(`SELECT ${TASK_COLUMNS} FROM tasks WHERE id = $1 AND user_id = $2`, [
    request.params.id,
    request.params.userId,
  ]);
  return rows[0];
});

app.get<{ Params: { userId: string } }>('/page/:userId', async (request) => {
  const { sql, params } = listTasksQuery({ ...PAGE, userId: request.params.userId, now: new Date() });
  const { rows } = await pool.query(sql, params);
  return { items: rows.slice(0, PAGE.limit - 1) };
});

app.post<{ Params: { userId: string }; Body: { title: string } }>(
  '/insert/:userId',
  async (request, reply) => {
    const now = new Date();
    const { rows } = await pool.query(
      `INSERT INTO tasks (id, user_id, title, description, priority, due_at, tags, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7::text[], $8, $8) RETURNING ${TASK_COLUMNS}`,
      [randomUUID(), request.params.userId, request.body.title, '', 'medium', null, [], now],
    );
    return reply.code(201).send(rows[0]);
  },
);

await app.listen({ port: port(), host: '127.0.0.1' });
announce(app.server);
