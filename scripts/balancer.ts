import { createHash } from 'node:crypto';
import {
  Agent,
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  request,
  type Server,
  type ServerResponse,
} from 'node:http';
import { type AddressInfo, connect as netConnect, type Socket } from 'node:net';

// A small HTTP/WebSocket load balancer for the local cluster (`npm run cluster`) and the multi-process
// tests. Production puts a real one here (nginx, HAProxy, a cloud LB); this one does what they must do:
//
// - plain HTTP requests go round-robin to the api processes that answer GET /health/ready with 200,
//   so a process that is draining (SIGTERM) stops getting new requests at once;
// - socket.io long-polling is sticky: the engine.io handshake's answer carries the session id (sid),
//   which is remembered, and every later request with ?sid= goes to the process that owns it (a sid
//   never seen here falls back to a hash of the client's address);
// - WebSocket upgrades are piped through untouched, to the sid's process when there is one;
// - X-Forwarded-For/-Proto/-Host are added, so the api processes (TRUST_PROXY) see the client's address.

export interface BalancerTarget {
  name: string;
  host: string;
  port: number;
}

export interface BalancerOptions {
  targets: BalancerTarget[];
  /** 0 = any free port. */
  port?: number;
  host?: string;
  /** Polled on every target; anything but 200 takes it out of rotation. false = every target is up. */
  healthPath?: string | false;
  healthEveryMs?: number;
  /** Where state changes are reported (a target going up or down). */
  log?: (line: string) => void;
}

export interface BalancerStats {
  /** Requests and upgrades sent to each target, by name. */
  requests: Record<string, number>;
  upgrades: Record<string, number>;
  /** Polling requests routed by a remembered sid. */
  sticky: number;
  /** 502/503 answered by the balancer itself. */
  errors: number;
}

export interface Balancer {
  server: Server;
  port: number;
  url: string;
  /** Names of the targets in rotation now. */
  up(): string[];
  stats(): BalancerStats;
  close(): Promise<void>;
}

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'upgrade',
]);
const SID_IDLE_MS = 5 * 60_000;
const SOCKET_IO_PATH = '/socket.io/';

