import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { io as connect, type Socket } from 'socket.io-client';
import { waitReady, waitWorkers } from '../scripts/cluster-support.js';
import type { Deps } from '../src/deps.js';
import { systemClock } from '../src/lib/clock.js';
import { makeAccessTokens } from '../src/lib/tokens.js';
import { aUser, dropRedisPrefix, lane, signIn, type TestDb, testDb } from './helpers.js';

// A deployment in miniature for the services lane: api and worker processes started as real child
// processes (`node --import tsx src/main.ts`, ROLE=api|worker) on one fresh database, one Redis key
// prefix and one token key, as production runs them. Everything it starts is stopped by `close()`,
// and killed when the test process exits whatever happened.

export interface Node {
  name: string;
  role: 'api' | 'worker';
  proc: ChildProcess;
  /** api only: where it listens. */
  port: number;
  url: string;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface Person {
  userId: string;
  username: string;
  token: string;
  headers: Record<string, string>;
}

export type Ack<T = unknown> = { ok: true; data: T } | { ok: false; error: { code: string; detail: string } };

const live = new Set<ChildProcess>();
// Last resort (a crashed test run): nothing started here outlives the test process.
process.once('exit', () => {
  for (const p of live) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
});

export async function clusterKit(env: Record<string, string> = {}) {
  if (!lane.services || !lane.redisUrl) throw new Error('the cluster kit needs the services lane');
  const redisUrl = lane.redisUrl;
  const database: TestDb = await testDb();
  const dataDir = mkdtempSync(join(tmpdir(), 'taskmaa-cluster-'));
  const prefix = `t${randomBytes(5).toString('hex')}`;
  const secret = randomBytes(32).toString('base64url');
  const nodes: Node[] = [];
  const sockets: Socket[] = [];
  // What aUser/signIn need, without building a whole process here: same database, same token key.
  const local = {
    db: database.db,
    clock: systemClock,
    tokens: makeAccessTokens({ secret, ttlSeconds: 900, clock: systemClock }),
  } as unknown as Deps;

  const baseEnv: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    DATA_DIR: dataDir,
    DATABASE_URL: database.url as string,
    DATABASE_POOL_MAX: '4',
    REDIS_URL: redisUrl,
    REDIS_PREFIX: prefix,
    ACCESS_TOKEN_SECRET: secret,
    LOG_LEVEL: 'info',
    PORT: '0',
    ...env,
  };

