import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { connect, type Socket as NetSocket } from 'node:net';
import { call } from '../faults/kit.js';

// What the resource-limit suites (D6–D8) observe from outside the app's child process: its TCP
// connections as the kernel sees them, its /metrics, its /proc entries, and hostile raw clients that
// no well-behaved library would let us write (a header a byte at a time, a WebSocket that never joins).

// ---------------------------------------------------------------------------------------------
// The kernel's view. A connection counts as cut when the server's end leaves ESTABLISHED (it sent a
// FIN or a RST): that is true even for a client that stopped reading and so never sees the close.

interface TcpEntry {
  localPort: number;
  remotePort: number;
  state: string;
}

function tcpTable(): TcpEntry[] {
  const out: TcpEntry[] = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      const local = cols[1];
      const remote = cols[2];
      const state = cols[3];
      if (!local || !remote || !state) continue;
      out.push({
        localPort: Number.parseInt(local.slice(local.lastIndexOf(':') + 1), 16),
        remotePort: Number.parseInt(remote.slice(remote.lastIndexOf(':') + 1), 16),
        state,
      });
    }
  }
  return out;
}

const ESTABLISHED = '01';

/** Connections the server on `port` holds open (its side ESTABLISHED). */
export function serverConnections(port: number): number {
  return tcpTable().filter((e) => e.localPort === port && e.state === ESTABLISHED).length;
}

/** Client ports whose connection to the server on `port` is still ESTABLISHED on the server's side. */
export function openServerSides(port: number): Set<number> {
  return new Set(
    tcpTable()
      .filter((e) => e.localPort === port && e.state === ESTABLISHED)
      .map((e) => e.remotePort),
  );
}

// ---------------------------------------------------------------------------------------------
// The child process: /metrics (prom-client default metrics) and /proc.

export async function scrape(base: string): Promise<Map<string, number>> {
  const res = await call(base, 'GET', '/metrics', { timeoutMs: 10_000 });
  if (res.status !== 200 || !res.body) throw new Error(`/metrics answered ${res.status ?? res.error}`);
  const values = new Map<string, number>();
  for (const line of res.body.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const [, name, labels, raw] = match as unknown as [string, string, string | undefined, string];
    const value = Number(raw);
    if (!Number.isFinite(value)) continue;
    // Labelled series are kept whole and summed under the bare name (e.g. handles of every type).
    if (labels) values.set(`${name}${labels}`, value);
    values.set(name, (labels ? (values.get(name) ?? 0) : 0) + value);
  }
  return values;
}

export function procOf(pid: number): { rssBytes: number; fds: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rss = /VmRSS:\s+(\d+)\s+kB/.exec(status);
  return { rssBytes: Number(rss?.[1] ?? 0) * 1024, fds: readdirSync(`/proc/${pid}/fd`).length };
}

// ---------------------------------------------------------------------------------------------
// Hostile raw clients. Each one connects, runs its script, and reports how long the server took to
// cut it (null: still open when the client gave up), plus the HTTP status the server sent, if any.

export interface RawOutcome {
  kind: string;
  /** ms from connect until the server's side of the connection left ESTABLISHED; null = never. */
  cutMs: number | null;
  /** The status line the server sent, if it sent one (e.g. 408 for a request timeout). */
  status?: number;
  /** ms from connect until the server's WebSocket close frame, if one was read. */
  closeFrameMs?: number;
  bytesSent: number;
}

export interface RawClient {
  kind: string;
  socket: NetSocket;
  localPort: number;
  connectedAt: number;
  received: () => Buffer;
  bytesSent: number;
  /** Writes and counts; a write to a socket the server closed is simply dropped. */
  send(data: string | Buffer): void;
  /** Timers the script started; cleared when the client ends. */
  timers: NodeJS.Timeout[];
  closed: boolean;
  /** When a WebSocket close frame arrived: the server gave up on the client (it may still hold the TCP). */
  closeFrameAt?: number;
}

export function rawClient(port: number, kind: string): Promise<RawClient> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let received = Buffer.alloc(0);
    const client: RawClient = {
      kind,
      socket,
      localPort: 0,
      connectedAt: 0,
      received: () => received,
      bytesSent: 0,
      timers: [],
      closed: false,
      send(data) {
        if (client.closed || socket.destroyed) return;
        client.bytesSent += Buffer.byteLength(data);
        socket.write(data);
      },
    };
    socket.on('data', (d: Buffer) => {
      // Only the start matters (status line, first frames): keep memory flat under a long attack.
      if (received.length < 64 * 1024) received = Buffer.concat([received, d]);
      if (!client.closeFrameAt && serverFrames(received).some((f) => f.opcode === 8))
        client.closeFrameAt = Date.now();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      client.closed = true;
      for (const t of client.timers) clearInterval(t);
    });
    socket.once('connect', () => {
      client.localPort = socket.localPort ?? 0;
      client.connectedAt = Date.now();
      resolve(client);
    });
    socket.once('error', reject);
  });
}

