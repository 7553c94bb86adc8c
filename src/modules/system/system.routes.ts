import { timingSafeEqual } from 'node:crypto';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type as T } from '@sinclair/typebox';
import type { Registry } from 'prom-client';
import type { Deps } from '../../deps.js';
import { problemResponse } from '../../http/problem.js';
import { unauthorized } from '../../lib/errors.js';
import { Liveness, Readiness } from './system.schemas.js';

const ops = { auth: 'none', rateLimit: false } as const;

export const systemRoutes =
  (deps: Deps, registry: Registry): FastifyPluginAsyncTypebox =>
  async (app) => {
    app.get(
      '/health/live',
      {
        config: ops,
        // Load balancers probe every second: only trouble is worth a log line.
        logLevel: 'warn',
        schema: {
          operationId: 'getLiveness',
          summary: 'The process is up',
          tags: ['system'],
          response: { 200: Liveness },
        },
      },
      async () => ({ status: 'ok' as const }),
    );

    app.get(
      '/health/ready',
      {
        config: ops,
        // Load balancers probe every second: only trouble is worth a log line.
        logLevel: 'warn',
        schema: {
          operationId: 'getReadiness',
          summary: 'Ready for traffic: database and Redis reachable, not shutting down',
          tags: ['system'],
          response: { 200: Readiness, 503: Readiness },
        },
      },
      async (_request, reply) => {
        const report = await deps.system.readiness();
        if (report.status !== 'ok') reply.code(503).header('retry-after', '5');
        return report;
      },
    );

    app.get(
      '/metrics',
      {
        config: ops,
        schema: {
          operationId: 'getMetrics',
          summary: 'Prometheus metrics',
          description: 'Requires `Authorization: Bearer <METRICS_TOKEN>` when METRICS_TOKEN is set.',
          tags: ['system'],
          response: {
            200: {
              description: 'Prometheus text format.',
              content: { 'text/plain': { schema: T.String() } },
            },
            401: problemResponse('METRICS_TOKEN is set and was not given.'),
          },
        },
      },
      async (request, reply) => {
        const expected = deps.config.METRICS_TOKEN;
        if (expected) {
          const given = Buffer.from(request.headers.authorization ?? '');
          const wanted = Buffer.from(`Bearer ${expected}`);
          if (given.length !== wanted.length || !timingSafeEqual(given, wanted)) {
            throw unauthorized('metrics_token_required', 'Metrics need the metrics token.');
          }
        }
        reply.type(registry.contentType);
        return registry.metrics();
      },
    );
  };
