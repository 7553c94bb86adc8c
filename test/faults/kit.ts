import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import { createServer, type Socket as NetSocket, connect as netConnect, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import pino from 'pino';
import { SMTPServer } from 'smtp-server';
import { io as connectSocket, type Socket } from 'socket.io-client';
import { afterEach } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { buildDeps, closeDeps, type Deps } from '../../src/deps.js';
import { defineJobs } from '../../src/worker.js';
import { aUser, signIn, type TestDb, testDb } from '../helpers.js';
import { invariants } from './invariants.js';

// The fault kit: real child processes (`node --import tsx src/main.ts`), a private redis-server per
// test, a TCP proxy in front of PostgreSQL, an HTTP client that always answers (status, error or
// timeout) and socket helpers. Nothing here touches the shared PostgreSQL or Redis beyond creating and
// dropping this suite's own databases.

/** The fault suite runs only in the services lane (PostgreSQL on 127.0.0.1). */
export const servicesLane = Boolean(process.env.TEST_DATABASE_URL);

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// Cleanup: every process, server, database and folder registers how to undo itself, and a test file
// runs them in afterEach (reverse order) even when a test failed. As a last resort the PIDs are
// SIGKILLed when the test process exits.

const livePids = new Set<number>();
process.once('exit', () => {
  for (const pid of livePids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

export function cleanupStack() {
  const steps: { name: string; fn: () => unknown }[] = [];
  return {
    push(name: string, fn: () => unknown) {
      steps.push({ name, fn });
    },
    async run() {
      const errors: unknown[] = [];
      for (const step of steps.splice(0).reverse()) {
        try {
          await step.fn();
        } catch (err) {
          errors.push(new Error(`cleanup ${step.name} failed: ${String(err)}`));
        }
      }
      if (errors.length) throw errors[0];
    },
  };
}
export type Cleanup = ReturnType<typeof cleanupStack>;

export function tempDir(cleanup: Cleanup, label: string): string {
  const dir = mkdtempSync(join(tmpdir(), `taskmaa-fault-${label}-`));
  cleanup.push(`rm ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function waitForExit(proc: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    proc.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// A private redis-server: its own port, no persistence, stopped, hung and restarted at will.

export interface PrivateRedis {
  port: number;
  url: string;
  pid(): number | undefined;
  /** SIGTERM (a clean shutdown, no save: everything in it is lost, as with a crash). */
  stop(): Promise<void>;
  /** Starts again on the same port. */
  start(): Promise<void>;
  /** SIGSTOP: the process is hung; connections stay open and commands get no answer. */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
  kill(): Promise<void>;
}

export async function privateRedis(cleanup: Cleanup): Promise<PrivateRedis> {
  const port = await freePort();
  let proc: ChildProcess | undefined;
  let log = '';
  const start = async () => {
    log = '';
    const child = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        tmpdir(),
        '--maxmemory-policy',
        'noeviction',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    proc = child;
    if (child.pid) livePids.add(child.pid);
    child.once('exit', () => {
      if (child.pid) livePids.delete(child.pid);
    });
    child.stdout?.on('data', (d) => {
      log += d;
    });
    child.stderr?.on('data', (d) => {
      log += d;
    });
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (/Ready to accept connections/.test(log)) return;
      if (child.exitCode !== null || Date.now() > deadline)
        throw new Error(`redis-server on ${port} did not start:\n${log}`);
      await sleep(20);
    }
  };
  const stop = async (signal: NodeJS.Signals = 'SIGTERM') => {
    const p = proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    p.kill('SIGCONT');
    p.kill(signal);
    if (!(await waitForExit(p, 5000))) {
      p.kill('SIGKILL');
      await waitForExit(p, 5000);
    }
  };
  await start();
  cleanup.push(`redis-server :${port}`, () => stop('SIGKILL'));
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    pid: () => proc?.pid,
    stop: () => stop('SIGTERM'),
    start,
    pause: () => proc?.kill('SIGSTOP'),
    resume: () => proc?.kill('SIGCONT'),
    kill: () => stop('SIGKILL'),
  };
}

// ---------------------------------------------------------------------------------------------
// A TCP proxy in front of PostgreSQL. `outage()` simulates a database restart at the network level:
// every proxied connection is cut and the port refuses connections (it stops listening) until
// `restore()`. The shared server itself is never touched.

export interface PgProxy {
  port: number;
  /** A connection string through the proxy to `database`. */
  url(directUrl: string): string;
  outage(): Promise<void>;
  restore(): Promise<void>;
  connections(): number;
}

export async function pgProxy(
  cleanup: Cleanup,
  target = { host: '127.0.0.1', port: 5432 },
): Promise<PgProxy> {
  const port = await freePort();
  const pairs = new Set<{ a: NetSocket; b: NetSocket }>();
  let server: Server | undefined;
  const listen = async () => {
    const s = createServer((client) => {
      const upstream = netConnect(target.port, target.host);
      const pair = { a: client, b: upstream };
      pairs.add(pair);
      const end = () => {
        pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      };
      client.on('error', end);
      upstream.on('error', end);
      client.on('close', end);
      upstream.on('close', end);
      client.pipe(upstream);
      upstream.pipe(client);
    });
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.listen(port, '127.0.0.1', () => resolve());
    });
    server = s;
  };
  const stopListening = async () => {
    const s = server;
    server = undefined;
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  };
  const cut = () => {
    for (const { a, b } of pairs) {
      a.destroy();
      b.destroy();
    }
    pairs.clear();
  };
  await listen();
  cleanup.push(`pg proxy :${port}`, async () => {
    cut();
    await stopListening();
  });
  return {
    port,
    url(directUrl) {
      const u = new URL(directUrl);
      u.hostname = '127.0.0.1';
      u.port = String(port);
      return u.toString();
    },
    async outage() {
      // Stop accepting first (close() waits for open connections, so it is not awaited before the cut).
      const closing = stopListening();
      cut();
      await closing;
    },
    restore: listen,
    connections: () => pairs.size,
  };
}

// ---------------------------------------------------------------------------------------------
// The application as child processes.

export interface AppChild {
  name: string;
  proc: ChildProcess;
  pid: number;
  /** The HTTP port (api role). */
  port: number;
  url: string;
  output(): string;
  alive(): boolean;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  /** Error and fatal log lines (pino level ≥ 50). */
  errorLines(): string[];
}

export const ACCESS_TOKEN_SECRET = `fault-suite-${randomBytes(24).toString('hex')}`;

export async function startApp(
  cleanup: Cleanup,
  opts: {
    name: string;
    /** serve = api and worker in one process (ROLE=serve); it is ready once it listens, as api is. */
    role: 'api' | 'worker' | 'serve';
    databaseUrl: string;
    redisUrl: string;
    redisPrefix: string;
    env?: Record<string, string>;
    /** How long an api child may take to listen (workers return at once: see workersConnected). */
    readyTimeoutMs?: number;
  },
): Promise<AppChild> {
  const dataDir = tempDir(cleanup, opts.name);
  // FAULTS_APP_DIR=<dir> runs the children from another checkout (e.g. one with a proposed fix applied).
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: process.env.FAULTS_APP_DIR ?? process.cwd(),
    env: {
      PATH: process.env.PATH,
      NODE_ENV: 'production',
      HOST: '127.0.0.1',
      PORT: '0',
      ROLE: opts.role,
      DATA_DIR: dataDir,
      DATABASE_URL: opts.databaseUrl,
      REDIS_URL: opts.redisUrl,
      REDIS_PREFIX: opts.redisPrefix,
      ACCESS_TOKEN_SECRET,
      APP_URL: 'http://app.test',
      LOG_LEVEL: 'info',
      DATABASE_POOL_MAX: '10',
      ...opts.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const pid = proc.pid as number;
  livePids.add(pid);
  let out = '';
  // FAULTS_LOG_DIR=<dir> keeps every child's whole output there, for a person reading a failure.
  const file = process.env.FAULTS_LOG_DIR
    ? createWriteStream(join(process.env.FAULTS_LOG_DIR, `${opts.name}-${pid}.log`))
    : undefined;
  const keep = (d: Buffer) => {
    file?.write(d);
    out += d;
    // Keep the tail only: a long run under load must not grow without bound.
    if (out.length > 2_000_000) out = out.slice(-1_000_000);
  };
  proc.stdout?.on('data', keep);
  proc.stderr?.on('data', keep);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
    proc.once('exit', (code, signal) => {
      livePids.delete(pid);
      resolve({ code, signal, at: Date.now() });
    }),
  );
  cleanup.push(`${opts.name} (pid ${pid})`, async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL');
      await exited;
    }
    file?.end();
  });
  const child: AppChild = {
    name: opts.name,
    proc,
    pid,
    port: 0,
    url: '',
    output: () => out,
    alive: () => proc.exitCode === null && proc.signalCode === null,
    exited,
    errorLines: () => out.split('\n').filter((l) => /"level":(50|60)/.test(l)),
  };
  appsStarted.push(child);
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 30_000);
  for (;;) {
    if (opts.role !== 'worker') {
      const match = /"docs":"http:\/\/localhost:(\d+)\/docs"/.exec(out);
      if (match) {
        child.port = Number(match[1]);
        child.url = `http://127.0.0.1:${child.port}`;
        return child;
      }
    } else {
      // A worker logs nothing when ready: callers wait with workersConnected().
      return child;
    }
    if (!child.alive() || Date.now() > deadline) {
      throw new Error(`${opts.name} did not start:\n${out.slice(-4000)}`);
    }
    await sleep(25);
  }
}

/** The BullMQ queue the children share, seen from the test (counts, workers). */
export function jobQueue(cleanup: Cleanup, redisUrl: string, redisPrefix: string): Queue {
  const queue = new Queue('jobs', {
    connection: { url: redisUrl, maxRetriesPerRequest: null },
    prefix: `${redisPrefix}:bull`,
  });
  queue.on('error', () => {});
  cleanup.push('close job queue client', () => queue.close().catch(() => {}));
  return queue;
}

/** Waits until `n` job consumers are connected to the queue. */
export async function workersConnected(queue: Queue, n = 1, timeoutMs = 30_000) {
  await waitFor(async () => (await queue.getWorkersCount()) >= n, timeoutMs, 100);
}

// ---------------------------------------------------------------------------------------------
// The world the children share: a test database (copied from the migrated template) and, in this
// process, deps on the same database to make people and relations directly.

export interface World {
  db: TestDb;
  databaseUrl: string;
  deps: Deps;
  redisPrefix: string;
}

export async function world(cleanup: Cleanup): Promise<World> {
  const db = await testDb();
  cleanup.push('drop test database', () => db.drop());
  const dataDir = tempDir(cleanup, 'deps');
  const config = loadConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: 'silent',
    DATA_DIR: dataDir,
    ACCESS_TOKEN_SECRET,
    RATE_LIMIT_MULTIPLIER: '0',
  });
  const deps = await buildDeps(config, { db: db.db, log: pino({ level: 'silent' }) });
  defineJobs(deps);
  cleanup.push('close in-process deps', () =>
    closeDeps({ ...deps, db: { ...deps.db, close: async () => {} } }),
  );
  const w = { db, databaseUrl: db.url as string, deps, redisPrefix: `f${randomBytes(5).toString('hex')}` };
  worldsMade.push(w);
  return w;
}

