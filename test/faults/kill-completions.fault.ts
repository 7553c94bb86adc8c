import { isDeepStrictEqual } from 'node:util';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { addDays, type LocalDate } from '../../src/lib/days.js';
import {
  emptyOverallState,
  type OverallState,
  overallFold,
  overallView,
} from '../../src/modules/dailies/streaks.js';
import { isoWeek } from '../../src/modules/leaderboards/leaderboards.service.js';
import { figure } from '../figures.js';
import { comparisons } from './invariants.js';
import {
  call,
  faultHooks,
  newId,
  type Outcome,
  type Person,
  people,
  privateRedis,
  servicesLane,
  sleep,
  startApp,
  tally,
  unsentOutbox,
  type World,
  world,
} from './kit.js';

// F1: a ROLE=serve child (api and worker in one process) on PostgreSQL and a private Redis takes 500
// task completions at once (50 users, distinct tasks, every other one with an Idempotency-Key) and is
// SIGKILLed once 150 have been answered (a 2xx, or a 503 when the saturated pool sheds load). It is started again on the same database and Redis; every
// request that got no answer is sent again (with its key, if it had one), and so is every keyed one
// that did get an answer, to compare the replay. Then, once the worker has relayed and run what the
// crash left behind: every 2xx is stored, no task was completed twice and no ledger row doubled, and
// scores, today's counts, streaks, the Redis boards and the API's board reads all equal a recomputation
// from the tasks table and the ledger (G5).

const { cleanup, children } = faultHooks();

const USERS = 50;
const REQUESTS = 500;
const KILL_AFTER = 150;
const POINTS = 10;
const CONVERGE_MS = 60_000;

interface Req {
  i: number;
  user: Person;
  taskId: string;
  key?: string;
  first?: Outcome;
  retries: Outcome[];
}

const isOk = (o: Outcome | undefined) => o?.status !== undefined && o.status >= 200 && o.status < 300;

