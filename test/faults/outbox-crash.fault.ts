import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { figure } from '../figures.js';
import {
  type AppChild,
  badgeEffects,
  call,
  faultHooks,
  jobQueue,
  newId,
  type Outcome,
  type Person,
  people,
  privateRedis,
  seedBadgeJobs,
  servicesLane,
  sleep,
  startApp,
  tally,
  unsentOutbox,
  waitFor,
  workersConnected,
  world,
} from './kit.js';

// G7: the outbox's two crash windows, hit exactly with FAULT_POINT (src/lib/outbox.ts), which makes
// the process SIGKILL itself there (children run with NODE_ENV=test, the only mode that honours it).
//   A. A worker's sweeper enqueues a row and dies before marking it sent: the job is in the queue and
//      its row still unsent. The next worker relays the row again; the queue's jobId dedupes it.
//   B. An api commits a completion (task, ledger row, outbox rows) and dies before relaying: the
//      answer is lost, the rows unsent. The worker's sweeper relays them; the client retries its key.
//   C. An api enqueues a row after its commit and dies before marking it sent, while the worker runs
//      the job at once: the sweeper relays the same row again after the job has already run.
// Every effect of the jobs (badge award, its notification, the goal mark, the leaderboard mirror) must
// then be there exactly once: lost 0, duplicate effects 0.

const { cleanup, children } = faultHooks();

const SEEDED = 40;
const PER_API_ROUND = 25;
const SETTLE_MS = 60_000;

interface Req {
  user: Person;
  taskId: string;
  key: string;
  first?: Outcome;
  retries: Outcome[];
}

const isOk = (o: Outcome | undefined) => o?.status === 200;

