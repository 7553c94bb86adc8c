// The PGlite baselines of the embedded scenarios: bare Fastify + PGlite (in-process Postgres) on a copy
// of the embedded app's seeded data dir, the same statements as B-pk and B-page.
import { PGlite } from '@electric-sql/pglite';
import Fastify from 'fastify';
import { listTasksQuery } from '../../src/modules/tasks/tasks.repo.js';
import { announce, port, required } from './serve.js';
import { PAGE, TASK_COLUMNS } from './shapes.js';

const db = new PGlite({ dataDir: required('PGLITE_DIR') });
await db.waitReady;
const app = Fastify({ logger: false });

app.get<{ Params: { userId: string; id: string } }>('/pk/:userId/:id', async (request) => {
  const { rows } = await db.query(`SELECT ${TASK_COLUMNS} FROM tasks WHERE id = $1 AND user_id = $2`, [
    request.params.id,
    request.params.userId,
  ]);
  return rows[0];
});

app.get<{ Params: { userId: string } }>('/page/:userId', async (request) => {
  const { sql, params } = listTasksQuery({ ...PAGE, userId: request.params.userId, now: new Date() });
  const { rows } = await db.query(sql, params as unknown[]);
  return { items: rows.slice(0, PAGE.limit - 1) };
});

await app.listen({ port: port(), host: '127.0.0.1' });
announce(app.server);
process.on('exit', () => void db.close());
