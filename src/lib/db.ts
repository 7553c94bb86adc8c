import { AsyncLocalStorage } from 'node:async_hooks';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { PGlite, types as pgliteTypes } from '@electric-sql/pglite';
import pg from 'pg';
import { AppError, invalid, unavailable } from './errors.js';

export type Row = Record<string, unknown>;

export interface QueryResult<T> {
  rows: T[];
  rowCount: number;
}

/** What repos receive: the pool or an open transaction. Rows come back with camelCase keys. */
export interface Queryable {
  query<T = Row>(sql: string, params?: readonly unknown[]): Promise<QueryResult<T>>;
  /** Runs a script of several statements without parameters (migrations). */
  exec(sql: string): Promise<void>;
  /**
   * Runs fn once the surrounding transaction has committed (never if it rolls back); outside a
   * transaction, right away. Emits, queue kicks and cache invalidations go here, so nobody hears of
   * a write that failed. tx() awaits them before it returns, so the writer reads its own writes.
   */
  afterCommit(fn: () => unknown): void;
  /**
   * Runs fn in the surrounding transaction just before it commits (a failure rolls it back);
   * outside a transaction, right away. Rows that several steps of one transaction add to a table
   * (the outbox) go out in one statement this way.
   */
  beforeCommit(fn: () => Promise<unknown>): Promise<void>;
}

export interface Db extends Queryable {
  readonly kind: 'pglite' | 'postgres';
  /** Runs fn in one transaction; retried on serialization failures and deadlocks. */
  tx<T>(fn: (q: Queryable) => Promise<T>): Promise<T>;
  ping(): Promise<void>;
  close(): Promise<void>;
}

const INT8 = 20;
const DATE = 1082;

// Both drivers return the same JS values: counts and bigint ids as numbers (our values stay far below
// 2^53), dates as 'YYYY-MM-DD' strings (a calendar day, not an instant), timestamptz as Date.
const toNumber = (value: string) => Number(value);
const asIs = (value: string) => value;

const camelCache = new Map<string, string>();
function camel(key: string): string {
  let out = camelCache.get(key);
  if (out === undefined) {
    out = key.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
    camelCache.set(key, out);
  }
  return out;
}

function camelRows<T>(rows: Row[]): T[] {
  return rows.map((row) => {
    const out: Row = {};
    for (const key in row) out[camel(key)] = row[key];
    return out as T;
  });
}

const RETRYABLE = new Set(['40001', '40P01']);

// Which database's transaction the running code is inside. A query on that database's pool from
// inside its own transaction is a bug: on PGlite (one connection) it waits for the transaction
// forever, and on PostgreSQL it reads outside the transaction. It is refused at once instead.
const txScope = new AsyncLocalStorage<object>();

function guardPool(base: Queryable, owner: object): Queryable {
  const check = () => {
    if (txScope.getStore() === owner) {
      throw new Error(
        'query on the pool inside one of its transactions: pass the transaction (q) down instead',
      );
    }
  };
  return {
    query: (sql, params) => {
      check();
      return base.query(sql, params);
    },
    exec: (sql) => {
      check();
      return base.exec(sql);
    },
    afterCommit: base.afterCommit,
    beforeCommit: base.beforeCommit,
  };
}

// Side effects run outside any transaction scope, so they may use the pool freely. A failing side
// effect never turns a committed write into an error.
function runOutside(fn: () => unknown): Promise<unknown> {
  return txScope.exit(async () => {
    try {
      await fn();
    } catch {
      // Side effects report their own failures (logs, retries); the write stands.
    }
  });
}

/** Outside a transaction there is nothing to wait for: hooks run at once. */
const noTransaction: Hooks = {
  after: (fn) => void runOutside(fn),
  before: async (fn) => {
    await fn();
  },
};

interface Hooks {
  after(fn: () => unknown): void;
  before(fn: () => Promise<unknown>): Promise<void>;
}

/**
 * Collects one transaction attempt's hooks: `runBefore` in the transaction just before COMMIT,
 * `runAfter` once it has committed.
 */
function commitHooks() {
  const before: (() => Promise<unknown>)[] = [];
  const after: (() => unknown)[] = [];
  return {
    after: (fn: () => unknown) => void after.push(fn),
    before: async (fn: () => Promise<unknown>) => void before.push(fn),
    async runBefore() {
      for (const fn of before) await fn();
    },
    runAfter: () => Promise.all(after.map(runOutside)),
  };
}

