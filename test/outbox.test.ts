import { randomBytes, randomUUID } from 'node:crypto';
import { Type as T } from '@sinclair/typebox';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../src/lib/clock.js';
import { type Db, openPostgres } from '../src/lib/db.js';
import { bullmqJobs, defineJob, type Jobs, localJobs } from '../src/lib/jobs.js';
import { makeOutbox, type Outbox } from '../src/lib/outbox.js';
import { bullmqConnectionOptions } from '../src/lib/redis.js';
import { captureLogs, dropRedisPrefix, eventually, lane, type TestDb, testDb } from './helpers.js';

// The outbox over the job runner of whichever lane this is. Every test writes rows of its own tag and
// counts the runs of each row's job: the promise is that each committed row runs exactly once.
const filePrefix = `to${randomBytes(5).toString('hex')}`;
let database: TestDb;
let db: Db;
let queueNo = 0;
const toClose: { close(): Promise<void> }[] = [];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const Payload = T.Object({ tag: T.String(), i: T.Integer() }, { additionalProperties: false });

/** A queue of its own for one test, with a job that counts its runs per `tag:i`. */
function harness(opts: { prefix?: string } = {}) {
  const { log, lines } = captureLogs();
  const prefix = opts.prefix ?? `${filePrefix}-${++queueNo}`;
  const runs = new Map<string, number>();
  const runAt = new Map<string, number>();
  const makeJobs = (): Jobs => {
    const jobs = lane.redisUrl
      ? bullmqJobs({
          connection: bullmqConnectionOptions(lane.redisUrl, 'test'),
          prefix: `${prefix}:bull`,
          log,
          concurrency: 4,
        })
      : localJobs({ db, clock: systemClock, log, concurrency: 4 });
    jobs.define(
      defineJob({
        name: 'test.count',
        payload: Payload,
        handler: async ({ tag, i }) => {
          const key = `${tag}:${i}`;
          runs.set(key, (runs.get(key) ?? 0) + 1);
          runAt.set(key, performance.now());
        },
      }),
    );
    toClose.push(jobs);
    return jobs;
  };
  const jobs = makeJobs();
  const outbox = (over: { jobs?: Jobs; db?: Db } = {}): Outbox => {
    const o = makeOutbox({ db: over.db ?? db, jobs: over.jobs ?? jobs, clock: systemClock, log });
    // Closed first, so nothing relays while the queue below it closes.
    toClose.unshift(o);
    return o;
  };
  /** Every `tag:i` for i < n ran exactly once, and nothing else of this tag ran. */
  const ranOnce = (tag: string, n: number) => {
    const mine = [...runs].filter(([key]) => key.startsWith(`${tag}:`));
    expect(mine).toHaveLength(n);
    for (const [key, count] of mine) expect(count, key).toBe(1);
  };
  /** How many distinct `tag:i` of this tag ran (a sweeper's first repair may also run other tests' rows). */
  const ranOf = (tag: string) => [...runs.keys()].filter((key) => key.startsWith(`${tag}:`)).length;
  return { jobs, makeJobs, outbox, runs, runAt, ranOnce, ranOf, lines, log, prefix };
}

/** A writer that commits rows and never relays them, like a process that died right after COMMIT. */
async function writeUnrelayed(tag: string, from: number, to: number) {
  const writer = makeOutbox({ db, jobs: {} as Jobs, clock: systemClock, log: captureLogs().log });
  await writer.close();
  await db.tx(async (q) => {
    for (let i = from; i < to; i++) await writer.add(q, 'test.count', { tag, i });
  });
}

