import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  actors,
  matrix,
  type Person,
  type Resource,
  type Response,
  type Row,
  resources,
  type World,
} from './authz/matrix.js';
import { startTestApp, type TestApp } from './helpers.js';

// RELIABILITY A1: runs every row of test/authz/matrix.ts as one HTTP request, each in a world of its
// own (its owner and actors made fresh, so a row that mutates cannot affect another), and compares the
// outcome. Knows nothing about any resource: new resources only add to the table file.
let t: TestApp;

beforeAll(async () => {
  t = await startTestApp({ env: { RATE_LIMIT_MULTIPLIER: '0' } });
});
afterAll(() => t?.close());

function newWorld(): World {
  const made = new Map<string, Promise<Person | null>>();
  const world: World = {
    deps: t.deps,
    vars: {},
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

async function runRow(row: Row): Promise<{ actual: string; status: number }> {
  const resource = resources[row.resource];
  const op = resource?.operations[row.operation];
  if (!resource || !op)
    throw new Error(`No operation "${row.operation}" of "${row.resource}" in the table file`);
  const w = newWorld();
  await w.person('owner');
  await resource.setup?.(w);
  const actor = await w.person(row.actor);
  const request = await op.request(w);
  const res = await t.app.inject({
    method: request.method,
    url: request.url,
    headers: actor?.headers ?? {},
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
    for (const row of matrix) {
      const label = `${row.resource} / ${row.operation} / ${row.actor}`;
      const { actual, status } = await runRow(row);
      if (status >= 500) serverErrors.push(`${label}: ${status}`);
      if (actual !== row.expected) mismatches.push(`${label}: expected ${row.expected}, got ${actual}`);
    }
    const resourceCount = new Set(matrix.map((r) => r.resource)).size;
    const actorCount = new Set(matrix.map((r) => r.actor)).size;
    console.log(
      `authz matrix: ${matrix.length} cells checked (${resourceCount} resources × ${actorCount} actors), ` +
        `${mismatches.length} mismatches, ${serverErrors.length} 5xx, in ${Date.now() - started} ms`,
    );
    for (const m of [...mismatches, ...serverErrors]) console.log(`  ${m}`);
    expect(serverErrors).toEqual([]);
    expect(mismatches).toEqual([]);
    // Hundreds of requests, each in a world of its own: generous on a loaded 2-core machine.
  }, 90_000);
});
