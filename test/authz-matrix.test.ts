import { readFileSync } from 'node:fs';
import { io as connect } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLIENT_EVENTS, outsideTheMatrix, SERVER_EVENTS } from './authz/coverage.js';
import {
  actors,
  matrix,
  type Person,
  type Resource,
  type Response,
  type Row,
  resources,
  type SocketEvent,
  type World,
} from './authz/matrix.js';
import { figure } from './figures.js';
import { lane, startTestApp, type TestApp } from './helpers.js';

// RELIABILITY A1: runs every row of test/authz/matrix.ts as one HTTP request or one socket event, each
// in a world of its own (its owner and actors made fresh, so a row that mutates cannot affect another),
// and compares the outcome. Knows nothing about any resource: new resources only add to the table file.
let t: TestApp;

beforeAll(async () => {
  // Listening: socket rows connect a real socket.io client.
  t = await startTestApp({ listen: true, env: { RATE_LIMIT_MULTIPLIER: '0' } });
});
afterAll(() => t?.close());

function newWorld(actor: string): World {
  const made = new Map<string, Promise<Person | null>>();
  const world: World = {
    deps: t.deps,
    vars: {},
    actor,
    person(role) {
      let p = made.get(role);
      if (!p) {
        const def = actors[role];
        if (!def) throw new Error(`No actor "${role}" in test/authz/matrix.ts`);
        p = def.make(world);
        made.set(role, p);
      }
      return p;
    },
    async someone(role) {
      const p = await world.person(role);
      if (!p) throw new Error(`Actor "${role}" is anonymous; a resource cannot be built around it`);
      return p;
    },
  };
  return world;
}

async function outcomeOf(res: Response, op: Resource['operations'][string], w: World): Promise<string> {
  if (res.statusCode >= 200 && res.statusCode < 300)
    return op.success ? op.success(res, w) : String(res.statusCode);
  let code = '';
  try {
    code = (res.json() as { code?: string }).code ?? '';
  } catch {
    code = '(no problem body)';
  }
  return `${res.statusCode} ${code}`.trim();
}

/**
 * Rows run at once. PostgreSQL: 4, below the pool of 5 connections per test database (about twice as
 * fast as one at a time). PGlite is one connection in this process: rows would only queue for it.
 */
const ROWS_AT_ONCE = lane.services ? 4 : 1;

/** Acks and handshake refusals that stand for a server error (counted with the 5xx). */
const SERVER_ERRORS = new Set(['internal_error', 'unavailable', 'no ack']);

/**
 * Emits the event on a fresh connection of the actor's (their token in the handshake's auth; none for
 * anonymous) and names the answer: 'ack ok' (or 'ack ' + what the operation's `acked` makes of its
 * data), 'ack <code>', or 'refused' when the handshake fails.
 */
async function emitAs(
  actor: Person | null,
  e: SocketEvent,
  op: Resource['operations'][string],
  w: World,
): Promise<{ actual: string; status: number }> {
  const socket = connect(t.url, {
    transports: ['websocket'],
    auth: actor ? { token: actor.token } : {},
    reconnection: false,
    forceNew: true,
    timeout: 10_000,
  });
  try {
    const refusal = await new Promise<string | null>((resolve) => {
      socket.once('system:welcome', () => resolve(null));
      socket.once('connect_error', (err) => resolve(err.message));
    });
    if (refusal !== null)
      return { actual: 'refused', status: SERVER_ERRORS.has(refusal) || refusal === 'timeout' ? 500 : 200 };
    const answer = (await socket
      .timeout(10_000)
      .emitWithAck(e.event, e.payload)
      .catch(() => ({ ok: false, error: { code: 'no ack' } }))) as
      | { ok: true; data?: unknown }
      | { ok: false; error: { code: string } };
    if (answer.ok) return { actual: `ack ${op.acked ? await op.acked(answer.data, w) : 'ok'}`, status: 200 };
    const code = answer.error.code;
    return { actual: `ack ${code}`, status: SERVER_ERRORS.has(code) ? 500 : 200 };
  } finally {
    socket.disconnect();
  }
}

/** What the rows reached: "GET /v1/tasks/abc" as sent, and socket event names. */
const sent = { requests: new Set<string>(), events: new Set<string>() };

async function runRow(row: Row): Promise<{ actual: string; status: number }> {
  const resource = resources[row.resource];
  const op = resource?.operations[row.operation];
  if (!resource || !op)
    throw new Error(`No operation "${row.operation}" of "${row.resource}" in the table file`);
  const w = newWorld(row.actor);
  await w.person('owner');
  await resource.setup?.(w);
  const actor = await w.person(row.actor);
  const request = await op.request(w);
  if ('event' in request) {
    sent.events.add(request.event);
    return emitAs(actor, request, op, w);
  }
  sent.requests.add(`${request.method} ${request.url.split('?')[0]}`);
  const res = await t.app.inject({
    method: request.method,
    url: request.url,
    headers: { ...actor?.headers, ...request.headers },
    ...(request.body === undefined ? {} : { payload: request.body as object }),
  });
  return { actual: await outcomeOf(res, op, w), status: res.statusCode };
}