describe.runIf(servicesLane)('F1 kill -9 during 500 completions', () => {
  it('SIGKILL mid-load, restart, retry with the same keys: every 2xx stored, nothing twice, stats and boards equal a recomputation', async () => {
    const t0 = Date.now();
    const w = await world(cleanup);
    const redis = await privateRedis(cleanup);
    const users = await people(w, USERS);
    const userIds = users.map((u) => u.userId);
    // Goals from 1 to 15 against 6..14 tasks each: some users meet today's goal (streak 1), some do
    // not; every fifth profile is friends-only, so the global boards must leave it out.
    await w.deps.db.query(
      `UPDATE users u SET daily_goal = 1 + (x.i % 15),
              profile_visibility = CASE WHEN x.i % 5 = 4 THEN 'friends' ELSE 'public' END
         FROM unnest($1::uuid[]) WITH ORDINALITY AS x(id, i) WHERE u.id = x.id`,
      [userIds],
    );
    // Scores must differ for the board order to mean something: user i gets 10 ± (i mod 5) tasks.
    const perUser = users.map((_, i) => 10 + (i % 2 === 0 ? 1 : -1) * (i % 5));
    const reqs: Req[] = [];
    const { rows: tasks } = await w.deps.db.query<{ id: string; userId: string }>(
      `INSERT INTO tasks (id, user_id, title, created_at, updated_at)
       SELECT gen_random_uuid(), x.id, 'fault task ' || g, now(), now()
         FROM unnest($1::uuid[], $2::int[]) AS x(id, n), generate_series(1, x.n) g
       RETURNING id, user_id`,
      [userIds, perUser],
    );
    expect(tasks.length).toBe(REQUESTS);
    const byId = new Map(users.map((u) => [u.userId, u]));
    // Interleaved, so that users' completions race each other and their own.
    const shuffled = tasks
      .map((t, i) => ({ t, k: (i * 7919) % REQUESTS }))
      .sort((a, b) => a.k - b.k)
      .map((x) => x.t);
    shuffled.forEach((t, i) => {
      reqs.push({
        i,
        user: byId.get(t.userId) as Person,
        taskId: t.id,
        ...(i % 2 === 0 ? { key: newId() } : {}),
        retries: [],
      });
    });

    const env = {
      ROLE: 'serve',
      RATE_LIMIT_MULTIPLIER: '0',
      OUTBOX_SWEEP_MS: '200',
      JOBS_LOCK_MS: '5000',
      DATABASE_POOL_MAX: '10',
    };
    const start = (name: string) =>
      startApp(cleanup, {
        name,
        role: 'serve',
        databaseUrl: w.databaseUrl,
        redisUrl: redis.url,
        redisPrefix: w.redisPrefix,
        env,
        readyTimeoutMs: 45_000,
      });
    const first = await start('serve-1');
    children.push(first);

    // Clients read their stats before they act, as an app does, so they are cached in Redis when the
    // crash comes.
    const warm = await Promise.all(
      users.map((u) => call(first.url, 'GET', '/v1/me/stats', { token: u.token, timeoutMs: 20_000 })),
    );
    expect(tally(warm)).toEqual({ 200: USERS });

    const complete = (base: string, r: Req, timeoutMs: number) =>
      call(base, 'POST', `/v1/tasks/${r.taskId}/complete`, {
        token: r.user.token,
        timeoutMs,
        ...(r.key ? { headers: { 'idempotency-key': r.key } } : {}),
      });

    let answered = 0;
    let killedAt = 0;
    const loadStartedAt = Date.now();
    await Promise.all(
      reqs.map(async (r) => {
        r.first = await complete(first.url, r, 30_000);
        if (r.first.status !== undefined && ++answered === KILL_AFTER) {
          killedAt = Date.now();
          first.proc.kill('SIGKILL');
        }
      }),
    );
    const exit = await first.exited;
    const answeredBeforeKill = reqs.filter((r) => r.first?.status !== undefined).length;
    const firstTally = tally(reqs.map((r) => r.first as Outcome));
    // Completions the crash committed without their answer reaching the client: the retries' case.
    const { rows: doneAtKill } = await w.deps.db.query<{ id: string }>(
      `SELECT id FROM tasks WHERE user_id = ANY($1::uuid[]) AND status = 'done'`,
      [userIds],
    );
    const doneIds = new Set(doneAtKill.map((r) => r.id));
    const committedUnanswered = reqs.filter(
      (r) => r.first?.status === undefined && doneIds.has(r.taskId),
    ).length;
    // A saturated pool sheds load with a fast 503 (DESIGN: never a hang); such a refusal stores nothing.
    const refused = reqs.filter((r) => r.first?.status !== undefined && !isOk(r.first));
    const refusedButStored = refused.filter((r) => doneIds.has(r.taskId)).length;

    const restartAt = Date.now();
    const second = await start('serve-2');
    children.push(second);
    const restartMs = Date.now() - restartAt;

    // Every request without an answer, and every keyed one, goes again with the same key; a transport
    // error or a 5xx (the process still warming up) is retried a few times.
    const toRetry = reqs.filter((r) => !isOk(r.first) || r.key);
    let pending = toRetry;
    for (let attempt = 1; pending.length > 0 && attempt <= 6; attempt++) {
      // Fifty clients at a time, as a client library's retry queue would: a burst of 500 only measures
      // the pool's load shedding again.
      const queue = [...pending];
      await Promise.all(
        Array.from({ length: 50 }, async () => {
          for (let r = queue.shift(); r; r = queue.shift())
            r.retries.push(await complete(second.url, r, 20_000));
        }),
      );
      pending = pending.filter((r) => {
        const last = r.retries[r.retries.length - 1];
        return last?.status === undefined || last.status >= 500;
      });
      if (pending.length) await sleep(250 * attempt);
    }
    const retryTally = tally(toRetry.map((r) => r.retries[r.retries.length - 1] as Outcome));

    // What the database holds for the tasks.
    const { rows: stored } = await w.deps.db.query<{
      id: string;
      status: string;
      completedAt: Date | null;
      ledger: number;
    }>(
      `SELECT t.id, t.status, t.completed_at,
              (SELECT count(*)::int FROM score_events e
                WHERE e.user_id = t.user_id AND e.source = 'task_done' AND e.source_key = t.id::text) AS ledger
         FROM tasks t WHERE t.user_id = ANY($1::uuid[])`,
      [userIds],
    );
    const dbTask = new Map(stored.map((s) => [s.id, s]));

    // Every 2xx answer, original or retry, names a task that is done at the instant it says.
    const notStored: string[] = [];
    const completedAtsByTask = new Map<string, Set<string>>();
    for (const r of reqs) {
      for (const o of [r.first, ...r.retries]) {
        if (!o || !isOk(o)) continue;
        const body = JSON.parse(o.body ?? '{}') as { id?: string; status?: string; completedAt?: string };
        const s = dbTask.get(r.taskId);
        if (
          body.id !== r.taskId ||
          body.status !== 'done' ||
          !s ||
          s.status !== 'done' ||
          s.completedAt?.toISOString() !== body.completedAt
        )
          notStored.push(`${r.taskId}: answered ${o.body?.slice(0, 120)}, stored ${JSON.stringify(s)}`);
        const set = completedAtsByTask.get(r.taskId) ?? new Set<string>();
        set.add(String(body.completedAt));
        completedAtsByTask.set(r.taskId, set);
      }
    }
    const twoXX = reqs.filter((r) => isOk(r.first) || r.retries.some(isOk)).length;
    const answeredOk = reqs.filter((r) => isOk(r.first)).length;

    // Duplicates: a task completed at two instants, ledger rows beyond one per task, a badge awarded
    // or notified twice.
    const completedTwice = [...completedAtsByTask.values()].filter((s) => s.size > 1).length;
    const ledgerExtra = stored.reduce((n, s) => n + Math.max(0, s.ledger - 1), 0);
    const ledgerMissing = stored.filter((s) => s.status === 'done' && s.ledger === 0).length;
    const notDone = stored.filter((s) => s.status !== 'done').length;

    // Keyed requests answered before the crash: the replay is the same answer.
    const replayDiffers = reqs
      .filter((r) => r.key && isOk(r.first))
      .filter((r) => {
        const again = r.retries[r.retries.length - 1];
        return (
          again?.status !== r.first?.status ||
          !isDeepStrictEqual(JSON.parse(again?.body ?? 'null'), JSON.parse(r.first?.body ?? 'null'))
        );
      })
      .map((r) => `${r.taskId}: first ${r.first?.body?.slice(0, 100)} / replay ${r.retries.at(-1)?.body}`);

    // G5 once the worker has caught up: poll the recomputation with a bound.
    const rc = new Redis(redis.url, { maxRetriesPerRequest: 1, lazyConnect: true });
    cleanup.push('close test redis client', () => rc.quit().catch(() => rc.disconnect()));
    await rc.connect();
    const convergeStart = Date.now();
    let check = await recompute(w, second.url, users, rc);
    const firstMismatches = check.mismatches.length;
    let unsent = await unsentOutbox(w);
    while ((check.mismatches.length > 0 || unsent > 0) && Date.now() - convergeStart < CONVERGE_MS) {
      await sleep(500);
      check = await recompute(w, second.url, users, rc);
      unsent = await unsentOutbox(w);
    }
    const convergedMs = Date.now() - convergeStart;
    const duplicates = completedTwice + ledgerExtra + check.duplicateEffects;

    console.log(
      `F1: requests ${REQUESTS} (${reqs.filter((r) => r.key).length} keyed, ${USERS} users); 2xx ${twoXX}; ` +
        `answered before the kill ${answeredBeforeKill} (2xx ${answeredOk}) after ${killedAt - loadStartedAt} ms, first tries ${JSON.stringify(firstTally)}, committed but unanswered ${committedUnanswered}, refused but stored ${refusedButStored}; ` +
        `exit ${exit.signal}; restart ${restartMs} ms; retried ${toRetry.length} (${toRetry.filter((r) => !isOk(r.first)).length} unanswered or refused, ` +
        `${toRetry.filter((r) => isOk(r.first)).length} keyed replays) → ${JSON.stringify(retryTally)}; ` +
        `recompute mismatches ${check.mismatches.length} (checked ${check.checked}; ${firstMismatches} at the first look, ${convergedMs} ms to converge); ` +
        `duplicates ${duplicates} (tasks completed twice ${completedTwice}, extra ledger rows ${ledgerExtra}, duplicate badge effects ${check.duplicateEffects}); ` +
        `2xx not stored ${notStored.length}; replays differing ${replayDiffers.length}; ledger missing ${ledgerMissing}; not done ${notDone}; outbox unsent ${unsent}; ` +
        `total ${Date.now() - t0} ms`,
    );
    figure('f1.recompute_mismatches', check.mismatches.length, {
      requests: REQUESTS,
      users: USERS,
      answered_before_kill: answeredBeforeKill,
      retried: toRetry.length,
      committed_unanswered: committedUnanswered,
      checked: check.checked,
      converge_ms: convergedMs,
    });
    figure('f1.duplicates', duplicates, {
      requests: REQUESTS,
      ok: twoXX,
      completed_twice: completedTwice,
      extra_ledger_rows: ledgerExtra,
      duplicate_badge_effects: check.duplicateEffects,
      replays_differing: replayDiffers.length,
      not_stored: notStored.length,
    });

    expect(exit.signal).toBe('SIGKILL');
    // The kill landed mid-load: some answered, some not.
    expect(answeredBeforeKill).toBeGreaterThanOrEqual(KILL_AFTER);
    expect(answeredBeforeKill).toBeLessThan(REQUESTS);
    expect(Object.keys(firstTally).filter((k) => k !== '200' && k !== '503' && !/^E[A-Z]+$/.test(k))).toEqual(
      [],
    );
    expect(refusedButStored).toBe(0);
    expect(retryTally).toEqual({ 200: toRetry.length });
    expect(twoXX).toBe(REQUESTS);
    expect(notStored).toEqual([]);
    expect(notDone).toBe(0);
    expect(ledgerMissing).toBe(0);
    expect(replayDiffers).toEqual([]);
    expect(completedTwice).toBe(0);
    expect(ledgerExtra).toBe(0);
    expect(check.duplicateEffects).toBe(0);
    expect(check.mismatches).toEqual([]);
    expect(unsent).toBe(0);
    // Load shedding (503 database_unavailable) is a warning: any error line is a failure.
    expect(second.errorLines()).toEqual([]);
  }, 150_000);
});