// ---------------------------------------------------------------------------------------------
// HTTP: every call ends in a status, a transport error code, or TIMEOUT; never in a hang.

export interface Outcome {
  method: string;
  path: string;
  status?: number;
  error?: string;
  body?: string;
  retryAfter?: string;
  /** Sent on a kept-alive connection the server had already answered on (Node's req.reusedSocket). */
  reused?: boolean;
  startedAt: number;
  endedAt: number;
  ms: number;
}

export interface CallOptions {
  token?: string;
  body?: unknown;
  timeoutMs?: number;
  agent?: Agent | false;
  headers?: Record<string, string>;
}

export function call(base: string, method: string, path: string, opts: CallOptions = {}): Promise<Outcome> {
  const url = new URL(path, base);
  const payload = opts.body === undefined ? undefined : JSON.stringify(opts.body);
  const startedAt = Date.now();
  return new Promise((resolve) => {
    let done = false;
    const finish = (o: Partial<Outcome>) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const endedAt = Date.now();
      resolve({ method, path, startedAt, endedAt, ms: endedAt - startedAt, reused: req.reusedSocket, ...o });
    };
    const req = httpRequest(
      {
        host: url.hostname,
        port: url.port,
        method,
        path: url.pathname + url.search,
        agent: opts.agent ?? false,
        headers: {
          ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
          ...(payload ? { 'content-type': 'application/json' } : {}),
          ...(opts.agent ? {} : { connection: 'close' }),
          ...opts.headers,
        },
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => {
          body += d;
        });
        res.on('end', () =>
          finish({
            status: res.statusCode as number,
            body,
            ...(res.headers['retry-after'] ? { retryAfter: String(res.headers['retry-after']) } : {}),
          }),
        );
        res.on('error', (e) => finish({ error: (e as NodeJS.ErrnoException).code ?? e.message }));
      },
    );
    const timer = setTimeout(() => {
      finish({ error: 'TIMEOUT' });
      req.destroy();
    }, opts.timeoutMs ?? 10_000);
    req.on('error', (e) => finish({ error: (e as NodeJS.ErrnoException).code ?? e.message }));
    req.end(payload);
  });
}

