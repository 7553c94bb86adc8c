// `npm run bench [-- --quick]`: every hot path of the app next to a bare baseline of the same shape,
// measured in the same run, because on these shared machines absolute figures move by ±25–50% between
// runs and only ratios travel. The app and the baselines are child processes pinned to core 0; this
// runner (autocannon, socket clients) is pinned to core 1. Production mode runs on a scratch database
// and a private Redis prefix, the embedded scenarios on a PGlite data dir of their own, all seeded
// with the same rows; everything is removed at the end, also on failure or Ctrl-C.
//
// Env: BENCH_SECONDS (per run), BENCH_REPS, BENCH_ONLY (a regular expression over measure names),
// BENCH_CPU_PROF (a directory: the production and the embedded app write a --cpu-prof profile there when they stop),
// DATABASE_URL and REDIS_URL (the servers to use; defaults are the local ones).
import { randomBytes } from 'node:crypto';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import pg from 'pg';
import { loadConfig } from '../src/config.js';
import { buildDeps, closeDeps } from '../src/deps.js';
import { openPglite } from '../src/lib/db.js';
import { migrate } from '../src/lib/migrate.js';
import { hashPassword } from '../src/modules/accounts/accounts.passwords.js';
import { isoWeek } from '../src/modules/leaderboards/leaderboards.service.js';
import { defineJobs } from '../src/worker.js';
import { PAGE_QUERY } from './baselines/shapes.js';
import { chatMeasures } from './chat.js';
import { CONNECTIONS, fire, type HttpLoad, httpMeasure, type Shot, toMeasurement } from './http.js';
import { drained, jobCounter, jobsMeasure } from './jobs.js';
import {
  childPids,
  cpuWatch,
  freePort,
  pinSelf,
  ROOT,
  readProcStat,
  startChild,
  stopAllChildren,
  waitQuiet,
} from './procs.js';
import {
  type Report,
  type Summary,
  scenarioRow,
  scenarioTable,
  type Target,
  writeReports,
} from './report.js';
import { FULL, openTasks, QUICK, sampleTasks, seed, seedPlan, type TaskRef } from './seed.js';
import { median } from './stats.js';
import type { ChatContext, Measure, Measurement, ScenarioRow } from './types.js';

const { values: args } = parseArgs({ options: { quick: { type: 'boolean', default: false } } });
const quick = args.quick === true;
// 3 × 3 s over some 30 measures, with their warm-ups, the job queues draining and the waits for a
// quiet machine, is what fits in 10 minutes on this 2-core machine (3 × 4 s took 11 minutes).
const SECONDS = Number(process.env.BENCH_SECONDS ?? (quick ? 1 : 3));
const REPS = Number(process.env.BENCH_REPS ?? (quick ? 1 : 3));
const WARM_SECONDS = quick ? 0.5 : 1;
const CALIBRATION_SECONDS = quick ? 1 : 2;
const ONLY = process.env.BENCH_ONLY ? new RegExp(process.env.BENCH_ONLY) : undefined;
const MIN_CALIBRATION_RPS = 25_000;
const MAX_FOREIGN_PCT = 10;
/** Each wait for a quiet machine is bounded, and so is their sum, or a busy machine would take hours. */
const QUIET_MAX_MS = 15_000;
let quietBudgetMs = quick ? 5000 : 45_000;
/** How long the job queues may take to empty between runs. */
const DRAIN_MS = quick ? 15_000 : 60_000;
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