describe.runIf(servicesLane)('G7 outbox crash windows', () => {
  it('kill -9 between commit and enqueue, and between enqueue and marking sent: lost 0, duplicate effects 0', async () => {
    const t0 = Date.now();
    const w = await world(cleanup);
    const redis = await privateRedis(cleanup);
    const queue = jobQueue(cleanup, redis.url, w.redisPrefix);
    const q = w.deps.db;
    const start = (name: string, role: 'api' | 'worker', faultPoint?: string) =>
      startApp(cleanup, {
        name,
        role,
        databaseUrl: w.databaseUrl,
        redisUrl: redis.url,
        redisPrefix: w.redisPrefix,
        env: {
          NODE_ENV: 'test',
          RATE_LIMIT_MULTIPLIER: '0',
          OUTBOX_SWEEP_MS: '300',
          JOBS_LOCK_MS: '5000',
          ...(faultPoint ? { FAULT_POINT: faultPoint } : {}),
        },
        readyTimeoutMs: 90_000,
      });
    const diedAlone = async (child: AppChild, what: string) => {
      const exit = await Promise.race([child.exited, sleep(60_000).then(() => undefined)]);
      if (!exit) throw new Error(`${child.name} did not reach ${what} within 60 s`);
      return exit;
    };

    const phaseMs: Record<string, number> = {};
    let lapStart = Date.now();
    const lap = (name: string) => {
      phaseMs[name] = Date.now() - lapStart;
      lapStart = Date.now();
    };

    // A: a worker's sweeper, between enqueue and marking sent.
    const seeded = await seedBadgeJobs(w, SEEDED);
    const w1 = await start('worker-1', 'worker', 'outbox.after_enqueue');
    children.push(w1);
    const usersMade = people(w, PER_API_ROUND * 2);
    usersMade.catch(() => {});
    const exitA = await diedAlone(w1, 'outbox.after_enqueue');
    const queuedA = (
      await queue.getJobs(['waiting', 'active', 'completed', 'delayed', 'prioritized'])
    ).filter((j) => j.id?.startsWith('outbox-'));
    const unsentA = await unsentOutbox(w);
    const { rows: seededRows } = await q.query<{ id: string }>('SELECT id FROM outbox');
    const windowA = {
      queued: queuedA.length,
      queuedAreTheRows:
        JSON.stringify(queuedA.map((j) => j.id).sort()) ===
        JSON.stringify(seededRows.map((r) => `outbox-${r.id}`).sort()),
      unsent: unsentA,
    };
    lap('A');

    // Children start two at a time (seconds each on a busy machine); an api relays nothing until it
    // commits a write of its own, so the next round's api may start early.
    const [w2, apiB] = await Promise.all([
      start('worker-2', 'worker'),
      start('api-B', 'api', 'outbox.after_commit'),
    ]);
    children.push(w2, apiB);
    await workersConnected(queue, 1);

    // B and C: completions through an api that dies at the fault point; each round's users are new.
    const users = await usersMade;
    const userIds = users.map((u) => u.userId);
    await q.query(`UPDATE users SET profile_visibility = 'public' WHERE id = ANY($1::uuid[])`, [userIds]);
    const { rows: tasks } = await q.query<{ id: string; userId: string }>(
      `INSERT INTO tasks (id, user_id, title, created_at, updated_at)
       SELECT gen_random_uuid(), id, 'outbox crash', now(), now() FROM unnest($1::uuid[]) id
       RETURNING id, user_id`,
      [userIds],
    );
    const taskOf = new Map(tasks.map((t) => [t.userId, t.id]));
    const reqs: Req[] = users.map((user) => ({
      user,
      taskId: taskOf.get(user.userId) as string,
      key: newId(),
      retries: [],
    }));
    const complete = (base: string, r: Req) =>
      call(base, 'POST', `/v1/tasks/${r.taskId}/complete`, {
        token: r.user.token,
        headers: { 'idempotency-key': r.key },
        timeoutMs: 20_000,
      });
    lap('start');

    const apiRound = async (child: AppChild, point: string, round: Req[]) => {
      // What the sweeper left from phase A or the round before is relayed first, so this round's api
      // relays (and dies on) its own rows.
      await waitFor(async () => (await unsentOutbox(w)) === 0, 30_000, 100);
      await Promise.all(
        round.map(async (r) => {
          r.first = await complete(child.url, r);
        }),
      );
      const exit = await diedAlone(child, point);
      const { rows } = await q.query<{ id: string }>(
        `SELECT id FROM tasks WHERE id = ANY($1::uuid[]) AND status = 'done'`,
        [round.map((r) => r.taskId)],
      );
      const done = new Set(rows.map((r) => r.id));
      return {
        exit,
        firstTries: tally(round.map((r) => r.first as Outcome)),
        committedUnanswered: round.filter((r) => !isOk(r.first) && done.has(r.taskId)).length,
      };
    };
    const b = await apiRound(apiB, 'outbox.after_commit', reqs.slice(0, PER_API_ROUND));
    lap('B');
    const [apiC, api] = await Promise.all([
      start('api-C', 'api', 'outbox.after_enqueue'),
      start('api-D', 'api'),
    ]);
    children.push(apiC, api);
    lap('start C, D');
    const c = await apiRound(apiC, 'outbox.after_enqueue', reqs.slice(PER_API_ROUND));
    lap('C');

    // Recovery: a healthy api; every request without an answer is retried with its key.
    const unanswered = reqs.filter((r) => !isOk(r.first));
    let pending = unanswered;
    for (let attempt = 1; pending.length > 0 && attempt <= 5; attempt++) {
      await Promise.all(
        pending.map(async (r) => {
          r.retries.push(await complete(api.url, r));
        }),
      );
      pending = pending.filter((r) => !isOk(r.retries.at(-1)));
      if (pending.length) await sleep(250 * attempt);
    }

    // Every effect, once the worker has caught up (bounded).
    const rc = new Redis(redis.url, { maxRetriesPerRequest: 1, lazyConnect: true });
    cleanup.push('close test redis client', () => rc.quit().catch(() => rc.disconnect()));
    await rc.connect();
    const effectsOf = async () => {
      const { rows } = await q.query<{
        userId: string;
        done: number;
        ledger: number;
        awards: number;
        notes: number;
        marks: number;
        version: number | null;
      }>(
        `SELECT u AS user_id,
           (SELECT count(*)::int FROM tasks t WHERE t.user_id = u AND t.status = 'done') AS done,
           (SELECT count(*)::int FROM score_events e WHERE e.user_id = u AND e.source = 'task_done') AS ledger,
           (SELECT count(*)::int FROM user_badges b WHERE b.user_id = u AND b.code = 'first_task') AS awards,
           (SELECT count(*)::int FROM notifications n WHERE n.user_id = u AND n.kind = 'badge'
              AND n.data->>'code' = 'first_task') AS notes,
           (SELECT count(*)::int FROM activity_marks m WHERE m.user_id = u AND m.mark LIKE 'goal:%') AS marks,
           (SELECT version FROM leaderboard_scores s WHERE s.user_id = u AND s.period = 'all') AS version
         FROM unnest($1::uuid[]) u`,
        [userIds],
      );
      const board = await rc.zrange(`${w.redisPrefix}:lb:all`, 0, -1, 'WITHSCORES');
      const scores = new Map<string, number>();
      for (let i = 0; i < board.length; i += 2) scores.set(board[i] as string, Number(board[i + 1]));
      const versions = await rc.hgetall(`${w.redisPrefix}:lb:all:v`);
      const seededEffects = await badgeEffects(w, seeded.userIds);
      let lost = 0;
      let duplicates = 0;
      const missing: string[] = [];
      for (const r of rows) {
        // Each user completed one task: one ledger row, one award, one notification, one goal mark
        // (daily goal 1, public profile), and the mirror at the ledger's score and version.
        const counts = { done: r.done, ledger: r.ledger, awards: r.awards, notes: r.notes, marks: r.marks };
        for (const [what, n] of Object.entries(counts)) {
          if (n < 1) {
            lost++;
            missing.push(`${r.userId} ${what}`);
          }
          duplicates += Math.max(0, n - 1);
        }
        if (scores.get(r.userId) !== 10 || Number(versions[r.userId]) !== r.version) {
          lost++;
          missing.push(
            `${r.userId} mirror ${scores.get(r.userId)} v${versions[r.userId]} (sql v${r.version})`,
          );
        }
      }
      lost += seededEffects.notAwarded + seededEffects.notNotified;
      duplicates += seededEffects.notifiedTwiceOrMore + seededEffects.marksTwiceOrMore;
      return { lost, duplicates, missing, seededEffects };
    };
    const settleStart = Date.now();
    let effects = await effectsOf();
    while ((effects.lost > 0 || (await unsentOutbox(w)) > 0) && Date.now() - settleStart < SETTLE_MS) {
      await sleep(250);
      effects = await effectsOf();
    }
    const settledMs = Date.now() - settleStart;
    // A late duplicate would come from a re-relayed row running again: give it time to show.
    await waitFor(async () => (await queue.getActiveCount()) + (await queue.getWaitingCount()) === 0, 10_000);
    await sleep(1000);
    effects = await effectsOf();

    // Every outbox row became exactly one job, and it completed.
    const { rows: outboxRows } = await q.query<{ id: string; sentAt: Date | null }>(
      'SELECT id, sent_at FROM outbox',
    );
    const jobs = await queue.getJobs(['completed', 'failed', 'waiting', 'active', 'delayed', 'prioritized']);
    const jobById = new Map(jobs.filter((j) => j.id?.startsWith('outbox-')).map((j) => [j.id, j]));
    const states = await Promise.all(
      outboxRows.map(async (r) => (await jobById.get(`outbox-${r.id}`)?.getState()) ?? 'missing'),
    );
    const stateTally: Record<string, number> = {};
    for (const s of states) stateTally[s] = (stateTally[s] ?? 0) + 1;
    // A relay takes its sent_at before it enqueues, so a job older than its row's sent_at was
    // enqueued by an earlier relay that died before marking the row: a row of a crash window,
    // relayed again. Finished before that sent_at: it had already run when it was relayed again.
    let reRelayed = 0;
    let ranBeforeReRelay = 0;
    for (const r of outboxRows) {
      const job = jobById.get(`outbox-${r.id}`);
      if (!job || !r.sentAt || job.timestamp >= r.sentAt.getTime()) continue;
      reRelayed++;
      if (job.finishedOn !== undefined && job.finishedOn < r.sentAt.getTime()) ranBeforeReRelay++;
    }
    const unsent = outboxRows.filter((r) => !r.sentAt).length;
    const jobsLost = states.filter((s) => s !== 'completed').length;
    const retried = unanswered.length;
    const retryTally = tally(unanswered.map((r) => r.retries.at(-1) as Outcome));
    const lost = effects.lost + jobsLost;

    console.log(
      `G7: A worker sweeper killed after enqueue (${exitA.signal}): ${windowA.queued} jobs queued (the seeded rows: ${windowA.queuedAreTheRows}), ` +
        `${windowA.unsent}/${SEEDED} rows unsent; B api killed after commit (${b.exit.signal}): first tries ${JSON.stringify(b.firstTries)}, ` +
        `committed but unanswered ${b.committedUnanswered}; C api killed after enqueue (${c.exit.signal}): first tries ${JSON.stringify(c.firstTries)}, ` +
        `committed but unanswered ${c.committedUnanswered}; retried ${retried} with their keys → ${JSON.stringify(retryTally)}; ` +
        `outbox rows ${outboxRows.length}, unsent ${unsent}, their jobs ${JSON.stringify(stateTally)}, ` +
        `relayed again after a crash ${reRelayed} (${ranBeforeReRelay} of them had already run); ` +
        `effects settled in ${settledMs} ms; seeded ${JSON.stringify(effects.seededEffects)}; ` +
        `lost ${lost}, duplicate effects ${effects.duplicates}; phases ${JSON.stringify(phaseMs)} ms, total ${Date.now() - t0} ms` +
        (effects.missing.length ? `; missing: ${effects.missing.slice(0, 10).join(', ')}` : ''),
    );
    figure('g7.lost', lost, {
      seeded_jobs: SEEDED,
      completions: reqs.length,
      outbox_rows: outboxRows.length,
      committed_unanswered: b.committedUnanswered + c.committedUnanswered,
      retried,
      relayed_again: reRelayed,
      jobs_not_completed: jobsLost,
    });
    figure('g7.duplicate_effects', effects.duplicates, {
      seeded_jobs: SEEDED,
      completions: reqs.length,
      outbox_rows: outboxRows.length,
    });

    // The windows were hit: the process died by its own SIGKILL at each point, with work in the window.
    expect(exitA.signal).toBe('SIGKILL');
    // The relay enqueues a batch (up to 100 rows) at once, and died before marking any sent.
    expect(windowA).toEqual({ queued: SEEDED, queuedAreTheRows: true, unsent: SEEDED });
    expect(b.exit.signal).toBe('SIGKILL');
    expect(b.committedUnanswered).toBeGreaterThanOrEqual(1);
    expect(c.exit.signal).toBe('SIGKILL');
    // Phase A's first row and at least the row api-C died on.
    expect(reRelayed).toBeGreaterThanOrEqual(2);
    expect(retryTally).toEqual({ 200: retried });
    expect(effects.missing).toEqual([]);
    expect(lost).toBe(0);
    expect(effects.duplicates).toBe(0);
    expect(unsent).toBe(0);
    expect(stateTally).toEqual({ completed: outboxRows.length });
    expect(effects.seededEffects).toMatchObject({ awardedOnce: SEEDED, notifiedOnce: SEEDED });
    expect([...w2.errorLines(), ...api.errorLines()]).toEqual([]);
  }, 150_000);
});