export const keepAlive = () => new Agent({ keepAlive: true, maxSockets: 16 });

/** `kind` of an outcome for reports: the status, or the error code. */
export const kindOf = (o: Outcome) => (o.status !== undefined ? String(o.status) : (o.error ?? 'none'));

export function tally(outcomes: Outcome[]): Record<string, number> {
  const t: Record<string, number> = {};
  for (const o of outcomes) t[kindOf(o)] = (t[kindOf(o)] ?? 0) + 1;
  return t;
}

/**
 * Runs `workers` loops, each calling `step` until stop() is called, collecting every outcome.
 * `step` returns the outcomes it produced (one or more calls).
 */
export function loadLoop(workers: number, step: (worker: number, i: number) => Promise<Outcome[]>) {
  const outcomes: Outcome[] = [];
  let running = true;
  const loops = Array.from({ length: workers }, async (_, w) => {
    for (let i = 0; running; i++) {
      outcomes.push(...(await step(w, i)));
    }
  });
  return {
    outcomes,
    async stop() {
      running = false;
      await Promise.all(loops);
      return outcomes;
    },
  };
}

export async function waitFor<T>(
  check: () => Promise<T | undefined | false>,
  timeoutMs: number,
  everyMs = 50,
) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check().catch(() => undefined);
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(everyMs);
  }
}

