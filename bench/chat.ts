// The chat scenarios of `npm run bench` (issue #11), as Measures the runner times, repeats and pairs
// with their baselines. Real socket.io clients over WebSocket, in a worker thread (bench/chat-clients.ts),
// against the app child the runner started (PostgreSQL + the Redis streams adapter), an app child with
// the in-memory adapter, and a bare socket.io server of the same shape (bench/baselines/sio.ts).
//
// The shape everywhere: 100 conversations of 10 members, one socket per member; a send is acked to its
// sender and delivered to the other 9. Sockets stay connected between runs; a run counts only its own
// sends and waits for their acks and deliveries before it returns. The idle-socket RSS figures take an
// app process of their own for each run.
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { uuidv7 } from 'uuidv7';
import type { Deps } from '../src/deps.js';
import type { Db, Queryable } from '../src/lib/db.js';
import { makeChatService } from '../src/modules/chat/chat.service.js';
import type { Realtime } from '../src/realtime/port.js';
import type {
  Command,
  FleetSpec,
  IdleResult,
  LoadPlan,
  LoadResult,
  LoadShape,
  Reply,
} from './chat-clients.js';
import type { ChatContext, Child, Measure, Measurement } from './types.js';

const CONVERSATIONS = 100;
const MEMBERS = 10;
/** Offered in total by chat.rate and mixed: one send a second per socket. */
const RATE = Number(process.env.BENCH_CHAT_RATE ?? 1000);
/**
 * Sends each conversation keeps in flight in the closed loops (200 in all): enough to keep the app's
 * pool busy, and few enough that none waits past its 2 s checkout timeout for a connection.
 */
const WINDOW = Number(process.env.BENCH_CHAT_WINDOW ?? 2);
/** The app's per-user connection cap (src/realtime/server.ts). */
const MAX_CONNECTIONS_PER_USER = 20;
/** Lets the app finish what a burst of handshakes allocated before its RSS is read. */
const RSS_SETTLE_MS = 1000;

/** Counts the statements run through a Db, inside transactions and out, so a call's cost can be read. */
function countingDb(db: Db) {
  const counts = { statements: 0, transactions: 0 };
  const counted = (q: Queryable): Queryable => ({
    query: (sql, params) => {
      counts.statements++;
      return q.query(sql, params);
    },
    exec: (sql) => {
      counts.statements++;
      return q.exec(sql);
    },
    afterCommit: (fn) => q.afterCommit(fn),
    beforeCommit: (fn) => q.beforeCommit(fn),
  });
  const wrapped: Db = {
    kind: db.kind,
    ...counted(db),
    tx: (fn) => {
      counts.transactions++;
      return db.tx((q) => fn(counted(q)));
    },
    ping: () => db.ping(),
    close: () => db.close(),
  };
  return { db: wrapped, counts };
}

interface Person {
  userId: string;
  sessionId: string;
  conversationId: string;
}

/**
 * 1,000 verified users with a session each, in 100 private group tasks of 10 whose conversations they
 * are members of: the rows groups.create and groups.join would leave, written in one transaction of
 * set-based inserts (the services take a transaction per member, seconds for a thousand).
 */
