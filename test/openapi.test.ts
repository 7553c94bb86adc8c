import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from './helpers.js';

// The document must be complete enough to generate a client from: every operation described,
// secured, and with every status it can answer.
let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(() => t?.close());

type Operation = {
  operationId?: string;
  summary?: string;
  tags?: string[];
  security?: unknown[];
  parameters?: unknown[];
  requestBody?: unknown;
  responses?: Record<string, { description?: string; content?: Record<string, { schema?: unknown }> }>;
};

describe('/openapi.json', () => {
  it('declares servers and security schemes', async () => {
    const doc = (await t.app.inject({ method: 'GET', url: '/openapi.json' })).json();
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.servers).toEqual([{ url: t.config.PUBLIC_URL }]);
    expect(Object.keys(doc.components.securitySchemes).sort()).toEqual(['bearerAuth', 'cookieAuth']);
    expect(doc.components.schemas.Problem).toBeDefined();
  });

  it('describes every route fully', async () => {
    const doc = (await t.app.inject({ method: 'GET', url: '/openapi.json' })).json();
    const operations: [string, Operation][] = [];
    for (const [path, methods] of Object.entries(doc.paths as Record<string, Record<string, Operation>>)) {
      for (const [method, op] of Object.entries(methods))
        operations.push([`${method.toUpperCase()} ${path}`, op]);
    }
    expect(operations.map(([name]) => name)).toEqual(
      expect.arrayContaining(['GET /health/live', 'GET /health/ready', 'GET /metrics']),
    );
    const ids = new Set<string>();
    for (const [name, op] of operations) {
      expect(op.operationId, name).toMatch(/^[a-z][A-Za-z0-9]+$/);
      expect(ids.has(op.operationId as string), `${name} operationId is unique`).toBe(false);
      ids.add(op.operationId as string);
      expect(op.summary, name).toBeTruthy();
      expect(op.tags?.length, name).toBeGreaterThan(0);
      expect(Array.isArray(op.security), `${name} states its security`).toBe(true);
      const statuses = Object.keys(op.responses ?? {});
      expect(
        statuses.some((s) => s.startsWith('2')),
        `${name} has a success response`,
      ).toBe(true);
      expect(statuses, name).toEqual(expect.arrayContaining(['500', '503']));
      for (const [status, response] of Object.entries(op.responses ?? {})) {
        expect(response.description, `${name} ${status}`).toBeTruthy();
        if (status === '204') {
          expect(response.content, `${name} 204 has no body`).toBeUndefined();
          continue;
        }
        const media = Object.values(response.content ?? {});
        expect(media.length, `${name} ${status} has a schema`).toBeGreaterThan(0);
        for (const m of media) expect(m.schema, `${name} ${status}`).toBeDefined();
        if (Number(status) >= 400 && status !== '503') {
          expect(Object.keys(response.content ?? {}), `${name} ${status}`).toEqual([
            'application/problem+json',
          ]);
        }
      }
    }
  });

  it('refuses to start with a route that is not fully described', async () => {
    await expect(
      startTestApp({
        beforeReady(app) {
          app.get(
            '/v1/undocumented',
            { schema: { response: { 200: { type: 'object' } } } },
            async () => ({}),
          );
        },
      }),
    ).rejects.toThrow(/GET \/v1\/undocumented has no schema.operationId/);
  });
});