/** Polls readiness until it answers 200; the time it took, in ms. */
export async function untilReady(base: string, timeoutMs: number): Promise<number> {
  const t0 = Date.now();
  await waitFor(
    async () => (await call(base, 'GET', '/health/ready', { timeoutMs: 2000 })).status === 200,
    timeoutMs,
    100,
  );
  return Date.now() - t0;
}

// ---------------------------------------------------------------------------------------------
// Sockets.

export type Ack<T = unknown> = { ok: true; data: T } | { ok: false; error: { code: string; detail: string } };

export function openSocket(url: string, token: string, reconnection = true): Promise<Socket> {
  const socket = connectSocket(url, {
    transports: ['websocket'],
    auth: { token },
    reconnection,
    reconnectionDelay: 200,
    reconnectionDelayMax: 1000,
    forceNew: true,
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`socket to ${url} not welcomed in 10 s`)), 10_000);
    socket.once('system:welcome', () => {
      clearTimeout(timer);
      resolve(socket);
    });
    socket.once('connect_error', (err) => {
      if (reconnection) return;
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** An emit with an ack; a timeout becomes an error ack with code `ack_timeout`. */
export async function emitAck<T>(
  socket: Socket,
  event: string,
  payload: unknown,
  timeoutMs = 5000,
): Promise<Ack<T>> {
  try {
    return (await socket.timeout(timeoutMs).emitWithAck(event, payload)) as Ack<T>;
  } catch {
    return { ok: false, error: { code: 'ack_timeout', detail: `no ack within ${timeoutMs} ms` } };
  }
}

export interface ChatMessage {
  id: string;
  conversationId: string;
  seq: number;
  senderId: string | null;
  clientMessageId?: string;
  body: string;
}

/** Everything after `afterSeq` via chat:sync, page by page. */
export async function syncAll(socket: Socket, conversationId: string, afterSeq = 0): Promise<ChatMessage[]> {
  const got: ChatMessage[] = [];
  for (let after = afterSeq; ; ) {
    const ack = await emitAck<{ items: ChatMessage[]; nextCursor: string | null }>(
      socket,
      'chat:sync',
      { conversationId, afterSeq: after },
      10_000,
    );
    if (!ack.ok) throw new Error(`sync refused: ${ack.error.code} ${ack.error.detail}`);
    got.push(...ack.data.items);
    if (ack.data.nextCursor === null || ack.data.items.length === 0) return got;
    after = Number(ack.data.nextCursor);
  }
}

export const newId = () => randomUUID();

// ---------------------------------------------------------------------------------------------
// Figures.

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number;
}

/** Throws with the tail of each child's output, so a failure shows what the processes said. */
export function tails(children: AppChild[], chars = 3000): string {
  return children.map((c) => `--- ${c.name} (pid ${c.pid}) ---\n${c.output().slice(-chars)}`).join('\n');
}

/**
 * A fault file's hooks: the cleanup stack, run after every test, and the children whose log tails are
 * printed when a test fails.
 */
export function faultHooks() {
  const cleanup = cleanupStack();
  const children: AppChild[] = [];
  afterEach(async (ctx) => {
    const checked = worldsMade.splice(0);
    const apps = appsStarted.splice(0);
    try {
      if (ctx.task.result?.state === 'fail') console.log(tails(children));
      else {
        // G5 after every test, once nothing writes any more: the apps stopped as a crash would.
        for (const app of apps) if (app.alive()) app.proc.kill('SIGKILL');
        await Promise.all(apps.map((app) => app.exited));
        for (const w of checked) {
          const broken = await invariants(w, ctx.task.name);
          if (broken.length)
            throw new Error(
              `G5: ${broken.length} invariants broken after the test: ${broken.slice(0, 5).join('; ')}`,
            );
        }
      }
    } finally {
      children.length = 0;
      await cleanup.run();
    }
  });
  return { cleanup, children };
}

/** The worlds and apps of the running test, for the G5 check after it. */
const worldsMade: World[] = [];
const appsStarted: AppChild[] = [];

// ---------------------------------------------------------------------------------------------
// Jobs with an effect that can be counted exactly: `badges.evaluate` for users who each finished one
// task. Its effects are a `first_task` award, one `badge` notification and one `goal:<date>` activity
// mark per user, all in one transaction. Rows are written directly (users unverified, so no nudges),
// and the jobs go through the outbox, as the app writes them, for a worker to relay and run.

export async function seedBadgeJobs(w: World, n: number): Promise<{ tag: string; userIds: string[] }> {
  const tag = `b${randomBytes(4).toString('hex')}`;
  const today = new Date().toISOString().slice(0, 10);
  const q = w.deps.db;
  const { rows } = await q.query<{ id: string }>(
    `INSERT INTO users (id, username, email, password_hash, name, timezone, created_at, updated_at)
     SELECT gen_random_uuid(), $1 || '_' || i, $1 || '_' || i || '@example.test', 'not-a-hash', 'Fault', 'UTC', now(), now()
       FROM generate_series(1, $2::int) i
     RETURNING id`,
    [tag, n],
  );
  const ids = rows.map((r) => r.id);
  await q.query(
    `INSERT INTO day_settings (user_id, effective_on, timezone, day_start_hour)
     SELECT id, $2::date - 1, 'UTC', 0 FROM unnest($1::uuid[]) id`,
    [ids, today],
  );
  await q.query(
    `INSERT INTO score_events (id, user_id, source, source_key, points, local_date, created_at)
     SELECT gen_random_uuid(), id, 'task_done', gen_random_uuid()::text, 10, $2::date, now() FROM unnest($1::uuid[]) id`,
    [ids, today],
  );
  // The board rows the ledger rows move, as the app writes them in the same transaction (G5 checks).
  await q.query(
    `INSERT INTO leaderboard_scores (period, user_id, score)
     SELECT p.period, id, 10 FROM unnest($1::uuid[]) id,
            LATERAL (VALUES ('all'), (to_char(now() AT TIME ZONE 'UTC', 'IYYY-"W"IW'))) p (period)`,
    [ids],
  );
  await q.query(
    `INSERT INTO outbox (id, job_name, payload, available_at, created_at)
     SELECT gen_random_uuid(), 'badges.evaluate', jsonb_build_object('userId', id), now(), now()
       FROM unnest($1::uuid[]) id`,
    [ids],
  );
  return { tag, userIds: ids };
}

/** How many of `userIds` hold the first_task badge (the effect of the seeded badge jobs). */
export async function firstTaskAwards(w: World, userIds: string[]): Promise<number> {
  const { rows } = await w.deps.db.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM user_badges WHERE code = 'first_task' AND user_id = ANY($1::uuid[])",
    [userIds],
  );
  return Number(rows[0]?.n);
}

