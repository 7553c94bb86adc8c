import { request } from 'node:http';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { figure } from '../figures.js';
import { linkIn } from '../smtp.js';
import {
  badgeEffects,
  type ChatMessage,
  call,
  emitAck,
  faultHooks,
  firstTaskAwards,
  groupChat,
  jobQueue,
  keepAlive,
  loadLoop,
  newId,
  type Outcome,
  openSocket,
  people,
  privateRedis,
  seedBadgeJobs,
  servicesLane,
  sleep,
  slowSmtp,
  startApp,
  storedMessages,
  syncAll,
  tally,
  waitFor,
  world,
} from './kit.js';

// H1–H3 with the production topology: ROLE=api and ROLE=worker children on PostgreSQL and a private
// Redis. test/shutdown.test.ts already proves, for ROLE=serve, that readiness turns 503 at once, that a
// request whose body is still arriving completes, that a second signal is harmless and that the process
// exits 0 in time; these extend it to real writes (every 2xx stored, every refused write not stored),
// to socket drain across two nodes (a rolling restart), and to a worker draining its jobs.

const { cleanup, children } = faultHooks();

describe.runIf(servicesLane)('H shutdown (child processes)', () => {
  it('H1: SIGTERM to an api child under CRUD load: in-flight writes complete and are stored, readiness 503 at once, later requests refused cleanly, exit 0 within 10 s', async () => {
    const w = await world(cleanup);
    const redis = await privateRedis(cleanup);
    const api = await startApp(cleanup, {
      name: 'api',
      role: 'api',
      databaseUrl: w.databaseUrl,
      redisUrl: redis.url,
      redisPrefix: w.redisPrefix,
      env: { SHUTDOWN_DRAIN_DELAY_MS: '500', RATE_LIMIT_MULTIPLIER: '0' },
    });
    children.push(api);
    const users = await people(w, 6);
    expect((await call(api.url, 'GET', '/health/ready')).status).toBe(200);

    // Writes whose body is still arriving when the signal comes: in flight on the server.
    const slow = users.slice(0, 3).map((u, i) => slowCreate(api.url, u.token, `inflight-${i}-${newId()}`));
    await sleep(150);

    // Steady load: every client creates a task and lists, half on keep-alive connections (as a load
    // balancer would hold them), half on a new connection each time.
    const agents = users.map((_, i) => (i % 2 === 0 ? keepAlive() : false));
    const titles = new Map<Outcome, string>();
    const load = loadLoop(users.length, async (i) => {
      const u = users[i] as (typeof users)[number];
      const title = `load-${i}-${newId()}`;
      const created = await call(api.url, 'POST', '/v1/tasks', {
        token: u.token,
        body: { title },
        agent: agents[i] as false,
        timeoutMs: 10_000,
      });
      titles.set(created, title);
      const listed = await call(api.url, 'GET', '/v1/tasks?limit=5', {
        token: u.token,
        agent: agents[i] as false,
        timeoutMs: 10_000,
      });
      if (created.error === 'ECONNREFUSED' && listed.error === 'ECONNREFUSED') await sleep(50);
      return [created, listed];
    });
    // Enough load answered before the signal, however busy the machine (it is asserted below).
    await sleep(1000);
    await waitFor(async () => load.outcomes.length > 30, 30_000);

    const signalledAt = Date.now();
    api.proc.kill('SIGTERM');
    const ready = await call(api.url, 'GET', '/health/ready', { timeoutMs: 2000 });
    const readyMs = Date.now() - signalledAt;
    await sleep(200);
    for (const s of slow) s.finish();
    const inflight = await Promise.all(slow.map((s) => s.done));
    const exit = await api.exited;
    const outcomes = await load.stop();
    for (const a of agents) if (a) a.destroy();

    const before = outcomes.filter((o) => o.endedAt < signalledAt);
    const across = outcomes.filter((o) => o.startedAt < signalledAt && o.endedAt >= signalledAt);
    const after = outcomes.filter((o) => o.startedAt >= signalledAt);
    // What each write's outcome says must match the database: a 201 is stored; a refusal is not.
    const { rows } = await w.deps.db.query<{ title: string }>('SELECT title FROM tasks');
    const stored = new Set(rows.map((r) => r.title));
    const posts = outcomes.filter((o) => o.method === 'POST');
    const createdNotStored = posts.filter((o) => o.status === 201 && !stored.has(titles.get(o) as string));
    const failedButStored = posts.filter((o) => o.status !== 201 && stored.has(titles.get(o) as string));
    const inflightStored = inflight.filter((o) => o.outcome.status === 201 && stored.has(o.title)).length;

    console.log(
      `H1: readiness ${ready.status} ${readyMs} ms after SIGTERM; in-flight writes at SIGTERM ${inflight.length} → ${JSON.stringify(tally(inflight.map((o) => o.outcome)))}, stored ${inflightStored}; ` +
        `load before ${before.length} ${JSON.stringify(tally(before))}, across the signal ${across.length} ${JSON.stringify(tally(across))}, after ${after.length} ${JSON.stringify(tally(after))}; ` +
        `201 not stored ${createdNotStored.length}, refused but stored ${failedButStored.length}; exit ${exit.code} after ${exit.at - signalledAt} ms`,
    );
    figure('shutdown.inflight_lost', inflight.length - inflightStored + createdNotStored.length, {
      inflight: inflight.length,
      requests: outcomes.length,
    });
    expect(ready.status).toBe(503);
    expect(readyMs).toBeLessThan(1000);
    expect(inflight.map((o) => o.outcome.status)).toEqual([201, 201, 201]);
    expect(inflightStored).toBe(3);
    expect(before.length).toBeGreaterThan(20);
    expect(before.filter((o) => !(o.status === 200 || o.status === 201))).toEqual([]);
    // Requests that were in flight when the signal came were answered in full.
    expect(across.filter((o) => !(o.status === 200 || o.status === 201 || o.status === 503))).toEqual([]);
    // Later ones: answered, 503, or the port found closed; never a 5xx other than 503, never a hang.
    // A new connection the kernel had queued in the very instant the listener closed is reset by TCP
    // itself (no server can answer it: that is what the drain delay, the load balancer's grace, is for),
    // so it is reported above, not failed. A request on a kept-alive connection is the server's to answer.
    const unclean = after.filter(
      (o) =>
        !(
          o.status === 200 ||
          o.status === 201 ||
          o.status === 503 ||
          o.error === 'ECONNREFUSED' ||
          (o.error === 'ECONNRESET' && !o.reused)
        ),
    );
    expect(
      unclean.map(
        (o) =>
          `${o.method} ${o.path} ${o.status ?? o.error}${o.reused ? ' (reused keep-alive connection)' : ' (new connection)'} +${o.startedAt - signalledAt} ms`,
      ),
    ).toEqual([]);
    expect(createdNotStored).toEqual([]);
    expect(failedButStored.map((o) => `${o.status ?? o.error}`)).toEqual([]);
    expect(exit.code).toBe(0);
    expect(exit.at - signalledAt).toBeLessThan(10_000);
    expect(api.errorLines()).toEqual([]);
  });

  it('H2: socket drain in a rolling restart: node A gets SIGTERM while its clients send; they move to node B, retry unacked sends with the same clientMessageId and resync: every acked message stored once, lost 0', async () => {
    const w = await world(cleanup);
    const redis = await privateRedis(cleanup);
    const node = (name: string, env: Record<string, string> = {}) =>
      startApp(cleanup, {
        name,
        role: 'api',
        databaseUrl: w.databaseUrl,
        redisUrl: redis.url,
        redisPrefix: w.redisPrefix,
        env: { RATE_LIMIT_MULTIPLIER: '0', ...env },
      });
    const [a, b] = await Promise.all([node('api-A', { SHUTDOWN_DRAIN_DELAY_MS: '300' }), node('api-B')]);
    children.push(a, b);
    const members = await people(w, 4);
    const conversationId = await groupChat(w, members);

    interface Sent {
      clientMessageId: string;
      acks: { id: string; seq: number; via: string }[];
      errors: string[];
    }
    const sent: Sent[] = [];
    let running = true;
    let signalledAt = 0;
    const moved: number[] = [];
    const clients = await Promise.all(
      members.map(async (m, i) => {
        const state = { socket: await openSocket(a.url, m.token, false), via: 'A', told: false };
        state.socket.once('system:disconnecting', () => {
          state.told = true;
        });
        const loop = (async () => {
          for (let n = 0; running; n++) {
            const message: Sent = { clientMessageId: newId(), acks: [], errors: [] };
            sent.push(message);
            // Until acked: a send whose ack was lost with the connection is sent again, same id.
            for (;;) {
              if (!state.socket.connected) {
                // The load balancer sends the reconnecting client to the node still up.
                state.socket.disconnect();
                state.socket = await openSocket(b.url, m.token, false);
                state.via = 'B';
                moved.push(Date.now() - signalledAt);
              }
              const ack = await emitAck<ChatMessage>(
                state.socket,
                'chat:send',
                { conversationId, clientMessageId: message.clientMessageId, body: `m${i}-${n}` },
                3000,
              );
              if (ack.ok) {
                message.acks.push({ id: ack.data.id, seq: ack.data.seq, via: state.via });
                break;
              }
              message.errors.push(ack.error.code);
              await sleep(50);
            }
            await sleep(30);
          }
        })();
        return { m, state, loop };
      }),
    );
    await sleep(1500);
    signalledAt = Date.now();
    a.proc.kill('SIGTERM');
    const exit = await a.exited;
    await sleep(1000);
    running = false;
    await Promise.all(clients.map((c) => c.loop));

    const stored = await storedMessages(w, conversationId);
    const bySeq = new Map(stored.rows.map((r) => [Number(r.seq), r]));
    const acked = sent.filter((s) => s.acks.length > 0);
    const firstAcks = acked.map((s) => s.acks[0] as Sent['acks'][number]);
    const notStored = firstAcks.filter((x) => !bySeq.has(x.seq));
    const retried = sent.filter((s) => s.errors.length > 0);
    // Every member resyncs on B from the start and must see every acked message.
    let lost = 0;
    for (const c of clients) {
      const seen = new Set((await syncAll(c.state.socket, conversationId, 0)).map((x) => x.id));
      lost += firstAcks.filter((x) => !seen.has(x.id)).length;
    }
    console.log(
      `H2: messages acked ${acked.length} (on A ${firstAcks.filter((x) => x.via === 'A').length}, on B ${firstAcks.filter((x) => x.via === 'B').length}); ` +
        `sends retried after the drain ${retried.length} (errors ${JSON.stringify(retried.flatMap((s) => s.errors))}); told system:disconnecting ${clients.filter((c) => c.state.told).length}/${clients.length}; ` +
        `moved to B after ${moved.length ? Math.max(...moved) : 'n/a'} ms; stored ${stored.count}, duplicates ${stored.duplicates}, gapless ${stored.gapless}; acked not stored ${notStored.length}; lost after resync ${lost}; exit ${exit.code} after ${exit.at - signalledAt} ms`,
    );
    figure('h2.lost', lost + notStored.length, {
      sent: sent.length,
      acked: acked.length,
      clients: clients.length,
    });
    figure('h2.stored_duplicates', stored.duplicates, { stored: stored.count });
    for (const c of clients) c.state.socket.disconnect();
    expect(acked.length).toBe(sent.length);
    expect(firstAcks.filter((x) => x.via === 'A').length).toBeGreaterThan(20);
    expect(firstAcks.filter((x) => x.via === 'B').length).toBeGreaterThan(4);
    expect(notStored).toEqual([]);
    // A retry of a message whose ack was lost gets the stored original back, never a second copy.
    expect(stored.duplicates).toBe(0);
    expect(stored.gapless).toBe(true);
    expect(stored.count).toBe(acked.length);
    expect(lost).toBe(0);
    expect(exit.code).toBe(0);
    expect(exit.at - signalledAt).toBeLessThan(10_000);
    expect(a.errorLines()).toEqual([]);
  });

  it('H3: SIGTERM to a worker while it runs short jobs: the jobs it took finish (none left active), exit 0 within 10 s; a second worker does the rest, each effect once', async () => {
    const w = await world(cleanup);
    const redis = await privateRedis(cleanup);
    const queue = jobQueue(cleanup, redis.url, w.redisPrefix);
    const worker = (name: string) =>
      startApp(cleanup, {
        name,
        role: 'worker',
        databaseUrl: w.databaseUrl,
        redisUrl: redis.url,
        redisPrefix: w.redisPrefix,
        env: { JOBS_CONCURRENCY: '4', OUTBOX_SWEEP_MS: '200' },
      });
    const w1 = await worker('worker-1');
    children.push(w1);
    await firstRollover(queue);
    const { userIds } = await seedBadgeJobs(w, 400);
    const awarded = () => firstTaskAwards(w, userIds);
    await waitFor(async () => (await awarded()) >= 40, 30_000, 20);
    const activeAtSignal = await queue.getActiveCount();
    const signalledAt = Date.now();
    w1.proc.kill('SIGTERM');
    const exit = await w1.exited;
    const countsAfterExit = await queue.getJobCounts('active', 'waiting', 'completed', 'failed', 'delayed');
    const doneByFirst = await awarded();

    const w2 = await worker('worker-2');
    children.push(w2);
    await waitFor(async () => (await awarded()) === userIds.length, 60_000, 100);
    await waitFor(async () => (await queue.getActiveCount()) === 0, 10_000, 100);
    const effects = await badgeEffects(w, userIds);
    const finalCounts = await queue.getJobCounts('active', 'waiting', 'completed', 'failed', 'delayed');
    console.log(
      `H3: jobs ${userIds.length}; active at SIGTERM ${activeAtSignal}; exit ${exit.code} after ${exit.at - signalledAt} ms; ` +
        `after exit ${JSON.stringify(countsAfterExit)} (effects by then ${doneByFirst}); at the end ${JSON.stringify(finalCounts)}; effects ${JSON.stringify(effects)}`,
    );
    figure('h3.lost', effects.notAwarded + effects.notNotified, { jobs: userIds.length });
    figure('h3.duplicate_effects', effects.notifiedTwiceOrMore + effects.marksTwiceOrMore, {
      jobs: userIds.length,
    });
    expect(exit.code).toBe(0);
    expect(exit.at - signalledAt).toBeLessThan(10_000);
    // Nothing taken was abandoned: no job was left active for the stalled-job check to find later.
    expect(countsAfterExit.active).toBe(0);
    expect(countsAfterExit.failed).toBe(0);
    expect(effects.awardedOnce).toBe(userIds.length);
    expect(effects.notifiedOnce).toBe(userIds.length);
    expect(effects.marksTwiceOrMore).toBe(0);
    expect(finalCounts.failed).toBe(0);
    expect(w1.errorLines()).toEqual([]);
  });

  it('H3 long: SIGTERM to a worker while it sends a mail to an SMTP server that does not answer, beside short jobs: the short ones finish, the mail job is left locked after the drain budget, exit 0 within 10 s; a second worker sends the mail again once: one mail sent, each effect once', async () => {
    const w = await world(cleanup);
    const redis = await privateRedis(cleanup);
    const queue = jobQueue(cleanup, redis.url, w.redisPrefix);
    const smtp = await slowSmtp(cleanup);
    const [person] = (await people(w, 1)) as [Awaited<ReturnType<typeof people>>[number]];
    const { rows: users } = await w.deps.db.query<{ email: string }>(
      'SELECT email FROM users WHERE id = $1',
      [person.userId],
    );
    const email = (users[0] as { email: string }).email;
    const LOCK_MS = 3000;
    const worker = (name: string) =>
      startApp(cleanup, {
        name,
        role: 'worker',
        databaseUrl: w.databaseUrl,
        redisUrl: redis.url,
        redisPrefix: w.redisPrefix,
        // JOBS_DRAIN_MS is left at its default (5 s): the production budget under SHUTDOWN_TIMEOUT_MS.
        env: {
          JOBS_CONCURRENCY: '4',
          OUTBOX_SWEEP_MS: '200',
          JOBS_LOCK_MS: String(LOCK_MS),
          SMTP_URL: smtp.url,
        },
      });
    const mailsSent = () => smtp.sent.filter((m) => m.to.includes(email)).length;

    const w1 = await worker('worker-1');
    children.push(w1);
    await firstRollover(queue);
    // A password-reset mail through the outbox, as the app writes it, due first; then short jobs.
    const { rows: mailRows } = await w.deps.db.query<{ id: string }>(
      `INSERT INTO outbox (id, job_name, payload, available_at, created_at)
       VALUES (gen_random_uuid(), 'accounts.send_mail',
               jsonb_build_object('userId', $1::uuid, 'purpose', 'reset_password', 'requestId', gen_random_uuid()),
               now() - interval '1 second', now())
       RETURNING id`,
      [person.userId],
    );
    const mailJobId = `outbox-${(mailRows[0] as { id: string }).id}`;
    const { userIds } = await seedBadgeJobs(w, 300);
    const awarded = () => firstTaskAwards(w, userIds);
    // The mail's data is at the server, which does not answer; short jobs are running beside it.
    await waitFor(async () => smtp.heldAt() > 0 && (await awarded()) >= 40, 30_000, 20);
    const stateAtSignal = await queue.getJobState(mailJobId);
    const activeAtSignal = await queue.getActiveCount();
    const signalledAt = Date.now();
    const heldForMs = signalledAt - smtp.heldAt();
    w1.proc.kill('SIGTERM');
    const exit = await w1.exited;
    const stateAfterExit = await queue.getJobState(mailJobId);
    const countsAfterExit = await queue.getJobCounts('active', 'waiting', 'completed', 'failed', 'delayed');
    const peek = new Redis(redis.url);
    const lockLeftMs = await peek.pttl(`${w.redisPrefix}:bull:jobs:${mailJobId}:lock`);
    await peek.quit();
    await waitFor(async () => smtp.droppedAt() > 0, 5000, 20).catch(() => {});
    const sentByFirst = mailsSent();
    const doneByFirst = await awarded();
    const drainWarnings = w1
      .output()
      .split('\n')
      .filter((l) => l.includes('jobs still running after the drain budget'))
      .map((l) => JSON.parse(l) as { left: number; jobs: string[] });

    const w2 = await worker('worker-2');
    children.push(w2);
    const w2At = Date.now();
    await waitFor(async () => mailsSent() >= 1 && (await awarded()) === userIds.length, 60_000, 100);
    const resentAfterMs = (smtp.sent.find((m) => m.to.includes(email))?.at ?? 0) - w2At;
    await waitFor(async () => (await queue.getJobState(mailJobId)) === 'completed', 10_000, 100);
    await waitFor(async () => (await queue.getActiveCount()) === 0, 10_000, 100);
    // Long enough for a second stalled-job check to run it a third time, were it left active.
    await sleep(2 * LOCK_MS);
    const mailJob = await queue.getJob(mailJobId);
    const effects = await badgeEffects(w, userIds);
    const finalCounts = await queue.getJobCounts('active', 'waiting', 'completed', 'failed', 'delayed');
    const mails = mailsSent();
    const sameLink =
      mails > 0 &&
      linkIn(smtp.heldRaw()).href ===
        linkIn((smtp.sent.find((m) => m.to.includes(email)) as { raw: string }).raw).href;

    console.log(
      `H3 long: short jobs ${userIds.length} + 1 mail; SMTP holding the mail for ${heldForMs} ms at SIGTERM; mail job ${stateAtSignal} at SIGTERM, active jobs ${activeAtSignal}; ` +
        `exit ${exit.code} after ${exit.at - signalledAt} ms; drain warning ${JSON.stringify(drainWarnings.map((d) => ({ left: d.left, jobs: d.jobs })))}; ` +
        `after exit: mail job ${stateAfterExit}, lock left ${lockLeftMs} ms, ${JSON.stringify(countsAfterExit)}, SMTP connection dropped ${smtp.droppedAt() ? `${smtp.droppedAt() - signalledAt} ms after SIGTERM` : 'no'}, mails sent ${sentByFirst}, short effects ${doneByFirst}; ` +
        `second worker sent it ${resentAfterMs} ms after starting (started ${mailJob?.attemptsStarted}, stalled ${mailJob?.stalledCounter}, made ${mailJob?.attemptsMade}); SMTP messages received ${smtp.received()}, answered 250 ${smtp.sent.length}, to the user ${mails}, same link ${sameLink}; ` +
        `at the end ${JSON.stringify(finalCounts)}; effects ${JSON.stringify(effects)}`,
    );
    const h3 = { jobs: userIds.length + 1, long_jobs: 1, mails_sent: mails };
    figure('h3.lost', (mails === 0 ? 1 : 0) + effects.notAwarded + effects.notNotified, h3);
    figure(
      'h3.duplicate_effects',
      Math.max(0, mails - 1) + effects.notifiedTwiceOrMore + effects.marksTwiceOrMore,
      h3,
    );
    expect(stateAtSignal).toBe('active');
    expect(exit.code).toBe(0);
    expect(exit.at - signalledAt).toBeLessThan(10_000);
    expect(drainWarnings.map((d) => d.left)).toEqual([1]);
    expect(drainWarnings[0]?.jobs).toEqual(['accounts.send_mail']);
    // Left active and locked in Redis for another worker's stalled-job check; the short ones finished.
    expect(stateAfterExit).toBe('active');
    expect(countsAfterExit.active).toBe(1);
    expect(lockLeftMs).toBeGreaterThan(0);
    expect(countsAfterExit.failed).toBe(0);
    expect(sentByFirst).toBe(0);
    expect(smtp.droppedAt()).toBeGreaterThan(0);
    expect(mails).toBe(1);
    expect(sameLink).toBe(true);
    expect(mailJob?.stalledCounter).toBe(1);
    expect(effects.awardedOnce).toBe(userIds.length);
    expect(effects.notifiedOnce).toBe(userIds.length);
    expect(effects.marksTwiceOrMore).toBe(0);
    expect(finalCounts.failed).toBe(0);
    expect(finalCounts.active).toBe(0);
    expect(w1.errorLines()).toEqual([]);
    expect(w2.errorLines()).toEqual([]);
  });
});