/** Connection loss, shutdown and read-only mode become a 503 the client may retry, never a 500. */
export function translateDbError(err: unknown): unknown {
  if (err instanceof AppError) return err;
  const e = err as { code?: string; message?: string };
  const code = e?.code ?? '';
  if (
    code.startsWith('08') ||
    code === '57P01' ||
    code === '57P02' ||
    code === '57P03' ||
    code === '53300' ||
    code === 'ECONNREFUSED' ||
    code === 'ECONNRESET' ||
    code === 'ETIMEDOUT' ||
    /timeout exceeded when trying to connect|Connection terminated|connection timeout|not queryable/i.test(
      e?.message ?? '',
    )
  ) {
    return unavailable('database_unavailable', 'The database is unavailable; try again shortly.');
  }
  if (code === '25006') return unavailable('database_read_only', 'Writes are paused; try again shortly.');
  // Text PostgreSQL cannot store (a NUL character) is the client's mistake, not a server error.
  if (code === '22021' || code === '22P05') {
    return invalid(
      'invalid_characters',
      'Text may not contain NUL or other characters that cannot be stored.',
    );
  }
  return err;
}

async function withRetries<T>(run: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await run();
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (!code || !RETRYABLE.has(code) || attempt >= 3) throw translateDbError(err);
      await new Promise((r) => setTimeout(r, 5 * attempt + Math.random() * 20));
    }
  }
}

export type PgliteDb = Db & { /** The whole data dir as a tar, for test templates. */ dump(): Promise<Blob> };

export async function openPglite(dataDir: string | undefined, loadDataDir?: Blob): Promise<PgliteDb> {
  if (dataDir) mkdirSync(dataDir, { recursive: true });
  const pglite = new PGlite({
    ...(dataDir ? { dataDir } : {}),
    ...(loadDataDir ? { loadDataDir } : {}),
    parsers: { [INT8]: toNumber, [DATE]: asIs, [pgliteTypes.NUMERIC]: asIs },
  });
  await pglite.waitReady;
  return pgliteDb(pglite);
}

/**
 * PGlite runs a statement synchronously and settles its promise as a microtask, so a loop of awaited
 * statements (a job walking every user) never gives the event loop a turn: HTTP, sockets and timers
 * of the embedded process would wait for the whole loop. Each statement first yields one turn.
 */
const aTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

export function pgliteDb(pglite: PGlite): PgliteDb {
  const wrap = (q: Pick<PGlite, 'query' | 'exec'>, hooks: Hooks): Queryable => ({
    async query<T>(sql: string, params: readonly unknown[] = []) {
      await aTurn();
      try {
        const result = await q.query<Row>(sql, params as unknown[]);
        return { rows: camelRows<T>(result.rows), rowCount: result.affectedRows ?? result.rows.length };
      } catch (err) {
        throw translateDbError(err);
      }
    },
    async exec(sql: string) {
      await aTurn();
      try {
        await q.exec(sql);
      } catch (err) {
        throw translateDbError(err);
      }
    },
    afterCommit: hooks.after,
    beforeCommit: hooks.before,
  });
  const owner = {};
  const base = guardPool(wrap(pglite, noTransaction), owner);
  return {
    kind: 'pglite',
    ...base,
    // PGlite is one connection: a transaction holds it, and other queries wait for it to finish.
    tx: (fn) =>
      withRetries(async () => {
        const hooks = commitHooks();
        const result = await txScope.run(owner, () =>
          pglite.transaction(async (tx) => {
            const value = await fn(wrap(tx, hooks));
            await hooks.runBefore();
            return value;
          }),
        );
        await hooks.runAfter();
        return result;
      }),
    async ping() {
      await pglite.query('select 1');
    },
    async close() {
      if (!pglite.closed) await pglite.close();
    },
    dump: () => pglite.dumpDataDir('none'),
  };
}

/**
 * One connection runs one statement at a time. pg queues statements sent to a busy client, but that
 * is deprecated (pg@9 drops it), so a transaction's statements that a service starts together (a
 * Promise.all over reads) are sent in turn here.
 */
function inTurn() {
  let tail: Promise<unknown> = Promise.resolve();
  return <T>(run: () => Promise<T>): Promise<T> => {
    const next = tail.then(run, run);
    tail = next.catch(() => undefined);
    return next;
  };
}