const TARGETS: Target[] = [
  { scenario: 'health.stack', baseline: 'B-http', minRatio: 0.7 },
  { scenario: 'tasks.get', baseline: 'B-pk', minRatio: 0.7, p99Factor: 2 },
  { scenario: 'tasks.list', baseline: 'B-page', minRatio: 0.7, p99Factor: 2 },
  { scenario: 'tasks.create', baseline: 'B-insert', minRatio: 0.6 },
  { scenario: 'tasks.complete', baseline: 'B-pk', minRatio: 0.3, p99MaxMs: 150 },
  { scenario: 'leaderboard.read', baseline: 'B-lb', minRatio: 0.7 },
  { scenario: 'chat.rate', baseline: 'B-sio.rate', latencyOnly: true, p99MaxMs: 25, noLoss: true },
  { scenario: 'chat.saturation', baseline: 'B-sio.closed', minRatio: 0.3 },
  { scenario: 'mixed', baseline: 'chat.rate', latencyOnly: true, p99Factor: 2 },
  { scenario: 'embedded.tasks.get', baseline: 'B-pglite-pk', minRatio: 0.7 },
  { scenario: 'embedded.tasks.list', baseline: 'B-pglite-page', minRatio: 0.7 },
  // chat.saturation is the app as deployed, on the redis-streams adapter.
  {
    scenario: 'chat.saturation.redis',
    sameAs: 'chat.saturation',
    baseline: 'chat.saturation.memory',
    minRatio: 0.5,
  },
  { scenario: 'jobs.throughput', baseline: 'B-bullmq', minRatio: 0.7 },
];

const say = (line: string) => process.stdout.write(`${line}\n`);
const fixed = (n: number, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : '–');

// ---- cleanup: every child by PID, then what the run created, in reverse order -----------------

const cleanups: (() => Promise<unknown>)[] = [];
let cleaning: Promise<void> | undefined;
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    await stopAllChildren();
    for (const undo of cleanups.reverse()) {
      await undo().catch((err) => say(`cleanup: ${err instanceof Error ? err.message : String(err)}`));
    }
  })();
  return cleaning;
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    say(`\n${signal}: stopping children and removing the scratch database, Redis keys and files`);
    void cleanup().finally(() => process.exit(130));
  });
}

// ---- the run ---------------------------------------------------------------------------------