/** Per user of `userIds`: how many times each effect of badges.evaluate happened. */
export async function badgeEffects(w: World, userIds: string[]) {
  const { rows } = await w.deps.db.query<{ awards: number; notes: number; marks: number }>(
    `SELECT
       (SELECT count(*)::int FROM user_badges b WHERE b.user_id = u AND b.code = 'first_task') AS awards,
       (SELECT count(*)::int FROM notifications n WHERE n.user_id = u AND n.kind = 'badge'
          AND n.data->>'code' = 'first_task') AS notes,
       (SELECT count(*)::int FROM activity_marks m WHERE m.user_id = u AND m.mark LIKE 'goal:%') AS marks
     FROM unnest($1::uuid[]) u`,
    [userIds],
  );
  const count = (f: (r: { awards: number; notes: number; marks: number }) => number, v: number) =>
    rows.filter((r) => f(r) === v).length;
  return {
    users: rows.length,
    awardedOnce: count((r) => r.awards, 1),
    notAwarded: count((r) => r.awards, 0),
    notifiedOnce: count((r) => r.notes, 1),
    notifiedTwiceOrMore: rows.filter((r) => r.notes > 1).length,
    notNotified: count((r) => r.notes, 0),
    marksTwiceOrMore: rows.filter((r) => r.marks > 1).length,
  };
}