  /** Starts one process and waits until it is ready (api: /health/ready 200; worker: consuming). */
  async function start(
    role: 'api' | 'worker',
    name: string,
    extra: Record<string, string> = {},
    timeoutMs = 45_000,
  ): Promise<Node> {
    const workersBefore = nodes.filter((n) => n.role === 'worker' && n.proc.exitCode === null).length;
    const proc = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      env: { ...baseEnv, ROLE: role, ...extra },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    live.add(proc);
    let out = '';
    proc.stdout?.on('data', (d) => {
      out += d;
    });
    proc.stderr?.on('data', (d) => {
      out += d;
    });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      proc.once('exit', (code, signal) => {
        live.delete(proc);
        resolve({ code, signal });
      }),
    );
    const node: Node = { name, role, proc, port: 0, url: '', output: () => out, exited };
    nodes.push(node);
    const gone = () =>
      proc.exitCode !== null || proc.signalCode !== null
        ? `${name} exited (${proc.signalCode ?? proc.exitCode}):\n${out.slice(-4000)}`
        : undefined;
    const deadline = Date.now() + timeoutMs;
    if (role === 'api') {
      // PORT=0: the process says where it listens once it does.
      for (;;) {
        const match = /"docs":"http:\/\/localhost:(\d+)\/docs"/.exec(out);
        if (match) {
          node.port = Number(match[1]);
          node.url = `http://127.0.0.1:${node.port}`;
          break;
        }
        const why = gone();
        if (why) throw new Error(why);
        if (Date.now() > deadline) throw new Error(`${name} did not start:\n${out.slice(-4000)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      await waitReady(node.port, { timeoutMs: Math.max(1000, deadline - Date.now()), gone });
    } else {
      await waitWorkers(redisUrl, prefix, workersBefore + 1, {
        timeoutMs: Math.max(1000, deadline - Date.now()),
        gone,
      });
    }
    return node;
  }

  /** SIGTERM to every process still running, SIGKILL to whatever is left after `graceMs`. */
  async function stopAll(graceMs = 10_000) {
    const running = nodes.filter((n) => n.proc.exitCode === null && n.proc.signalCode === null);
    for (const n of running) n.proc.kill('SIGTERM');
    const timer = setTimeout(() => {
      for (const n of running) if (n.proc.exitCode === null) n.proc.kill('SIGKILL');
    }, graceMs);
    const results = await Promise.all(running.map((n) => n.exited));
    clearTimeout(timer);
    return running.map((n, i) => ({ name: n.name, ...(results[i] as { code: number | null }) }));
  }

  async function person(): Promise<Person> {
    const user = await aUser(local);
    return { ...(await signIn(local, user.id)), username: user.username };
  }

  async function call<T = Record<string, unknown>>(
    node: Node,
    who: Person | null,
    method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
    path: string,
    body?: unknown,
  ): Promise<{ status: number; body: T; headers: Headers }> {
    const res = await fetch(`${node.url}${path}`, {
      method,
      headers: {
        ...(who?.headers ?? {}),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // Not JSON: the text itself.
    }
    return { status: res.status, body: parsed as T, headers: res.headers };
  }

  /** Friends through the API: `a` asks on one process, `b` accepts on another. */
  async function befriend(a: Person, onA: Node, b: Person, onB: Node) {
    const asked = await call<{ id: string }>(onA, a, 'POST', '/v1/friend-requests', { userId: b.userId });
    if (asked.status !== 201)
      throw new Error(`friend request: ${asked.status} ${JSON.stringify(asked.body)}`);
    const accepted = await call(onB, b, 'POST', `/v1/friend-requests/${asked.body.id}/accept`);
    if (accepted.status !== 200)
      throw new Error(`accept: ${accepted.status} ${JSON.stringify(accepted.body)}`);
  }

  /** A socket on one process, resolved once the server welcomed it. */
  function open(node: Node, who: Person): Promise<Socket> {
    const socket = connect(node.url, {
      transports: ['websocket'],
      auth: { token: who.token },
      reconnection: false,
      forceNew: true,
    });
    sockets.push(socket);
    return new Promise((resolve, reject) => {
      socket.once('system:welcome', () => resolve(socket));
      socket.once('connect_error', reject);
    });
  }

  function emit<T = unknown>(socket: Socket, event: string, payload: unknown, timeoutMs = 10_000) {
    return socket.timeout(timeoutMs).emitWithAck(event, payload) as Promise<Ack<T>>;
  }

  /** Everything one event brings to a socket, with when it arrived. */
  function collect<T>(socket: Socket, event: string): { at: number; data: T }[] {
    const got: { at: number; data: T }[] = [];
    socket.on(event, (data: T) => got.push({ at: Date.now(), data }));
    return got;
  }

  /** Log lines of level error or worse, every process. */
  function errors(): { node: string; line: string }[] {
    return nodes.flatMap((n) =>
      n
        .output()
        .split('\n')
        .filter((l) => /"level":(50|60)/.test(l))
        .map((line) => ({ node: n.name, line })),
    );
  }

  return {
    prefix,
    redisUrl,
    database,
    nodes,
    start,
    stopAll,
    person,
    call,
    befriend,
    open,
    emit,
    collect,
    errors,
    /** Stops every process (SIGTERM, then SIGKILL), drops the database, the Redis keys and the files. */
    async close() {
      for (const s of sockets.splice(0)) s.disconnect();
      const stopped = await stopAll(5000).catch(() => []);
      await database.drop().catch((err) => console.error('cluster kit: drop database failed', err));
      await dropRedisPrefix(redisUrl, prefix).catch((err) =>
        console.error('cluster kit: drop Redis keys failed', err),
      );
      rmSync(dataDir, { recursive: true, force: true });
      return stopped;
    },
  };
}

export type ClusterKit = Awaited<ReturnType<typeof clusterKit>>;