async function main(): Promise<number> {
  const started = performance.now();
  const pinned = pinSelf();
  const hex = randomBytes(4).toString('hex');
  const prefix = `bench${hex}`;
  const dbName = `taskmaa_bench_${hex}`;
  say(
    `npm run bench${quick ? ' --quick' : ''}: ${REPS} × ${SECONDS} s per measure (BENCH_SECONDS, BENCH_REPS), ` +
      `${pinned ? 'children on core 0, runner on core 1' : 'not pinned (no taskset or one core)'}`,
  );

  const tmp = mkdtempSync(join(tmpdir(), 'taskmaa-bench-'));
  cleanups.push(async () => rmSync(tmp, { recursive: true, force: true }));
  const admin = new pg.Client({ connectionString: DATABASE_URL });
  await admin.connect();
  cleanups.push(() => admin.end());
  await admin.query(`CREATE DATABASE ${dbName}`);
  cleanups.push(() => admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`));
  const dbUrlObject = new URL(DATABASE_URL);
  dbUrlObject.pathname = `/${dbName}`;
  const dbUrl = dbUrlObject.toString();
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 2 });
  cleanups.push(async () => {
    await dropKeys(redis, `${prefix}:*`);
    await redis.quit();
  });

  // The app in production mode, as deployed: secrets given, not generated; tokens live the whole run.
  const secret = randomBytes(48).toString('base64url');
  const appEnv: Record<string, string | undefined> = {
    ...process.env,
    NODE_ENV: 'production',
    ROLE: 'serve',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    RATE_LIMIT_MULTIPLIER: '0',
    ACCESS_TOKEN_SECRET: secret,
    ACCESS_TOKEN_TTL_SECONDS: '3600',
    DATABASE_URL: dbUrl,
    REDIS_URL,
    REDIS_PREFIX: prefix,
    DATA_DIR: join(tmp, 'app'),
  };
  const config = loadConfig({ ...appEnv, LOG_LEVEL: 'error' });
  const deps = await buildDeps(config);
  cleanups.push(() => closeDeps(deps));
  // Rows the chat scenarios write may enqueue jobs from here: they must be known to be relayed.
  defineJobs(deps);
  await migrate(deps.db);

  const plan = seedPlan(quick ? QUICK : FULL, hex);
  const sizes = plan.sizes;
  const hash = await hashPassword('bench password, never used to sign in');
  await step(`seed PostgreSQL: ${sizes.tasks} tasks of ${sizes.owners} users, ${sizes.members} members`, () =>
    seed(deps.db, plan, hash),
  );
  const week = isoWeek(new Date());
  await step('leaderboard mirror in Redis, rebuilt from the ledger as the app does', async () => {
    const someone = plan.members[0] as string;
    await deps.leaderboards.board(someone, 'global:week', 10);
    await deps.leaderboards.board(someone, 'global:all', 10);
    const built = await drained(
      async () => (await redis.exists(`${prefix}:lb:${week}:built`, `${prefix}:lb:all:built`)) === 2,
      60_000,
    );
    if (!built) throw new Error('the leaderboard mirror was not rebuilt within a minute');
  });
  const embeddedDir = join(tmp, 'embedded');
  const pgliteCopy = join(tmp, 'pglite-baseline');

  const tokenOf = new Map(plan.owners.map((o) => [o.userId, `Bearer ${deps.tokens.sign(o).token}`] as const));
  const auth = (userId: string) => ({ authorization: tokenOf.get(userId) as string });
  const reads = await sampleTasks(deps.db, 1000);
  const open = openTasks(deps.db, plan);

  // ---- children ----
  const startApp = async (env: Record<string, string | undefined> = {}, nodeArgs: string[] = []) => {
    const port = await freePort();
    return startChild({
      name: 'app',
      file: 'src/main.ts',
      env: { ...appEnv, ...env, PORT: String(port) },
      ready: { port },
      nodeArgs,
    });
  };
  const startBaseline = (file: string, env: Record<string, string> = {}) =>
    startChild({
      name: file,
      file,
      env: { ...process.env, DATABASE_URL: dbUrl, REDIS_URL, REDIS_PREFIX: prefix, ...env, PORT: '0' },
      ready: { stdout: true },
    });
  const recorded: Record<string, number | string> = {};
  const profile = process.env.BENCH_CPU_PROF;
  const profiled = profile ? ['--cpu-prof', `--cpu-prof-dir=${profile}`] : [];
  const app = await step('start the app (PostgreSQL + Redis)', () => startApp({}, profiled));
  recorded['ready.postgres.ms'] = app.readyMs;
  recorded['rss.app.idle.MB'] = app.rssBytes() / 2 ** 20;
  // The runner seeds PGlite on its own core while the first baselines start on theirs (not while the
  // app starts: PGlite's statements hold up this event loop, and with it the timing of readiness).
  const pgliteSeeded = step('seed PGlite (the same rows)', async () => {
    const lite = await openPglite(join(embeddedDir, 'pglite'));
    try {
      await migrate(lite);
      await seed(lite, plan, hash);
    } finally {
      await lite.close();
    }
    cpSync(join(embeddedDir, 'pglite'), pgliteCopy, { recursive: true });
  });
  // Awaited below; a failure meanwhile must not count as unhandled.
  pgliteSeeded.catch(() => {});
  const [hello, fastify, pgBase, lbBase, bullBase] = await step('start the baselines', () =>
    Promise.all([
      startBaseline('bench/baselines/hello.ts'),
      startBaseline('bench/baselines/fastify.ts'),
      startBaseline('bench/baselines/pg.ts'),
      startBaseline('bench/baselines/redis.ts', {
        LB_KEY: `${prefix}:blb`,
        LB_SOURCE: `${prefix}:lb:${week}`,
      }),
      startBaseline('bench/baselines/bullmq.ts', {
        QUEUE_PREFIX: `${prefix}:bbull`,
        CONCURRENCY: String(config.JOBS_CONCURRENCY),
      }),
    ]),
  );
  await pgliteSeeded;
  const embeddedEnv = { DATABASE_URL: undefined, REDIS_URL: undefined, REDIS_PREFIX: undefined };
  // A fresh data dir costs a whole embedded start with every migration: not worth it in a smoke run.
  if (!quick) {
    const fresh = await step('time to ready, embedded, fresh data dir', () =>
      startApp({ ...embeddedEnv, DATA_DIR: join(tmp, 'fresh') }),
    );
    recorded['ready.embedded.fresh.ms'] = fresh.readyMs;
    await fresh.stop();
  }
  const embedded = await step('start the embedded app (reopened, seeded data dir)', () =>
    startApp({ ...embeddedEnv, DATA_DIR: embeddedDir }, profiled),
  );
  recorded['ready.embedded.reopened.ms'] = embedded.readyMs;
  const liteBase = await step('start the PGlite baseline', () =>
    startBaseline('bench/baselines/pglite.ts', { PGLITE_DIR: pgliteCopy }),
  );

  // ---- measures ----
  const cycle = <T>(items: readonly T[]) => {
    let i = 0;
    return () => items[i++ % items.length] as T;
  };
  const on =
    (url: string, shot: () => Shot, method: HttpLoad['method'] = 'GET') =>
    (): HttpLoad => ({ url, method, shot });
  const getShot = () => {
    const next = cycle(reads);
    return () => {
      const t = next();
      return { path: `/v1/tasks/${t.id}`, headers: auth(t.userId) };
    };
  };
  const pkShot = () => {
    const next = cycle(reads);
    return () => {
      const t = next();
      return { path: `/pk/${t.userId}/${t.id}` };
    };
  };
  const listShot = () => {
    const next = cycle(plan.heavy);
    return () => {
      const userId = next();
      return { path: `/v1/tasks${PAGE_QUERY}`, headers: auth(userId) };
    };
  };
  const pageShot = () => {
    const next = cycle(plan.heavy);
    return () => ({ path: `/page/${next()}` });
  };
  const title = JSON.stringify({ title: 'A task from the bench' });
  const createShot = () => {
    const next = cycle(plan.pool);
    return () => ({ path: '/v1/tasks', headers: auth(next()), body: title });
  };
  const insertShot = () => {
    const next = cycle(plan.pool);
    return () => ({ path: `/insert/${next()}`, body: title });
  };
  const boardShot = () => {
    const next = cycle(plan.owners);
    return () => ({ path: '/v1/leaderboards/global?period=week&limit=10', headers: auth(next().userId) });
  };
  const lbShot = () => {
    const next = cycle(plan.owners);
    return () => ({ path: `/lb/${next().userId}` });
  };

  const appJobs = jobCounter(REDIS_URL, `${prefix}:bull`);
  const baseJobs = jobCounter(REDIS_URL, `${prefix}:bbull`);
  cleanups.push(() => Promise.all([appJobs.close(), baseJobs.close()]));
  const appIdle = async () => {
    if ((await appJobs.backlog()) > 0) return false;
    const { rows } = await deps.db.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM outbox WHERE sent_at IS NULL AND available_at <= now()',
    );
    return rows[0]?.n === 0;
  };

  /** Completions of distinct open tasks, enough for `seconds` at the best rate seen, twice over. */
  let completeRate = 500;
  const completions = async (seconds: number): Promise<{ load: HttpLoad; reused: () => number }> => {
    const tasks = await open.take(Math.ceil(completeRate * seconds * 2) + 2 * CONNECTIONS);
    if (tasks.length === 0) throw new Error('no open tasks left to complete');
    let i = 0;
    const shot = () => {
      const t = tasks[i++ % tasks.length] as TaskRef;
      return { path: `/v1/tasks/${t.id}/complete`, headers: auth(t.userId) };
    };
    return {
      load: { url: app.url, method: 'POST', shot },
      reused: () => Math.max(0, i - tasks.length),
    };
  };
  const complete: Measure = {
    name: 'tasks.complete',
    async warm(seconds) {
      await this.run(seconds);
    },
    async run(seconds) {
      await drained(appIdle, DRAIN_MS);
      const { load, reused } = await completions(seconds);
      const cpu0 = app.cpuMs();
      const result = await fire(load, seconds);
      const m = toMeasurement(result, app.cpuMs() - cpu0);
      completeRate = Math.max(completeRate, m.value);
      if (reused()) m.extra = { ...m.extra, reusedIds: reused() };
      // The jobs it caused run before the next measure, not during it.
      if (!(await drained(appIdle, DRAIN_MS))) m.extra = { ...m.extra, undrained: 1 };
      return m;
    },
  };
  const jobs = jobsMeasure({
    name: 'jobs.throughput',
    counter: appJobs,
    servers: [app],
    idle: appIdle,
    drainMs: DRAIN_MS,
    async produce(seconds) {
      const { load, reused } = await completions(seconds);
      const result = await fire(load, seconds);
      const http = toMeasurement(result, 0);
      completeRate = Math.max(completeRate, http.value);
      return {
        errors: http.errors,
        extra: { completions: http.value, ...(reused() ? { reusedIds: reused() } : {}) },
      };
    },
  });
  const bullmq = jobsMeasure({
    name: 'B-bullmq',
    counter: baseJobs,
    servers: [bullBase],
    idle: async () => (await baseJobs.backlog()) === 0,
    drainMs: DRAIN_MS,
    async produce(seconds) {
      const res = await fetch(`${bullBase.url}/load?seconds=${seconds}`, { method: 'POST' });
      const body = res.ok ? ((await res.json()) as { added: number }) : { added: 0 };
      return { errors: res.ok ? 0 : 1, extra: { added: body.added } };
    },
  });

  const list = httpMeasure('tasks.list', [app], on(app.url, listShot()));
  const mine: Measure[] = [
    httpMeasure(
      'B-http',
      [fastify],
      on(fastify.url, () => ({ path: '/' })),
    ),
    httpMeasure(
      'health.stack',
      [app],
      on(app.url, () => ({ path: '/health/live' })),
    ),
    httpMeasure('B-pk', [pgBase], on(pgBase.url, pkShot())),
    httpMeasure('tasks.get', [app], on(app.url, getShot())),
    httpMeasure('B-page', [pgBase], on(pgBase.url, pageShot())),
    list,
    httpMeasure('B-insert', [pgBase], on(pgBase.url, insertShot(), 'POST')),
    httpMeasure('tasks.create', [app], on(app.url, createShot(), 'POST')),
    complete,
    httpMeasure('B-lb', [lbBase], on(lbBase.url, lbShot())),
    httpMeasure('leaderboard.read', [app], on(app.url, boardShot())),
    bullmq,
    jobs,
    httpMeasure('B-pglite-pk', [liteBase], on(liteBase.url, pkShot())),
    httpMeasure('embedded.tasks.get', [embedded], on(embedded.url, getShot())),
    httpMeasure('B-pglite-page', [liteBase], on(liteBase.url, pageShot())),
    httpMeasure('embedded.tasks.list', [embedded], on(embedded.url, listShot())),
  ];

  // tasks.list at half the rate it reached, beside the chat scenarios' `mixed`.
  const runs = new Map<string, (Measurement & { foreignCpuPct: number })[]>();
  const backgroundLoad = async (seconds: number): Promise<Measurement> => {
    const rate = median((runs.get('tasks.list') ?? []).map((m) => m.value));
    const max = Number.isFinite(rate) ? rate : list.rate();
    const cpu0 = app.cpuMs();
    const result = await fire(
      { ...on(app.url, listShot())(), overallRate: (Number.isFinite(max) ? max : 1000) / 2 },
      seconds,
    );
    return toMeasurement(result, app.cpuMs() - cpu0);
  };
  const ctx: ChatContext = {
    startApp: (env) => startApp(env),
    app,
    deps,
    databaseUrl: dbUrl,
    redisUrl: REDIS_URL,
    startBaseline,
    quick,
    backgroundLoad,
  };
  const chat = await step('chat scenarios: seed and connect', () => chatMeasures(ctx));
  cleanups.push(() => chat.close());
  const measures = [...mine, ...chat.measures].filter((m) => !ONLY || ONLY.test(m.name));

  // ---- foreign CPU: everything but us, our children, our PostgreSQL backends and Redis ----
  const redisPid = Number(/process_id:(\d+)/.exec(await redis.info('server'))?.[1] ?? 0);
  const ours = async () => {
    const { rows } = await admin.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity
        WHERE datname = $1 OR backend_type <> 'client backend' OR pid = pg_backend_pid()`,
      [dbName],
    );
    return [process.pid, ...childPids(), ...(redisPid ? [redisPid] : []), ...rows.map((r) => r.pid)];
  };
  const watch = cpuWatch(ours);
  const quiet = async () => {
    const maxMs = Math.min(QUIET_MAX_MS, quietBudgetMs);
    // Each run records the foreign CPU it saw anyway; once the budget is spent, runs just go.
    if (maxMs <= 0) return;
    const { waitedMs } = await waitQuiet(watch, { pct: MAX_FOREIGN_PCT, maxMs, windowMs: quick ? 200 : 500 });
    quietBudgetMs = Math.max(0, quietBudgetMs - waitedMs);
  };
  const measured = async (m: Measure, seconds: number) => {
    await quiet();
    const stop = await watch();
    let result: Measurement;
    try {
      result = await m.run(seconds);
    } catch (err) {
      const detail = err instanceof Error ? err.message : String(err);
      result = {
        value: Number.NaN,
        unit: '',
        p50: Number.NaN,
        p99: Number.NaN,
        count: 0,
        errors: 1,
        extra: { failed: detail },
      };
    }
    const { foreignPct, oursMs } = await stop();
    const infraMs = [...oursMs].reduce(
      (sum, [pid, ms]) => (pid === process.pid || childPids().includes(pid) ? sum : sum + ms),
      0,
    );
    if (result.count > 0)
      result.extra = { ...result.extra, dbRedisCpuUsPerReq: (infraMs * 1000) / result.count };
    return { ...result, foreignCpuPct: foreignPct };
  };
  const line = (name: string, m: Measurement & { foreignCpuPct: number }) =>
    say(
      `  ${name.padEnd(24)} ${fixed(m.value).padStart(9)} ${m.unit.padEnd(9)} p50 ${fixed(m.p50).padStart(6)} ms  ` +
        `p99 ${fixed(m.p99).padStart(7)} ms  errors ${m.errors}${m.lost ? `  lost ${m.lost}` : ''}  ` +
        `foreign ${fixed(m.foreignCpuPct)}%  at ${fixed((performance.now() - started) / 1000, 0)} s` +
        `${m.extra?.failed ? `  FAILED: ${m.extra.failed}` : ''}`,
    );

  const calibration: (Measurement & { foreignCpuPct: number })[] = [];
  const calibrate = httpMeasure(
    'calibration',
    [hello],
    on(hello.url, () => ({ path: '/' })),
  );
  say(`\nwarm-up, ${WARM_SECONDS} s each`);
  for (const m of [calibrate, ...measures]) {
    await quiet();
    await m.warm?.(WARM_SECONDS).catch((err) => say(`  ${m.name}: warm-up failed: ${String(err)}`));
  }
  for (let rep = 0; rep < REPS; rep++) {
    say(`\nrepetition ${rep + 1} of ${REPS}`);
    const c = await measured(calibrate, CALIBRATION_SECONDS);
    calibration.push(c);
    line('calibration (node:http)', c);
    // Alternate the order, so no measure always runs right after the same neighbour.
    for (const m of rep % 2 ? [...measures].reverse() : measures) {
      const result = await measured(m, SECONDS);
      runs.set(m.name, [...(runs.get(m.name) ?? []), result]);
      line(m.name, result);
    }
  }

  // ---- report ----
  const summaries = new Map([...runs].map(([name, ms]) => [name, summarize(name, ms)]));
  const rows: ScenarioRow[] = [];
  for (const t of TARGETS) {
    const found = summaries.get(t.scenario) ?? (t.sameAs ? summaries.get(t.sameAs) : undefined);
    const s = found && { ...found, name: t.scenario };
    const b = summaries.get(t.baseline);
    if (s && b) rows.push(scenarioRow(t, s, b));
    else if (!ONLY) say(`not measured: ${t.scenario} / ${t.baseline}`);
  }
  const calibrationRps = median(calibration.map((c) => c.value));
  const allRuns = [...runs.values()].flat();
  const foreignCpuPct = allRuns.reduce((sum, m) => sum + m.foreignCpuPct, 0) / Math.max(1, allRuns.length);
  const invalidBecause = [
    ...(calibrationRps < MIN_CALIBRATION_RPS
      ? [`calibration ${Math.round(calibrationRps)} req/s < ${MIN_CALIBRATION_RPS}`]
      : []),
    ...(foreignCpuPct > MAX_FOREIGN_PCT
      ? [`foreign CPU ${foreignCpuPct.toFixed(1)}% > ${MAX_FOREIGN_PCT}%`]
      : []),
  ];
  const report: Report = {
    machine: {
      cpus: readProcStat().cores,
      model: cpus()[0]?.model ?? 'unknown',
      node: process.version,
      pinned,
      calibrationRps,
      foreignCpuPct,
      foreignCpuPctMax: Math.max(0, ...allRuns.map((m) => m.foreignCpuPct)),
      quick,
      seconds: SECONDS,
      repetitions: REPS,
      connections: CONNECTIONS,
      tasks: sizes.tasks,
      taskOwners: sizes.owners,
      leaderboardMembers: sizes.members,
      wallSeconds: (performance.now() - started) / 1000,
    },
    valid: invalidBecause.length === 0,
    invalidBecause,
    scenarios: rows,
    measures: [...summaries.values()],
    recorded,
  };
  const files = writeReports(join(ROOT, 'reports'), report);
  say(`\n${scenarioTable(rows)}\n`);
  say(
    `${report.valid ? 'valid run' : `INVALID run: ${invalidBecause.join('; ')}`}; ` +
      `${rows.filter((r) => r.met).length} of ${rows.length} targets met; wall ${fixed(report.machine.wallSeconds as number, 0)} s`,
  );
  say(`written: ${files.json}, ${files.md}`);
  return 0;
}