export async function unsentOutbox(w: World): Promise<number> {
  const { rows } = await w.deps.db.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM outbox WHERE sent_at IS NULL',
  );
  return rows[0]?.n ?? 0;
}

// ---------------------------------------------------------------------------------------------
// People: verified users with a session, made directly in the database of the children.

export interface Person {
  userId: string;
  username: string;
  token: string;
}

export async function people(w: World, n: number): Promise<Person[]> {
  const out: Person[] = [];
  for (let i = 0; i < n; i++) {
    const user = await aUser(w.deps);
    const s = await signIn(w.deps, user.id);
    out.push({ userId: user.id, username: user.username, token: s.token });
  }
  return out;
}

/** A public group task owned by the first person that the others joined; its conversation id. */
export async function groupChat(w: World, members: Person[]): Promise<string> {
  const [owner, ...others] = members as [Person, ...Person[]];
  const created = await w.deps.groups.create(owner.userId, {
    title: 'Fault chat',
    visibility: 'public',
    dueAt: new Date(Date.now() + 6 * 3600_000).toISOString(),
  });
  for (const o of others) await w.deps.groups.join(o.userId, created.body.id);
  const { rows } = await w.deps.db.query<{ id: string }>(
    'SELECT id FROM conversations WHERE group_task_id = $1',
    [created.body.id],
  );
  return (rows[0] as { id: string }).id;
}