async function seed(deps: Deps): Promise<{ people: Person[]; conversationIds: string[] }> {
  const tag = randomBytes(3).toString('hex');
  const now = deps.clock.now();
  const groupIds = Array.from({ length: CONVERSATIONS }, () => uuidv7());
  const conversationIds = Array.from({ length: CONVERSATIONS }, () => uuidv7());
  const people = Array.from({ length: CONVERSATIONS * MEMBERS }, (_, i) => ({
    userId: uuidv7(),
    sessionId: uuidv7(),
    conversationId: conversationIds[Math.floor(i / MEMBERS)] as string,
  }));
  const userIds = people.map((p) => p.userId);
  const owners = groupIds.map((_, g) => userIds[g * MEMBERS] as string);
  const day = 86400_000;
  await deps.db.tx(async (q) => {
    await q.query(
      `INSERT INTO users (id, username, email, email_verified_at, password_hash, name, created_at, updated_at)
       SELECT id, 'chat_' || $2 || '_' || n, 'chat_' || $2 || '_' || n || '@example.test', $3, '!', 'Bench', $3, $3
         FROM unnest($1::uuid[]) WITH ORDINALITY AS t(id, n)`,
      [userIds, tag, now],
    );
    await q.query(
      `INSERT INTO day_settings (user_id, effective_on, timezone, day_start_hour)
       SELECT id, ($2::timestamptz AT TIME ZONE 'UTC')::date, 'UTC', 0 FROM unnest($1::uuid[]) AS t(id)`,
      [userIds, now],
    );
    await q.query(
      `INSERT INTO sessions (id, user_id, user_agent, ip, created_at, last_used_at, expires_at)
       SELECT s, u, 'bench', '127.0.0.1', $3, $3, $4 FROM unnest($1::uuid[], $2::uuid[]) AS t(s, u)`,
      [people.map((p) => p.sessionId), userIds, now, new Date(now.getTime() + day)],
    );
    // Due in a month: no close job is scheduled (none is needed within a bench).
    await q.query(
      `INSERT INTO group_tasks (id, owner_id, title, visibility, due_at, created_at, updated_at)
       SELECT g, o, 'Bench chat ' || n, 'private', $3, $4, $4
         FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS t(g, o, n)`,
      [groupIds, owners, new Date(now.getTime() + 30 * day), now],
    );
    await q.query(
      `INSERT INTO conversations (id, kind, group_task_id, created_at, updated_at)
       SELECT c, 'group', g, $3, $3 FROM unnest($1::uuid[], $2::uuid[]) AS t(c, g)`,
      [conversationIds, groupIds, now],
    );
    const groupOf = people.map((_, i) => groupIds[Math.floor(i / MEMBERS)] as string);
    await q.query(
      `INSERT INTO group_members (group_task_id, user_id, role, joined_at)
       SELECT g, u, CASE WHEN u = ANY($3::uuid[]) THEN 'owner' ELSE 'member' END, $4
         FROM unnest($1::uuid[], $2::uuid[]) AS t(g, u)`,
      [groupOf, userIds, owners, now],
    );
    await q.query(
      `INSERT INTO conversation_members (conversation_id, user_id, joined_at)
       SELECT c, u, $3 FROM unnest($1::uuid[], $2::uuid[]) AS t(c, u)`,
      [people.map((p) => p.conversationId), userIds, now],
    );
  });
  return { people, conversationIds };
}

/** Statements one chat.send runs in its transaction (the least of a few), through the app's own code. */
async function statementsPerSend(deps: Deps, person: Person) {
  const { db, counts } = countingDb(deps.db);
  const silent: Realtime = {
    toUser: () => {},
    toRoom: () => {},
    toUsers: () => {},
    endSession: () => {},
    endUser: () => {},
    onAccessEnded: () => {},
  };
  const chat = makeChatService({
    ...deps,
    db,
    realtime: silent,
    publicUrl: deps.config.PUBLIC_URL,
    rateLimitMultiplier: 0,
  });
  let least = Number.POSITIVE_INFINITY;
  for (let i = 0; i < 3; i++) {
    const before = counts.statements;
    await chat.send(person.userId, person.conversationId, {
      clientMessageId: `count.${randomBytes(4).toString('hex')}`,
      body: 'counting statements',
    });
    least = Math.min(least, counts.statements - before);
  }
  return least;
}

