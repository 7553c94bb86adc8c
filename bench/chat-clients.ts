// The chat scenarios' clients, in a worker thread of their own: decoding tens of thousands of frames a
// second must not share the runner's event loop (or autocannon's, during `mixed`). The worker lives
// as long as the chat measures: fleets of sockets stay connected between runs, and each run is a
// command from the main thread answered with its counts and percentiles. Every time here is this
// thread's performance.now(), so a send and its deliveries share one clock.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { parentPort } from 'node:worker_threads';
import { io as connect, type Socket } from 'socket.io-client';
import { type Percentiles, stats } from './stats.js';

/** One socket per member of a conversation; the app's members carry a token, the baseline's a room. */
export interface FleetSpec {
  key: string;
  url: string;
  kind: 'app' | 'sio';
  members: { userId: string; conversationId: string; token?: string }[];
}

/** Open loop at `rate` sends a second in all, or closed with `window` sends in flight per conversation. */
export type LoadShape =
  | { mode: 'rate'; seconds: number; rate: number }
  | { mode: 'closed'; seconds: number; window: number };
export type LoadPlan = LoadShape & { key: string };

export interface LoadResult {
  /** Sends emitted while the run lasted. */
  offered: number;
  /** Sends acked ok, whenever the ack came. */
  acked: number;
  /** Sends acked ok before the run's end (the closed loop's throughput). */
  ackedInTime: number;
  /** Error acks by code; ack timeouts and sends never answered too. */
  errors: Record<string, number>;
  ack: Percentiles;
  delivery: Percentiles;
  /** Deliveries to the other members expected of the sends not refused, and those that never came. */
  expected: number;
  missing: number;
  /** Deliveries of messages this run did not send (a late one from an earlier run): not counted. */
  stray: number;
  /** Open loop: how late the client emitted against its schedule (its own lag, not the server's). */
  emitLag: Percentiles;
  /** CPU this thread used from the first send to the end of the drain, in ms. */
  clientCpuMs: number;
  /** Of the run and its drain, the share this thread was busy (wall-clock: time the OS gave others counts too). */
  clientBusy: number;
  /**
   * Milliseconds from the end of the run until the last ack and delivery came (or the drain gave up);
   * in the closed loop, the sends still in flight at the end included.
   */
  drainMs: number;
}

export interface IdleResult {
  connected: number;
  failed: number;
  connect: Percentiles;
}

export type Command =
  | { op: 'fleet'; spec: FleetSpec }
  | { op: 'load'; plan: LoadPlan }
  | { op: 'idle'; key: string; url: string; tokens: string[] }
  | { op: 'close'; key: string };

export type Reply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string };

/** What the app and the baseline call the same things. */
const EVENTS = {
  app: { send: 'chat:send', message: 'chat:message', ready: 'system:welcome' },
  sio: { send: 'send', message: 'message', ready: 'connect' },
} as const;

/**
 * The app's flood guard (src/realtime/handlers.ts) answers a socket's 31st event within a second with
 * rate_limited: every socket here leaves at least this long between two sends, so at most 25 a second.
 */
const MIN_GAP_MS = 40;
const ACK_TIMEOUT_MS = 10_000;
/** How long a run waits after its last send for acks and deliveries still on their way. */
const DRAIN_MS = 10_000;
/** USER_HZ: 100 on every Linux that matters. */
const TICKS_PER_SECOND = 100;
const CONNECT_TIMEOUT_MS = 20_000;
/** Handshakes in flight at once: each is a session lookup on the app. */
const CONNECTING = 50;
const BODY = 'bench message: the quick brown fox jumps over the lazy dog, again and again and again';

interface Pending {
  t0: number;
  left: number;
}

/** The counters of one load run; late callbacks of an earlier run hold their own and touch nothing here. */
interface Run {
  pending: Map<string, Pending>;
  ack: number[];
  delivery: number[];
  stray: number;
}

interface Member {
  userId: string;
  conversationId: string;
  socket: Socket | undefined;
  /** Members of the same conversation, this one excluded: who must hear each of its sends. */
  peers: number;
  nextAt: number;
}

interface Fleet {
  spec: FleetSpec;
  members: Member[];
}

const fleets = new Map<string, Fleet>();
const idle = new Map<string, Socket[]>();
let current: Run | undefined;
// Ids unique across runs, fleets and bench processes sharing a database, and short to look up.
const idPrefix = randomBytes(4).toString('hex');
let idCounter = 0;

