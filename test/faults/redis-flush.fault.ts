import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { figure } from '../figures.js';
import {
  badgeEffects,
  faultHooks,
  firstTaskAwards,
  jobQueue,
  privateRedis,
  seedBadgeJobs,
  servicesLane,
  sleep,
  startApp,
  unsentOutbox,
  waitFor,
  workersConnected,
  world,
} from './kit.js';

// F7: Redis loses its data (FLUSHALL here; a restart without persistence or a failover to an empty
// replica look the same) while two workers relay and run 600 badges.evaluate jobs from the outbox, 200
// more are waiting in the queue as delayed jobs (due a few seconds later, like a group task's auto-close
// at its due date), and some run at that very moment. Every job the queue held is gone: the workers'
// sweepers notice the outbox mark is missing, one of them relays the recent rows again, and the jobs run
// (again). Every effect (the award, its notification, its goal mark) must be there exactly once, none
// missing; the delayed ones not before they were due; and the repeating schedules must be back.

const { cleanup, children } = faultHooks();

const JOBS = 600;
const DELAYED = 200;
const DELAY_MS = 15_000;

describe.runIf(servicesLane)('F7 Redis flushed during jobs', () => {
  it('FLUSHALL while jobs run and delayed jobs wait: the outbox relays them again, lost 0, duplicate effects 0', async () => {
    const w = await world(cleanup);
    const redis = await privateRedis(cleanup);
    const queue = jobQueue(cleanup, redis.url, w.redisPrefix);
    const q = w.deps.db;
    const { userIds: now } = await seedBadgeJobs(w, JOBS);
    const { userIds: later } = await seedBadgeJobs(w, DELAYED);
    const { rows: due } = await q.query<{ at: Date }>(
      `UPDATE outbox SET available_at = now() + $2 * interval '1 millisecond'
       WHERE payload->>'userId' = ANY($1::text[]) RETURNING available_at AS at`,
      [later, DELAY_MS],
    );
    const dueAt = due[0]?.at as Date;
    const workers = await Promise.all(
      [1, 2].map((n) =>
        startApp(cleanup, {
          name: `worker-${n}`,
          role: 'worker',
          databaseUrl: w.databaseUrl,
          redisUrl: redis.url,
          redisPrefix: w.redisPrefix,
          env: { JOBS_CONCURRENCY: '4', OUTBOX_SWEEP_MS: '200', JOBS_LOCK_MS: '5000' },
        }),
      ),
    );
    children.push(...workers);
    await workersConnected(queue, 2);
    const schedulers = (await queue.getJobSchedulers()).length;

    const awarded = (ids: string[]) => firstTaskAwards(w, ids);
    // The flush lands with every row relayed (the delayed ones waiting in the queue) and the immediate
    // jobs about half done, some of them running.
    await waitFor(async () => (await unsentOutbox(w)) === 0 && (await awarded(now)) >= JOBS / 3, 60_000, 5);
    const flusher = new Redis(redis.url, { maxRetriesPerRequest: 1 });
    const atFlush = {
      awarded: await awarded(now),
      active: await queue.getActiveCount(),
      delayed: await queue.getDelayedCount(),
    };
    const flushed = await flusher.flushall();
    const flushedAt = Date.now();
    flusher.disconnect();

    const all = [...now, ...later];
    const finished = await waitFor(async () => (await awarded(all)) === all.length, 90_000, 100).then(
      () => Date.now() - flushedAt,
      () => undefined,
    );
    const settled = await waitFor(
      async () => (await queue.getActiveCount()) === 0 && (await unsentOutbox(w)) === 0,
      30_000,
      100,
    ).then(
      () => true,
      () => false,
    );
    await sleep(1000);
    const effects = await badgeEffects(w, all);
    const { rows: early } = await q.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM user_badges
       WHERE code = 'first_task' AND user_id = ANY($1::uuid[]) AND awarded_at < $2`,
      [later, dueAt],
    );
    const schedulersAfter = (await queue.getJobSchedulers()).length;
    const counts = await queue.getJobCounts('active', 'waiting', 'completed', 'failed', 'delayed');
    const repairs = workers.flatMap((c) =>
      c
        .output()
        .split('\n')
        .filter((l) => l.includes('outbox rows relayed again after the job queue lost its data'))
        .map((l) => `${c.name} ${(JSON.parse(l) as { relayed: number }).relayed}`),
    );

    console.log(
      `F7: jobs ${JOBS} + ${DELAYED} delayed ${DELAY_MS} ms; at the flush ${JSON.stringify(atFlush)}; ` +
        `all effects ${finished === undefined ? 'NOT within 90 s' : `${finished} ms after the flush`}; settled ${settled}; ` +
        `effects ${JSON.stringify(effects)}; delayed awarded before due ${early[0]?.n}; ` +
        `repairs (worker relayed-again; the first at start) ${repairs.join(', ')}; schedulers ${schedulers} → ${schedulersAfter}; ` +
        `queue ${JSON.stringify(counts)}`,
    );
    const f7 = { jobs: JOBS, delayed: DELAYED, awardedAtFlush: atFlush.awarded };
    figure('f7.lost', effects.notAwarded, f7);
    figure('f7.duplicate_effects', effects.notifiedTwiceOrMore + effects.marksTwiceOrMore, f7);
    expect(flushed).toBe('OK');
    expect(atFlush.delayed).toBeGreaterThanOrEqual(DELAYED);
    expect(atFlush.awarded).toBeLessThan(JOBS);
    expect(finished).toBeDefined();
    expect(settled).toBe(true);
    expect(effects.awardedOnce).toBe(all.length);
    expect(effects.notAwarded).toBe(0);
    expect(effects.notifiedOnce).toBe(all.length);
    expect(effects.notifiedTwiceOrMore).toBe(0);
    expect(effects.marksTwiceOrMore).toBe(0);
    expect(early[0]?.n).toBe(0);
    expect(counts.failed).toBe(0);
    expect(schedulers).toBeGreaterThan(0);
    expect(schedulersAfter).toBe(schedulers);
    expect(workers.every((c) => c.alive())).toBe(true);
  }, 180_000);
});
