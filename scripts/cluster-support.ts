import { request } from 'node:http';
import { createServer } from 'node:net';
import { Queue } from 'bullmq';

// Small pieces the local cluster (scripts/cluster.ts) and the multi-process tests share.

/** The status of GET http://127.0.0.1:port/path, or the connection error's code. */
export function httpStatus(port: number, path = '/health/ready', timeoutMs = 2000): Promise<number | string> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false, timeout: timeoutMs }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
    req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    req.end();
  });
}

/**
 * Waits until an api process answers GET /health/ready with 200 (database and Redis reachable, not
 * draining). `gone` stops the wait early, e.g. when the process has exited.
 */
export async function waitReady(
  port: number,
  opts: { timeoutMs?: number; gone?: () => string | undefined } = {},
): Promise<void> {
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  let last: number | string = 'not tried';
  for (;;) {
    const gone = opts.gone?.();
    if (gone) throw new Error(gone);
    last = await httpStatus(port);
    if (last === 200) return;
    if (Date.now() > deadline) throw new Error(`port ${port}: /health/ready still ${last}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * How many BullMQ workers consume the job queue of this REDIS_PREFIX now (they name their
 * connections; CLIENT LIST finds them). A worker process has no HTTP port: this is its readiness.
 */
export async function workersOnline(redisUrl: string, redisPrefix: string): Promise<number> {
  const queue = new Queue('jobs', {
    connection: { url: redisUrl, maxRetriesPerRequest: 1, connectTimeout: 2000 },
    prefix: `${redisPrefix}:bull`,
  });
  queue.on('error', () => {});
  try {
    return await queue.getWorkersCount();
  } finally {
    await queue.close().catch(() => {});
  }
}

/** Waits until at least `count` workers consume the queue; `gone` stops the wait early. */
export async function waitWorkers(
  redisUrl: string,
  redisPrefix: string,
  count: number,
  opts: { timeoutMs?: number; gone?: () => string | undefined } = {},
): Promise<void> {
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  for (;;) {
    const gone = opts.gone?.();
    if (gone) throw new Error(gone);
    const online = await workersOnline(redisUrl, redisPrefix).catch(() => -1);
    if (online >= count) return;
    if (Date.now() > deadline) throw new Error(`${online} of ${count} workers online`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Whether a TCP port can be listened on at 127.0.0.1 now. */
export function portFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', () => resolve(false));
    probe.listen(port, host, () => probe.close(() => resolve(true)));
  });
}

/** A URL fit for a log line: the password, if any, replaced. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '<not a URL>';
  }
}
