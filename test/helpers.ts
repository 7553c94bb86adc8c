import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import pg from 'pg';
import pino, { type Logger } from 'pino';
import { io as connectSocket, type Socket } from 'socket.io-client';
import { uuidv7 } from 'uuidv7';
import { inject } from 'vitest';
import { type Config, loadConfig } from '../src/config.js';
import { buildDeps, closeDeps, type Deps, type DepsOverrides } from '../src/deps.js';
import { type App, buildApp } from '../src/http/app.js';
import type { Clock } from '../src/lib/clock.js';
import { logicalDate } from '../src/lib/days.js';
import { type Db, openPglite, openPostgres } from '../src/lib/db.js';
import { hashPassword } from '../src/modules/accounts/accounts.passwords.js';
import * as accountsRepo from '../src/modules/accounts/accounts.repo.js';
import { disconnectAllLocal } from '../src/realtime/server.js';
import { defineJobs, startWorker } from '../src/worker.js';
import { withDatabase } from './global-setup.js';

/** Which lane this run is: services (PostgreSQL + Redis) when the TEST_ URLs are set. */
export const lane = {
  databaseUrl: process.env.TEST_DATABASE_URL,
  redisUrl: process.env.TEST_REDIS_URL,
  get services() {
    return Boolean(this.databaseUrl);
  },
};

export interface TestDb {
  db: Db;
  /** A connection string for child processes (services lane only). */
  url: string | undefined;
  drop(): Promise<void>;
}

/** A database of this file's own, copied from the migrated template. */
export async function testDb(): Promise<TestDb> {
  if (lane.databaseUrl) {
    const name = `taskmaa_t_${randomBytes(6).toString('hex')}`;
    const admin = new pg.Client({ connectionString: lane.databaseUrl });
    await admin.connect();
    for (let attempt = 1; ; attempt++) {
      try {
        await admin.query(`CREATE DATABASE ${name} TEMPLATE ${inject('pgTemplate')}`);
        break;
      } catch (err) {
        // Two files copying the template at the same instant can collide; the copy is quick.
        if (attempt >= 10 || !/being accessed by other users/.test(String(err))) throw err;
        await new Promise((r) => setTimeout(r, 100 * attempt));
      }
    }
    await admin.end();
    const url = withDatabase(lane.databaseUrl, name);
    const db = openPostgres({ url, max: 5, statementTimeoutMs: 10_000 });
    return {
      db,
      url,
      async drop() {
        await db.close();
        const a = new pg.Client({ connectionString: lane.databaseUrl });
        await a.connect();
        await a.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        await a.end();
      },
    };
  }
  const tar = readFileSync(inject('pgliteTemplate'));
  const db = await openPglite(undefined, new Blob([tar]));
  return { db, url: undefined, drop: () => db.close() };
}

/** Deletes every key of one test app's prefix (queues, streams, caches), so runs leave Redis clean. */
export async function dropRedisPrefix(url: string, prefix: string) {
  const redis = new Redis(url, { maxRetriesPerRequest: 1 });
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      if (keys.length) await redis.del(...keys);
      cursor = next;
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

/** A logger whose lines the test can read back. */
export function captureLogs(level = 'info'): { log: Logger; lines: () => Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split('\n')) if (line) lines.push(JSON.parse(line));
      cb();
    },
  });
  return { log: pino({ level }, stream), lines: () => lines };
}

export function testConfig(
  env: Record<string, string | undefined> = {},
): Config & { dataDirToRemove: string } {
  const dataDir = mkdtempSync(join(tmpdir(), 'taskmaa-test-'));
  const config = loadConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: 'silent',
    DATA_DIR: dataDir,
    CORS_ORIGINS: 'http://app.test',
    APP_URL: 'http://app.test',
    REDIS_URL: lane.redisUrl,
    REDIS_PREFIX: `t${randomBytes(5).toString('hex')}`,
    OUTBOX_SWEEP_MS: '200',
    // On the wall clock, her sweep spoke to the test's users in the morning and evening windows only,
    // so tests passed or failed by the hour; maa-nudges.test.ts runs the sweep on a fake clock itself.
    MAA_NUDGES: 'false',
    ...env,
  });
  return { ...config, dataDirToRemove: dataDir };
}

export interface TestApp {
  app: App;
  deps: Deps;
  config: Config;
  /** Base URL when started with `listen: true`. */
  url: string;
  logs: () => Record<string, unknown>[];
  close(): Promise<void>;
}

/**
 * The whole service on this file's database: deps, jobs and the HTTP app, like `npm start` with
 * ROLE=serve. `listen` opens a real port (sockets need one); `worker: false` leaves jobs unconsumed.
 */
export async function startTestApp(
  opts: {
    env?: Record<string, string>;
    listen?: boolean;
    worker?: boolean;
    clock?: Clock;
    db?: TestDb;
    beforeReady?: (app: App, deps: Deps) => void | Promise<void>;
  } = {},
): Promise<TestApp> {
  const config = testConfig(opts.env);
  const database = opts.db ?? (await testDb());
  const { log, lines } = captureLogs('debug');
  const overrides: DepsOverrides = { db: database.db, log, ...(opts.clock ? { clock: opts.clock } : {}) };
  const deps = await buildDeps(config, overrides);
  const dropAll = async () => {
    await closeDeps({ ...deps, db: { ...deps.db, close: async () => {} } });
    if (lane.redisUrl) await dropRedisPrefix(lane.redisUrl, config.REDIS_PREFIX);
    if (!opts.db) await database.drop();
    rmSync(config.dataDirToRemove, { recursive: true, force: true });
  };
  let app: App;
  try {
    defineJobs(deps);
    app = await buildApp(deps);
    await opts.beforeReady?.(app, deps);
    await app.ready();
    if (opts.worker) await startWorker(deps);
  } catch (err) {
    await dropAll();
    throw err;
  }
  let url = '';
  if (opts.listen) {
    await app.listen({ port: 0, host: '127.0.0.1' });
    const address = app.server.address();
    url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  }
  return {
    app,
    deps,
    config,
    url,
    logs: lines,
    async close() {
      disconnectAllLocal(deps.io);
      await app.close();
      await dropAll();
    },
  };
}