/** Medians over the repetitions; counts, errors and losses summed; server CPU per request. */
function summarize(name: string, ms: (Measurement & { foreignCpuPct: number })[]): Summary {
  const sum = (pick: (m: Measurement) => number | undefined) => ms.reduce((s, m) => s + (pick(m) ?? 0), 0);
  const count = sum((m) => m.count);
  const withCpu = ms.filter((m) => m.serverCpuMs !== undefined);
  const extra: Record<string, number | string> = {};
  for (const key of new Set(ms.flatMap((m) => Object.keys(m.extra ?? {})))) {
    const values = ms.map((m) => m.extra?.[key]).filter((v) => v !== undefined);
    extra[key] = values.every((v) => typeof v === 'number')
      ? median(values as number[])
      : String(values[values.length - 1]);
  }
  return {
    name,
    value: median(ms.map((m) => m.value)),
    unit: ms.find((m) => m.unit)?.unit ?? '',
    p50: median(ms.map((m) => m.p50)),
    p99: median(ms.map((m) => m.p99)),
    count,
    errors: sum((m) => m.errors),
    ...(ms.some((m) => m.lost !== undefined) ? { lost: sum((m) => m.lost) } : {}),
    ...(withCpu.length && count > 0
      ? {
          cpuPerRequestUs:
            (sum((m) => m.serverCpuMs) * 1000) / sum((m) => (m.serverCpuMs === undefined ? 0 : m.count)),
        }
      : {}),
    foreignCpuPct: median(ms.map((m) => m.foreignCpuPct)),
    ...(Object.keys(extra).length ? { extra } : {}),
  };
}

async function step<T>(what: string, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const result = await fn();
  say(`${what}: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return result;
}

async function dropKeys(redis: Redis, pattern: string) {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    if (keys.length) await redis.unlink(...keys);
    cursor = next;
  } while (cursor !== '0');
}

main()
  .catch((err) => {
    // Interrupted: what failed is only the children going away under it.
    if (cleaning) return 130;
    say(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    return 1;
  })
  .then(async (code) => {
    await cleanup();
    process.exit(code);
  });
