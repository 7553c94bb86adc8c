import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { type Db, openPglite, openPostgres } from '../src/lib/db.js';
import { migrate, readMigrations } from '../src/lib/migrate.js';
import { withDatabase } from './global-setup.js';
import { lane } from './helpers.js';

// Migrations run on an empty database of the lane's kind: PGlite embedded, PostgreSQL in services.
const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function emptyDb(): Promise<{ open: () => Promise<Db> }> {
  if (!lane.databaseUrl) {
    const db = await openPglite(undefined);
    cleanups.push(() => db.close());
    return { open: async () => db };
  }
  const name = `taskmaa_m_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: lane.databaseUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  const pools: Db[] = [];
  cleanups.push(async () => {
    for (const p of pools) await p.close();
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
  });
  return {
    open: async () => {
      const db = openPostgres({
        url: withDatabase(lane.databaseUrl as string, name),
        max: 2,
        statementTimeoutMs: 10_000,
      });
      pools.push(db);
      return db;
    },
  };
}

const tables = async (db: Db) =>
  (
    await db.query<{ tableName: string }>(
      `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name`,
    )
  ).rows.map((r) => r.tableName);

describe('migrations', () => {
  it('are numbered without gaps', () => {
    const versions = readMigrations().map((m) => m.version);
    expect(versions).toEqual(versions.map((_, i) => i + 1));
  });

  it('apply once, then are a no-op', async () => {
    const db = await (await emptyDb()).open();
    const all = readMigrations().map((m) => `${String(m.version).padStart(4, '0')}_${m.name}`);
    expect((await migrate(db)).applied).toEqual(all);
    expect(await tables(db)).toEqual(expect.arrayContaining(['schema_migrations', 'outbox', 'local_jobs']));
    expect((await migrate(db)).applied).toEqual([]);
    const { rows } = await db.query<{ version: number }>(
      'SELECT version FROM schema_migrations ORDER BY version',
    );
    expect(rows.map((r) => r.version)).toEqual(readMigrations().map((m) => m.version));
  });

  it('two processes migrating at once apply each migration exactly once', async () => {
    const target = await emptyDb();
    const [a, b] = [await target.open(), await target.open()];
    const [ra, rb] = await Promise.all([migrate(a), migrate(b)]);
    expect([...ra.applied, ...rb.applied].sort()).toEqual(
      readMigrations().map((m) => `${String(m.version).padStart(4, '0')}_${m.name}`),
    );
  });

  it('refuse a migration edited after it was applied', async () => {
    const db = await (await emptyDb()).open();
    await migrate(db);
    const edited = readMigrations().map((m, i) => (i === 0 ? { ...m, checksum: 'changed' } : m));
    await expect(migrate(db, edited)).rejects.toThrow(/was edited after it was applied/);
  });

  it('refuse to run code older than the database', async () => {
    const db = await (await emptyDb()).open();
    await migrate(db);
    await expect(migrate(db, readMigrations().slice(0, 0))).rejects.toThrow(/that this code does not know/);
  });

  it('a failing migration leaves nothing half-applied', async () => {
    const db = await (await emptyDb()).open();
    const broken = [
      ...readMigrations(),
      {
        version: readMigrations().length + 1,
        name: 'broken',
        sql: 'CREATE TABLE ok_part (id int); SELECT no_such_column FROM outbox;',
        checksum: 'x',
      },
    ];
    await expect(migrate(db, broken)).rejects.toThrow();
    expect(await tables(db)).not.toContain('ok_part');
    expect(await tables(db)).not.toContain('outbox');
  });
});