/**
 * Another instance beside `t` (services lane), as a second process would be: the same database
 * through a pool of its own (`pool`), the same Redis prefix and token secret. Closing it closes the
 * pool and drops the shared Redis prefix: close it before `t`.
 */
export async function secondInstance(
  t: TestApp,
  tdb: TestDb,
  opts: { listen?: boolean; clock?: Clock } = {},
): Promise<TestApp & { pool: Db }> {
  const url = tdb.url as string;
  const pool = openPostgres({ url, max: 5, statementTimeoutMs: 10_000 });
  try {
    const b = await startTestApp({
      ...opts,
      db: { db: pool, url, drop: async () => {} },
      env: {
        REDIS_PREFIX: t.config.REDIS_PREFIX,
        ACCESS_TOKEN_SECRET: t.config.ACCESS_TOKEN_SECRET,
        RATE_LIMIT_MULTIPLIER: '0',
      },
    });
    return {
      ...b,
      pool,
      async close() {
        await b.close();
        await pool.close();
      },
    };
  } catch (err) {
    await pool.close();
    throw err;
  }
}

export const DEFAULT_PASSWORD = 'correct horse battery staple';
let defaultHash: Promise<string> | undefined;
let counter = 0;

/**
 * A user row made directly, with a password hash computed once per file (argon2 is slow on purpose).
 * Names are unique per call, so tests never depend on empty tables.
 */
export async function aUser(
  deps: Deps,
  overrides: {
    username?: string;
    email?: string;
    name?: string;
    verified?: boolean;
    password?: string;
    timezone?: string;
  } = {},
) {
  const n = `${Date.now().toString(36)}${(counter++).toString(36)}${randomBytes(2).toString('hex')}`;
  const password = overrides.password ?? DEFAULT_PASSWORD;
  defaultHash ??= hashPassword(DEFAULT_PASSWORD);
  const passwordHash = overrides.password ? await hashPassword(password) : await defaultHash;
  const now = deps.clock.now();
  // One transaction, as registering is: a job (the rollover) must never find the user half-made.
  const user = await deps.db.tx(async (tx) => {
    const row = await accountsRepo.insertUser(tx, {
      id: uuidv7(),
      username: overrides.username ?? `u_${n}`.slice(0, 30),
      email: overrides.email ?? `u_${n}@example.test`,
      passwordHash,
      name: overrides.name ?? 'Test User',
      timezone: overrides.timezone ?? 'UTC',
      createdAt: now,
    });
    await accountsRepo.insertDaySettings(tx, row.id, {
      effectiveOn: logicalDate(now, { timezone: row.timezone, dayStartHour: row.dayStartHour }),
      timezone: row.timezone,
      dayStartHour: row.dayStartHour,
    });
    if (overrides.verified !== false) await accountsRepo.markEmailVerified(tx, row.id, now);
    return row;
  });
  return { ...user, password };
}

/** A live session for a user, as login would make, with its access token. */
export async function signIn(deps: Deps, userId: string) {
  const sessionId = uuidv7();
  const now = deps.clock.now();
  await accountsRepo.insertSession(deps.db, {
    id: sessionId,
    userId,
    userAgent: 'test',
    ip: '127.0.0.1',
    now,
    // Long enough for tests that move the clock by weeks.
    expiresAt: new Date(now.getTime() + 365 * 86400_000),
  });
  const { token } = deps.tokens.sign({ userId, sessionId });
  return { userId, sessionId, token, headers: { authorization: `Bearer ${token}` } };
}

/** A signed-in caller: a fresh verified user (or another session of `userId`) and its access token. */
export async function aPrincipal(deps: Deps, userId?: string) {
  return signIn(deps, userId ?? (await aUser(deps)).id);
}

/** A clock tests move by hand. */
export function fakeClock(
  start = new Date('2026-03-01T09:00:00Z'),
): Clock & { advance(ms: number): void; set(d: Date): void } {
  let now = start.getTime();
  return {
    now: () => new Date(now),
    advance: (ms) => {
      now += ms;
    },
    set: (d) => {
      now = d.getTime();
    },
  };
}

/** Polls until `check` passes or the time runs out; for effects that arrive asynchronously. */
export async function eventually<T>(check: () => T | Promise<T>, timeoutMs = 5000, everyMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, everyMs));
    }
  }
}

/**
 * A real socket.io client signed in with `token`, connected and welcomed (it rejects with the
 * connect_error otherwise). Pushed onto `opened` so the caller can disconnect it afterwards.
 */
export async function openSocket(url: string, token: string, opened: Socket[]): Promise<Socket> {
  const socket = connectSocket(url, {
    transports: ['websocket'],
    auth: { token },
    reconnection: false,
    forceNew: true,
  });
  opened.push(socket);
  await new Promise((resolve, reject) => {
    socket.once('system:welcome', resolve);
    socket.once('connect_error', reject);
  });
  return socket;
}
