import { Type as T } from '@sinclair/typebox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unavailable } from '../src/lib/errors.js';
import { aPrincipal, startTestApp, type TestApp } from './helpers.js';

// The platform through its edge: routes added here exist only to exercise what every real route gets
// (validation, errors, auth policy, limits); the real routes come with their modules.
let t: TestApp;

const Item = T.Object(
  { title: T.String({ minLength: 1, maxLength: 20 }), count: T.Optional(T.Integer({ minimum: 0 })) },
  { additionalProperties: false },
);

beforeAll(async () => {
  t = await startTestApp({
    env: { BODY_LIMIT_BYTES: '2048', RATE_LIMIT_PER_MINUTE: '1000' },
    beforeReady(app) {
      app.post(
        '/v1/test/items',
        {
          schema: {
            operationId: 'testCreateItem',
            summary: 'test',
            tags: ['test'],
            body: Item,
            response: { 201: Item },
          },
        },
        async (request, reply) => reply.code(201).send(request.body),
      );
      app.get(
        '/v1/test/limited',
        {
          config: { auth: 'optional', rateLimit: { max: 3, windowMs: 60_000 } },
          schema: {
            operationId: 'testLimited',
            summary: 'test',
            tags: ['test'],
            response: { 200: T.Object({ who: T.String() }) },
          },
        },
        async (request) => ({ who: request.principal?.userId ?? 'anonymous' }),
      );
      app.get(
        '/v1/test/boom',
        {
          config: { auth: 'none' },
          schema: {
            operationId: 'testBoom',
            summary: 'test',
            tags: ['test'],
            response: { 200: T.Object({}) },
          },
        },
        async () => {
          throw new Error('secret internal detail');
        },
      );
      app.get(
        '/v1/test/down',
        {
          config: { auth: 'none' },
          schema: {
            operationId: 'testDown',
            summary: 'test',
            tags: ['test'],
            response: { 200: T.Object({}) },
          },
        },
        async () => {
          throw unavailable('database_unavailable', 'The database is unavailable; try again shortly.');
        },
      );
    },
  });
});
afterAll(() => t?.close());

const post = async (payload: unknown, headers: Record<string, string> = {}) =>
  t.app.inject({
    method: 'POST',
    url: '/v1/test/items',
    headers: { ...(await aPrincipal(t.deps)).headers, 'content-type': 'application/json', ...headers },
    payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
  });

describe('errors are problem+json with stable codes', () => {
  it('an unknown route is 404 route_not_found', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/v1/nope' });
    expect(res.statusCode).toBe(404);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.json()).toMatchObject({ status: 404, code: 'route_not_found', title: 'Not Found' });
    expect(res.json().instance).toBe(res.headers['x-request-id']);
  });

  it('validation errors list every offending field', async () => {
    const res = await post({ title: '', count: -1, role: 'admin' });
    expect(res.statusCode).toBe(400);
    const body = res.json();
    expect(body.code).toBe('validation_failed');
    const fields = body.errors.map((e: { field: string }) => e.field).sort();
    expect(fields).toEqual(['body/count', 'body/role', 'body/title']);
    expect(body.errors.find((e: { field: string }) => e.field === 'body/role').message).toBe(
      'is not allowed',
    );
  });

  it('JSON bodies are taken as typed: no coercion of strings, numbers or arrays', async () => {
    for (const body of [
      { title: 'a', count: '3' },
      { title: ['a'] },
      { title: 5 },
      { title: 'a', count: true },
    ]) {
      const res = await post(body);
      expect(res.statusCode, JSON.stringify(body)).toBe(400);
    }
  });

  it('a missing required field is named', async () => {
    const res = await post({ count: 1 });
    expect(res.json().errors).toEqual([{ field: 'body/title', message: 'is required' }]);
  });

  it('malformed JSON and prototype pollution are 400 invalid_json', async () => {
    for (const payload of [
      '{"title":',
      '{"title":"a","__proto__":{"x":1}}',
      '{"title":"a","constructor":{"prototype":{}}}',
    ]) {
      const res = await post(payload);
      expect(res.statusCode, payload).toBe(400);
      expect(res.json().code, payload).toMatch(/invalid_json|validation_failed/);
    }
  });

  it('a body over the limit is 413 payload_too_large', async () => {
    const res = await post({ title: 'x'.repeat(5000) });
    expect(res.statusCode).toBe(413);
    expect(res.json().code).toBe('payload_too_large');
  });

  it('a body that is not JSON is 415', async () => {
    const res = await post('title=a', { 'content-type': 'application/x-www-form-urlencoded' });
    expect(res.statusCode).toBe(415);
    expect(res.json().code).toBe('unsupported_media_type');
  });

  it('an unexpected error is a 500 without details, and is logged with them', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/v1/test/boom' });
    expect(res.statusCode).toBe(500);
    expect(res.json()).toMatchObject({ code: 'internal_error' });
    expect(res.body).not.toContain('secret internal detail');
    const logged = t
      .logs()
      .find((l) => l.msg === 'request failed' && l.reqId === res.headers['x-request-id']);
    expect(logged?.err).toMatchObject({ message: 'secret internal detail' });
  });

  it('a dependency outage is 503 with Retry-After', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/v1/test/down' });
    expect(res.statusCode).toBe(503);
    expect(res.headers['retry-after']).toBe('5');
    expect(res.json().code).toBe('database_unavailable');
    // Planned degradation: a warning, not an error (the error log is for what someone must fix).
    const logged = t.logs().filter((l) => l.reqId === res.headers['x-request-id'] && Number(l.level) >= 40);
    expect(logged.map((l) => [l.level, l.msg])).toEqual([
      [40, 'request refused: a dependency is unavailable'],
    ]);
  });

  it('valid input passes through its schema', async () => {
    const res = await post({ title: 'milk', count: 2 });
    expect(res.statusCode).toBe(201);
    expect(res.json()).toEqual({ title: 'milk', count: 2 });
  });
});