/**
 * Recomputes, from the tasks table (the history) and the ledger, what every user's stats, board rows,
 * Redis board entries and API board reads must be, and lists every difference.
 */
async function recompute(w: World, base: string, users: Person[], rc: Redis) {
  const userIds = users.map((u) => u.userId);
  const q = w.deps.db;
  const { rows: facts } = await q.query<{
    id: string;
    public: boolean;
    dailyGoal: number;
    done: number;
    ledger: number;
    boardAll: number | null;
    firstDay: LocalDate;
    marks: string[];
    badges: number;
    badgeNotes: number;
  }>(
    `SELECT u.id, u.profile_visibility = 'public' AS public, u.daily_goal,
            (SELECT count(*)::int FROM tasks t WHERE t.user_id = u.id AND t.status = 'done') AS done,
            (SELECT coalesce(sum(points), 0)::int FROM score_events e WHERE e.user_id = u.id) AS ledger,
            (SELECT score FROM leaderboard_scores s WHERE s.user_id = u.id AND s.period = 'all') AS board_all,
            (SELECT min(effective_on) FROM day_settings d WHERE d.user_id = u.id) AS first_day,
            (SELECT coalesce(array_agg(mark), '{}') FROM activity_marks m WHERE m.user_id = u.id AND m.mark LIKE 'goal:%') AS marks,
            (SELECT count(*)::int FROM user_badges b WHERE b.user_id = u.id AND b.code = 'first_task') AS badges,
            (SELECT count(*)::int FROM notifications n WHERE n.user_id = u.id AND n.kind = 'badge'
               AND n.data->>'code' = 'first_task') AS badge_notes
       FROM users u WHERE u.id = ANY($1::uuid[])`,
    [userIds],
  );
  const { rows: perDate } = await q.query<{ userId: string; on: LocalDate; n: number }>(
    `SELECT user_id, completed_on AS on, count(*)::int AS n FROM tasks
      WHERE user_id = ANY($1::uuid[]) AND status = 'done' GROUP BY 1, 2`,
    [userIds],
  );
  const { rows: weeks } = await q.query<{
    userId: string;
    week: string;
    ledger: number;
    board: number | null;
  }>(
    `SELECT e.user_id, e.week, e.ledger, s.score AS board FROM (
       SELECT user_id, to_char(created_at AT TIME ZONE 'UTC', 'IYYY-"W"IW') AS week, sum(points)::int AS ledger
         FROM score_events WHERE user_id = ANY($1::uuid[]) GROUP BY 1, 2) e
       LEFT JOIN leaderboard_scores s ON s.user_id = e.user_id AND s.period = e.week`,
    [userIds],
  );
  const { mismatches, expectEq, checked } = comparisons();
  const doneOn = new Map<string, Map<LocalDate, number>>();
  for (const r of perDate) {
    const m = doneOn.get(r.userId) ?? new Map<LocalDate, number>();
    m.set(r.on, r.n);
    doneOn.set(r.userId, m);
  }
  const week = isoWeek(new Date());
  const expectedWeek = new Map<string, number>();
  for (const r of weeks) {
    expectEq(`board row ${r.userId} ${r.week}`, r.board, r.ledger);
    if (r.week === week) expectedWeek.set(r.userId, r.ledger);
  }
  let duplicateEffects = 0;
  for (const f of facts) {
    expectEq(`ledger of ${f.id}`, f.ledger, f.done * POINTS);
    expectEq(`board row ${f.id} all`, f.boardAll ?? 0, f.done * POINTS);
    expectEq(`first_task badge of ${f.id}`, [f.badges, f.badgeNotes], [1, 1]);
    duplicateEffects += Math.max(0, f.badges - 1) + Math.max(0, f.badgeNotes - 1);
    const metDays = [...(doneOn.get(f.id) ?? new Map<LocalDate, number>())]
      .filter(([, n]) => n >= f.dailyGoal)
      .map(([d]) => `goal:${d}`)
      .sort();
    expectEq(`goal marks of ${f.id}`, [...f.marks].sort(), metDays);
  }

  // The API: each user's stats and their place on the global all-time board.
  const byUser = new Map(facts.map((f) => [f.id, f]));
  const publicAll = facts.filter((f) => f.public).map((f) => ({ id: f.id, score: f.done * POINTS }));
  const rankIn = (rows: { id: string; score: number }[], score: number) =>
    rows.filter((r) => r.score > score).length + 1;
  await Promise.all(
    users.map(async (u) => {
      const f = byUser.get(u.userId);
      if (!f) return;
      const [statsRes, boardRes] = await Promise.all([
        call(base, 'GET', '/v1/me/stats', { token: u.token, timeoutMs: 20_000 }),
        call(base, 'GET', '/v1/leaderboards/global?period=all&limit=1', {
          token: u.token,
          timeoutMs: 20_000,
        }),
      ]);
      if (statsRes.status !== 200 || boardRes.status !== 200) {
        mismatches.push(
          `reads of ${u.userId}: stats ${statsRes.status ?? statsRes.error}, board ${boardRes.status ?? boardRes.error}`,
        );
        return;
      }
      const stats = JSON.parse(statsRes.body as string) as {
        score: number;
        currentStreak: number;
        longestStreak: number;
        today: { date: LocalDate; done: number; goal: number };
        totals: { tasksCompleted: number };
      };
      const today = stats.today.date;
      const counts = doneOn.get(u.userId) ?? new Map<LocalDate, number>();
      let state: OverallState = { ...emptyOverallState(), lastClosedDate: addDays(f.firstDay, -1) };
      for (let d = f.firstDay; d < today; d = addDays(d, 1))
        state = overallFold(state, { date: d, completed: counts.get(d) ?? 0, goal: f.dailyGoal }).state;
      const view = overallView(state, { date: today, completed: counts.get(today) ?? 0, goal: f.dailyGoal });
      expectEq(
        `stats of ${u.userId}`,
        {
          score: stats.score,
          done: stats.today.done,
          goal: stats.today.goal,
          tasksCompleted: stats.totals.tasksCompleted,
          currentStreak: stats.currentStreak,
          longestStreak: stats.longestStreak,
        },
        {
          score: f.done * POINTS,
          done: counts.get(today) ?? 0,
          goal: f.dailyGoal,
          tasksCompleted: f.done,
          currentStreak: view.current,
          longestStreak: view.longest,
        },
      );
      const board = JSON.parse(boardRes.body as string) as { me: { rank: number | null; score: number } };
      expectEq(`global all-time board, me, of ${u.userId}`, board.me, {
        rank: f.public ? rankIn(publicAll, f.done * POINTS) : null,
        score: f.done * POINTS,
      });
    }),
  );

  // The API's board entries, both periods, in board order (score, then user id, descending).
  const order = (a: { id: string; score: number }, b: { id: string; score: number }) =>
    b.score - a.score || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);
  const ranked = (rows: { id: string; score: number }[]) =>
    [...rows].sort(order).map((r) => ({ userId: r.id, score: r.score, rank: rankIn(rows, r.score) }));
  const publicWeek = facts
    .filter((f) => f.public && expectedWeek.has(f.id))
    .map((f) => ({ id: f.id, score: expectedWeek.get(f.id) as number }));
  const viewer = users[0] as Person;
  for (const [period, rows] of [
    ['all', publicAll],
    ['week', publicWeek],
  ] as const) {
    const res = await call(base, 'GET', `/v1/leaderboards/global?period=${period}&limit=100`, {
      token: viewer.token,
      timeoutMs: 20_000,
    });
    const entries =
      res.status === 200
        ? (JSON.parse(res.body as string) as { entries: { userId: string; score: number; rank: number }[] })
            .entries
        : [];
    expectEq(
      `API global ${period} board`,
      entries.map((e) => ({ userId: e.userId, score: e.score, rank: e.rank })),
      ranked(rows),
    );
  }

  // The Redis boards hold exactly the public users, at their recomputed scores.
  for (const [key, expected] of [
    [`${w.redisPrefix}:lb:all`, new Map(publicAll.map((r) => [r.id, r.score]))],
    [`${w.redisPrefix}:lb:${week}`, new Map(publicWeek.map((r) => [r.id, r.score]))],
  ] as const) {
    const flat = await rc.zrange(key, 0, -1, 'WITHSCORES');
    const actual = new Map<string, number>();
    for (let i = 0; i < flat.length; i += 2) actual.set(flat[i] as string, Number(flat[i + 1]));
    expectEq(`Redis ${key}`, [...actual].sort(), [...expected].sort());
  }
  return { mismatches, checked: checked(), duplicateEffects };
}