/** The client worker, answering one command at a time per call. */
function startClients() {
  // The worker runs TypeScript through tsx, as this process does.
  const loader = JSON.stringify(import.meta.resolve('tsx/esm/api'));
  const entry = JSON.stringify(new URL('./chat-clients.ts', import.meta.url).href);
  const worker = new Worker(
    `import(${loader}).then((tsx) => tsx.tsImport(${entry}, ${JSON.stringify(import.meta.url)}))`,
    { eval: true },
  );
  const waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let ended: Error | undefined;
  const endAll = (err: Error) => {
    ended ??= err;
    for (const w of waiting.values()) w.reject(err);
    waiting.clear();
  };
  worker.on('message', (reply: Reply) => {
    const w = waiting.get(reply.id);
    waiting.delete(reply.id);
    if (reply.ok) w?.resolve(reply.result);
    else w?.reject(new Error(`chat clients: ${reply.error}`));
  });
  worker.on('error', endAll);
  worker.on('exit', (code) => endAll(new Error(`chat clients exited (${code})`)));
  let nextId = 0;
  return {
    call<T>(command: Command): Promise<T> {
      if (ended) return Promise.reject(ended);
      const id = nextId++;
      return new Promise<T>((resolve, reject) => {
        waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
        worker.postMessage({ id, command });
      });
    },
    terminate: () => worker.terminate(),
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const round = (n: number, digits = 2) => Number(n.toFixed(digits));
const DAY = String(86400_000);

/**
 * Waits for an app without Redis to finish the jobs it starts with (every repeating job runs once at
 * start: rollover, prunes, nudges), which it queues in the database's local_jobs; only such apps use it.
 */
async function startupJobsDone(db: Db, timeoutMs = 120_000) {
  const until = performance.now() + timeoutMs;
  // The first repeating jobs are written just after the app says it is ready.
  await sleep(500);
  while (performance.now() < until) {
    const { rows } = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM local_jobs
        WHERE state = 'active' OR (state = 'waiting' AND run_at <= now())`,
    );
    if (rows[0]?.n === 0) return;
    await sleep(250);
  }
  throw new Error(`the in-memory app's start-up jobs did not finish within ${timeoutMs / 1000} s`);
}

/** The app's event-loop delay p99 since the last scrape (prom-client resets its histogram on each). */
async function eventLoopP99Ms(appUrl: string): Promise<number | undefined> {
  const res = await fetch(`${appUrl}/metrics`).catch(() => undefined);
  if (!res?.ok) return undefined;
  const match = /^nodejs_eventloop_lag_p99_seconds(?:\{[^}]*\})? (\S+)$/m.exec(await res.text());
  return match ? Number(match[1]) * 1000 : undefined;
}

interface Target {
  key: string;
  kind: FleetSpec['kind'];
  child: Child;
  /** Sockets (re)connected just before this run: after the first, a sign of dropped connections. */
  connected: number;
}

export async function chatMeasures(
  ctx: ChatContext,
): Promise<{ measures: Measure[]; close(): Promise<void> }> {
  const { deps } = ctx;
  const { people, conversationIds } = await seed(deps);
  const perSend = await statementsPerSend(deps, people[0] as Person);
  const clients = startClients();
  const tokens = () =>
    new Map(
      people.map((p) => [p.userId, deps.tokens.sign({ userId: p.userId, sessionId: p.sessionId }).token]),
    );

  // Children of our own, started on first use and kept for the later runs.
  const children: { memory?: Promise<Child>; sio?: Promise<Child> } = {};
  const memoryApp = () => {
    children.memory ??= quietMemoryApp();
    return children.memory;
  };
  const sio = () => {
    children.sio ??= ctx.startBaseline('bench/baselines/sio.ts');
    return children.sio;
  };

  /** The target with every socket of its fleet connected (fresh tokens for any that dropped). */
  async function ready(key: 'app' | 'memory' | 'sio'): Promise<Target> {
    const child = key === 'app' ? ctx.app : key === 'memory' ? await memoryApp() : await sio();
    const kind = key === 'sio' ? 'sio' : 'app';
    const signed = kind === 'app' ? tokens() : undefined;
    const members = people.map((p) => ({
      userId: p.userId,
      conversationId: p.conversationId,
      ...(signed ? { token: signed.get(p.userId) as string } : {}),
    }));
    const { connected } = await clients.call<{ connected: number }>({
      op: 'fleet',
      spec: { key, url: child.url, kind, members },
    });
    return { key, kind, child, connected };
  }

  /** Messages stored in the bench's conversations so far (each send takes the next last_seq). */
  async function stored(): Promise<number> {
    const { rows } = await deps.db.query<{ n: number }>(
      'SELECT coalesce(sum(last_seq), 0)::bigint AS n FROM conversations WHERE id = ANY($1::uuid[])',
      [conversationIds],
    );
    return rows[0]?.n ?? 0;
  }

  async function measureLoad(target: Target, plan: LoadPlan): Promise<Measurement> {
    const began = performance.now();
    const before = target.kind === 'app' ? await stored() : 0;
    const cpu = target.child.cpuMs();
    const r = await clients.call<LoadResult>({ op: 'load', plan });
    const serverCpuMs = target.child.cpuMs() - cpu;
    // The baseline stores nothing: there, an ok ack is the message kept.
    const kept = target.kind === 'app' ? (await stored()) - before : r.acked;
    const value = (plan.mode === 'rate' ? kept : r.ackedInTime) / plan.seconds;
    const errors = Object.values(r.errors).reduce((a, b) => a + b, 0);
    return {
      value: round(value, 1),
      unit: 'msg/s',
      p50: round(r.delivery.p50),
      p99: round(r.delivery.p99),
      count: kept,
      errors,
      lost: Math.max(0, r.offered - kept) + r.missing,
      serverCpuMs,
      extra: {
        ackP50: round(r.ack.p50),
        ackP99: round(r.ack.p99),
        offered: r.offered,
        stored: kept,
        deliveries: r.delivery.n,
        expectedDeliveries: r.expected,
        missingDeliveries: r.missing,
        ...(r.stray ? { stray: r.stray } : {}),
        ...(errors ? { errorCodes: JSON.stringify(r.errors) } : {}),
        ...(plan.mode === 'rate'
          ? { clientEmitLagP99: round(r.emitLag.p99) }
          : { inFlight: plan.window * CONVERSATIONS }),
        connectedBefore: target.connected,
        clientCpuMs: Math.round(r.clientCpuMs),
        clientBusy: round(r.clientBusy),
        drainMs: Math.round(r.drainMs),
        wallS: round((performance.now() - began) / 1000, 1),
      },
    };
  }

  const rate = (seconds: number): LoadShape => ({ mode: 'rate', seconds, rate: RATE });
  const closed = (seconds: number): LoadShape => ({ mode: 'closed', seconds, window: WINDOW });

  /** A measure of one load shape on one target; warming runs the same load, unrecorded. */
  function loadMeasure(
    name: string,
    key: 'app' | 'memory' | 'sio',
    shape: (seconds: number) => LoadShape,
    extra: Record<string, number | string> = {},
  ): Measure {
    const once = async (seconds: number) => {
      const target = await ready(key);
      return measureLoad(target, { ...shape(seconds), key });
    };
    return {
      name,
      warm: async (seconds) => void (await once(seconds)),
      run: async (seconds) => {
        const m = await once(seconds);
        return { ...m, extra: { ...m.extra, ...extra } };
      },
    };
  }

  const background = ctx.backgroundLoad;
  const mixed: Measure[] = background
    ? [
        {
          name: 'mixed',
          run: async (seconds) => {
            const target = await ready('app');
            await eventLoopP99Ms(ctx.app.url);
            const [chat, tasks] = await Promise.all([
              measureLoad(target, { ...rate(seconds), key: 'app' }),
              background(seconds),
            ]);
            const lagP99 = await eventLoopP99Ms(ctx.app.url);
            return {
              ...chat,
              extra: {
                ...chat.extra,
                backgroundReqPerS: tasks.value,
                backgroundP99: tasks.p99,
                backgroundErrors: tasks.errors,
                ...(lagP99 !== undefined ? { appEventLoopP99Ms: round(lagP99) } : {}),
                // The app's CPU here is the chat's and the background's together.
                serverCpuIncludes: 'chat + tasks.list',
              },
            };
          },
        },
      ]
    : [];

  /** An app without Redis, its repeating jobs a day out and those it starts with done. */
  async function quietMemoryApp(): Promise<Child> {
    // Without Redis the app must run its own worker (ROLE=serve): on the shared database its outbox
    // sweeper would take rows the runner's app is about to relay, and its repeating jobs would run
    // beside other measures.
    const child = await ctx.startApp({ REDIS_URL: undefined, OUTBOX_SWEEP_MS: DAY, ROLLOVER_EVERY_MS: DAY });
    try {
      await startupJobsDone(deps.db);
    } catch (err) {
      await child.stop();
      throw err;
    }
    return child;
  }

  /**
   * RSS growth per idle authenticated socket, in an app process of its own started for the run: in one
   * that held sockets before, freed heap is reused and the growth reads near zero (or negative, while
   * it shrinks). It is the in-memory-adapter app: the Redis one on the same prefix would join the
   * runner's app's socket.io cluster and its job queues.
   */
  function rssMeasure(n: number): Measure {
    if (Math.ceil(n / people.length) > MAX_CONNECTIONS_PER_USER)
      throw new Error(`${n} sockets exceed the per-user cap`);
    return {
      name: `rss.idle_socket.${n}`,
      run: async () => {
        const signed = [...tokens().values()];
        const socketTokens = Array.from({ length: n }, (_, i) => signed[i % signed.length] as string);
        const child = await quietMemoryApp();
        try {
          await sleep(RSS_SETTLE_MS);
          const before = child.rssBytes();
          const cpu = child.cpuMs();
          const began = performance.now();
          const r = await clients.call<IdleResult>({
            op: 'idle',
            key: 'idle',
            url: child.url,
            tokens: socketTokens,
          });
          const connectS = (performance.now() - began) / 1000;
          const serverCpuMs = child.cpuMs() - cpu;
          await sleep(RSS_SETTLE_MS);
          const after = child.rssBytes();
          return {
            value: Math.round((after - before) / Math.max(1, r.connected)),
            unit: 'bytes/socket',
            p50: round(r.connect.p50),
            p99: round(r.connect.p99),
            count: r.connected,
            errors: r.failed,
            // Of the handshakes: the app's CPU for them, and how many it took a second.
            serverCpuMs,
            extra: {
              rssBeforeMB: round(before / 2 ** 20, 1),
              rssAfterMB: round(after / 2 ** 20, 1),
              handshakesPerS: Math.round(r.connected / connectS),
            },
          };
        } finally {
          await clients.call({ op: 'close', key: 'idle' });
          await child.stop();
        }
      },
    };
  }

  const measures: Measure[] = [
    loadMeasure('chat.rate', 'app', rate, { statementsPerSend: perSend }),
    loadMeasure('B-sio.rate', 'sio', rate),
    // Also the `chat.saturation.redis` row: the runner's app is the one on the Redis streams adapter.
    loadMeasure('chat.saturation', 'app', closed),
    loadMeasure('B-sio.closed', 'sio', closed),
    loadMeasure('chat.saturation.memory', 'memory', closed),
    ...mixed,
    rssMeasure(1000),
    rssMeasure(5000),
  ];

  return {
    measures,
    async close() {
      await clients.call({ op: 'close', key: 'idle' }).catch(() => {});
      for (const key of ['app', 'memory', 'sio']) await clients.call({ op: 'close', key }).catch(() => {});
      await clients.terminate();
      const started = await Promise.allSettled([children.memory, children.sio]);
      for (const s of started) if (s.status === 'fulfilled' && s.value) await s.value.stop();
    },
  };
}
