// `npm run bench`: latency figures for the hot paths, each next to a bare baseline measured in the
// same run (these machines are noisy; ratios travel, milliseconds do not). Runs the real app on a
// real port, embedded by default, or on PostgreSQL/Redis when DATABASE_URL and REDIS_URL are set.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { verify } from '@node-rs/argon2';
import pg from 'pg';
import { loadConfig } from '../src/config.js';
import { buildDeps, closeDeps } from '../src/deps.js';
import { buildApp } from '../src/http/app.js';
import { migrate } from '../src/lib/migrate.js';
import { hashPassword } from '../src/modules/accounts/accounts.passwords.js';
import { defineJobs } from '../src/worker.js';

const N = Number(process.env.BENCH_N ?? 200);

function stats(samples: number[]) {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
  return { p50: at(0.5), p95: at(0.95), p99: at(0.99) };
}

async function time(n: number, run: (i: number) => Promise<unknown>) {
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const start = process.hrtime.bigint();
    await run(i);
    samples.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  return stats(samples);
}

const fmt = (s: { p50: number; p95: number; p99: number }) =>
  `p50 ${s.p50.toFixed(2)} ms, p95 ${s.p95.toFixed(2)} ms, p99 ${s.p99.toFixed(2)} ms`;

/** With DATABASE_URL, the bench runs in a database of its own on that server, dropped afterwards. */
async function scratchDatabase(serverUrl: string | undefined) {
  if (!serverUrl) return { url: undefined, drop: async () => {} };
  const name = `taskmaa_bench_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end();
    },
  };
}

async function main() {
  const dataDir = mkdtempSync(join(tmpdir(), 'taskmaa-bench-'));
  const scratch = await scratchDatabase(process.env.DATABASE_URL);
  const prefix = `bench${randomBytes(4).toString('hex')}`;
  const config = loadConfig({
    ...process.env,
    ...(scratch.url ? { DATABASE_URL: scratch.url } : {}),
    NODE_ENV: 'test',
    LOG_LEVEL: 'silent',
    DATA_DIR: dataDir,
    RATE_LIMIT_MULTIPLIER: '0',
    REDIS_PREFIX: prefix,
  });
  const deps = await buildDeps(config);
  await migrate(deps.db);
  defineJobs(deps);
  const app = await buildApp(deps);
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address();
  const base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  const post = (path: string, body: unknown) =>
    fetch(`${base}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });

  const password = 'bench password that is long';
  const username = `bench_${randomBytes(4).toString('hex')}`;
  const created = await post('/v1/auth/register', { username, email: `${username}@example.test`, password });
  if (created.status !== 201) throw new Error(`register failed: ${created.status}`);
  const hash = await hashPassword(password);

  // Warm both paths so JIT and argon2's first allocation do not land in the samples.
  for (let i = 0; i < 5; i++) {
    await verify(hash, password);
    await (await post('/v1/auth/login', { login: username, password })).arrayBuffer();
    await (await fetch(`${base}/health/live`)).arrayBuffer();
  }

  const argon = await time(N, () => verify(hash, password));
  const live = await time(N, async () => (await fetch(`${base}/health/live`)).arrayBuffer());
  const login = await time(N, async () => {
    const res = await post('/v1/auth/login', { login: username, password });
    if (res.status !== 200) throw new Error(`login ${res.status}`);
    await res.arrayBuffer();
  });

  const mode = config.DATABASE_URL ? 'postgres+redis' : 'embedded';
  process.stdout.write(
    [
      `TaskMaa bench (${mode}, ${N} sequential requests each)`,
      `  baseline argon2id verify (m=19456,t=2,p=1): ${fmt(argon)}`,
      `  baseline GET /health/live over HTTP:        ${fmt(live)}`,
      `  POST /v1/auth/login:                        ${fmt(login)}`,
      `  login p50 / argon2 p50 = ${(login.p50 / argon.p50).toFixed(2)}; login p50 − argon2 p50 − HTTP p50 = ${(login.p50 - argon.p50 - live.p50).toFixed(2)} ms of our own work`,
      '',
    ].join('\n'),
  );

  await app.close();
  if (deps.redis) {
    const keys = await deps.redis.keys(`${prefix}:*`);
    if (keys.length) await deps.redis.del(...keys);
  }
  await closeDeps(deps);
  await scratch.drop();
  rmSync(dataDir, { recursive: true, force: true });
}

main().catch((err) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
