import { describe, expect, it } from 'vitest';
import { figure } from '../figures.js';
import {
  call,
  faultHooks,
  jobQueue,
  keepAlive,
  loadLoop,
  newId,
  type Outcome,
  people,
  percentile,
  pgProxy,
  privateRedis,
  servicesLane,
  sleep,
  startApp,
  tally,
  unsentOutbox,
  waitFor,
  workersConnected,
  world,
} from './kit.js';

// F2: PostgreSQL restarts under load. The shared server is never touched: an api and a worker child
// reach this test's own database through a TCP proxy, and the restart is simulated at the network
// level: the proxy cuts every open connection (as a server going down does) and refuses new ones
// (its port stops listening, so connects get ECONNREFUSED) for 3 s, then accepts again.

const { cleanup, children } = faultHooks();

const OUTAGE_MS = 3000;
const CLIENT_TIMEOUT_MS = 5000;

describe.runIf(servicesLane)('F2 PostgreSQL restart under load', () => {
  it('only 503 with Retry-After during the outage, no hang, same PIDs, full recovery within 5 s', async () => {
    const w = await world(cleanup);
    const redis = await privateRedis(cleanup);
    const proxy = await pgProxy(cleanup);
    const viaProxy = proxy.url(w.databaseUrl);
    const common = { databaseUrl: viaProxy, redisUrl: redis.url, redisPrefix: w.redisPrefix };
    const api = await startApp(cleanup, {
      ...common,
      name: 'api',
      role: 'api',
      env: { RATE_LIMIT_MULTIPLIER: '0' },
    });
    const worker = await startApp(cleanup, {
      ...common,
      name: 'worker',
      role: 'worker',
      env: { OUTBOX_SWEEP_MS: '500' },
    });
    children.push(api, worker);
    const queue = jobQueue(cleanup, redis.url, w.redisPrefix);
    await workersConnected(queue);
    const pids = { api: api.pid, worker: worker.pid };
    const users = await people(w, 4);

    // Each client: create a task, list, and complete the task (whose score, badge and board jobs go
    // through the outbox to the worker).
    const agents = users.map(() => keepAlive());
    const load = loadLoop(users.length, async (i) => {
      const u = users[i] as (typeof users)[number];
      const opts = { token: u.token, agent: agents[i], timeoutMs: CLIENT_TIMEOUT_MS };
      const created = await call(api.url, 'POST', '/v1/tasks', { ...opts, body: { title: `t-${newId()}` } });
      const listed = await call(api.url, 'GET', '/v1/tasks?limit=10', opts);
      const out = [created, listed];
      if (created.status === 201) {
        const id = (JSON.parse(created.body as string) as { id: string }).id;
        out.push(await call(api.url, 'POST', `/v1/tasks/${id}/complete`, opts));
      }
      if (out.some((o) => o.status !== 200 && o.status !== 201)) await sleep(25);
      return out;
    });

    await sleep(2000);
    const downAt = Date.now();
    await proxy.outage();
    const readyDuring = await call(api.url, 'GET', '/health/ready', { timeoutMs: CLIENT_TIMEOUT_MS });
    await sleep(OUTAGE_MS - (Date.now() - downAt));
    const upAt = Date.now();
    await proxy.restore();
    await sleep(6000);
    const outcomes = await load.stop();
    for (const a of agents) a.destroy();
    const readyAfter = await call(api.url, 'GET', '/health/ready', { timeoutMs: CLIENT_TIMEOUT_MS });

    const ok = (o: Outcome) => o.status === 200 || o.status === 201;
    const before = outcomes.filter((o) => o.endedAt < downAt);
    const during = outcomes.filter((o) => o.endedAt >= downAt && o.startedAt < upAt);
    const after = outcomes.filter((o) => o.startedAt >= upAt);
    const failedAfter = after.filter((o) => !ok(o));
    const firstOkMs = Math.min(...after.filter(ok).map((o) => o.endedAt)) - upAt;
    // Full recovery: from the proxy accepting again to the first success with no failure after it
    // (it read 0 when nothing failed after the restore, hiding how long the first success took).
    const recoveryMs = Math.max(firstOkMs, ...failedAfter.map((o) => o.endedAt - upAt));
    const notOk = outcomes.filter((o) => !ok(o));
    const badStatus = notOk.filter((o) => o.status !== 503);
    const noRetryAfter = notOk.filter((o) => o.status === 503 && !o.retryAfter);
    const leaks = notOk.filter((o) => /\bat \S+ \(|node_modules|stack/i.test(o.body ?? ''));
    const codes = tally(notOk.map((o) => ({ ...o, status: undefined, error: problemCode(o) })));
    const duringMs = during.map((o) => o.ms);
    // Jobs written while the database was away are in the outbox; all go out once it is back.
    const outboxDrained = await waitFor(async () => (await unsentOutbox(w)) === 0, 15_000, 200).then(
      () => true,
      () => false,
    );
    const crashes = children.filter((c) => !c.alive()).map((c) => `${c.name}: ${crashLine(c.output())}`);

    console.log(
      `F2: requests ${outcomes.length}: before ${before.length} ${JSON.stringify(tally(before))}, during the ${OUTAGE_MS} ms outage ${during.length} ${JSON.stringify(tally(during))} ` +
        `(latency p50 ${percentile(duringMs, 50)} ms, max ${Math.max(...duringMs)} ms), after ${after.length} ${JSON.stringify(tally(after))}; ` +
        `503 codes ${JSON.stringify(codes)}, 503 without Retry-After ${noRetryAfter.length}, other non-2xx ${badStatus.length}, stack traces ${leaks.length}; ` +
        `readiness during ${readyDuring.status}, after ${readyAfter.status}; first 2xx ${firstOkMs} ms after the proxy accepted again, full recovery ${recoveryMs} ms; ` +
        `PIDs api ${api.pid === pids.api && api.alive()} worker ${worker.pid === pids.worker && worker.alive()}; outbox drained ${outboxDrained}` +
        (crashes.length ? `; CRASHED: ${crashes.join(' | ')}` : ''),
    );
    figure('pg_outage.unexpected_5xx', badStatus.filter((o) => (o.status ?? 500) >= 500).length, {
      requests: outcomes.length,
      during: during.length,
      '503': during.filter((o) => o.status === 503).length,
    });
    figure('pg_outage.recovery_ms', recoveryMs, { outageMs: OUTAGE_MS });
    // The process survives: a connection lost while a transaction holds it must not crash it.
    expect(crashes).toEqual([]);
    expect(before.length).toBeGreaterThan(20);
    expect(before.filter((o) => !ok(o))).toEqual([]);
    expect(during.filter((o) => o.status === 503).length).toBeGreaterThan(0);
    expect(badStatus.map((o) => `${o.method} ${o.path} ${o.status ?? o.error} ${o.ms} ms`)).toEqual([]);
    expect(noRetryAfter).toEqual([]);
    expect(leaks).toEqual([]);
    expect(readyDuring.status).toBe(503);
    expect(readyAfter.status).toBe(200);
    expect(recoveryMs).toBeLessThanOrEqual(5000);
    expect(after.filter(ok).length).toBeGreaterThan(20);
    expect(api.alive() && api.pid === pids.api).toBe(true);
    expect(worker.alive() && worker.pid === pids.worker).toBe(true);
    expect(outboxDrained).toBe(true);
  });
});

function problemCode(o: Outcome): string {
  if (o.status === undefined) return o.error ?? 'none';
  try {
    return `${o.status} ${(JSON.parse(o.body ?? '') as { code?: string }).code ?? ''}`;
  } catch {
    return String(o.status);
  }
}

/** The first line of an uncaught error in a child's output. */
function crashLine(out: string): string {
  const m = /\n(\w*Error[^\n]*)\n\s+at [^\n]+/.exec(out.slice(out.lastIndexOf('throw er') - 200));
  return m?.[1] ?? out.slice(-300);
}