export interface PostgresOptions {
  url: string;
  max: number;
  statementTimeoutMs: number;
  applicationName?: string;
  onError?: (err: Error) => void;
  /**
   * Refuse a pool query made inside one of this pool's transactions (default on). It costs every
   * promise of the process a hook (AsyncLocalStorage on Node 20), and on PostgreSQL such a query
   * does not hang, it only reads outside the transaction: production turns it off and the tests,
   * which run every path, keep it.
   */
  guard?: boolean;
}

export function openPostgres(opts: PostgresOptions): Db {
  const pool = new pg.Pool({
    connectionString: opts.url,
    max: opts.max,
    connectionTimeoutMillis: 2000,
    idleTimeoutMillis: 30000,
    statement_timeout: opts.statementTimeoutMs,
    idle_in_transaction_session_timeout: opts.statementTimeoutMs * 2,
    application_name: opts.applicationName ?? 'taskmaa',
    types: {
      getTypeParser: ((oid: number, format?: string) => {
        if (oid === INT8) return toNumber;
        if (oid === DATE) return asIs;
        return pg.types.getTypeParser(oid, format as 'text');
      }) as typeof pg.types.getTypeParser,
    },
  });
  // An idle client losing its connection must not crash the process; the next query reconnects.
  pool.on('error', (err) => opts.onError?.(err));

  const wrap = (q: pg.Pool | pg.PoolClient, hooks: Hooks): Queryable => {
    const turn = q instanceof pg.Pool ? (run: () => Promise<pg.QueryResult>) => run() : inTurn();
    return {
      async query<T>(sql: string, params: readonly unknown[] = []) {
        try {
          const result = await turn(() => q.query(sql, params as unknown[]));
          return { rows: camelRows<T>(result.rows), rowCount: result.rowCount ?? result.rows.length };
        } catch (err) {
          throw translateDbError(err);
        }
      },
      async exec(sql: string) {
        try {
          await turn(() => q.query(sql));
        } catch (err) {
          throw translateDbError(err);
        }
      },
      afterCommit: hooks.after,
      beforeCommit: hooks.before,
    };
  };
  const owner = {};
  const guarded = opts.guard ?? true;
  const base = guarded ? guardPool(wrap(pool, noTransaction), owner) : wrap(pool, noTransaction);
  const inScope = <T>(fn: () => Promise<T>) => (guarded ? txScope.run(owner, fn) : fn());
  return {
    kind: 'postgres',
    ...base,
    tx: (fn) =>
      withRetries(async () => {
        const client = await pool.connect();
        const hooks = commitHooks();
        let broken = false;
        // pg-pool listens for a checked-out client's errors only while it is idle: a connection lost
        // between two statements of this transaction would be an unhandled 'error' and end the process.
        let lost: Error | undefined;
        const onLost = (err: Error) => {
          lost = err;
        };
        client.on('error', onLost);
        let result: Awaited<ReturnType<typeof fn>>;
        try {
          await client.query('BEGIN');
          result = await inScope(async () => {
            const value = await fn(wrap(client, hooks));
            await hooks.runBefore();
            return value;
          });
          await client.query('COMMIT');
        } catch (err) {
          try {
            await client.query('ROLLBACK');
          } catch {
            broken = true;
          }
          throw lost ? translateDbError(lost) : err;
        } finally {
          client.off('error', onLost);
          client.release(broken || lost !== undefined);
        }
        await hooks.runAfter();
        return result;
      }),
    async ping() {
      await base.query('select 1');
    },
    async close() {
      await pool.end();
    },
  };
}

export async function openDb(opts: {
  databaseUrl?: string;
  dataDir: string;
  poolMax: number;
  statementTimeoutMs: number;
  onError?: (err: Error) => void;
  /** PostgreSQL only (PGlite always guards: there the query would wait forever); see PostgresOptions. */
  guard?: boolean;
}): Promise<Db> {
  if (opts.databaseUrl) {
    return openPostgres({
      url: opts.databaseUrl,
      max: opts.poolMax,
      statementTimeoutMs: opts.statementTimeoutMs,
      ...(opts.guard === undefined ? {} : { guard: opts.guard }),
      ...(opts.onError ? { onError: opts.onError } : {}),
    });
  }
  return openPglite(join(opts.dataDir, 'pglite'));
}