/** Sends `data` one byte every `everyMs`, forever (or until the connection is cut). */
export function dribble(client: RawClient, data: string, everyMs: number, then = 'a') {
  let i = 0;
  client.timers.push(
    setInterval(() => {
      client.send(i < data.length ? (data[i] as string) : then);
      i++;
    }, everyMs),
  );
}

export function statusOf(received: Buffer): number | undefined {
  const match = /^HTTP\/1\.1 (\d{3})/.exec(received.subarray(0, 32).toString('latin1'));
  return match ? Number(match[1]) : undefined;
}

/**
 * Watches raw clients from the kernel's side until each is cut or `giveUpMs` passes, then destroys
 * whatever is left. One read of the TCP table per tick serves every client.
 */
export async function watchCuts(
  port: number,
  clients: RawClient[],
  giveUpMs: number,
  everyMs = 100,
): Promise<RawOutcome[]> {
  const cut = new Map<RawClient, number>();
  const deadline = Date.now() + giveUpMs;
  for (;;) {
    const open = openServerSides(port);
    const now = Date.now();
    for (const c of clients) if (!cut.has(c) && !open.has(c.localPort)) cut.set(c, now - c.connectedAt);
    if (cut.size === clients.length || now > deadline) break;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  for (const c of clients) {
    for (const t of c.timers) clearInterval(t);
    c.socket.destroy();
  }
  return clients.map((c) => {
    const status = statusOf(c.received());
    return {
      kind: c.kind,
      cutMs: cut.get(c) ?? null,
      ...(status !== undefined ? { status } : {}),
      ...(c.closeFrameAt ? { closeFrameMs: c.closeFrameAt - c.connectedAt } : {}),
      bytesSent: c.bytesSent,
    };
  });
}

// ---------------------------------------------------------------------------------------------
// Just enough WebSocket (RFC 6455) to misbehave: the upgrade request, masked client frames, and a
// parser for the server's small unmasked frames. Engine.io packets ride in text frames: "0" open,
// "2" ping, "3" pong, "40" socket.io CONNECT, "42" an event.

/** A WebSocket upgrade request for `path` (socket.io's by default) on 127.0.0.1:`port` or `host`. */
export function upgradeRequest(
  port: number,
  path = '/socket.io/?EIO=4&transport=websocket',
  host = '127.0.0.1',
): string {
  return [
    `GET ${path} HTTP/1.1`,
    `Host: ${host}:${port}`,
    'Upgrade: websocket',
    'Connection: Upgrade',
    `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
    'Sec-WebSocket-Version: 13',
    '',
    '',
  ].join('\r\n');
}

export function clientFrame(text: string): Buffer {
  const payload = Buffer.from(text);
  const mask = randomBytes(4);
  const header =
    payload.length < 126
      ? Buffer.from([0x81, 0x80 | payload.length])
      : Buffer.from([0x81, 0x80 | 126, payload.length >> 8, payload.length & 0xff]);
  const masked = Buffer.alloc(payload.length);
  for (let i = 0; i < payload.length; i++) masked[i] = (payload[i] as number) ^ (mask[i % 4] as number);
  return Buffer.concat([header, mask, masked]);
}

/** The first whole unmasked frame at the start of `buf` and what follows it; undefined until it has all come. */
function nextFrame(buf: Buffer): { opcode: number; payload: Buffer; rest: Buffer } | undefined {
  if (buf.length < 2) return undefined;
  const opcode = (buf[0] as number) & 0x0f;
  let len = (buf[1] as number) & 0x7f;
  let offset = 2;
  if (len === 126) {
    if (buf.length < 4) return undefined;
    len = buf.readUInt16BE(2);
    offset = 4;
  } else if (len === 127) {
    if (buf.length < 10) return undefined;
    len = Number(buf.readBigUInt64BE(2));
    offset = 10;
  }
  if (buf.length < offset + len) return undefined;
  return { opcode, payload: buf.subarray(offset, offset + len), rest: buf.subarray(offset + len) };
}

/** Frames the server sent after its 101 response. */
export function serverFrames(received: Buffer): { opcode: number; payload: Buffer }[] {
  const end = received.indexOf('\r\n\r\n');
  if (end < 0 || statusOf(received) !== 101) return [];
  const frames: { opcode: number; payload: Buffer }[] = [];
  let buf = received.subarray(end + 4);
  for (let frame = nextFrame(buf); frame; frame = nextFrame(buf)) {
    frames.push({ opcode: frame.opcode, payload: frame.payload });
    buf = frame.rest;
  }
  return frames;
}

/** The text frames: engine.io packets. */
export const serverTexts = (received: Buffer) =>
  serverFrames(received)
    .filter((f) => f.opcode === 1)
    .map((f) => f.payload.toString('utf8'));

export async function until(check: () => boolean, timeoutMs: number, everyMs = 20): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Numbers.

/** Least-squares slope and intercept of y over x. */
export function linearFit(xs: number[], ys: number[]): { slope: number; intercept: number } {
  const n = xs.length;
  if (n < 2) return { slope: 0, intercept: ys[0] ?? 0 };
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (let i = 0; i < n; i++) {
    const dx = (xs[i] as number) - mx;
    sxy += dx * ((ys[i] as number) - my);
    sxx += dx * dx;
  }
  const slope = sxx === 0 ? 0 : sxy / sxx;
  return { slope, intercept: my - slope * mx };
}

export const median = (values: number[]) => {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};

export const mb = (bytes: number) => Math.round((bytes / 1048576) * 10) / 10;

/**
 * The kernel's count of connections dropped because a listener's accept queue was full (every listener
 * of this network namespace, so other processes' bursts count too: a hint, not a measure).
 */
export function listenOverflows(): number {
  const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n');
  for (let i = 0; i + 1 < lines.length; i += 2) {
    const head = (lines[i] as string).split(/\s+/);
    const vals = (lines[i + 1] as string).split(/\s+/);
    const at = head.indexOf('ListenOverflows');
    if (head[0] === 'TcpExt:' && at >= 0) return Number(vals[at]);
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// The child's V8 inspector (started with --inspect=127.0.0.1:0), spoken over the raw WebSocket above:
// a full collection on demand, so the heap is measured as its live set rather than wherever the
// collector happened to be.

export interface Inspector {
  send<T = unknown>(method: string, params?: Record<string, unknown>): Promise<T>;
  /** Collects garbage fully, then reports the heap in use. */
  liveHeap(): Promise<number>;
  close(): void;
}

export async function inspector(wsUrl: string): Promise<Inspector> {
  const url = new URL(wsUrl);
  const socket = connect(Number(url.port), url.hostname);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('error', reject);
  });
  socket.on('error', () => {});
  socket.write(upgradeRequest(Number(url.port), url.pathname, url.hostname));
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let buf: Buffer = Buffer.alloc(0);
  let upgraded = false;
  // Incremental: the connection lives for the whole soak, so consumed frames are dropped as they come.
  socket.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    if (!upgraded) {
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      // Refused: every send then times out with its method named, which is the error worth reading.
      if (statusOf(buf) !== 101) {
        socket.destroy();
        return;
      }
      upgraded = true;
      buf = buf.subarray(end + 4);
    }
    for (let frame = nextFrame(buf); frame; frame = nextFrame(buf)) {
      buf = frame.rest;
      const { opcode, payload } = frame;
      if (opcode !== 1) continue;
      const message = JSON.parse(payload.toString('utf8')) as {
        id?: number;
        result?: unknown;
        error?: { message: string };
      };
      const waiter = message.id === undefined ? undefined : pending.get(message.id);
      if (!waiter) continue;
      pending.delete(message.id as number);
      if (message.error) waiter.reject(new Error(message.error.message));
      else waiter.resolve(message.result);
    }
  });
  let next = 1;
  const send = <T>(method: string, params: Record<string, unknown> = {}) =>
    new Promise<T>((resolve, reject) => {
      const id = next++;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`inspector ${method}: no answer in 30 s`));
      }, 30_000);
      pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      socket.write(clientFrame(JSON.stringify({ id, method, params })));
    });
  return {
    send,
    async liveHeap() {
      await send('HeapProfiler.collectGarbage');
      return (await send<{ usedSize: number }>('Runtime.getHeapUsage')).usedSize;
    },
    close: () => socket.destroy(),
  };
}
