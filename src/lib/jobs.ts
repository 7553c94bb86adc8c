import type { Static, TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { type ConnectionOptions, type Job, Queue, UnrecoverableError, Worker } from 'bullmq';
import type { Logger } from 'pino';
import { uuidv7 } from 'uuidv7';
import type { Clock } from './clock.js';
import type { Db, Queryable } from './db.js';

export interface JobContext {
  jobId: string;
  /** 1 on the first run. */
  attempt: number;
  log: Logger;
  /**
   * Aborted when close() stops waiting for running jobs (the drain budget ran out). A handler that
   * loops over many items checks it between them and stops: the job runs again later, and a
   * handler that went on would only fail against a closed database.
   */
  signal: AbortSignal;
}

/** A job kind. Handlers must be idempotent: a job may run more than once. */
export interface JobDefinition<S extends TSchema = TSchema> {
  name: string;
  payload: S;
  /** Total runs before the job is given up and left in the failed set (default 5). */
  attempts?: number;
  /** First retry delay; doubles each time (default 1000 ms). */
  backoffMs?: number;
  handler: (payload: Static<S>, ctx: JobContext) => Promise<void>;
}

/** Keeps the payload type for the handler, and erases it for the registry (which validates it). */
export const defineJob = <S extends TSchema>(def: JobDefinition<S>) => def as unknown as JobDefinition;

/**
 * The queue will never take this job as written (unknown name, invalid payload): retrying cannot
 * help, unlike a queue that is down.
 */
export class JobRefusedError extends Error {
  override name = 'JobRefusedError';
}

export interface EnqueueOptions {
  delayMs?: number;
  /** Deduplication key: a second enqueue with the same id while the first is kept is a no-op. */
  jobId?: string;
}

export interface NewJob {
  name: string;
  payload: unknown;
  opts?: EnqueueOptions;
}

export interface Jobs {
  readonly kind: 'local' | 'bullmq';
  define(def: JobDefinition): void;
  /**
   * Adds a job. `q` lets the embedded runner write it in the caller's transaction (the outbox relay
   * uses that); BullMQ ignores it.
   */
  enqueue(name: string, payload: unknown, opts?: EnqueueOptions, q?: Queryable): Promise<void>;
  /**
   * Adds several jobs at once (one round trip to Redis). A job the queue refuses (an unknown name, a
   * bad payload) is left out and its error returned at its index; the others are added. Fails as a
   * whole when the queue cannot be reached.
   */
  enqueueBatch(jobs: readonly NewJob[], q?: Queryable): Promise<(JobRefusedError | undefined)[]>;
  /** Whether the queue still holds what it was given (F7), for the outbox to relay recent rows again. */
  readonly epoch: QueueEpoch;
  /** Runs `name` every `everyMs`, once per slot across all workers. Takes effect on start(). */
  repeat(name: string, everyMs: number, payload?: unknown): void;
  /** Starts consuming (worker role). */
  start(): Promise<void>;
  /**
   * Stops taking jobs and waits for the running ones, up to the drain budget (`drainMs`). Jobs still
   * running then are left to run again (see each runner), with a warning naming how many.
   */
  close(): Promise<void>;
}

/**
 * A mark kept among the queue's own keys. Missing means the queue may have lost jobs it was given
 * (Redis flushed, restarted without persistence, failed over to an empty replica) or has never been
 * marked (first start): the outbox then relays its recent rows again and sets the mark. Checking it
 * costs one command per sweep. The embedded queue lives in the database and loses nothing with it.
 */
export interface QueueEpoch {
  /**
   * When the mark is missing, claims the repair for `leaseMs` (one claimant at a time across all
   * processes; a claimant that dies lets its lease run out) and returns its token. Null when the mark
   * is there, or another process holds the claim.
   */
  claim(leaseMs: number): Promise<string | null>;
  /** Extends a claim; false when it is gone (the queue lost its data again, or the lease ran out). */
  renew(token: string, leaseMs: number): Promise<boolean>;
  /** Sets the mark for good once the repair is done; false when the claim was gone (repair again). */
  mark(token: string): Promise<boolean>;
}

const DEFAULT_ATTEMPTS = 5;
const DEFAULT_BACKOFF_MS = 1000;
const DEFAULT_ENQUEUE_TIMEOUT_MS = 5000;
/** How long close() waits for running jobs (config JOBS_DRAIN_MS): below the shutdown deadline. */
const DEFAULT_DRAIN_MS = 5000;
/** How many times a job may be cut off by its worker's death or drain before it is failed. */
const MAX_STALLS = 3;
const KEEP_DONE_MS = 24 * 3600_000;
const KEEP_FAILED_MS = 7 * 24 * 3600_000;

interface Registered {
  def: JobDefinition;
  check: ReturnType<typeof TypeCompiler.Compile>;
}

const unknownJob = (name: string) => `Unknown job ${name}: define it in worker.ts`;

function registry() {
  const defs = new Map<string, Registered>();
  return {
    add(def: JobDefinition) {
      if (defs.has(def.name)) throw new Error(`Job ${def.name} is defined twice`);
      defs.set(def.name, { def, check: TypeCompiler.Compile(def.payload) });
    },
    get(name: string): Registered {
      const found = defs.get(name);
      if (!found) throw new JobRefusedError(unknownJob(name));
      return found;
    },
    /** What is wrong with this job (an unknown name, a bad payload), or null. */
    validate(name: string, payload: unknown): string | null {
      const found = defs.get(name);
      if (!found) return unknownJob(name);
      const { check } = found;
      if (check.Check(payload)) return null;
      const first = check.Errors(payload).First();
      return `invalid payload for ${name}: ${first?.path || '/'} ${first?.message ?? ''}`;
    },
  };
}

const backoff = (base: number, attempt: number) => base * 2 ** Math.max(0, attempt - 1);

/** `work`, or a rejection naming `what` once `ms` has passed (BullMQ's connection waits for Redis forever). */
async function within<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** True when `work` settles within `ms`; false when the budget ran out first. */
async function settlesWithin(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const budget = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([
      work.then(
        () => true,
        () => true,
      ),
      budget,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** A bad schedule is a programming error: refuse it where it is written, not at every run. */
function checkRepeat(defs: ReturnType<typeof registry>, name: string, everyMs: number, payload: unknown) {
  if (!Number.isInteger(everyMs) || everyMs <= 0) throw new Error(`Job ${name}: bad everyMs ${everyMs}`);
  const problem = defs.validate(name, payload);
  if (problem) throw new Error(problem);
}

interface ClaimedJob {
  id: string;
  name: string;
  payload: unknown;
  attemptsMade: number;
  maxAttempts: number;
  backoffMs: number;
}

/**
 * The embedded runner keeps jobs in the database it already has, so a restart loses nothing, and
 * the outbox relay can enqueue in the same transaction that marks a row sent (exactly once).
 * It sleeps until the next job is due instead of polling.
 */
export function localJobs(opts: {
  db: Db;
  clock: Clock;
  log: Logger;
  concurrency: number;
  /** How long close() waits for running jobs (default 5000 ms). */
  drainMs?: number;
}): Jobs {
  const { db, clock, log } = opts;
  const drainMs = opts.drainMs ?? DEFAULT_DRAIN_MS;
  const defs = registry();
  const repeats: { name: string; everyMs: number; payload: unknown }[] = [];
  const running = new Set<Promise<void>>();
  const stopping = new AbortController();
  let abandoned = false;
  const timers = new Set<NodeJS.Timeout>();
  // Repeat enqueues in flight, so close() does not return while one still writes.
  const writes = new Set<Promise<void>>();
  let starting: Promise<void> | undefined;
  let started = false;
  let closing = false;
  let wakeTimer: NodeJS.Timeout | undefined;
  let pumping: Promise<void> | undefined;
  let pumpAgain = false;

  const insert = async (q: Queryable, name: string, payload: unknown, o: EnqueueOptions = {}) => {
    const problem = defs.validate(name, payload);
    if (problem) throw new JobRefusedError(problem);
    const { def } = defs.get(name);
    const now = clock.now();
    await q.query(
      `INSERT INTO local_jobs (id, name, payload, state, run_at, max_attempts, backoff_ms, created_at)
       VALUES ($1, $2, $3, 'waiting', $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING`,
      [
        o.jobId ?? uuidv7(),
        name,
        JSON.stringify(payload),
        new Date(now.getTime() + (o.delayMs ?? 0)),
        def.attempts ?? DEFAULT_ATTEMPTS,
        def.backoffMs ?? DEFAULT_BACKOFF_MS,
        now,
      ],
    );
  };

  const claim = async () => {
    const { rows } = await db.query<ClaimedJob>(
      `UPDATE local_jobs SET state = 'active', attempts_made = attempts_made + 1
       WHERE id = (SELECT id FROM local_jobs WHERE state = 'waiting' AND run_at <= $1
                   ORDER BY run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
       RETURNING id, name, payload, attempts_made, max_attempts, backoff_ms`,
      [clock.now()],
    );
    return rows[0];
  };

  const execute = async (job: ClaimedJob) => {
    const jobLog = log.child({ jobId: job.id, job: job.name, attempt: job.attemptsMade });
    let registered: Registered | undefined;
    try {
      registered = defs.get(job.name);
      const problem = defs.validate(job.name, job.payload);
      if (problem) throw Object.assign(new Error(problem), { unrecoverable: true });
      await registered.def.handler(job.payload, {
        jobId: job.id,
        attempt: job.attemptsMade,
        log: jobLog,
        signal: stopping.signal,
      });
      await db.query(
        `UPDATE local_jobs SET state = 'done', finished_at = $2, last_error = NULL WHERE id = $1`,
        [job.id, clock.now()],
      );
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      // The policy stored at enqueue, as BullMQ does: a redeploy does not change queued jobs' retries.
      const giveUp =
        !registered ||
        (err as { unrecoverable?: boolean }).unrecoverable ||
        job.attemptsMade >= job.maxAttempts;
      if (giveUp) {
        jobLog.error({ err }, 'job failed for good');
        await db.query(
          `UPDATE local_jobs SET state = 'failed', finished_at = $2, last_error = $3 WHERE id = $1`,
          [job.id, clock.now(), message],
        );
      } else {
        const delay = backoff(job.backoffMs, job.attemptsMade);
        jobLog.warn({ err, retryInMs: delay }, 'job failed; will retry');
        await db.query(
          `UPDATE local_jobs SET state = 'waiting', run_at = $2, last_error = $3 WHERE id = $1`,
          [job.id, new Date(clock.now().getTime() + delay), message],
        );
      }
    }
  };

  const sleepUntilNextDue = async () => {
    const { rows } = await db.query<{ next: Date | null }>(
      `SELECT min(run_at) AS next FROM local_jobs WHERE state = 'waiting'`,
    );
    const next = rows[0]?.next;
    if (!next || closing) return;
    // Capped so a clock moved by a test, or a job added by another writer, is noticed.
    const delay = Math.min(Math.max(0, next.getTime() - clock.now().getTime()), 30_000);
    clearTimeout(wakeTimer);
    wakeTimer = setTimeout(wake, delay);
  };

  const pumpOnce = async () => {
    do {
      pumpAgain = false;
      while (!closing && running.size < opts.concurrency) {
        // Once claimed, a job runs even if close() came meanwhile: close() waits for it.
        const job = await claim();
        if (!job) break;
        const p: Promise<void> = execute(job)
          // The outcome could not be written (the database is down, or closed under a job that close()
          // stopped waiting for): the row stays active and runs again on the next start().
          .catch((err) =>
            log[abandoned ? 'warn' : 'error'](
              { err, jobId: job.id, job: job.name },
              'could not record the outcome of a job; it runs again on the next start',
            ),
          )
          .finally(() => {
            running.delete(p);
            wake();
          });
        running.add(p);
      }
      // A wake-up during this read may be for a job the read did not see yet, hence the loop.
      if (!closing && running.size < opts.concurrency) await sleepUntilNextDue();
    } while (pumpAgain && !closing);
  };

  const pump = () => {
    if (pumping) {
      pumpAgain = true;
      return;
    }
    pumping = pumpOnce()
      .catch((err) => {
        pumpAgain = false;
        log.error({ err }, 'job runner could not read the queue; retrying');
        clearTimeout(wakeTimer);
        if (!closing) wakeTimer = setTimeout(wake, 1000);
      })
      .finally(() => {
        pumping = undefined;
        // A wake-up between the last check and here would otherwise be lost.
        if (pumpAgain) wake();
      });
  };

  function wake() {
    if (started && !closing) pump();
  }

  const enqueueRepeat = async (r: { name: string; everyMs: number; payload: unknown }) => {
    const slot = Math.floor(clock.now().getTime() / r.everyMs) * r.everyMs;
    await insert(db, r.name, r.payload, { jobId: `repeat-${r.name}-${slot}` });
    wake();
  };

  const scheduleRepeat = (r: { name: string; everyMs: number; payload: unknown }) => {
    const tick = () => {
      if (closing) return;
      const write: Promise<void> = enqueueRepeat(r)
        .catch((err) => log.error({ err, job: r.name }, 'could not enqueue repeating job'))
        .finally(() => writes.delete(write));
      writes.add(write);
      const untilNextSlot = r.everyMs - (clock.now().getTime() % r.everyMs);
      const t = setTimeout(() => {
        timers.delete(t);
        tick();
      }, untilNextSlot);
      timers.add(t);
    };
    tick();
  };

  return {
    kind: 'local',
    // Its jobs are rows next to the outbox's: nothing to repair, ever.
    epoch: { claim: async () => null, renew: async () => true, mark: async () => true },
    define: (def) => defs.add(def),
    async enqueue(name, payload, opts, q) {
      const [refused] = await this.enqueueBatch([{ name, payload, ...(opts ? { opts } : {}) }], q);
      if (refused) throw refused;
    },
    async enqueueBatch(batch, q) {
      const target = q ?? db;
      const refused: (JobRefusedError | undefined)[] = [];
      for (const job of batch) {
        try {
          await insert(target, job.name, job.payload, job.opts);
          refused.push(undefined);
        } catch (err) {
          if (!(err instanceof JobRefusedError)) throw err;
          refused.push(err);
        }
      }
      // Inside a transaction the rows are invisible until commit.
      target.afterCommit(wake);
      return refused;
    },
    repeat(name, everyMs, payload = {}) {
      checkRepeat(defs, name, everyMs, payload);
      const r = { name, everyMs, payload };
      repeats.push(r);
      if (started) scheduleRepeat(r);
    },
    start() {
      starting ??= (async () => {
        // One embedded process owns the queue: anything it left active when it died runs again.
        // Done before anything is claimed, or it would also reset the jobs this runner just took.
        await db.query(`UPDATE local_jobs SET state = 'waiting' WHERE state = 'active'`);
        if (closing) return;
        started = true;
        for (const r of repeats) scheduleRepeat(r);
        wake();
      })();
      return starting;
    },
    async close() {
      closing = true;
      clearTimeout(wakeTimer);
      for (const t of timers) clearTimeout(t);
      timers.clear();
      await starting?.catch(() => {});
      // A claim in flight may still hand back a job, which then joins `running`.
      await pumping;
      await Promise.allSettled([...writes]);
      // Bounded like BullMQ's drain, so a long job does not hold the process past SHUTDOWN_TIMEOUT_MS.
      // Unlike there, nobody else runs this queue: a job still running stays 'active' in the database
      // and start() runs it again when this process comes back (no stall limit). If it ends while the
      // process is still closing, its outcome is recorded as usual.
      if (!(await settlesWithin(Promise.allSettled([...running]), drainMs))) {
        abandoned = true;
        stopping.abort();
        log.warn(
          { left: running.size, drainMs },
          'jobs still running after the drain budget; they run again on the next start',
        );
      }
    },
  };
}

/** Deletes finished embedded jobs that are past keeping. */
export async function pruneLocalJobs(db: Queryable, now: Date): Promise<number> {
  const { rowCount } = await db.query(
    `DELETE FROM local_jobs WHERE (state = 'done' AND finished_at < $1) OR (state = 'failed' AND finished_at < $2)`,
    [new Date(now.getTime() - KEEP_DONE_MS), new Date(now.getTime() - KEEP_FAILED_MS)],
  );
  return rowCount;
}

/**
 * The mark's commands, each atomic: claim when missing (SET NX with a lease); renew and mark only for
 * the holder of the claim (compare, then extend or set for good).
 */
const EPOCH_SCRIPTS = {
  claim: `if redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX') then return 1 end return 0`,
  renew: `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0`,
  mark: `if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) return 1 end return 0`,
};

const jobOptions = (def: JobDefinition) => ({
  attempts: def.attempts ?? DEFAULT_ATTEMPTS,
  backoff: { type: 'exponential', delay: def.backoffMs ?? DEFAULT_BACKOFF_MS },
  // Kept for a day so a re-relayed outbox row with the same jobId is recognised and skipped.
  removeOnComplete: { age: KEEP_DONE_MS / 1000 },
  removeOnFail: { age: KEEP_FAILED_MS / 1000 },
});

export function bullmqJobs(opts: {
  connection: ConnectionOptions;
  prefix: string;
  log: Logger;
  concurrency: number;
  /** A running job's lock; a dead worker's jobs are found stalled and run again within it. */
  lockMs?: number;
  /** How long enqueue() waits for Redis before failing (default 5000 ms). */
  enqueueTimeoutMs?: number;
  /** How long close() waits for running jobs (default 5000 ms); the rest are left to another worker. */
  drainMs?: number;
}): Jobs {
  const { log } = opts;
  const enqueueTimeoutMs = opts.enqueueTimeoutMs ?? DEFAULT_ENQUEUE_TIMEOUT_MS;
  const drainMs = opts.drainMs ?? DEFAULT_DRAIN_MS;
  const defs = registry();
  const repeats: { name: string; everyMs: number; payload: unknown }[] = [];
  const queue = new Queue('jobs', { connection: opts.connection, prefix: opts.prefix });
  queue.on('error', (err) => log.warn({ err }, 'job queue connection error'));
  let worker: Worker | undefined;
  // The jobs this process is running, for the warning when close() stops waiting for them.
  const running = new Map<string, string>();
  const stopping = new AbortController();

  // Under the queue's prefix, so whatever loses the queue's keys loses the mark too.
  const epochKey = `${opts.prefix}:outbox-epoch`;

  /** One of the EPOCH_SCRIPTS on the queue's own connection, bounded like an enqueue. */
  const scripted = new WeakSet<object>();
  const epochScript = (name: keyof typeof EPOCH_SCRIPTS, ...args: (string | number)[]) =>
    within(
      queue.client.then((client) => {
        if (!scripted.has(client)) {
          for (const [n, lua] of Object.entries(EPOCH_SCRIPTS))
            client.defineCommand(`taskmaaEpoch_${n}`, { numberOfKeys: 1, lua });
          scripted.add(client);
        }
        return client.runCommand(`taskmaaEpoch_${name}`, [epochKey, ...args]) as Promise<unknown>;
      }),
      enqueueTimeoutMs,
      'job queue',
    );

  const upsertSchedules = async () => {
    for (const r of repeats) {
      await queue.upsertJobScheduler(
        `repeat-${r.name}`,
        { every: r.everyMs },
        // Without the job's own policy BullMQ would run a failing repeat once and give up.
        { name: r.name, data: r.payload, opts: jobOptions(defs.get(r.name).def) },
      );
    }
  };

  const run = async (job: Job) => {
    const jobLog = log.child({ jobId: job.id, job: job.name, attempt: job.attemptsMade + 1 });
    const problem = defs.validate(job.name, job.data);
    if (problem) throw new UnrecoverableError(problem);
    const key = job.id ?? '';
    running.set(key, job.name);
    try {
      await defs.get(job.name).def.handler(job.data, {
        jobId: key,
        attempt: job.attemptsMade + 1,
        log: jobLog,
        signal: stopping.signal,
      });
    } finally {
      running.delete(key);
    }
  };

  return {
    kind: 'bullmq',
    define: (def) => defs.add(def),
    async enqueue(name, payload, opts) {
      const [refused] = await this.enqueueBatch([{ name, payload, ...(opts ? { opts } : {}) }]);
      if (refused) throw refused;
    },
    async enqueueBatch(batch) {
      const refused: (JobRefusedError | undefined)[] = [];
      const adds = [];
      for (const { name, payload, opts: o = {} } of batch) {
        const problem = defs.validate(name, payload);
        refused.push(problem ? new JobRefusedError(problem) : undefined);
        if (problem) continue;
        adds.push({
          name,
          data: payload,
          opts: {
            ...(o.jobId ? { jobId: o.jobId } : {}),
            ...(o.delayMs ? { delay: o.delayMs } : {}),
            ...jobOptions(defs.get(name).def),
          },
        });
      }
      if (adds.length === 0) return refused;
      // BullMQ's connection queues commands until Redis is back, so addBulk() alone would wait forever
      // and hold the caller (the outbox relay: its transaction). If the adds land later, a retry with
      // the same jobIds is deduplicated.
      await within(queue.addBulk(adds), enqueueTimeoutMs, 'job queue');
      return refused;
    },
    epoch: {
      // SET NX both checks the mark and elects the repairer. A command that timed out here may still
      // run once Redis is back: a stray claim only expires, and renew/mark compare the token first.
      async claim(leaseMs) {
        const token = `repairing:${uuidv7()}`;
        if ((await epochScript('claim', token, leaseMs)) !== 1) return null;
        // The schedules were lost with the rest: put them back (an upsert of a live one changes nothing).
        if (worker) await upsertSchedules();
        return token;
      },
      renew: async (token, leaseMs) => (await epochScript('renew', token, leaseMs)) === 1,
      mark: async (token) => (await epochScript('mark', token, `marked:${new Date().toISOString()}`)) === 1,
    },
    repeat(name, everyMs, payload = {}) {
      checkRepeat(defs, name, everyMs, payload);
      repeats.push({ name, everyMs, payload });
    },
    async start() {
      if (worker) return;
      await upsertSchedules();
      worker = new Worker('jobs', run, {
        connection: opts.connection,
        prefix: opts.prefix,
        concurrency: opts.concurrency,
        // A job cut off by a shutdown runs again; BullMQ's default (1) would fail one that a rolling
        // restart cut twice. A job that kills its worker every time still ends up failed.
        maxStalledCount: MAX_STALLS,
        ...(opts.lockMs ? { lockDuration: opts.lockMs, stalledInterval: opts.lockMs } : {}),
      });
      worker.on('error', (err) => log.warn({ err }, 'job worker connection error'));
      worker.on('failed', (job, err) => {
        if (!job) return;
        const final = err instanceof UnrecoverableError || job.attemptsMade >= (job.opts.attempts ?? 1);
        if (final) log.error({ err, jobId: job.id, job: job.name }, 'job failed for good');
        else
          log.warn(
            { err, jobId: job.id, job: job.name, attempt: job.attemptsMade },
            'job failed; will retry',
          );
      });
    },
    async close() {
      // BullMQ checks the server (INFO) as it connects and does not catch that command itself;
      // closing in the middle would leave it to reject unhandled. Bounded: Redis may be unreachable.
      const settled = (p: Promise<unknown> | undefined) =>
        Promise.race([p?.catch(() => {}), new Promise((r) => setTimeout(r, 2000).unref())]);
      const w = worker;
      if (w) {
        await settled(w.waitUntilReady());
        // Worker.close() alone waits for every running job without bound, and a later close(true)
        // only returns the first call's promise. pause() stops taking jobs and resolves once the
        // running ones are done (moved to completed or failed): wait for that up to the budget, then
        // close, forcibly if some are still running (a pause left pending then rejects, ignored).
        const drained = await settlesWithin(w.pause(), drainMs);
        if (!drained) {
          stopping.abort();
          // close(true) stops renewing their locks and drops the connections: the jobs stay active and
          // locked in Redis until JOBS_LOCK_MS passes, then another worker's stalled-job check moves
          // them back to wait and runs them again (after up to two checks, one every JOBS_LOCK_MS).
          // BullMQ allows that MAX_STALLS times per job; past that the job is failed ("job stalled more
          // than allowable limit"). The handlers are told through their signal; one that goes on does so
          // until this process exits, and what it ends with is no longer reported to Redis.
          log.warn(
            { left: running.size, jobs: [...running.values()], drainMs },
            'jobs still running after the drain budget; left for another worker to run again',
          );
        }
        await w.close(!drained);
      }
      await settled(queue.waitUntilReady());
      await queue.close();
    },
  };
}
