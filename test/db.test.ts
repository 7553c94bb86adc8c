import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { type Db, openPglite, openPostgres, type Queryable } from '../src/lib/db.js';
import { lane } from './helpers.js';

// The database port itself, on the lane's kind of database (no schema needed).
let db: Db;
afterAll(() => db?.close());

describe('database port', () => {
  it('a transaction sends the statements a service starts together in turn, on its one connection', async () => {
    db = lane.databaseUrl
      ? openPostgres({ url: lane.databaseUrl, max: 2, statementTimeoutMs: 10_000 })
      : await openPglite(undefined);
    // pg queues statements sent to a busy client but warns that pg@9 drops it (badges' facts did so).
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.message);
    process.on('warning', onWarning);
    try {
      const results = await db.tx((q) =>
        Promise.all([
          q.query<{ n: number }>('SELECT 1 AS n FROM pg_sleep(0.05)'),
          q.query<{ n: number }>('SELECT 2 AS n'),
          q.query<{ n: number }>('SELECT 3 AS n'),
        ]),
      );
      expect(results.map((r) => r.rows[0]?.n)).toEqual([1, 2, 3]);
      // A failing statement fails only itself; the next one in turn still runs (and then the
      // transaction rolls back as a whole).
      const settled = await db
        .tx((q) => Promise.allSettled([q.query('SELECT 1/0'), q.query('SELECT 1 AS n')]))
        .catch((err: unknown) => err);
      expect(Array.isArray(settled) && settled.map((s) => s.status)).toEqual(['rejected', 'rejected']);
    } finally {
      process.off('warning', onWarning);
    }
    await new Promise((r) => setImmediate(r));
    expect(warnings.filter((m) => m.includes('already executing a query'))).toEqual([]);
  });

  it('beforeCommit runs in the transaction just before COMMIT, and its failure rolls it back', async () => {
    const table = `before_commit_${randomBytes(4).toString('hex')}`;
    await db.query(`CREATE TABLE ${table} (n int NOT NULL)`);
    try {
      const numbers = async () =>
        (await db.query<{ n: number }>(`SELECT n FROM ${table} ORDER BY n`)).rows.map((r) => r.n);
      await db.tx(async (q) => {
        await q.beforeCommit(async () => {
          // The transaction's own writes are there; it has not committed yet.
          const seen = await q.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`);
          await q.query(`INSERT INTO ${table} VALUES ($1)`, [10 + (seen.rows[0]?.n ?? 0)]);
        });
        await q.query(`INSERT INTO ${table} VALUES (1)`);
      });
      expect(await numbers()).toEqual([1, 11]);
      const failed = db.tx(async (q) => {
        await q.query(`INSERT INTO ${table} VALUES (2)`);
        await q.beforeCommit(async () => {
          throw new Error('refused before commit');
        });
      });
      await expect(failed).rejects.toThrow('refused before commit');
      expect(await numbers()).toEqual([1, 11]);
      // Outside a transaction, at once.
      let ran = false;
      await db.beforeCommit(async () => {
        ran = true;
      });
      expect(ran).toBe(true);
    } finally {
      await db.query(`DROP TABLE ${table}`);
    }
  });

  it('a query on the pool inside one of its own transactions is refused (the guard), unless turned off', async () => {
    await expect(db.tx(() => db.query('SELECT 1'))).rejects.toThrow(
      /query on the pool inside one of its transactions/,
    );
    if (!lane.databaseUrl) return;
    // Production turns it off on PostgreSQL, where such a query reads outside the transaction.
    const unguarded = openPostgres({
      url: lane.databaseUrl,
      max: 2,
      statementTimeoutMs: 10_000,
      guard: false,
    });
    try {
      const { rows } = await unguarded.tx(() => unguarded.query<{ one: number }>('SELECT 1 AS one'));
      expect(rows).toEqual([{ one: 1 }]);
    } finally {
      await unguarded.close();
    }
  });
  it('a long run of statements, in a transaction or not, leaves other work of the process its turns', async () => {
    // The embedded database settled every statement as a microtask: a job walking every user held
    // the event loop until it ended (the bench's embedded app answered no health check for 2 minutes).
    for (const run of [
      (fn: (q: Queryable) => Promise<void>) => fn(db),
      (fn: (q: Queryable) => Promise<void>) => db.tx(fn),
    ]) {
      let firedAt: number | undefined;
      let i = 0;
      setTimeout(() => {
        firedAt = i;
      }, 0);
      await run(async (q) => {
        for (; i < 300; i++) await q.query('SELECT 1');
      });
      expect(firedAt).toBeLessThan(300);
    }
  });
});
