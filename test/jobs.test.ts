import { randomBytes, randomUUID } from 'node:crypto';
import { Type as T } from '@sinclair/typebox';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../src/lib/clock.js';
import type { Db } from '../src/lib/db.js';
import { bullmqJobs, defineJob, type Jobs, localJobs } from '../src/lib/jobs.js';
import { bullmqConnectionOptions } from '../src/lib/redis.js';
import { captureLogs, eventually, lane, type TestDb, testDb } from './helpers.js';

// The job runner of whichever lane this is, through the Jobs interface only. Each test gets its own
// queue (its own BullMQ prefix; in the embedded lane, leftovers are cleared after each test) so a
// job kind one test defines is never picked up by another test's runner.
const filePrefix = `tj${randomBytes(5).toString('hex')}`;
let database: TestDb;
let db: Db;
const opened: Jobs[] = [];
let queueNo = 0;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A fresh queue name; runners built with the same one share the queue (BullMQ) or the table (embedded). */
const newQueue = () => `${filePrefix}-${++queueNo}`;

/** The file's database answering each query `lag()` ms late, like a busy server. */
function laggingDb(lag: () => number): Db {
  return {
    ...db,
    async query<R>(sql: string, params?: readonly unknown[]) {
      const result = await db.query<R>(sql, params);
      if (lag() > 0) await sleep(lag());
      return result;
    },
  };
}

function makeJobs(log: Logger, queue: string, o: { drainMs?: number; lockMs?: number } = {}): Jobs {
  const jobs = lane.redisUrl
    ? bullmqJobs({
        connection: bullmqConnectionOptions(lane.redisUrl, 'test'),
        prefix: `${queue}:bull`,
        log,
        concurrency: 4,
        ...o,
      })
    : localJobs({
        db,
        clock: systemClock,
        log,
        concurrency: 4,
        ...(o.drainMs ? { drainMs: o.drainMs } : {}),
      });
  opened.push(jobs);
  return jobs;
}

beforeAll(async () => {
  database = await testDb();
  db = database.db;
});

afterEach(async () => {
  await Promise.all(opened.splice(0).map((j) => j.close()));
  if (!lane.redisUrl) await db.query(`DELETE FROM local_jobs WHERE state IN ('waiting', 'active')`);
});