describe('request ids and headers', () => {
  it('echoes a sane incoming request id and replaces a hostile one', async () => {
    const mine = await t.app.inject({
      method: 'GET',
      url: '/health/live',
      headers: { 'x-request-id': 'abc-12345678' },
    });
    expect(mine.headers['x-request-id']).toBe('abc-12345678');
    const hostile = await t.app.inject({
      method: 'GET',
      url: '/health/live',
      headers: { 'x-request-id': `<script>${'x'.repeat(100)}` },
    });
    expect(hostile.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('sets security headers', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/health/live' });
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['content-security-policy']).toContain("default-src 'none'");
    expect(res.headers['x-frame-options']).toBe('SAMEORIGIN');
    expect(res.headers['referrer-policy']).toBe('no-referrer');
  });

  it('never logs the Authorization header', async () => {
    const { token, headers } = await aPrincipal(t.deps);
    await t.app.inject({ method: 'GET', url: '/v1/test/limited', headers });
    const all = JSON.stringify(t.logs());
    expect(all).not.toContain(token);
  });
});

describe('auth policy', () => {
  it('required routes answer 401 without a valid token', async () => {
    const expired = t.deps.tokens.sign({ userId: 'u', sessionId: 's' }).token.replace(/\.[^.]+$/, '.AAAA');
    for (const authorization of [undefined, 'Bearer nonsense', 'Basic abc', `Bearer ${expired}`]) {
      const res = await t.app.inject({
        method: 'POST',
        url: '/v1/test/items',
        headers: authorization ? { authorization } : {},
        payload: { title: 'a' },
      });
      expect(res.statusCode, authorization).toBe(401);
      expect(res.json().code).toBe('unauthorized');
    }
  });

  it('a cookie-authenticated mutation needs an allowed Origin; a bearer one does not', async () => {
    const { token } = await aPrincipal(t.deps);
    const cookie = `taskmaa_at=${token}`;
    const base = { method: 'POST' as const, url: '/v1/test/items', payload: { title: 'a' } };
    const foreign = await t.app.inject({ ...base, headers: { cookie, origin: 'https://evil.test' } });
    expect(foreign.statusCode).toBe(403);
    expect(foreign.json().code).toBe('origin_not_allowed');
    const none = await t.app.inject({ ...base, headers: { cookie } });
    expect(none.statusCode).toBe(403);
    const ours = await t.app.inject({ ...base, headers: { cookie, origin: 'http://app.test' } });
    expect(ours.statusCode).toBe(201);
    const bearer = await t.app.inject({
      ...base,
      headers: { authorization: `Bearer ${token}`, origin: 'https://evil.test' },
    });
    expect(bearer.statusCode).toBe(201);
  });
});

describe('CORS', () => {
  it('answers allowed origins with credentials, and unknown ones with no CORS headers', async () => {
    const ok = await t.app.inject({
      method: 'GET',
      url: '/health/live',
      headers: { origin: 'http://app.test' },
    });
    expect(ok.headers['access-control-allow-origin']).toBe('http://app.test');
    expect(ok.headers['access-control-allow-credentials']).toBe('true');
    const evil = await t.app.inject({
      method: 'GET',
      url: '/health/live',
      headers: { origin: 'https://evil.test' },
    });
    expect(evil.headers['access-control-allow-origin']).toBeUndefined();
    expect(evil.headers['access-control-allow-credentials']).toBeUndefined();
  });

  it('answers preflight for allowed origins only', async () => {
    const preflight = (origin: string) =>
      t.app.inject({
        method: 'OPTIONS',
        url: '/v1/test/items',
        headers: {
          origin,
          'access-control-request-method': 'POST',
          'access-control-request-headers': 'content-type',
        },
      });
    const ok = await preflight('http://app.test');
    expect(ok.statusCode).toBe(204);
    expect(ok.headers['access-control-allow-methods']).toContain('POST');
    const evil = await preflight('https://evil.test');
    expect(evil.headers['access-control-allow-origin']).toBeUndefined();
  });
});

describe('rate limits', () => {
  it('429 with Retry-After and RateLimit headers after the budget, per IP when anonymous', async () => {
    const hit = (ip: string) => t.app.inject({ method: 'GET', url: '/v1/test/limited', remoteAddress: ip });
    const statuses: number[] = [];
    let last = await hit('10.9.0.1');
    expect(last.headers['ratelimit-limit']).toBe('3');
    expect(last.headers['ratelimit-remaining']).toBe('2');
    statuses.push(last.statusCode);
    for (let i = 0; i < 3; i++) {
      last = await hit('10.9.0.1');
      statuses.push(last.statusCode);
    }
    expect(statuses).toEqual([200, 200, 200, 429]);
    expect(last.json().code).toBe('rate_limited');
    expect(Number(last.headers['retry-after'])).toBeGreaterThan(0);
    expect(Number(last.headers['retry-after'])).toBeLessThanOrEqual(60);
    expect((await hit('10.9.0.2')).statusCode).toBe(200);
  });

  it('counts per user when signed in, whatever the address', async () => {
    const a = await aPrincipal(t.deps);
    const b = await aPrincipal(t.deps);
    const hit = (headers: Record<string, string>, ip: string) =>
      t.app.inject({ method: 'GET', url: '/v1/test/limited', headers, remoteAddress: ip });
    for (let i = 0; i < 3; i++) expect((await hit(a.headers, `10.8.0.${i}`)).statusCode).toBe(200);
    expect((await hit(a.headers, '10.8.0.99')).statusCode).toBe(429);
    expect((await hit(b.headers, '10.8.0.1')).statusCode).toBe(200);
  });

  it('RATE_LIMIT_MULTIPLIER=0 turns limits off', async () => {
    const off = await startTestApp({ env: { RATE_LIMIT_MULTIPLIER: '0', RATE_LIMIT_PER_MINUTE: '1' } });
    try {
      for (let i = 0; i < 5; i++) {
        const res = await off.app.inject({ method: 'GET', url: '/v1/nope', remoteAddress: '10.7.0.1' });
        expect(res.statusCode).toBe(404);
        expect(res.headers['ratelimit-limit']).toBeUndefined();
      }
    } finally {
      await off.close();
    }
  });
});

describe('operations endpoints', () => {
  it('live and ready', async () => {
    expect((await t.app.inject({ method: 'GET', url: '/health/live' })).json()).toEqual({ status: 'ok' });
    const ready = await t.app.inject({ method: 'GET', url: '/health/ready' });
    expect(ready.statusCode).toBe(200);
    expect(ready.json().checks.database).toBe('up');
    expect(ready.json().checks.redis).toBe(t.deps.redis ? 'up' : 'not_configured');
  });

  it('readiness is 503 with Retry-After while draining', async () => {
    t.deps.lifecycle.draining = true;
    try {
      const res = await t.app.inject({ method: 'GET', url: '/health/ready' });
      expect(res.statusCode).toBe(503);
      expect(res.headers['retry-after']).toBe('5');
      expect(res.json()).toMatchObject({ status: 'unavailable', draining: true });
    } finally {
      t.deps.lifecycle.draining = false;
    }
  });

  it('serves Prometheus metrics, including request durations by route', async () => {
    await t.app.inject({ method: 'GET', url: '/health/live' });
    const res = await t.app.inject({ method: 'GET', url: '/metrics' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    expect(res.body).toMatch(
      /http_request_duration_seconds_count\{method="GET",route="\/health\/live",status="200"\} \d+/,
    );
    expect(res.body).toContain('process_cpu_user_seconds_total');
  });

  it('guards metrics with METRICS_TOKEN when set', async () => {
    const guarded = await startTestApp({ env: { METRICS_TOKEN: 'm'.repeat(24) } });
    try {
      expect((await guarded.app.inject({ method: 'GET', url: '/metrics' })).statusCode).toBe(401);
      const ok = await guarded.app.inject({
        method: 'GET',
        url: '/metrics',
        headers: { authorization: `Bearer ${'m'.repeat(24)}` },
      });
      expect(ok.statusCode).toBe(200);
    } finally {
      await guarded.close();
    }
  });

  it('serves the docs UI', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/docs/' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/text\/html/);
    expect(res.headers['content-security-policy']).toContain("script-src 'self'");
  });
});
