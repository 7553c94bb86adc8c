import type { Redis as RedisClient } from 'ioredis';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { figure } from '../figures.js';
import {
  badgeEffects,
  call,
  faultHooks,
  jobQueue,
  keepAlive,
  loadLoop,
  newId,
  type Outcome,
  type Person,
  people,
  percentile,
  privateRedis,
  servicesLane,
  sleep,
  startApp,
  tally,
  untilReady,
  waitFor,
  workersConnected,
  world,
} from './kit.js';

// F5 and F6 on one api and one worker child sharing a private Redis: under mixed core CRUD (tasks,
// dailies, friends, chat over REST, stats), Redis is stopped for 10 s and started again (empty, as after
// a crash), then hung with SIGSTOP for 5 s and resumed. Core CRUD must answer with 0 5xx, no request may
// wait past the Redis command timeout plus a margin, and both processes recover without a restart. Users
// who finish their first task while Redis is down get their badge once it is back (outbox → job).

const { cleanup, children } = faultHooks();

const COMMAND_TIMEOUT_MS = 500;
/** What a request may take beyond one Redis command timeout: its own database work on a 2-core box. */
const MARGIN_MS = 1000;
const DOWN_MS = 10_000;
const HUNG_MS = 5000;

describe.runIf(servicesLane)('F5/F6 Redis down and hung under mixed load', () => {
  it('0 5xx on core CRUD, no request past the command timeout + margin, recovery without restart, outbox jobs delivered once', async () => {
    const w = await world(cleanup);
    const redis = await privateRedis(cleanup);
    const common = { databaseUrl: w.databaseUrl, redisUrl: redis.url, redisPrefix: w.redisPrefix };
    const env = { REDIS_COMMAND_TIMEOUT_MS: String(COMMAND_TIMEOUT_MS), RATE_LIMIT_MULTIPLIER: '50' };
    const api = await startApp(cleanup, { ...common, name: 'api', role: 'api', env });
    const worker = await startApp(cleanup, {
      ...common,
      name: 'worker',
      role: 'worker',
      env: { ...env, OUTBOX_SWEEP_MS: '500' },
    });
    children.push(api, worker);
    const queue = jobQueue(cleanup, redis.url, w.redisPrefix);
    await workersConnected(queue);
    const pids = [api.pid, worker.pid];

    // Six people in three friend pairs, each with a daily and a direct conversation with the friend.
    const users = await people(w, 6);
    const setup = await Promise.all(
      users.map(async (u) => ({
        daily: (await w.deps.dailies.create(u.userId, { title: 'Water the plants' })).id,
      })),
    );
    const conversations: string[] = [];
    for (let i = 0; i < users.length; i += 2) {
      const [x, y] = [users[i] as Person, users[i + 1] as Person];
      const asked = await w.deps.friends.sendRequest(x.userId, y.userId);
      await w.deps.friends.accept(y.userId, asked.body.id);
      const conversation = (await w.deps.chat.openDirect(x.userId, y.userId)).body.id;
      conversations.push(conversation, conversation);
    }
    // People who finish their very first task while Redis is down.
    const newcomers = await people(w, 6);

    const agents = users.map(() => keepAlive());
    const taskOf = new Map<number, string>();
    const ops: ((u: Person, i: number) => Promise<Outcome>)[] = [
      async (u, i) => {
        const o = await call(api.url, 'POST', '/v1/tasks', { ...opt(u, i), body: { title: `t-${newId()}` } });
        if (o.status === 201) taskOf.set(i, (JSON.parse(o.body as string) as { id: string }).id);
        return o;
      },
      (u, i) => call(api.url, 'GET', '/v1/tasks?limit=10', opt(u, i)),
      (u, i) =>
        call(api.url, 'PATCH', `/v1/tasks/${taskOf.get(i)}`, {
          ...opt(u, i),
          body: { title: `r-${newId()}` },
        }),
      (u, i) => call(api.url, 'POST', `/v1/tasks/${taskOf.get(i)}/complete`, opt(u, i)),
      (u, i) => call(api.url, 'GET', '/v1/dailies', opt(u, i)),
      (u, i) => call(api.url, 'POST', `/v1/dailies/${setup[i]?.daily}/check-ins`, { ...opt(u, i), body: {} }),
      (u, i) => call(api.url, 'GET', '/v1/me/stats', opt(u, i)),
      (u, i) => call(api.url, 'GET', '/v1/friends', opt(u, i)),
      (u, i) => call(api.url, 'GET', '/v1/friend-requests', opt(u, i)),
      (u, i) =>
        call(api.url, 'POST', `/v1/conversations/${conversations[i]}/messages`, {
          ...opt(u, i),
          body: { clientMessageId: newId(), body: 'hello' },
        }),
      (u, i) => call(api.url, 'GET', `/v1/conversations/${conversations[i]}/messages?limit=20`, opt(u, i)),
      (u, i) => call(api.url, 'GET', '/v1/conversations', opt(u, i)),
    ];
    function opt(u: Person, i: number) {
      return { token: u.token, agent: agents[i], timeoutMs: 10_000 };
    }
    const load = loadLoop(users.length, async (i, n) => {
      const op = ops[n % ops.length] as (typeof ops)[number];
      return [await op(users[i] as Person, i)];
    });

    const marks: Record<string, number> = { start: Date.now() };
    await sleep(2500);
    // F5: down.
    marks.down = Date.now();
    await redis.stop();
    const readyWhileDown = await call(api.url, 'GET', '/health/ready', { timeoutMs: 5000 });
    const firstTasks = await Promise.all(
      newcomers.map(async (u) => {
        const created = await call(api.url, 'POST', '/v1/tasks', {
          token: u.token,
          body: { title: 'first' },
        });
        const id = (JSON.parse(created.body as string) as { id?: string }).id;
        return [created, await call(api.url, 'POST', `/v1/tasks/${id}/complete`, { token: u.token })];
      }),
    );
    await sleep(DOWN_MS - (Date.now() - marks.down));
    await redis.start();
    marks.up = Date.now();
    const readyAfterDownMs = await untilReady(api.url, 20_000);
    await sleep(Math.max(0, 5000 - (Date.now() - marks.up)));
    // F6: hung.
    marks.hung = Date.now();
    redis.pause();
    const readyWhileHung = await call(api.url, 'GET', '/health/ready', { timeoutMs: 5000 });
    await sleep(HUNG_MS - (Date.now() - marks.hung));
    redis.resume();
    marks.resumed = Date.now();
    const readyAfterHungMs = await untilReady(api.url, 20_000);
    await sleep(Math.max(0, 5000 - (Date.now() - marks.resumed)));
    marks.end = Date.now();
    const outcomes = await load.stop();
    for (const a of agents) a.destroy();

    const phase = (from: number, to: number) =>
      outcomes.filter((o) => o.startedAt >= from && o.startedAt < to);
    const phases = {
      baseline: phase(marks.start as number, marks.down as number),
      down: phase(marks.down as number, marks.up as number),
      afterDown: phase(marks.up as number, marks.hung as number),
      hung: phase(marks.hung as number, marks.resumed as number),
      afterHung: phase(marks.resumed as number, (marks.end as number) + 1),
    };
    const serverErrors = outcomes.filter((o) => o.status === undefined || o.status >= 500);
    const maxMs = Math.max(...outcomes.map((o) => o.ms));
    const slowest = [...outcomes].sort((x, y) => y.ms - x.ms).slice(0, 5);
    const overBudget = outcomes.filter((o) => o.ms > COMMAND_TIMEOUT_MS + MARGIN_MS);
    const describePhase = (name: string, list: Outcome[]) =>
      `${name} ${list.length} ${JSON.stringify(tally(list))} p50 ${percentile(
        list.map((o) => o.ms),
        50,
      )} p99 ${percentile(
        list.map((o) => o.ms),
        99,
      )} max ${Math.max(0, ...list.map((o) => o.ms))} ms`;

    // Recovery without restart: the same processes use Redis again (rate-limit counters appear in it).
    const probe: RedisClient = new Redis(redis.url, { maxRetriesPerRequest: 1 });
    const usingRedisAgain = await waitFor(
      async () => (await probe.keys(`${w.redisPrefix}:rl:*`)).length > 0,
      10_000,
      200,
    ).then(
      () => true,
      () => false,
    );
    probe.disconnect();
    // Jobs written while Redis was down were kept in the outbox and ran once it was back.
    const badgesDelivered = await waitFor(
      async () =>
        (
          await badgeEffects(
            w,
            newcomers.map((u) => u.userId),
          )
        ).awardedOnce === newcomers.length,
      30_000,
      200,
    ).then(
      () => true,
      () => false,
    );
    await sleep(1000);
    const effects = await badgeEffects(
      w,
      newcomers.map((u) => u.userId),
    );
    const firstTaskStatuses = firstTasks.flat().map((o) => o.status ?? o.error);

    console.log(
      `F5/F6: ${describePhase('baseline', phases.baseline)}; ${describePhase(`Redis down ${DOWN_MS} ms`, phases.down)}; ${describePhase('after restart', phases.afterDown)}; ` +
        `${describePhase(`Redis hung ${HUNG_MS} ms`, phases.hung)}; ${describePhase('after SIGCONT', phases.afterHung)}. ` +
        `5xx/transport errors ${serverErrors.length}; max latency ${maxMs} ms (budget ${COMMAND_TIMEOUT_MS} + ${MARGIN_MS} ms), over budget ${overBudget.length}: ${slowest.map((o) => `${o.method} ${o.path.replace(/[0-9a-f-]{36}/g, ':id')} ${o.ms} ms`).join(', ')}; ` +
        `readiness while down ${readyWhileDown.status}, ready again ${readyAfterDownMs} ms after the restart; while hung ${readyWhileHung.status} in ${readyWhileHung.ms} ms, ready again ${readyAfterHungMs} ms after SIGCONT; ` +
        `Redis used again ${usingRedisAgain}; first tasks completed while down ${JSON.stringify(firstTaskStatuses)}, badges after recovery ${JSON.stringify(effects)}; ` +
        `same PIDs ${api.alive() && worker.alive() && api.pid === pids[0] && worker.pid === pids[1]}`,
    );
    figure('redis_outage.5xx', serverErrors.length, {
      requests: Object.values(phases).reduce((n, p) => n + p.length, 0),
      downMs: DOWN_MS,
      hungMs: HUNG_MS,
    });
    figure('redis_outage.over_timeout', overBudget.length, { budgetMs: COMMAND_TIMEOUT_MS + MARGIN_MS });
    expect(phases.baseline.length).toBeGreaterThan(30);
    expect(phases.down.length).toBeGreaterThan(30);
    expect(phases.hung.length).toBeGreaterThan(5);
    expect(serverErrors.map((o) => `${o.method} ${o.path} ${o.status ?? o.error}`)).toEqual([]);
    expect(firstTaskStatuses.every((s) => s === 200 || s === 201)).toBe(true);
    expect(readyWhileDown.status).toBe(503);
    expect(readyWhileHung.status).toBe(503);
    expect(usingRedisAgain).toBe(true);
    expect(badgesDelivered).toBe(true);
    expect(effects.awardedOnce).toBe(newcomers.length);
    expect(effects.notifiedOnce).toBe(newcomers.length);
    expect(api.alive() && worker.alive()).toBe(true);
    expect([api.pid, worker.pid]).toEqual(pids);
    expect(overBudget.map((o) => `${o.method} ${o.path} ${o.ms} ms`)).toEqual([]);
  });
});