afterAll(async () => {
  await database?.drop();
  if (lane.redisUrl) {
    const redis = new Redis(lane.redisUrl);
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${filePrefix}-*`, 'COUNT', 500);
      cursor = next;
      if (keys.length > 0) await redis.del(...keys);
    } while (cursor !== '0');
    await redis.quit();
  }
});

const Payload = T.Object({ n: T.Integer() }, { additionalProperties: false });

describe('jobs', () => {
  it('runs a job with its payload and a context', async () => {
    const { log } = captureLogs();
    const jobs = makeJobs(log, newQueue());
    const seen: { n: number; attempt: number; jobId: string }[] = [];
    jobs.define(
      defineJob({
        name: 'test.echo',
        payload: Payload,
        handler: async ({ n }, ctx) => {
          seen.push({ n, attempt: ctx.attempt, jobId: ctx.jobId });
        },
      }),
    );
    await jobs.start();
    await jobs.enqueue('test.echo', { n: 7 }, { jobId: 'echo-1' });
    await eventually(() => expect(seen).toEqual([{ n: 7, attempt: 1, jobId: 'echo-1' }]));
  });

  it('retries a failing handler with a growing backoff until it succeeds', async () => {
    const { log, lines } = captureLogs();
    const jobs = makeJobs(log, newQueue());
    const runs: { attempt: number; at: number }[] = [];
    jobs.define(
      defineJob({
        name: 'test.flaky',
        payload: Payload,
        attempts: 5,
        backoffMs: 60,
        handler: async (_p, ctx) => {
          runs.push({ attempt: ctx.attempt, at: performance.now() });
          if (ctx.attempt < 3) throw new Error(`flake ${ctx.attempt}`);
        },
      }),
    );
    await jobs.start();
    await jobs.enqueue('test.flaky', { n: 1 });
    await eventually(() => expect(runs.map((r) => r.attempt)).toEqual([1, 2, 3]));
    const [first, second, third] = runs as [(typeof runs)[0], (typeof runs)[0], (typeof runs)[0]];
    const gap1 = second.at - first.at;
    const gap2 = third.at - second.at;
    // 60 ms, then 120 ms (timers may fire a millisecond early). Only lower bounds: a loaded machine
    // delays runs, and a constant backoff could not pass the second one.
    expect(gap1).toBeGreaterThanOrEqual(58);
    expect(gap2).toBeGreaterThanOrEqual(118);
    await sleep(200);
    expect(runs).toHaveLength(3);
    expect(lines().filter((l) => l.msg === 'job failed; will retry')).toHaveLength(2);
    expect(lines().some((l) => l.msg === 'job failed for good')).toBe(false);
  });

  it('gives up after `attempts` runs and logs the failure', async () => {
    const { log, lines } = captureLogs();
    const jobs = makeJobs(log, newQueue());
    const attempts: number[] = [];
    jobs.define(
      defineJob({
        name: 'test.doomed',
        payload: Payload,
        attempts: 3,
        backoffMs: 20,
        handler: async (_p, ctx) => {
          attempts.push(ctx.attempt);
          throw new Error('always broken');
        },
      }),
    );
    await jobs.start();
    await jobs.enqueue('test.doomed', { n: 1 }, { jobId: 'doomed-1' });
    const failed = await eventually(() => {
      const line = lines().find((l) => l.msg === 'job failed for good');
      expect(line).toBeDefined();
      return line as Record<string, unknown>;
    });
    expect(failed.level).toBe(50);
    expect(failed.jobId).toBe('doomed-1');
    expect((failed.err as { message: string }).message).toBe('always broken');
    await sleep(250);
    expect(attempts).toEqual([1, 2, 3]);
    if (!lane.redisUrl) {
      const { rows } = await db.query<{ state: string; lastError: string }>(
        'SELECT state, last_error FROM local_jobs WHERE id = $1',
        ['doomed-1'],
      );
      expect(rows).toEqual([{ state: 'failed', lastError: 'always broken' }]);
    }
  });

  it('refuses an invalid payload at enqueue, and an unknown job', async () => {
    const { log } = captureLogs();
    const jobs = makeJobs(log, newQueue());
    const seen: unknown[] = [];
    jobs.define(
      defineJob({
        name: 'test.strict',
        payload: Payload,
        handler: async (p) => {
          seen.push(p);
        },
      }),
    );
    await jobs.start();
    await expect(jobs.enqueue('test.strict', { n: 'seven' })).rejects.toThrow(
      /invalid payload for test.strict: \/n/,
    );
    await expect(jobs.enqueue('test.strict', { n: 1, extra: true })).rejects.toThrow(/invalid payload/);
    await expect(jobs.enqueue('test.nobody', { n: 1 })).rejects.toThrow(/Unknown job test.nobody/);
    expect(() => jobs.repeat('test.strict', 1000, { n: 'seven' })).toThrow(/invalid payload for test.strict/);
    await jobs.enqueue('test.strict', { n: 2 });
    await eventually(() => expect(seen).toEqual([{ n: 2 }]));
    await sleep(100);
    expect(seen).toEqual([{ n: 2 }]);
  });

  it('does not run a delayed job before its delay, and runs it after', async () => {
    const { log } = captureLogs();
    const jobs = makeJobs(log, newQueue());
    let ranAt: number | undefined;
    jobs.define(
      defineJob({
        name: 'test.later',
        payload: Payload,
        handler: async () => {
          ranAt = performance.now();
        },
      }),
    );
    await jobs.start();
    const enqueuedAt = performance.now();
    await jobs.enqueue('test.later', { n: 1 }, { delayMs: 400 });
    await sleep(250);
    expect(ranAt).toBeUndefined();
    await eventually(() => expect(ranAt).toBeDefined());
    expect((ranAt as number) - enqueuedAt).toBeGreaterThanOrEqual(395);
  });

  it('runs a job once when enqueued twice with the same jobId, even after it ran', async () => {
    const { log } = captureLogs();
    const jobs = makeJobs(log, newQueue());
    const seen: number[] = [];
    jobs.define(
      defineJob({
        name: 'test.once',
        payload: Payload,
        handler: async ({ n }) => {
          seen.push(n);
        },
      }),
    );
    await jobs.start();
    const jobId = `once-${randomUUID()}`;
    await Promise.all([
      jobs.enqueue('test.once', { n: 1 }, { jobId }),
      jobs.enqueue('test.once', { n: 1 }, { jobId }),
    ]);
    await eventually(() => expect(seen).toEqual([1]));
    await jobs.enqueue('test.once', { n: 2 }, { jobId });
    await sleep(200);
    expect(seen).toEqual([1]);
  });

  it('runs a repeating job once per slot, however many workers schedule it', async () => {
    const queue = newQueue();
    const everyMs = 250;
    const jobIds: string[] = [];
    // Two workers of the same queue, as in a deployment with two worker processes.
    const workers = [makeJobs(captureLogs().log, queue), makeJobs(captureLogs().log, queue)];
    for (const jobs of workers) {
      jobs.define(
        defineJob({
          name: 'test.tick',
          payload: Payload,
          handler: async (_p, ctx) => {
            jobIds.push(ctx.jobId);
          },
        }),
      );
      jobs.repeat('test.tick', everyMs, { n: 0 });
    }
    const startedAt = performance.now();
    await Promise.all(workers.map((w) => w.start()));
    await sleep(everyMs * 5 + 100);
    await Promise.all(workers.map((w) => w.close()));
    const elapsed = performance.now() - startedAt;
    const slots = elapsed / everyMs;
    // One run per slot touched (the current one may run at once); twice as many would mean each
    // worker ran its own copy.
    expect(jobIds.length).toBeGreaterThanOrEqual(Math.floor(slots) - 1);
    expect(jobIds.length).toBeLessThanOrEqual(Math.ceil(slots) + 1);
    expect(new Set(jobIds).size).toBe(jobIds.length);
  });

  it('retries a failing repeating job like any other', async () => {
    const { log, lines } = captureLogs();
    const jobs = makeJobs(log, newQueue());
    const attempts: number[] = [];
    jobs.define(
      defineJob({
        name: 'test.hourly',
        payload: Payload,
        attempts: 3,
        backoffMs: 20,
        handler: async (_p, ctx) => {
          attempts.push(ctx.attempt);
          if (ctx.attempt === 1) throw new Error('first run fails');
        },
      }),
    );
    // Long enough that only the first slot falls inside the test.
    jobs.repeat('test.hourly', 3_600_000, { n: 0 });
    await jobs.start();
    await eventually(() => expect(attempts).toEqual([1, 2]));
    expect(lines().some((l) => l.msg === 'job failed for good')).toBe(false);
  });

  it('close() waits for a running job to finish', async () => {
    const { log } = captureLogs();
    const jobs = makeJobs(log, newQueue());
    let started = false;
    let finished = false;
    jobs.define(
      defineJob({
        name: 'test.slow',
        payload: Payload,
        handler: async () => {
          started = true;
          await sleep(300);
          finished = true;
        },
      }),
    );
    await jobs.start();
    await jobs.enqueue('test.slow', { n: 1 }, { jobId: 'slow-1' });
    await eventually(() => expect(started).toBe(true), 5000, 5);
    await jobs.close();
    expect(finished).toBe(true);
    if (!lane.redisUrl) {
      const { rows } = await db.query<{ state: string }>('SELECT state FROM local_jobs WHERE id = $1', [
        'slow-1',
      ]);
      expect(rows).toEqual([{ state: 'done' }]);
    }
  });
});

describe('bounded drain', () => {
  it('close() waits for a long job only up to the drain budget, warns, and another runner runs it again once', async () => {
    const queue = newQueue();
    const first = captureLogs();
    const a = makeJobs(first.log, queue, { drainMs: 300, lockMs: 1000 });
    const runs: string[] = [];
    const define = (jobs: Jobs, runner: string) =>
      jobs.define(
        defineJob({
          name: 'test.long',
          payload: Payload,
          handler: async () => {
            runs.push(runner);
            // The first run never ends (a mail server that never answers); the process would exit.
            if (runner === 'a') await new Promise(() => {});
          },
        }),
      );
    define(a, 'a');
    await a.start();
    await a.enqueue('test.long', { n: 1 }, { jobId: 'long-1' });
    await eventually(() => expect(runs).toEqual(['a']), 5000, 5);
    const t0 = performance.now();
    await a.close();
    const closeMs = performance.now() - t0;
    expect(closeMs).toBeGreaterThanOrEqual(290);
    expect(closeMs).toBeLessThan(3000);
    const warnings = first
      .lines()
      .filter((l) => String(l.msg).startsWith('jobs still running after the drain'));
    expect(warnings.map((l) => l.left)).toEqual([1]);

    // BullMQ: found stalled once its lock (1 s) expires; embedded: reset by start().
    const b = makeJobs(captureLogs().log, queue, { lockMs: 1000 });
    define(b, 'b');
    await b.start();
    await eventually(() => expect(runs).toEqual(['a', 'b']), 10_000, 20);
    await sleep(lane.redisUrl ? 2500 : 300);
    expect(runs).toEqual(['a', 'b']);
  });
});

describe.runIf(!lane.redisUrl)('embedded runner', () => {
  it('runs again a job left active by a crash, on start()', async () => {
    const { log } = captureLogs();
    const jobs = makeJobs(log, newQueue());
    const seen: { n: number; attempt: number }[] = [];
    jobs.define(
      defineJob({
        name: 'test.crashed',
        payload: Payload,
        handler: async ({ n }, ctx) => {
          seen.push({ n, attempt: ctx.attempt });
        },
      }),
    );
    // What a process that died mid-run leaves behind: claimed (one attempt made), never finished.
    await db.query(
      `INSERT INTO local_jobs (id, name, payload, state, run_at, attempts_made, max_attempts, backoff_ms, created_at)
       VALUES ($1, 'test.crashed', $2, 'active', now(), 1, 5, 20, now())`,
      ['crashed-1', JSON.stringify({ n: 5 })],
    );
    await sleep(50);
    expect(seen).toEqual([]);
    await jobs.start();
    await eventually(() => expect(seen).toEqual([{ n: 5, attempt: 2 }]));
    const { rows } = await db.query<{ state: string }>('SELECT state FROM local_jobs WHERE id = $1', [
      'crashed-1',
    ]);
    expect(rows).toEqual([{ state: 'done' }]);
  });

  it('keeps enqueued jobs across a restart', async () => {
    const queue = newQueue();
    const seen: number[] = [];
    const def = defineJob({
      name: 'test.durable',
      payload: Payload,
      handler: async ({ n }) => {
        seen.push(n);
      },
    });
    // An api-only process: it enqueues but never consumes.
    const before = makeJobs(captureLogs().log, queue);
    before.define(def);
    await before.enqueue('test.durable', { n: 1 });
    await before.enqueue('test.durable', { n: 2 }, { delayMs: 100 });
    await before.close();
    await sleep(50);
    expect(seen).toEqual([]);
    const after = makeJobs(captureLogs().log, queue);
    after.define(def);
    await after.start();
    await eventually(() => expect(seen.sort()).toEqual([1, 2]));
  });

  it('does not lose a retry that is due while the runner is busy', async () => {
    const { log } = captureLogs();
    const jobs = makeJobs(log, newQueue());
    const done = new Set<number>();
    jobs.define(
      defineJob({
        name: 'test.burst',
        payload: Payload,
        attempts: 3,
        backoffMs: 5,
        handler: async ({ n }, ctx) => {
          await sleep(n % 7);
          if (ctx.attempt === 1) throw new Error('first run fails');
          done.add(n);
        },
      }),
    );
    await jobs.start();
    await Promise.all(Array.from({ length: 60 }, (_, n) => jobs.enqueue('test.burst', { n })));
    await eventually(() => expect(done.size).toBe(60), 8000);
  });

  it('close() during a claim waits for the claimed job instead of leaving it running', async () => {
    let lagMs = 0;
    const lagging = localJobs({
      db: laggingDb(() => lagMs),
      clock: systemClock,
      log: captureLogs().log,
      concurrency: 4,
    });
    opened.push(lagging);
    let closed = false;
    let ranAfterClose = false;
    let finished = false;
    lagging.define(
      defineJob({
        name: 'test.caught',
        payload: Payload,
        handler: async () => {
          if (closed) ranAfterClose = true;
          await sleep(20);
          finished = true;
        },
      }),
    );
    await lagging.start();
    await sleep(50);
    await lagging.enqueue('test.caught', { n: 1 });
    // The runner wakes on the next turn and claims the job; its answer is now 50 ms away.
    lagMs = 50;
    await sleep(10);
    await lagging.close();
    closed = true;
    await sleep(100);
    expect(ranAfterClose).toBe(false);
    expect(finished).toBe(true);
  });

  it('takes a job added while the runner is busy reading the queue', async () => {
    let lagMs = 0;
    const lagging = localJobs({
      db: laggingDb(() => lagMs),
      clock: systemClock,
      log: captureLogs().log,
      concurrency: 4,
    });
    opened.push(lagging);
    let release = () => {};
    const held = new Promise<void>((r) => {
      release = r;
    });
    const ran: string[] = [];
    lagging.define(
      defineJob({
        name: 'test.hold',
        payload: Payload,
        handler: async () => {
          ran.push('hold');
          await held;
        },
      }),
    );
    lagging.define(
      defineJob({
        name: 'test.quick',
        payload: Payload,
        handler: async () => {
          ran.push('quick');
        },
      }),
    );
    await lagging.start();
    await sleep(50);
    await lagging.enqueue('test.hold', { n: 1 });
    // From here the runner claims the held job, looks for another (none) and for the next due time,
    // each answer 100 ms late; the quick job is written, on the prompt connection, during the last one.
    lagMs = 100;
    await sleep(250);
    await lagging.enqueue('test.quick', { n: 2 }, {}, db);
    try {
      await eventually(() => expect(ran).toEqual(['hold', 'quick']), 1500);
    } finally {
      release();
    }
  });
});