/** Stored messages of a conversation: rows, distinct client ids, and whether seqs run 1..n. */
export async function storedMessages(w: World, conversationId: string) {
  const { rows } = await w.deps.db.query<{ seq: number; senderId: string; clientMessageId: string | null }>(
    'SELECT seq, sender_id, client_message_id FROM messages WHERE conversation_id = $1 ORDER BY seq',
    [conversationId],
  );
  const keys = new Set(rows.map((r) => `${r.senderId}:${r.clientMessageId}`));
  const gapless = rows.every((r, i) => Number(r.seq) === i + 1);
  return { rows, count: rows.length, duplicates: rows.length - keys.size, gapless };
}

// ---------------------------------------------------------------------------------------------
// A slow SMTP server: the outside world of a long job. It holds its answer to the first message
// until that connection drops (a mail server that accepted the data and then hangs), and answers
// every later message at once. Only a 250 answer is a mail sent.

export interface SlowSmtp {
  url: string;
  /** Messages whose data arrived (answered or not). */
  received(): number;
  /** When the held message's data arrived (0 = not yet). */
  heldAt(): number;
  /** The held message as it arrived. */
  heldRaw(): string;
  /** When the held message's connection dropped with no answer (0 = not yet). */
  droppedAt(): number;
  /** Messages answered 250: the mails actually sent. */
  sent: { to: string[]; raw: string; at: number }[];
}

export async function slowSmtp(cleanup: Cleanup): Promise<SlowSmtp> {
  const sent: SlowSmtp['sent'] = [];
  let received = 0;
  let held: { sessionId: string; at: number; raw: string } | undefined;
  let droppedAt = 0;
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    closeTimeout: 1000,
    onData(stream, session, callback) {
      let raw = '';
      stream.on('data', (chunk) => {
        raw += chunk;
      });
      stream.on('end', () => {
        received++;
        // No answer: the sender waits (up to its own socket timeout) until the connection drops.
        if (!held) {
          held = { sessionId: session.id, at: Date.now(), raw };
          return;
        }
        sent.push({ to: session.envelope.rcptTo.map((r) => r.address), raw, at: Date.now() });
        callback();
      });
    },
    onClose(session) {
      if (held && session.id === held.sessionId && !droppedAt) droppedAt = Date.now();
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  cleanup.push(`smtp stub :${port}`, () => new Promise<void>((resolve) => server.close(() => resolve())));
  return {
    url: `smtp://127.0.0.1:${port}`,
    received: () => received,
    heldAt: () => held?.at ?? 0,
    heldRaw: () => held?.raw ?? '',
    droppedAt: () => droppedAt,
    sent,
  };
}
