// `npm run cluster`: TaskMaa as production runs it, on one machine. PostgreSQL and Redis come from
// DATABASE_URL and REDIS_URL (defaults below); migrations run once as a release step; then N api
// processes on ports of their own, M workers, and a small load balancer in front (scripts/balancer.ts).
//
//   npm run cluster                          # 2 api + 1 worker, balancer on :3000, api on :3001, :3002
//   npm run cluster -- --apis 3 --workers 2 --port 8080
//
// Ctrl-C or SIGTERM: every process gets SIGTERM and drains; whatever is still running after 10 s gets
// SIGKILL. SIGHUP: rolling restart, one process at a time, each back to ready before the next goes.
// A process that exits on its own is started again after a second.
import { type ChildProcess, spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import pg from 'pg';
import { prettyFactory } from 'pino-pretty';
import { type Balancer, startBalancer } from './balancer.js';
import { portFree, redactUrl, waitReady, waitWorkers } from './cluster-support.js';

const DEFAULT_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/taskmaa';
const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';
const KILL_AFTER_MS = 10_000;
const RESTART_DELAY_MS = 1000;
const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** CLUSTER_SHOW_PROBES=1 shows the balancer's GET /health/ready in the api logs too. */
const SHOW_PROBES = process.env.CLUSTER_SHOW_PROBES === '1';

const tty = process.stdout.isTTY === true && !process.env.NO_COLOR;
const COLORS = [36, 35, 33, 32, 34, 91, 96, 95];
const paint = (code: number, s: string) => (tty ? `\x1b[${code}m${s}\x1b[0m` : s);
const pretty = tty
  ? prettyFactory({ colorize: true, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname' })
  : null;

let width = 'cluster'.length;
function say(line: string) {
  process.stdout.write(`${paint(1, 'cluster'.padEnd(width))} │ ${line}\n`);
}
function refuse(message: string): never {
  process.stderr.write(`cluster: ${message}\n`);
  process.exit(1);
}

// ---- options and environment -------------------------------------------------------------------

const { values: args } = parseArgs({
  options: {
    apis: { type: 'string', default: process.env.CLUSTER_APIS ?? '2' },
    workers: { type: 'string', default: process.env.CLUSTER_WORKERS ?? '1' },
    port: { type: 'string', default: process.env.CLUSTER_PORT ?? '3000' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (args.help) {
  process.stdout.write(
    'npm run cluster [-- --apis 2 --workers 1 --port 3000]\n' +
      `Env: DATABASE_URL (default ${DEFAULT_DATABASE_URL}), REDIS_URL (default ${DEFAULT_REDIS_URL}),\n` +
      'and every variable of .env.example; api processes listen on PORT+1…PORT+N behind the balancer on PORT.\n',
  );
  process.exit(0);
}
const count = (name: string, value: string, min: number) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > 32) refuse(`--${name} must be a whole number ${min}…32`);
  return n;
};
const apis = count('apis', args.apis, 1);
const workers = count('workers', args.workers, 0);
width = Math.max(width, `worker-${workers}`.length, `api-${apis}`.length);
const port = Number(args.port);
if (!Number.isInteger(port) || port < 1 || port + apis > 65535) refuse('--port must be a TCP port');

function url(name: 'DATABASE_URL' | 'REDIS_URL', fallback: string, scheme: RegExp): string {
  const value = process.env[name];
  if (value === undefined) {
    say(`${name} is not set; using ${fallback}`);
    return fallback;
  }
  if (value.trim() === '') {
    refuse(
      `${name} is set but empty. The cluster runs on PostgreSQL and Redis: set ${name} ` +
        `(e.g. ${fallback}), or unset it to use that default.`,
    );
  }
  if (!scheme.test(value)) refuse(`${name} must start with ${scheme.source.replace(/[\\^]/g, '')}`);
  return value.trim();
}
const DATABASE_URL = url('DATABASE_URL', DEFAULT_DATABASE_URL, /^postgres(ql)?:\/\//);
const REDIS_URL = url('REDIS_URL', DEFAULT_REDIS_URL, /^rediss?:\/\//);
const REDIS_PREFIX = process.env.REDIS_PREFIX || 'taskmaa';
const DATA_DIR = resolve(process.env.DATA_DIR || './data');
const POOL_MAX = Number(process.env.DATABASE_POOL_MAX || 10);
if (!process.env.ACCESS_TOKEN_SECRET && process.env.NODE_ENV === 'production') {
  refuse('NODE_ENV=production needs ACCESS_TOKEN_SECRET (≥ 32 chars), the same for every process.');
}

// ---- pre-flight: both services reachable, and set up the way queues need ------------------------

async function checkPostgres() {
  const client = new pg.Client({ connectionString: DATABASE_URL, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    const { rows } = await client.query<{ max: string; used: string }>(
      `SELECT current_setting('max_connections') AS max, (SELECT count(*) FROM pg_stat_activity)::text AS used`,
    );
    const max = Number(rows[0]?.max);
    const processes = apis + workers;
    const wanted = processes * POOL_MAX;
    say(
      `PostgreSQL ${redactUrl(DATABASE_URL)}: max_connections ${max}, ${rows[0]?.used} in use; ` +
        `this cluster may open ${processes} × DATABASE_POOL_MAX ${POOL_MAX} = ${wanted}`,
    );
    if (wanted > max * 0.8) {
      say(
        paint(33, `warning: ${wanted} connections leave too little headroom under max_connections ${max}; `) +
          paint(33, 'lower DATABASE_POOL_MAX or raise max_connections'),
      );
    }
  } catch (err) {
    const e = err as { code?: string; message?: string };
    const db = new URL(DATABASE_URL).pathname.slice(1);
    if (e.code === '3D000') {
      refuse(
        `database "${db}" does not exist on ${redactUrl(DATABASE_URL)}. Create it ` +
          `(createdb -h <host> -U <user> ${db}) or set DATABASE_URL to another database.`,
      );
    }
    refuse(
      `cannot reach PostgreSQL at ${redactUrl(DATABASE_URL)} (${e.code ?? e.message}). ` +
        'Start it, or set DATABASE_URL to a PostgreSQL 15+ database.',
    );
  } finally {
    await client.end().catch(() => {});
  }
}

async function checkRedis() {
  const redis = new Redis(REDIS_URL, {
    lazyConnect: true,
    connectTimeout: 3000,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  let cause: Error | undefined;
  redis.on('error', (err: Error) => {
    cause ??= err;
  });
  try {
    await redis.connect();
    await redis.ping();
  } catch (err) {
    redis.disconnect();
    refuse(
      `cannot reach Redis at ${redactUrl(REDIS_URL)} (${(cause ?? (err as Error)).message}). ` +
        'Start it, or set REDIS_URL.',
    );
  }
  // Managed Redis often refuses CONFIG; then there is nothing to check here.
  const setting = async (name: string) =>
    ((await redis.config('GET', name).catch(() => [])) as string[])[1] ?? undefined;
  const policy = await setting('maxmemory-policy');
  const aof = await setting('appendonly');
  const save = await setting('save');
  say(
    `Redis ${redactUrl(REDIS_URL)}: maxmemory-policy ${policy ?? '?'}, appendonly ${aof ?? '?'}, ` +
      `save "${save ?? '?'}", key prefix ${REDIS_PREFIX}`,
  );
  if (policy !== undefined && policy !== 'noeviction') {
    say(paint(33, `warning: maxmemory-policy is ${policy}; queues need noeviction (evicted jobs vanish)`));
  }
  if (aof === 'no' && save === '') {
    say(
      paint(
        33,
        'warning: Redis persists nothing (appendonly no, no save points); a restart loses queued jobs',
      ),
    );
  }
  redis.disconnect();
}

// ---- processes ----------------------------------------------------------------------------------

interface Proc {
  name: string;
  role: 'api' | 'worker' | 'migrate';
  port?: number;
  color: number;
  child?: ChildProcess;
  exited?: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Why the last run ended, while no child runs. */
  gone?: string;
  /** Set while it is stopped on purpose (shutdown, rolling restart): no automatic restart. */
  held: boolean;
  startedAt: number;
  quickExits: number;
}

const procs: Proc[] = [];
let stopping = false;
let balancer: Balancer | undefined;

function childEnv(p: Proc): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DATABASE_URL,
    REDIS_URL,
    REDIS_PREFIX,
    DATA_DIR,
    ROLE: p.role === 'migrate' ? 'serve' : p.role,
  };
  if (p.role === 'api') {
    env.PORT = String(p.port);
    // Only the balancer talks to them, and it says who the client is.
    env.HOST = '127.0.0.1';
    env.TRUST_PROXY = process.env.TRUST_PROXY ?? '127.0.0.1,::1';
    env.PUBLIC_URL = process.env.PUBLIC_URL ?? `http://localhost:${port}`;
  }
  return env;
}

function pipeLines(p: Proc, stream: NodeJS.ReadableStream | null, to: NodeJS.WriteStream) {
  if (!stream) return;
  const prefix = `${paint(p.color, p.name.padEnd(width))} │ `;
  // The balancer's readiness probes (one a second per api process) are left out while they pass.
  const probes = new Set<string>();
  createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY }).on('line', (line) => {
    if (!SHOW_PROBES && line.startsWith('{') && line.includes('"reqId"')) {
      try {
        const entry = JSON.parse(line) as {
          reqId?: string;
          req?: { url?: string; host?: string };
          res?: { statusCode?: number };
        };
        // Probes come straight to the process; a request through the balancer has its Host.
        if (entry.reqId && entry.req?.url === '/health/ready' && entry.req.host === `127.0.0.1:${p.port}`) {
          probes.add(entry.reqId);
          return;
        }
        if (entry.reqId && probes.delete(entry.reqId) && entry.res?.statusCode === 200) return;
      } catch {
        // Not JSON after all: shown below as it came.
      }
    }
    let shown = line;
    if (pretty && line.startsWith('{')) {
      try {
        shown = pretty(line).replace(/\n$/, '').replaceAll('\n', `\n${prefix}`);
      } catch {
        // Not a log line after all: shown as it came.
      }
    }
    to.write(`${prefix}${shown}\n`);
  });
}

function start(p: Proc) {
  p.gone = undefined;
  p.startedAt = Date.now();
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'src/main.ts', ...(p.role === 'migrate' ? ['migrate'] : [])],
    {
      cwd: ROOT,
      env: childEnv(p),
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group: a terminal's Ctrl-C reaches only this script, which then stops
      // every process in order, once.
      detached: true,
    },
  );
  p.child = child;
  pipeLines(p, child.stdout, process.stdout);
  pipeLines(p, child.stderr, process.stderr);
  p.exited = new Promise((done) => {
    child.once('exit', (code, signal) => {
      p.gone = `${p.name} exited (${signal ?? `code ${code}`})`;
      p.child = undefined;
      done({ code, signal });
      if (p.role !== 'migrate') onExit(p, code, signal);
    });
  });
  child.once('error', (err) => say(`${p.name} could not start: ${err.message}`));
}

function onExit(p: Proc, code: number | null, signal: NodeJS.Signals | null) {
  if (stopping || p.held) return;
  p.quickExits = Date.now() - p.startedAt < 10_000 ? p.quickExits + 1 : 0;
  if (p.quickExits >= 3) {
    say(
      paint(
        31,
        `${p.name} exited (${signal ?? `code ${code}`}) three times in a row right after starting; left stopped`,
      ),
    );
    return;
  }
  say(`${p.name} exited (${signal ?? `code ${code}`}); starting it again in ${RESTART_DELAY_MS / 1000} s`);
  setTimeout(() => {
    if (!stopping && !p.held && !p.child) start(p);
  }, RESTART_DELAY_MS).unref();
}

async function ready(p: Proc) {
  const gone = () => p.gone;
  if (p.role === 'api') await waitReady(p.port as number, { gone });
  else {
    const expected = procs.filter((q) => q.role === 'worker' && q.child).length;
    await waitWorkers(REDIS_URL, REDIS_PREFIX, expected, { gone });
  }
}

/** SIGTERM, then SIGKILL for whatever still runs after KILL_AFTER_MS. */
async function stopProcs(list: Proc[]) {
  const running = list.filter((p) => p.child);
  for (const p of running) p.child?.kill('SIGTERM');
  const killer = setTimeout(() => {
    for (const p of running) {
      if (p.child) {
        say(paint(31, `${p.name} still running after ${KILL_AFTER_MS / 1000} s: SIGKILL`));
        p.child.kill('SIGKILL');
      }
    }
  }, KILL_AFTER_MS);
  const results = await Promise.all(running.map((p) => p.exited));
  clearTimeout(killer);
  return running.map((p, i) => ({
    name: p.name,
    ...(results[i] as { code: number | null; signal: string | null }),
  }));
}

async function shutdown(signal: string) {
  if (stopping) {
    say(`${signal} again: SIGKILL now`);
    for (const p of procs) p.child?.kill('SIGKILL');
    return;
  }
  stopping = true;
  const started = Date.now();
  say(
    `${signal}: stopping ${procs.filter((p) => p.child).length} processes (SIGTERM, SIGKILL after ${KILL_AFTER_MS / 1000} s)`,
  );
  const results = await stopProcs(procs);
  await balancer?.close();
  const unclean = results.filter((r) => r.code !== 0);
  say(
    `stopped in ${Date.now() - started} ms: ` +
      results.map((r) => `${r.name} ${r.signal ?? `exit ${r.code}`}`).join(', '),
  );
  process.exit(unclean.length ? 1 : 0);
}

/** SIGHUP: each process in turn is stopped (it drains), started again and waited for. */
let rolling = false;
async function rollingRestart() {
  if (rolling || stopping) return;
  rolling = true;
  say('SIGHUP: rolling restart, one process at a time');
  try {
    for (const p of procs) {
      if (stopping) return;
      p.held = true;
      const [r] = await stopProcs([p]);
      say(`${p.name} stopped (${r ? (r.signal ?? `exit ${r.code}`) : 'was not running'}); starting it again`);
      p.held = false;
      start(p);
      await ready(p);
      say(`${p.name} ready`);
    }
    say('rolling restart done');
  } catch (err) {
    say(paint(31, `rolling restart stopped: ${(err as Error).message}`));
  } finally {
    rolling = false;
  }
}

// ---- main -----------------------------------------------------------------------------------------

async function main() {
  await checkPostgres();
  await checkRedis();
  const apiPorts = Array.from({ length: apis }, (_, i) => port + 1 + i);
  for (const p of [port, ...apiPorts]) {
    if (!(await portFree(p))) refuse(`port ${p} is in use (choose others with --port)`);
  }
  if (!process.env.ACCESS_TOKEN_SECRET) {
    say(
      `ACCESS_TOKEN_SECRET is not set: every process shares the development key in ${DATA_DIR}/secrets.json`,
    );
  }

  const make = (name: string, role: Proc['role'], i: number, p?: number): Proc => ({
    name,
    role,
    ...(p ? { port: p } : {}),
    color: COLORS[i % COLORS.length] as number,
    held: false,
    startedAt: 0,
    quickExits: 0,
  });

  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGHUP', () => void rollingRestart());
  // Whatever happens to this script, no process it started outlives it.
  process.on('exit', () => {
    for (const p of procs) p.child?.kill('SIGKILL');
  });

  // Release step: migrations once, before any process serves.
  const migrator = make('migrate', 'migrate', 0);
  procs.push(migrator);
  say('running migrations (release step)');
  start(migrator);
  const migrated = await migrator.exited;
  procs.splice(procs.indexOf(migrator), 1);
  if (stopping) return;
  if (migrated?.code !== 0)
    refuse(`migrations failed (${migrated?.signal ?? `exit ${migrated?.code}`}); nothing started`);

  const apiProcs = apiPorts.map((p, i) => make(`api-${i + 1}`, 'api', i + 1, p));
  const workerProcs = Array.from({ length: workers }, (_, i) =>
    make(`worker-${i + 1}`, 'worker', apis + i + 1),
  );
  procs.push(...apiProcs, ...workerProcs);
  for (const p of procs) start(p);
  try {
    await Promise.all(procs.map(ready));
  } catch (err) {
    say(paint(31, `start-up failed: ${(err as Error).message}`));
    await shutdown('start-up failure');
    return;
  }
  if (stopping) return;

  balancer = await startBalancer({
    port,
    host: process.env.CLUSTER_HOST ?? '127.0.0.1',
    targets: apiProcs.map((p) => ({ name: p.name, host: '127.0.0.1', port: p.port as number })),
    log: say,
  });
  say(
    paint(
      32,
      `ready: http://localhost:${port}/docs → ${apiProcs.map((p) => `${p.name} :${p.port}`).join(', ')}`,
    ) +
      (workers ? `; ${workerProcs.map((p) => p.name).join(', ')}` : '; no workers') +
      '. Ctrl-C stops, SIGHUP restarts one by one.',
  );
}

main().catch((err) => {
  process.stderr.write(`cluster: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  for (const p of procs) p.child?.kill('SIGKILL');
  process.exit(1);
});