export async function startBalancer(opts: BalancerOptions): Promise<Balancer> {
  if (opts.targets.length === 0) throw new Error('a balancer needs at least one target');
  const log = opts.log ?? (() => {});
  const healthPath = opts.healthPath === undefined ? '/health/ready' : opts.healthPath;
  const healthEveryMs = opts.healthEveryMs ?? 1000;
  const targets = opts.targets.map((t) => ({
    ...t,
    // Optimistic until the first probe says otherwise: whoever starts the balancer waited for readiness.
    healthy: true,
    agent: new Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY }),
  }));
  type Target = (typeof targets)[number];
  const byName = new Map(targets.map((t) => [t.name, t]));
  const sids = new Map<string, { target: string; seenAt: number }>();
  const stats: BalancerStats = { requests: {}, upgrades: {}, sticky: 0, errors: 0 };
  for (const t of targets) {
    stats.requests[t.name] = 0;
    stats.upgrades[t.name] = 0;
  }
  const open = new Set<Socket>();
  let next = 0;
  let closing = false;

  const healthy = () => targets.filter((t) => t.healthy);
  const markDown = (t: Target, why: string) => {
    if (!t.healthy) return;
    t.healthy = false;
    log(`${t.name} out of rotation (${why})`);
  };
  const markUp = (t: Target) => {
    if (t.healthy) return;
    t.healthy = true;
    log(`${t.name} back in rotation`);
  };

  const roundRobin = (exclude?: Target): Target | undefined => {
    const pool = healthy().filter((t) => t !== exclude);
    if (pool.length === 0) return undefined;
    next = (next + 1) % pool.length;
    return pool[next];
  };
  const byAddress = (address: string): Target | undefined => {
    const pool = healthy();
    if (pool.length === 0) return undefined;
    return pool[createHash('sha1').update(address).digest().readUInt32BE(0) % pool.length];
  };

  /** Where a request goes, and whether its answer may carry a new engine.io sid to remember. */
  const route = (req: IncomingMessage): { target: Target | undefined; handshake: boolean } => {
    const url = new URL(req.url ?? '/', 'http://balancer');
    if (!url.pathname.startsWith(SOCKET_IO_PATH)) return { target: roundRobin(), handshake: false };
    const sid = url.searchParams.get('sid');
    if (!sid) return { target: roundRobin(), handshake: true };
    const known = sids.get(sid);
    const owner = known ? byName.get(known.target) : undefined;
    if (known && owner) {
      known.seenAt = Date.now();
      stats.sticky++;
      // Even when it is out of rotation (draining): only that process knows the session; if it is
      // gone, its "unknown session" answer makes the client start afresh.
      return { target: owner, handshake: false };
    }
    return { target: byAddress(clientAddress(req)), handshake: false };
  };

  const forwardedHeaders = (req: IncomingMessage): IncomingHttpHeaders => {
    const headers: IncomingHttpHeaders = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (!HOP_BY_HOP.has(name) && value !== undefined) headers[name] = value;
    }
    const prior = req.headers['x-forwarded-for'];
    const client = clientAddress(req);
    headers['x-forwarded-for'] = prior ? `${prior}, ${client}` : client;
    headers['x-forwarded-proto'] ??= 'http';
    if (req.headers.host) headers['x-forwarded-host'] ??= req.headers.host;
    return headers;
  };

  const fail = (res: ServerResponse, status: 502 | 503, detail: string) => {
    stats.errors++;
    if (res.headersSent) {
      res.destroy();
      return;
    }
    res.writeHead(status, { 'content-type': 'application/problem+json', 'retry-after': '1' });
    res.end(
      JSON.stringify({
        type: 'about:blank',
        title: status === 503 ? 'Service Unavailable' : 'Bad Gateway',
        status,
        code: status === 503 ? 'no_backend' : 'bad_gateway',
        detail,
      }),
    );
  };

  const proxy = (
    req: IncomingMessage,
    res: ServerResponse,
    target: Target | undefined,
    handshake: boolean,
    retried: boolean,
  ) => {
    if (!target) return fail(res, 503, 'No api process is ready; try again shortly.');
    stats.requests[target.name] = (stats.requests[target.name] ?? 0) + 1;
    const upstream = request({
      host: target.host,
      port: target.port,
      method: req.method,
      path: req.url,
      headers: forwardedHeaders(req),
      agent: target.agent,
    });
    let answered = false;
    upstream.on('response', (upRes) => {
      answered = true;
      const headers: Record<string, string | string[]> = {};
      for (const [name, value] of Object.entries(upRes.headers)) {
        if (!HOP_BY_HOP.has(name) && name !== 'transfer-encoding' && value !== undefined)
          headers[name] = value;
      }
      res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, headers);
      if (handshake && upRes.statusCode === 200 && !upRes.headers['content-encoding']) {
        // The handshake's answer is tiny: `0{"sid":"…",…}` (EIO 4). Remember who owns that session.
        let head = '';
        const sniff = (chunk: Buffer) => {
          head += chunk.toString('latin1');
          const match = /"sid":"([^"]+)"/.exec(head);
          if (match?.[1]) sids.set(match[1], { target: target.name, seenAt: Date.now() });
          if (match || head.length > 4096) upRes.off('data', sniff);
        };
        upRes.on('data', sniff);
      }
      upRes.pipe(res);
      upRes.on('error', () => res.destroy());
    });
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      if (answered) {
        res.destroy();
        return;
      }
      if (err.code === 'ECONNREFUSED') markDown(target, 'connection refused');
      // Refused means nothing reached the process; a request without a body can go elsewhere.
      const bodiless = !req.headers['content-length'] && !req.headers['transfer-encoding'];
      if (err.code === 'ECONNREFUSED' && bodiless && !retried && !closing) {
        return proxy(req, res, roundRobin(target), handshake, true);
      }
      fail(res, 502, `The api process ${target.name} did not answer (${err.code ?? err.message}).`);
    });
    // The client went away before the answer was complete: so does the upstream request.
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.pipe(upstream);
  };

  const server = createServer((req, res) => {
    const { target, handshake } = route(req);
    proxy(req, res, target, handshake, false);
  });
  // Long-polling requests are held open by the api process for up to the ping interval.
  server.requestTimeout = 0;
  server.on('connection', (socket) => {
    open.add(socket);
    socket.on('close', () => open.delete(socket));
  });
  server.on('upgrade', (req: IncomingMessage, client: Socket, head: Buffer) => {
    const { target } = route(req);
    client.on('error', () => {});
    if (!target) {
      stats.errors++;
      client.end('HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    stats.upgrades[target.name] = (stats.upgrades[target.name] ?? 0) + 1;
    const upstream = netConnect(target.port, target.host);
    let connected = false;
    open.add(upstream);
    upstream.on('close', () => {
      open.delete(upstream);
      client.destroy();
    });
    client.on('close', () => upstream.destroy());
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED') markDown(target, 'connection refused');
      if (!connected) {
        stats.errors++;
        client.end('HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      }
    });
    upstream.on('connect', () => {
      connected = true;
      // The request as received (upgrade headers included), plus who the client is.
      const lines = [`${req.method} ${req.url} HTTP/${req.httpVersion}`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) {
        const name = req.rawHeaders[i] as string;
        if (/^x-forwarded-for$/i.test(name)) continue;
        lines.push(`${name}: ${req.rawHeaders[i + 1]}`);
      }
      const prior = req.headers['x-forwarded-for'];
      lines.push(`X-Forwarded-For: ${prior ? `${prior}, ` : ''}${clientAddress(req)}`);
      upstream.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (head.length) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
  });

  const probe = (t: Target) =>
    new Promise<void>((resolve) => {
      if (!healthPath) return resolve();
      const req = request(
        { host: t.host, port: t.port, path: healthPath, agent: false, timeout: Math.max(500, healthEveryMs) },
        (res) => {
          res.resume();
          if (res.statusCode === 200) markUp(t);
          else markDown(t, `${healthPath} answered ${res.statusCode}`);
          resolve();
        },
      );
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', (err: NodeJS.ErrnoException) => {
        markDown(t, `${healthPath}: ${err.code ?? err.message}`);
        resolve();
      });
      req.end();
    });
  let probing = false;
  const health = setInterval(() => {
    if (probing) return;
    probing = true;
    void Promise.all(targets.map(probe)).finally(() => {
      probing = false;
    });
    // Sessions nobody polled for a while are long gone (the ping interval is far shorter).
    const idle = Date.now() - SID_IDLE_MS;
    for (const [sid, s] of sids) if (s.seenAt < idle) sids.delete(sid);
  }, healthEveryMs);
  health.unref();

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    port,
    url: `http://127.0.0.1:${port}`,
    up: () => healthy().map((t) => t.name),
    stats: () => structuredClone(stats),
    close: () =>
      new Promise<void>((resolve) => {
        closing = true;
        clearInterval(health);
        server.close(() => resolve());
        for (const s of open) s.destroy();
        for (const t of targets) t.agent.destroy();
      }),
  };
}

function clientAddress(req: IncomingMessage): string {
  return (req.socket.remoteAddress ?? 'unknown').replace(/^::ffff:/, '');
}
