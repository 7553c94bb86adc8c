import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { openPglite, openPostgres } from '../src/lib/db.js';
import { migrate } from '../src/lib/migrate.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Embedded lane: a migrated PGlite data dir (tar) each file loads into its own instance. */
    pgliteTemplate: string;
    /** Services lane: a migrated database each file copies with CREATE DATABASE ... TEMPLATE. */
    pgTemplate: string;
  }
}

/** Migrates once per run; every test file then starts from a copy of the result. */
export default async function setup(project: TestProject) {
  const serverUrl = process.env.TEST_DATABASE_URL;
  if (serverUrl) {
    const name = `taskmaa_tpl_${randomBytes(4).toString('hex')}`;
    const admin = new pg.Client({ connectionString: serverUrl });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    const db = openPostgres({ url: withDatabase(serverUrl, name), max: 1, statementTimeoutMs: 30_000 });
    await migrate(db);
    await db.close();
    project.provide('pgTemplate', name);
    project.provide('pgliteTemplate', '');
    return async () => {
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end();
    };
  }
  const dir = mkdtempSync(join(tmpdir(), 'taskmaa-tpl-'));
  const db = await openPglite(undefined);
  await migrate(db);
  const dump = await db.dump();
  await db.close();
  const file = join(dir, 'template.tar');
  writeFileSync(file, Buffer.from(await dump.arrayBuffer()));
  project.provide('pgliteTemplate', file);
  project.provide('pgTemplate', '');
  return () => rmSync(dir, { recursive: true, force: true });
}

export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}