/** This thread's own CPU (the process's would count the runner too), from Linux's per-thread stat. */
function threadCpuMs(): number {
  try {
    const stat = readFileSync('/proc/thread-self/stat', 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SECOND;
  } catch {
    return Number.NaN;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function open(url: string, kind: FleetSpec['kind'], auth: Record<string, string>): Promise<Socket> {
  const socket = connect(url, {
    transports: ['websocket'],
    reconnection: false,
    forceNew: true,
    timeout: CONNECT_TIMEOUT_MS,
    auth,
  });
  return new Promise((resolve, reject) => {
    socket.once(EVENTS[kind].ready, () => resolve(socket));
    socket.once('connect_error', (err: Error) => {
      socket.close();
      reject(err);
    });
  });
}

async function inBatches<T>(items: T[], each: (item: T) => Promise<void>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(CONNECTING, items.length) }, async () => {
      while (next < items.length) await each(items[next++] as T);
    }),
  );
}

/**
 * Connects every member whose socket is missing or closed (a token may have expired); the rest stay.
 * Answers how many it had to connect.
 */
async function ensureFleet(spec: FleetSpec) {
  let fleet = fleets.get(spec.key);
  if (!fleet) {
    const size = new Map<string, number>();
    for (const m of spec.members) size.set(m.conversationId, (size.get(m.conversationId) ?? 0) + 1);
    fleet = {
      spec,
      members: spec.members.map((m) => ({
        userId: m.userId,
        conversationId: m.conversationId,
        socket: undefined,
        peers: (size.get(m.conversationId) ?? 1) - 1,
        nextAt: 0,
      })),
    };
    fleets.set(spec.key, fleet);
  }
  const tokens = new Map(spec.members.map((m) => [m.userId, m.token]));
  const down = fleet.members.filter((m) => !m.socket?.connected);
  const { kind, url } = spec;
  await inBatches(down, async (m) => {
    m.socket?.close();
    const socket = await open(
      url,
      kind,
      kind === 'app' ? { token: tokens.get(m.userId) ?? '' } : { userId: m.userId, room: m.conversationId },
    );
    socket.on(EVENTS[kind].message, (msg: { senderId: string; clientMessageId: string }) => {
      // The sender's own devices hear its message too; that is not a delivery.
      if (msg.senderId === m.userId || !current) return;
      const p = current.pending.get(msg.clientMessageId);
      if (!p) {
        current.stray++;
        return;
      }
      current.delivery.push(performance.now() - p.t0);
      if (--p.left === 0) current.pending.delete(msg.clientMessageId);
    });
    m.socket = socket;
  });
  return { connected: down.length };
}

type AckReply = { ok: true } | { ok: false; error?: { code?: string } };

