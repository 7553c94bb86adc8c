import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Db } from './db.js';

export const migrationsDir = join(dirname(fileURLToPath(import.meta.url)), '../../db/migrations');

export interface Migration {
  version: number;
  name: string;
  sql: string;
  checksum: string;
}

export function readMigrations(dir = migrationsDir): Migration[] {
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.sql'))
    .sort();
  const migrations = files.map((file) => {
    const match = /^(\d{4})_([a-z0-9_]+)\.sql$/.exec(file);
    if (!match) throw new Error(`Migration file ${file} must be named NNNN_name.sql`);
    const sql = readFileSync(join(dir, file), 'utf8');
    return {
      version: Number(match[1]),
      name: match[2] as string,
      sql,
      checksum: createHash('sha256').update(sql).digest('hex'),
    };
  });
  migrations.forEach((m, i) => {
    if (m.version !== i + 1)
      throw new Error(`Migrations must be numbered 0001, 0002… without gaps (${m.name})`);
  });
  return migrations;
}

/**
 * Applies pending migrations in one transaction under an advisory lock, so several processes starting
 * at once apply each migration exactly once. A changed file that was already applied is refused:
 * merged migrations are never edited.
 */
export async function migrate(db: Db, migrations = readMigrations()): Promise<{ applied: string[] }> {
  return db.tx(async (tx) => {
    await tx.query(`SELECT pg_advisory_xact_lock(7300417)`);
    await tx.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version integer PRIMARY KEY,
      name text NOT NULL,
      checksum text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
    const { rows } = await tx.query<{ version: number; name: string; checksum: string }>(
      'SELECT version, name, checksum FROM schema_migrations ORDER BY version',
    );
    const done = new Map(rows.map((r) => [r.version, r]));
    const known = new Set(migrations.map((m) => m.version));
    for (const row of rows) {
      if (!known.has(row.version)) {
        throw new Error(
          `The database has migration ${row.version} (${row.name}) that this code does not know`,
        );
      }
    }
    const applied: string[] = [];
    for (const m of migrations) {
      const existing = done.get(m.version);
      if (existing) {
        if (existing.checksum !== m.checksum) {
          throw new Error(
            `Migration ${m.version}_${m.name} was edited after it was applied; add a new one instead`,
          );
        }
        continue;
      }
      await tx.exec(m.sql);
      await tx.query('INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)', [
        m.version,
        m.name,
        m.checksum,
      ]);
      applied.push(`${String(m.version).padStart(4, '0')}_${m.name}`);
    }
    return { applied };
  });
}
