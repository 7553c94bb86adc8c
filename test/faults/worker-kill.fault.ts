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
  world,
} from './kit.js';

// F8: 1,000 badges.evaluate jobs go through the outbox (as the app writes them) to a worker child that
// is killed with SIGKILL five times while it relays and runs them, and started again each time. Every
// job's effect (the award, its notification, its activity mark) must happen exactly once, none missing.
// A job running when its worker died stays "active" until its lock expires (BullMQ's lockDuration,
// 30 s) and the stalled-job check (every 30 s across all workers, and a job must be seen by two checks)
// moves it back, so the last ones finish 60–90 s after the last kill.

const { cleanup, children } = faultHooks();

const JOBS = 1000;
const KILLS = 5;

describe.runIf(servicesLane)('F8 worker killed during 1,000 jobs', () => {
  it('SIGKILL 5 times while relaying and running: every effect exactly once, none missing', async () => {
    const w = await world(cleanup);
    const redis = await privateRedis(cleanup);
    const queue = jobQueue(cleanup, redis.url, w.redisPrefix);
    const { userIds } = await seedBadgeJobs(w, JOBS);
    const worker = (n: number) =>
      startApp(cleanup, {
        name: `worker-${n}`,
        role: 'worker',
        databaseUrl: w.databaseUrl,
        redisUrl: redis.url,
        redisPrefix: w.redisPrefix,
        // A short lock: the killed worker's jobs are found stalled and run again within seconds.
        env: { JOBS_CONCURRENCY: '4', OUTBOX_SWEEP_MS: '200', JOBS_LOCK_MS: '5000' },
      });
    const awarded = () => firstTaskAwards(w, userIds);

    const kills: { n: number; awards: number; unsent: number; active: number; afterMs: number }[] = [];
    for (let n = 1; n <= KILLS; n++) {
      const child = await worker(n);
      children.push(child);
      const startedAt = Date.now();
      // The first kill lands while the outbox is being relayed; later ones every ~120 effects.
      await waitFor(
        async () => {
          if (n === 1) {
            const unsent = await unsentOutbox(w);
            return (unsent < JOBS && unsent > 0) || (await awarded()) > 0;
          }
          return (await awarded()) >= n * 120;
        },
        60_000,
        5,
      );
      child.proc.kill('SIGKILL');
      await child.exited;
      kills.push({
        n,
        awards: await awarded(),
        unsent: await unsentOutbox(w),
        active: await queue.getActiveCount(),
        afterMs: Date.now() - startedAt,
      });
    }
    const lastKillAt = Date.now();
    const survivor = await worker(KILLS + 1);
    children.push(survivor);
    const finished = await waitFor(async () => (await awarded()) === JOBS, 150_000, 250).then(
      () => true,
      () => false,
    );
    const doneMs = Date.now() - lastKillAt;
    // The last killed worker's jobs are still active until their lock expires and two stalled checks
    // see them; what they write goes out through the outbox. Settled means none active, none unsent.
    const settled = await waitFor(
      async () => (await queue.getActiveCount()) === 0 && (await unsentOutbox(w)) === 0,
      60_000,
      100,
    ).then(
      () => Date.now() - lastKillAt,
      () => undefined,
    );
    await sleep(500);
    const effects = await badgeEffects(w, userIds);
    const counts = await queue.getJobCounts('active', 'waiting', 'completed', 'failed', 'delayed');
    const failed = await queue.getFailed();
    const unsent = await unsentOutbox(w);

    console.log(
      `F8: jobs ${JOBS}; kills ${kills.map((k) => `#${k.n} after ${k.afterMs} ms (effects ${k.awards}, outbox unsent ${k.unsent}, active left ${k.active})`).join('; ')}; ` +
        `all effects in ${finished ? `${doneMs} ms after the last kill` : 'NOT within 150 s'}; effects ${JSON.stringify(effects)}; ` +
        `queue ${JSON.stringify(counts)}${failed.length ? ` failed: ${failed.map((j) => `${j.name} ${j.failedReason}`).join(', ')}` : ''}; outbox unsent ${unsent}; settled ${settled === undefined ? 'NOT within 60 s' : `${settled} ms after the last kill`}`,
    );
    const f8 = { jobs: JOBS, kills: kills.length };
    figure('f8.lost', effects.notAwarded, f8);
    figure('f8.duplicate_effects', effects.notifiedTwiceOrMore + effects.marksTwiceOrMore, f8);
    expect(kills.length).toBe(KILLS);
    expect(kills.filter((k) => k.awards < JOBS).length).toBe(KILLS);
    expect(finished).toBe(true);
    expect(effects.awardedOnce).toBe(JOBS);
    expect(effects.notAwarded).toBe(0);
    expect(effects.notifiedOnce).toBe(JOBS);
    expect(effects.notifiedTwiceOrMore).toBe(0);
    expect(effects.marksTwiceOrMore).toBe(0);
    expect(counts.failed).toBe(0);
    expect(unsent).toBe(0);
  }, 220_000);
});