async function unsentCount(tag: string) {
  const { rows } = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM outbox WHERE sent_at IS NULL AND payload->>'tag' = $1`,
    [tag],
  );
  return rows[0]?.n;
}

beforeAll(async () => {
  database = await testDb();
  db = database.db;
});

afterEach(async () => {
  for (const c of toClose.splice(0)) await c.close();
  // Rows a test left for a queue that no longer exists would otherwise be relayed by the next one.
  await db.query('UPDATE outbox SET sent_at = now() WHERE sent_at IS NULL');
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

describe('outbox', () => {
  it('relays rows of a committed transaction after commit, each job running once', async () => {
    const h = harness();
    const outbox = h.outbox();
    await h.jobs.start();
    const tag = randomUUID();
    await db.tx(async (q) => {
      for (let i = 0; i < 50; i++) await outbox.add(q, 'test.count', { tag, i });
    });
    await eventually(() => expect(h.runs.size).toBe(50));
    await sleep(300);
    h.ranOnce(tag, 50);
    expect(await unsentCount(tag)).toBe(0);
  });

  it('never runs rows of a rolled-back transaction', async () => {
    const h = harness();
    const outbox = h.outbox();
    await h.jobs.start();
    const tag = randomUUID();
    await expect(
      db.tx(async (q) => {
        for (let i = 0; i < 3; i++) await outbox.add(q, 'test.count', { tag, i });
        throw new Error('the business write failed');
      }),
    ).rejects.toThrow('the business write failed');
    await outbox.relay();
    // A committed row after it, as a marker that relaying and running did happen.
    const marker = randomUUID();
    await db.tx((q) => outbox.add(q, 'test.count', { tag: marker, i: 0 }));
    await eventually(() => h.ranOnce(marker, 1));
    await sleep(200);
    h.ranOnce(tag, 0);
    const { rows } = await db.query(`SELECT id FROM outbox WHERE payload->>'tag' = $1`, [tag]);
    expect(rows).toEqual([]);
  });

  it('gives exactly-once when two relays run at the same time', async () => {
    const h = harness();
    // A second process: in the services lane its own connection pool, so the relays really overlap.
    const otherDb = database.url
      ? openPostgres({ url: database.url, max: 3, statementTimeoutMs: 10_000 })
      : db;
    if (otherDb !== db) toClose.push(otherDb);
    const a = h.outbox();
    const b = h.outbox({ db: otherDb });
    const tag = randomUUID();
    const n = 150;
    await writeUnrelayed(tag, 0, n);
    const [movedA, movedB] = await Promise.all([a.relay(), b.relay()]);
    expect(movedA + movedB).toBe(n);
    expect(await unsentCount(tag)).toBe(0);
    await h.jobs.start();
    await eventually(() => expect(h.runs.size).toBe(n), 10_000);
    await sleep(300);
    h.ranOnce(tag, n);
  });

  it('runs a row once when it was enqueued but not marked sent (a crash between the two)', async () => {
    const h = harness();
    const outbox = h.outbox();
    await h.jobs.start();
    const tag = randomUUID();
    await writeUnrelayed(tag, 0, 1);
    const { rows } = await db.query<{ id: string }>(`SELECT id FROM outbox WHERE payload->>'tag' = $1`, [
      tag,
    ]);
    const id = rows[0]?.id as string;
    // What the relay did before the crash: the job is in the queue (and has even run), the row is unsent.
    await h.jobs.enqueue('test.count', { tag, i: 0 }, { jobId: `outbox-${id}` });
    await eventually(() => h.ranOnce(tag, 1));
    expect(await unsentCount(tag)).toBe(1);
    expect(await outbox.relay()).toBe(1);
    expect(await unsentCount(tag)).toBe(0);
    await sleep(300);
    h.ranOnce(tag, 1);
  });

  it('runs a delayed row after its delay, not before', async () => {
    const h = harness();
    const outbox = h.outbox();
    await h.jobs.start();
    const tag = randomUUID();
    const addedAt = performance.now();
    await db.tx((q) => outbox.add(q, 'test.count', { tag, i: 0 }, { delayMs: 400 }));
    await eventually(async () => expect(await unsentCount(tag)).toBe(0));
    await sleep(250);
    h.ranOnce(tag, 0);
    await eventually(() => h.ranOnce(tag, 1));
    expect((h.runAt.get(`${tag}:0`) as number) - addedAt).toBeGreaterThanOrEqual(395);
  });

  it('keeps rows unsent while the queue fails, and a later relay delivers them once', async () => {
    const h = harness();
    const broken: Jobs = lane.redisUrl
      ? bullmqJobs({
          connection: {
            ...bullmqConnectionOptions('redis://127.0.0.1:1', 'test'),
            retryStrategy: () => 1000,
          },
          prefix: `${filePrefix}-unreachable:bull`,
          log: captureLogs().log,
          concurrency: 1,
          enqueueTimeoutMs: 300,
        })
      : {
          ...h.jobs,
          enqueueBatch: async () => {
            throw new Error('queue unavailable');
          },
        };
    if (lane.redisUrl) {
      broken.define(defineJob({ name: 'test.count', payload: Payload, handler: async () => {} }));
      toClose.push(broken);
    }
    const failing = h.outbox({ jobs: broken });
    await h.jobs.start();
    const tag = randomUUID();
    await db.tx(async (q) => {
      for (let i = 0; i < 5; i++) await failing.add(q, 'test.count', { tag, i });
    });
    // The relay after commit failed, and said so.
    await eventually(() =>
      expect(h.lines().some((l) => l.msg === 'outbox relay failed; the sweeper will retry')).toBe(true),
    );
    await expect(failing.relay()).rejects.toThrow();
    expect(await unsentCount(tag)).toBe(5);
    const closing = performance.now();
    await failing.close();
    expect(performance.now() - closing).toBeLessThan(2000);
    expect(await h.outbox().relay()).toBe(5);
    await eventually(() => h.ranOnce(tag, 5));
    await sleep(300);
    h.ranOnce(tag, 5);
  });

  it('sweeps up rows whose writer never relayed them', async () => {
    const h = harness();
    await h.jobs.start();
    const tag = randomUUID();
    await writeUnrelayed(tag, 0, 20);
    await sleep(100);
    expect(await unsentCount(tag)).toBe(20);
    h.outbox().startSweeper(100);
    await eventually(() => expect(h.ranOf(tag)).toBe(20));
    // BullMQ may run a job before the relay's transaction that marks its row sent has committed.
    await eventually(async () => expect(await unsentCount(tag)).toBe(0));
    // A second row written later is swept up as well: the sweeper keeps going.
    await writeUnrelayed(tag, 20, 21);
    await eventually(() => expect(h.ranOf(tag)).toBe(21));
    await sleep(300);
    h.ranOnce(tag, 21);
  });

  it('a row the queue refuses does not hold up the others', async () => {
    const h = harness();
    const outbox = h.outbox();
    await h.jobs.start();
    const tag = randomUUID();
    // Written by a version that knows a job this one does not, before the rows of this one.
    await db.tx((q) => outbox.add(q, 'test.from_the_future', { tag, i: 99 }));
    await db.tx(async (q) => {
      for (let i = 0; i < 3; i++) await outbox.add(q, 'test.count', { tag, i });
    });
    await eventually(() => h.ranOnce(tag, 3));
    // BullMQ may run the jobs before the relay's transaction marking their rows sent has committed.
    await eventually(async () => expect(await unsentCount(tag)).toBe(1));
    const refused = h.lines().find((l) => l.msg === 'outbox row refused by the job queue; left unsent');
    expect(refused).toMatchObject({ level: 50, job: 'test.from_the_future' });
  });
});

// F7: Redis loses its data (FLUSHALL, a restart without persistence, an empty replica). Here every key
// under the queue's prefix is deleted, never FLUSHDB: other test files share this Redis.
describe('outbox after the job queue lost its data', () => {
  const repairs = (h: ReturnType<typeof harness>) =>
    h.lines().filter((l) => l.msg === 'outbox rows relayed again after the job queue lost its data');

  it.runIf(!lane.redisUrl)('the embedded queue lives in the database and never needs a repair', async () => {
    const h = harness();
    const outbox = h.outbox();
    await h.jobs.start();
    const tag = randomUUID();
    await db.tx((q) => outbox.add(q, 'test.count', { tag, i: 0 }));
    await eventually(() => h.ranOnce(tag, 1));
    expect(await outbox.redeliverIfLost()).toBe(0);
    await sleep(200);
    h.ranOnce(tag, 1);
  });

  it.runIf(lane.redisUrl)(
    'a relayed row runs again and a delayed row still runs when due, after every key of the prefix is gone',
    async () => {
      const h = harness();
      const outbox = h.outbox();
      await h.jobs.start();
      // The first check finds no mark (a first start) and marks the queue; a second finds it.
      await outbox.redeliverIfLost();
      expect(await outbox.redeliverIfLost()).toBe(0);
      const tag = randomUUID();
      const addedAt = performance.now();
      await db.tx(async (q) => {
        await outbox.add(q, 'test.count', { tag, i: 0 });
        await outbox.add(q, 'test.count', { tag, i: 1 }, { delayMs: 1500 });
      });
      await eventually(() => expect(h.runs.get(`${tag}:0`)).toBe(1));
      await eventually(async () => expect(await unsentCount(tag)).toBe(0));
      expect(h.runs.has(`${tag}:1`)).toBe(false);

      await dropRedisPrefix(lane.redisUrl as string, h.prefix);
      expect(await outbox.redeliverIfLost()).toBeGreaterThanOrEqual(2);
      expect(repairs(h).at(-1)).toMatchObject({ marked: true });
      // Marked again: the next sweeps cost one command and relay nothing.
      expect(await outbox.redeliverIfLost()).toBe(0);

      // The row that had run runs again (its completed record was lost with the rest: a handler that is
      // idempotent, as every one is, applies its effect once); the delayed one runs once, when due.
      await eventually(() => expect(h.runs.get(`${tag}:0`)).toBe(2));
      await eventually(() => expect(h.runs.get(`${tag}:1`)).toBe(1), 5000);
      expect((h.runAt.get(`${tag}:1`) as number) - addedAt).toBeGreaterThanOrEqual(1495);
      await sleep(500);
      expect([h.runs.get(`${tag}:0`), h.runs.get(`${tag}:1`)]).toEqual([2, 1]);
    },
  );

  it.runIf(lane.redisUrl)('two outboxes sweeping at once relay the lost rows again once', async () => {
    const h = harness();
    // Two worker processes: in the services lane their own connection pools and their own queue clients.
    const otherDb = openPostgres({ url: database.url as string, max: 3, statementTimeoutMs: 10_000 });
    toClose.push(otherDb);
    const a = h.outbox();
    const b = h.outbox({ db: otherDb, jobs: h.makeJobs() });
    await h.jobs.start();
    await a.redeliverIfLost();
    const tag = randomUUID();
    const n = 300;
    // Half run at once, half are delayed past the loss.
    await db.tx(async (q) => {
      for (let i = 0; i < n; i++)
        await a.add(q, 'test.count', { tag, i }, i % 2 === 0 ? {} : { delayMs: 4000 });
    });
    await eventually(() => expect(h.ranOf(tag)).toBe(n / 2));
    await eventually(async () => expect(await unsentCount(tag)).toBe(0));
    expect(h.ranOf(tag)).toBe(n / 2);

    const repairsBefore = repairs(h).length;
    await dropRedisPrefix(lane.redisUrl as string, h.prefix);
    const [byA, byB] = await Promise.all([a.redeliverIfLost(), b.redeliverIfLost()]);
    // One of them repaired (all of this test's rows, and the earlier tests' of the last day).
    expect(Math.min(byA, byB)).toBe(0);
    expect(Math.max(byA, byB)).toBeGreaterThanOrEqual(n);
    // And sweepers on both keep checking: nothing more is relayed again.
    a.startSweeper(100);
    b.startSweeper(100);
    await eventually(() => expect(h.ranOf(tag)).toBe(n), 10_000);
    await sleep(1000);
    const counts = [...h.runs].filter(([key]) => key.startsWith(`${tag}:`));
    const immediate = counts.filter(([key]) => Number(key.split(':')[1]) % 2 === 0);
    const delayed = counts.filter(([key]) => Number(key.split(':')[1]) % 2 === 1);
    expect(immediate.filter(([, c]) => c !== 2)).toEqual([]);
    expect(delayed.filter(([, c]) => c !== 1)).toEqual([]);
    expect(repairs(h)).toHaveLength(repairsBefore + 1);
  });

  it.runIf(lane.redisUrl)(
    'a row a relay put into the queue just before the loss, and marked sent just after, is relayed again',
    async () => {
      const h = harness();
      const otherDb = openPostgres({ url: database.url as string, max: 3, statementTimeoutMs: 10_000 });
      toClose.push(otherDb);
      const repairer = h.outbox({ db: otherDb });
      await repairer.redeliverIfLost();
      // A relay that stops between its enqueue and its commit (the row locked and still unsent).
      let open!: () => void;
      const gate = new Promise<void>((r) => {
        open = r;
      });
      // Opened first after a failure too, so closing the relay does not wait for it.
      toClose.unshift({ close: async () => open() });
      let enqueued!: () => void;
      const inQueue = new Promise<void>((r) => {
        enqueued = r;
      });
      const slow: Jobs = {
        ...h.jobs,
        async enqueueBatch(batch, q) {
          const refused = await h.jobs.enqueueBatch(batch, q);
          if (batch.length > 0) {
            enqueued();
            await gate;
          }
          return refused;
        },
      };
      const relayer = h.outbox({ jobs: slow });
      const tag = randomUUID();
      await db.tx((q) => relayer.add(q, 'test.count', { tag, i: 0 }));
      await inQueue;
      await dropRedisPrefix(lane.redisUrl as string, h.prefix);
      let repaired: number | undefined;
      const repair = repairer.redeliverIfLost().then((n) => {
        repaired = n;
      });
      // The repair waits for the relay's lock on the row instead of skipping it.
      await sleep(300);
      expect(repaired).toBeUndefined();
      open();
      await repair;
      expect(repaired).toBeGreaterThanOrEqual(1);
      expect(await unsentCount(tag)).toBe(0);
      await h.jobs.start();
      await eventually(() => h.ranOnce(tag, 1));
      await sleep(300);
      h.ranOnce(tag, 1);
    },
  );
});