describe('authorization matrix (A1)', () => {
  it('the table is well formed: known resources, operations and actors, each cell once', () => {
    const seen = new Set<string>();
    for (const row of matrix) {
      expect(
        resources[row.resource]?.operations[row.operation],
        `${row.resource} / ${row.operation}`,
      ).toBeDefined();
      expect(actors[row.actor], row.actor).toBeDefined();
      const key = `${row.resource} / ${row.operation} / ${row.actor}`;
      expect(seen.has(key), `${key} twice`).toBe(false);
      seen.add(key);
    }
    // Every operation a resource declares is covered for at least the owner, anonymous and a deleted token.
    for (const [name, resource] of Object.entries(resources)) {
      for (const operation of Object.keys(resource.operations)) {
        for (const actor of ['owner', 'anonymous', 'deleted'])
          expect(seen.has(`${name} / ${operation} / ${actor}`), `${name} / ${operation} / ${actor}`).toBe(
            true,
          );
      }
    }
  });

  it('every cell answers as the table says: 0 mismatches, 0 5xx', async () => {
    const mismatches: string[] = [];
    const serverErrors: string[] = [];
    const started = Date.now();
    // Worlds share nothing, so a few rows run at once; results are read back in table order.
    const results: { actual: string; status: number }[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: ROWS_AT_ONCE }, async () => {
        for (let i = next++; i < matrix.length; i = next++) {
          // A row whose world cannot be built is a mismatch of its own, not the end of the run.
          results[i] = await runRow(matrix[i] as Row).catch((err: unknown) => ({
            actual: `threw ${err instanceof Error ? err.message : String(err)}`,
            status: 0,
          }));
        }
      }),
    );
    matrix.forEach((row, i) => {
      const label = `${row.resource} / ${row.operation} / ${row.actor}`;
      const { actual, status } = results[i] as { actual: string; status: number };
      if (status >= 500) serverErrors.push(`${label}: ${status}`);
      if (actual !== row.expected) mismatches.push(`${label}: expected ${row.expected}, got ${actual}`);
    });
    const resourceCount = new Set(matrix.map((r) => r.resource)).size;
    const actorCount = new Set(matrix.map((r) => r.actor)).size;
    console.log(
      `authz matrix: ${matrix.length} cells checked (${resourceCount} resources × ${actorCount} actors), ` +
        `${mismatches.length} mismatches, ${serverErrors.length} 5xx, in ${Date.now() - started} ms`,
    );
    for (const m of [...mismatches, ...serverErrors]) console.log(`  ${m}`);
    figure('authz.mismatches', mismatches.length, { cells: matrix.length, resources: resourceCount });
    figure('authz.5xx', serverErrors.length, { cells: matrix.length });
    expect(serverErrors).toEqual([]);
    expect(mismatches).toEqual([]);
    // Hundreds of requests, each in a world of its own: generous on a loaded 2-core machine.
  }, 240_000);
});

/** "GET /v1/tasks/{id}" for a request sent as "GET /v1/tasks/0192…": literal segments win over parameters. */
function routeOf(templates: string[], sentLine: string): string | undefined {
  const [method, path] = sentLine.split(' ') as [string, string];
  const parts = path.split('/');
  let best: { route: string; literals: number } | undefined;
  for (const route of templates) {
    const [m, template] = route.split(' ') as [string, string];
    const tparts = template.split('/');
    if (m !== method || tparts.length !== parts.length) continue;
    let literals = 0;
    const fits = tparts.every((seg, i) => {
      if (seg.startsWith('{')) return parts[i] !== '';
      literals++;
      return seg === parts[i];
    });
    if (fits && (!best || literals > best.literals)) best = { route, literals };
  }
  return best?.route;
}

describe('the matrix is complete (A1)', () => {
  it('every route of /openapi.json and every client event has rows, or a stated reason why not', async () => {
    expect(sent.requests.size, 'runs after the cells').toBeGreaterThan(0);
    const doc = (await t.app.inject({ method: 'GET', url: '/openapi.json' })).json() as {
      paths: Record<string, Record<string, unknown>>;
    };
    const routes = Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`),
    );
    const covered = new Set([...sent.requests].map((line) => routeOf(routes, line)));
    const missing = routes.filter((r) => !covered.has(r) && !(r in outsideTheMatrix));
    const stale = Object.keys(outsideTheMatrix).filter((r) => !routes.includes(r) || covered.has(r));
    const eventsMissing = CLIENT_EVENTS.filter((e) => !sent.events.has(e));
    console.log(
      `A1 completeness: ${routes.length} routes (${routes.length - Object.keys(outsideTheMatrix).length} with rows, ` +
        `${Object.keys(outsideTheMatrix).length} outside by design), ${CLIENT_EVENTS.length} client events; ` +
        `${missing.length + eventsMissing.length} without rows`,
    );
    figure('authz.without_rows', missing.length + eventsMissing.length, {
      routes: routes.length,
      events: CLIENT_EVENTS.length,
    });
    expect(missing).toEqual([]);
    expect(eventsMissing).toEqual([]);
    expect(stale).toEqual([]);
  });

  it('every server event is named in the test that shows who hears it', () => {
    const unnamed = Object.entries(SERVER_EVENTS).filter(
      ([event, file]) => !readFileSync(file, 'utf8').includes(`'${event}'`),
    );
    expect(unnamed).toEqual([]);
  });
});
