// Jobs counted where BullMQ keeps them, the same way for the app's queue and the plain BullMQ baseline:
// completed jobs are a sorted set scored by when they finished, each a hash with its creation time.
import { Redis } from 'ioredis';
import type { Child, Measure, Measurement } from './types.js';

const HMGET_BATCH = 1000;

export function jobCounter(redisUrl: string, prefix: string) {
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 2 });
  const key = (name: string) => `${prefix}:jobs:${name}`;
  return {
    /**
     * Jobs that should be running by now and are not finished: waiting, running, prioritized, and
     * delayed ones that are due (retries). The next run of a repeating job waits in `delayed` too,
     * so those due later are not counted.
     */
    async backlog(): Promise<number> {
      // BullMQ scores a delayed job by its due time × 4096 plus a counter.
      const due = Date.now() * 4096 + 4095;
      const [wait, active, delayed, prioritized] = await Promise.all([
        redis.llen(key('wait')),
        redis.llen(key('active')),
        redis.zcount(key('delayed'), 0, due),
        redis.zcard(key('prioritized')),
      ]);
      return wait + active + delayed + prioritized;
    },
    failed: () => redis.zcard(key('failed')),
    /** Jobs that finished in [from, to] (ms since epoch), and each one's time from added to finished. */
    async finishedBetween(from: number, to: number): Promise<number[]> {
      const ids = await redis.zrangebyscore(key('completed'), from, to);
      const latencies: number[] = [];
      for (let i = 0; i < ids.length; i += HMGET_BATCH) {
        const pipeline = redis.pipeline();
        for (const id of ids.slice(i, i + HMGET_BATCH)) pipeline.hmget(key(id), 'timestamp', 'finishedOn');
        for (const [err, fields] of (await pipeline.exec()) ?? []) {
          if (err) continue;
          const [added, finished] = (fields as (string | null)[]).map(Number);
          if (added && finished) latencies.push(finished - added);
        }
      }
      return latencies;
    },
    close: () => redis.quit().then(() => undefined),
  };
}

export type JobCounter = ReturnType<typeof jobCounter>;

/** Waits (at most maxMs) until nothing is left to do; false when time ran out first. */
export async function drained(check: () => Promise<boolean>, maxMs: number): Promise<boolean> {
  const deadline = Date.now() + maxMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Jobs processed per second, end to end: `produce` feeds the queue for the run's seconds (a route, or
 * a plain add loop), and the clock stops when the queue has drained, so every job fed is counted
 * and so is the time its processing took. Latencies are from added to finished. The queue is
 * drained before the run starts too, so no run inherits another's backlog.
 */
export function jobsMeasure(opts: {
  name: string;
  counter: JobCounter;
  servers: Child[];
  /** Feeds the queue for `seconds`; resolves with the errors of feeding (HTTP errors). */
  produce(seconds: number): Promise<{ errors: number; extra?: Record<string, number | string> }>;
  idle(): Promise<boolean>;
  drainMs: number;
}): Measure {
  const { counter } = opts;
  const cpu = () => opts.servers.reduce((sum, s) => sum + s.cpuMs(), 0);
  const run = async (seconds: number): Promise<Measurement> => {
    await drained(opts.idle, opts.drainMs);
    const failed0 = await counter.failed();
    const cpu0 = cpu();
    const from = Date.now();
    const fed = await opts.produce(seconds);
    const backlog = await counter.backlog();
    const settled = await drained(opts.idle, opts.drainMs);
    const to = Date.now();
    const serverCpuMs = cpu() - cpu0;
    const latencies = await counter.finishedBetween(from, to);
    const failed = (await counter.failed()) - failed0;
    latencies.sort((a, b) => a - b);
    const at = (q: number) =>
      latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
    return {
      value: latencies.length / ((to - from) / 1000),
      unit: 'jobs/s',
      p50: at(0.5),
      p99: at(0.99),
      count: latencies.length,
      errors: fed.errors + failed,
      serverCpuMs,
      extra: { backlogWhenFed: backlog, ...(settled ? {} : { undrained: 1 }), ...fed.extra },
    };
  };
  return {
    name: opts.name,
    async warm(seconds) {
      await run(seconds);
    },
    run,
  };
}