async function load(plan: LoadPlan): Promise<LoadResult> {
  const fleet = fleets.get(plan.key);
  if (!fleet) throw new Error(`no fleet ${plan.key}`);
  const { members } = fleet;
  if (members.some((m) => !m.socket?.connected)) throw new Error(`fleet ${plan.key} has closed sockets`);
  const sendEvent = EVENTS[fleet.spec.kind].send;
  const run: Run = { pending: new Map(), ack: [], delivery: [], stray: 0 };
  current = run;
  const errors: Record<string, number> = {};
  const fail = (code: string) => {
    errors[code] = (errors[code] ?? 0) + 1;
  };
  let offered = 0;
  let acked = 0;
  let ackedInTime = 0;
  let answered = 0;
  const emitLag: number[] = [];
  const elu = performance.eventLoopUtilization();
  const cpu = threadCpuMs();
  const start = performance.now();
  const deadline = start + plan.seconds * 1000;

  const send = (m: Member, then?: () => void) => {
    const clientMessageId = `${idPrefix}.${(idCounter++).toString(36)}`;
    const t0 = performance.now();
    m.nextAt = t0 + MIN_GAP_MS;
    run.pending.set(clientMessageId, { t0, left: m.peers });
    offered++;
    (m.socket as Socket)
      .timeout(ACK_TIMEOUT_MS)
      .emit(
        sendEvent,
        { conversationId: m.conversationId, clientMessageId, body: BODY },
        (err: Error | null, reply: AckReply) => {
          const at = performance.now();
          answered++;
          if (err) fail('ack_timeout');
          else if (reply.ok) {
            acked++;
            if (at <= deadline) ackedInTime++;
            run.ack.push(at - t0);
          } else {
            fail(reply.error?.code ?? 'error');
            run.pending.delete(clientMessageId);
          }
          then?.();
        },
      );
  };

  if (plan.mode === 'rate') {
    // Senders in turn across conversations (member 0 of each, then member 1 of each, ...), so every
    // socket sends at rate / sockets, evenly spaced; open loop: nothing waits for an ack.
    const conversations = [...new Set(members.map((m) => m.conversationId))];
    const byConversation = conversations.map((c) => members.filter((m) => m.conversationId === c));
    const order: Member[] = [];
    for (let i = 0; order.length < members.length; i++)
      for (const list of byConversation) if (list[i]) order.push(list[i] as Member);
    if ((plan.rate / order.length) * MIN_GAP_MS > 1000)
      throw new Error(`${plan.rate}/s over ${order.length} sockets would trip the flood guard`);
    const interval = 1000 / plan.rate;
    for (let n = 0; ; ) {
      const now = performance.now();
      if (now >= deadline) break;
      for (; start + n * interval <= now; n++) {
        emitLag.push(now - (start + n * interval));
        send(order[n % order.length] as Member);
      }
      await sleep(Math.max(0, start + n * interval - performance.now()));
    }
  } else {
    // Closed loop: each conversation keeps `window` sends in flight until the end, its members taking
    // turns (so no socket comes near the flood guard however fast the server answers).
    const byConversation = new Map<string, Member[]>();
    for (const m of members)
      byConversation.set(m.conversationId, [...(byConversation.get(m.conversationId) ?? []), m]);
    await new Promise<void>((resolve) => {
      let lanes = byConversation.size * plan.window;
      const lane = (list: Member[], turn: number) => {
        const now = performance.now();
        if (now >= deadline) {
          if (--lanes === 0) resolve();
          return;
        }
        const m = list[turn % list.length] as Member;
        if (m.nextAt > now) setTimeout(() => lane(list, turn), m.nextAt - now);
        else send(m, () => lane(list, turn + 1));
      };
      for (const list of byConversation.values()) for (let w = 0; w < plan.window; w++) lane(list, w);
    });
  }
  while ((answered < offered || run.pending.size > 0) && performance.now() - deadline < DRAIN_MS)
    await sleep(5);
  const drainMs = performance.now() - deadline;
  const busy = performance.eventLoopUtilization(elu).utilization;
  const clientCpuMs = threadCpuMs() - cpu;
  current = undefined;
  if (answered < offered) errors.no_ack = offered - answered;
  let missing = 0;
  for (const p of run.pending.values()) missing += p.left;
  const refused = Object.entries(errors)
    .filter(([code]) => code !== 'ack_timeout' && code !== 'no_ack')
    .reduce((n, [, k]) => n + k, 0);
  const perSend = members.length ? members.reduce((n, m) => n + m.peers, 0) / members.length : 0;
  return {
    offered,
    acked,
    ackedInTime,
    errors,
    ack: stats(run.ack),
    delivery: stats(run.delivery),
    expected: Math.round((offered - refused) * perSend),
    missing,
    stray: run.stray,
    emitLag: stats(emitLag),
    clientCpuMs,
    clientBusy: busy,
    drainMs,
  };
}

/** Idle authenticated sockets (for the app's memory per connection), all welcomed before this returns. */
async function connectIdle(key: string, url: string, tokens: string[]): Promise<IdleResult> {
  const sockets: Socket[] = [];
  idle.set(key, sockets);
  const times: number[] = [];
  let failed = 0;
  await inBatches(tokens, async (token) => {
    const t0 = performance.now();
    try {
      sockets.push(await open(url, 'app', { token }));
      times.push(performance.now() - t0);
    } catch {
      failed++;
    }
  });
  return { connected: sockets.length, failed, connect: stats(times) };
}

async function close(key: string) {
  const sockets = [
    ...(idle.get(key) ?? []),
    ...(fleets.get(key)?.members.flatMap((m) => (m.socket ? [m.socket] : [])) ?? []),
  ];
  idle.delete(key);
  fleets.delete(key);
  for (const s of sockets) s.close();
  return { closed: sockets.length };
}

function handle(command: Command): Promise<unknown> {
  switch (command.op) {
    case 'fleet':
      return ensureFleet(command.spec);
    case 'load':
      return load(command.plan);
    case 'idle':
      return connectIdle(command.key, command.url, command.tokens);
    case 'close':
      return close(command.key);
  }
}

parentPort?.on('message', ({ id, command }: { id: number; command: Command }) => {
  handle(command).then(
    (result) => parentPort?.postMessage({ id, ok: true, result } satisfies Reply),
    (err: unknown) =>
      parentPort?.postMessage({
        id,
        ok: false,
        error: err instanceof Error ? (err.stack ?? err.message) : String(err),
      } satisfies Reply),
  );
});