/**
 * Waits for the worker's first `dailies.rollover` (every schedule runs once at start). It walks every
 * user whose day has ended, which the badge users would be: over hundreds of them it is a job of
 * several seconds, near the drain budget on a loaded machine. Seeding them after it keeps the H3
 * tests to the jobs they are about.
 */
async function firstRollover(queue: ReturnType<typeof jobQueue>) {
  await waitFor(
    async () => (await queue.getCompleted()).some((j) => j.name === 'dailies.rollover'),
    30_000,
    100,
  );
}

/** POST /v1/tasks whose body is still arriving until `finish()`. */
function slowCreate(base: string, token: string, title: string) {
  let finish = () => {};
  const done = new Promise<{ title: string; outcome: Outcome }>((resolve) => {
    const startedAt = Date.now();
    const url = new URL('/v1/tasks', base);
    const end = (o: Partial<Outcome>) =>
      resolve({
        title,
        outcome: {
          method: 'POST',
          path: '/v1/tasks',
          startedAt,
          endedAt: Date.now(),
          ms: Date.now() - startedAt,
          ...o,
        },
      });
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        method: 'POST',
        path: url.pathname,
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': 'application/json',
          'transfer-encoding': 'chunked',
          connection: 'close',
        },
      },
      (res) => {
        let body = '';
        res.on('data', (d) => {
          body += d;
        });
        res.on('end', () => end({ status: res.statusCode as number, body }));
      },
    );
    req.on('error', (e) => end({ error: (e as NodeJS.ErrnoException).code ?? e.message }));
    req.write('{"title":');
    finish = () => req.end(`${JSON.stringify(title)}}`);
  });
  return { finish: () => finish(), done };
}
