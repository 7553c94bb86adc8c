import { randomUUID } from 'node:crypto';
import fastifyCookie from '@fastify/cookie';
import fastifyCors from '@fastify/cors';
import fastifyMultipart from '@fastify/multipart';
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Ajv } from 'ajv';
import ajvFormats from 'ajv-formats';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type RawReplyDefaultExpression,
  type RawRequestDefaultExpression,
  type RawServerDefault,
  type RouteOptions,
} from 'fastify';
import helmet, { type HelmetOptions } from 'helmet';
import type { Deps } from '../deps.js';
import { accessCookieName } from '../lib/auth.js';
import { AppError, forbidden, tooManyRequests, unauthorized } from '../lib/errors.js';
import type { Principal } from '../lib/tokens.js';
import { accountsRoutes } from '../modules/accounts/accounts.routes.js';
import { badgesRoutes } from '../modules/badges/badges.routes.js';
import { chatRoutes } from '../modules/chat/chat.routes.js';
import { dailiesRoutes } from '../modules/dailies/dailies.routes.js';
import { friendsRoutes } from '../modules/friends/friends.routes.js';
import { groupsRoutes } from '../modules/groups/groups.routes.js';
import { leaderboardsRoutes } from '../modules/leaderboards/leaderboards.routes.js';
import { maaRoutes } from '../modules/maa/maa.routes.js';
import { mediaRoutes } from '../modules/media/media.routes.js';
import { notificationsRoutes } from '../modules/notifications/notifications.routes.js';
import { systemRoutes } from '../modules/system/system.routes.js';
import { tasksRoutes } from '../modules/tasks/tasks.routes.js';
import { usersRoutes } from '../modules/users/users.routes.js';
import { attachSockets } from '../realtime/server.js';
import { requireAllowedOrigin } from './auth.js';
import { httpMetrics } from './metrics.js';
import { Problem, problem, problemResponse, sendProblem, toProblem } from './problem.js';

export type AuthPolicy = 'required' | 'optional' | 'none';

export interface RouteRateLimit {
  /** Requests allowed per window for one caller, before RATE_LIMIT_MULTIPLIER. */
  max: number;
  windowMs: number;
  /** Budget name shared by the routes that name it; defaults to the route. */
  scope?: string;
  /** Share of the budget kept when the shared store is down (auth routes: < 1, never fail open). */
  onStoreFailure?: number;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Who may call the route. Every route states it; /v1 routes default to 'required'. */
    auth?: AuthPolicy;
    /** A stricter budget for this route, counted on top of the general one; false = no limits. */
    rateLimit?: RouteRateLimit | false;
    /** Social features: 403 email_not_verified until the address is confirmed (REQUIRE_VERIFIED_EMAIL). */
    verified?: boolean;
    /** A multipart upload of one file in the field `file`, read by the handler with request.file(). */
    multipart?: { maxBytes: number };
  }
  interface FastifyRequest {
    principal: Principal | null;
    authVia: 'bearer' | 'cookie' | null;
  }
}

export type App = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  TypeBoxTypeProvider
>;

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
const REQUEST_ID = /^[A-Za-z0-9._-]{8,64}$/;

/**
 * Every route carries its auth policy into OpenAPI and gets the error responses the platform itself
 * can produce, so the document lists every status a client can see.
 */
function completeRouteSchema(route: RouteOptions) {
  const schema = route.schema as Record<string, unknown> | undefined;
  if (!schema || schema.hide) return;
  const url = route.url;
  for (const field of ['operationId', 'summary', 'tags', 'response'] as const) {
    if (!schema[field]) throw new Error(`Route ${route.method} ${url} has no schema.${field}`);
  }
  const config = (route.config ?? {}) as {
    auth?: AuthPolicy;
    rateLimit?: RouteRateLimit | false;
    multipart?: { maxBytes: number };
  };
  const auth = config.auth ?? 'required';
  const response = schema.response as Record<string, unknown>;
  const methods = Array.isArray(route.method) ? route.method : [route.method];
  const mutates = methods.some((m) => !SAFE_METHODS.has(m));
  const add = (status: number, description: string) => {
    response[status] ??= problemResponse(description);
  };
  // Any mutating route may be sent a body it does not take (refused with 400, 413 or 415).
  if (schema.body || schema.querystring || schema.params || mutates || config.multipart)
    add(400, 'Invalid input.');
  if (auth === 'required') add(401, 'Not signed in, or the session has ended.');
  if (auth !== 'none' && mutates) add(403, 'Cookie-authenticated request from a foreign Origin.');
  if (schema.body || config.multipart || mutates) {
    add(413, 'Body too large.');
    add(415, 'Unsupported content type.');
  }
  if (config.rateLimit !== false) add(429, 'Rate limited; see Retry-After.');
  add(500, 'Unexpected error.');
  add(503, 'Shutting down or a dependency is down; see Retry-After.');
  schema.security =
    auth === 'none'
      ? []
      : auth === 'optional'
        ? [{}, { bearerAuth: [] }, { cookieAuth: [] }]
        : [{ bearerAuth: [] }, { cookieAuth: [] }];
}

export async function buildApp(deps: Deps): Promise<App> {
  const { config } = deps;
  const app = Fastify({
    loggerInstance: deps.log,
    trustProxy: config.TRUST_PROXY,
    bodyLimit: config.BODY_LIMIT_BYTES,
    requestTimeout: config.REQUEST_TIMEOUT_MS,
    connectionTimeout: config.REQUEST_TIMEOUT_MS * 2,
    // Node enforces the request (and headers) timeout only when it sweeps its connections, every 30 s by
    // default: a client dribbling its headers or body a byte at a time was held up to 30 s past the
    // timeout. Sweeping every quarter of it (at most every second) keeps the cut close to the promise.
    http: {
      requestTimeout: config.REQUEST_TIMEOUT_MS,
      headersTimeout: config.REQUEST_TIMEOUT_MS,
      connectionsCheckingInterval: Math.min(1000, Math.floor(config.REQUEST_TIMEOUT_MS / 4)),
    },
    // genReqId reads x-request-id itself, so a hostile value is replaced rather than trusted.
    requestIdHeader: false,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
    return503OnClosing: true,
    // Errors Fastify meets before routing (a broken %-escape, an over-long path parameter) are
    // problems like any other.
    frameworkErrors: (_err, request, reply) =>
      sendProblem(
        reply,
        problem(400, 'invalid_url', 'The URL is not valid.', { instance: String(request.id) }),
      ),
  }).withTypeProvider<TypeBoxTypeProvider>() as unknown as App;

  app.setValidatorCompiler(validatorCompiler());

  app.decorateRequest('principal', null);
  app.decorateRequest('authVia', null);
  app.addSchema(Problem);

  app.addHook('onRoute', (route) => {
    // The docs UI is public static content registered by its plugin.
    if (route.url.startsWith('/docs')) route.config = { ...route.config, auth: 'none' };
    else completeRouteSchema(route as RouteOptions);
  });

  app.setErrorHandler((err, request, reply) => {
    const { problem: p, retryAfter } = toProblem(err, request);
    // A 503 is the planned answer while a dependency is away (readiness says so too): a warning, so the
    // error log keeps to what someone must fix.
    if (p.status === 503) request.log.warn({ err }, 'request refused: a dependency is unavailable');
    else if (p.status >= 500) request.log.error({ err }, 'request failed');
    else if (!(err instanceof AppError))
      request.log.info({ code: p.code, status: p.status }, 'request refused');
    return sendProblem(reply, p, retryAfter);
  });
  app.setNotFoundHandler((request, reply) =>
    sendProblem(
      reply,
      problem(404, 'route_not_found', `No route ${request.method} ${request.url.split('?')[0]}.`, {
        instance: String(request.id),
      }),
    ),
  );

  await app.register(fastifyCookie);
  // Files are streamed by the one route that asked for them, within that route's own limits.
  await app.register(fastifyMultipart, {
    limits: { fileSize: config.BODY_LIMIT_BYTES, files: 1, fields: 0, parts: 1 },
  });
  // An API answers JSON; the only HTML is /docs, which sets its own policy (as do served media).
  const security = securityHeaders({
    contentSecurityPolicy: {
      directives: {
        defaultSrc: ["'none'"],
        frameAncestors: ["'none'"],
        upgradeInsecureRequests: config.isProduction ? [] : null,
      },
    },
    crossOriginResourcePolicy: { policy: 'same-site' },
    hsts: config.isProduction,
  });
  await app.register(fastifyCors, {
    // Unknown origins get no CORS headers at all, so browsers refuse to hand them our responses.
    origin: (origin, cb) => cb(null, origin !== undefined && config.CORS_ORIGINS.includes(origin)),
    credentials: true,
    methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
    exposedHeaders: [
      'Retry-After',
      'RateLimit-Limit',
      'RateLimit-Remaining',
      'RateLimit-Reset',
      'X-Request-Id',
    ],
    maxAge: 600,
  });

  // Hooks that do not wait on anything take Fastify's callback form: no promise per request.
  const metrics = httpMetrics();
  app.addHook('onResponse', (request, reply, done) => {
    metrics.observe(request, reply);
    done();
  });
  app.addHook('onSend', (request, reply, payload, done) => {
    reply.header('x-request-id', request.id);
    // Draining: clients leave their kept-alive connections now, not when the listener closes them.
    if (deps.lifecycle.draining) reply.header('connection', 'close');
    done(null, payload);
  });

  // Security headers first, so that every answer carries them, a refusal included; then who is
  // asking, then their budget (a rate limit needs to know the user).
  app.addHook('onRequest', async (request, reply) => {
    reply.headers(security);
    await authenticate(request, deps);
    await rateLimit(request, reply, deps);
  });
  // @fastify/multipart accepts a form on any route (for request.file()); a JSON route must not read
  // one as an empty body.
  app.addHook('preValidation', (request, _reply, done) => {
    if (request.isMultipart() && !request.routeOptions.config.multipart)
      return done(new AppError(415, 'unsupported_media_type', 'Send JSON (application/json).'));
    done();
  });

  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'TaskMaa API',
        version: '1',
        description:
          'Tasks, dailies with honest streaks, group races, chat and Maa. Errors are RFC 9457 problem+json with a stable `code`.',
      },
      servers: [{ url: config.PUBLIC_URL }],
      components: {
        securitySchemes: {
          bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
          cookieAuth: { type: 'apiKey', in: 'cookie', name: accessCookieName(config.isProduction) },
        },
      },
      tags: [
        { name: 'accounts', description: 'Registration, sign-in, sessions, passwords and my settings.' },
        { name: 'dailies', description: 'Repeating habits, check-ins, history and their streaks.' },
        { name: 'stats', description: 'My streaks, freezes, score and progress.' },
        { name: 'tasks', description: 'My tasks: create, list, change, complete (points once per task).' },
        { name: 'system', description: 'Health, metrics and the API description.' },
        { name: 'users', description: 'Finding people and reading their profiles.' },
        {
          name: 'maa',
          description: "Maa's words for this moment, in my tone and language, and her history.",
        },
        {
          name: 'friends',
          description: 'Friend requests, friends and blocks (a verified email address is required).',
        },
        {
          name: 'media',
          description:
            'Files for chat messages: images re-encoded, PDFs checked; served only to who can see them.',
        },
        {
          name: 'badges',
          description: 'The badge catalogue, and mine (awarded by a job from my history, once each).',
        },
        {
          name: 'leaderboards',
          description:
            'Weekly (ISO week, UTC) and all-time boards, global and among friends; live by socket.',
        },
        {
          name: 'groups',
          description: 'Group tasks: races among friends, ranks and points (verified email required).',
        },
        {
          name: 'notifications',
          description: 'What I was told (requests, invitations, ranks...): list, unread count, mark read.',
        },
      ],
    },
    refResolver: { buildLocalReference: (json, _base, _fragment, i) => String(json.$id ?? `def-${i}`) },
    // Upload routes read their body as a stream, so the document gets their body from the config.
    transform: ({ schema, url, route }) => {
      const multipart = (route.config as { multipart?: { maxBytes: number } } | undefined)?.multipart;
      if (!multipart) return { schema, url };
      return {
        url,
        schema: {
          ...schema,
          consumes: ['multipart/form-data'],
          body: {
            type: 'object',
            required: ['file'],
            properties: {
              file: { type: 'string', format: 'binary', description: `At most ${multipart.maxBytes} bytes.` },
            },
          },
        } as typeof schema,
      };
    },
  });
  await app.register(fastifySwaggerUi, {
    routePrefix: '/docs',
    staticCSP: true,
    // Plain-http localhost in development must not have its assets upgraded to https.
    transformStaticCSP: (header) =>
      config.isProduction ? header : header.replace(/\s*upgrade-insecure-requests;?/, ''),
    uiConfig: { deepLinking: true },
  });

  app.get('/openapi.json', { schema: { hide: true }, config: { auth: 'none', rateLimit: false } }, async () =>
    app.swagger(),
  );

  await app.register(systemRoutes(deps, metrics.registry));
  await app.register(accountsRoutes(deps));
  await app.register(tasksRoutes(deps));
  await app.register(dailiesRoutes(deps));
  await app.register(usersRoutes(deps));
  await app.register(friendsRoutes(deps));
  await app.register(groupsRoutes(deps));
  await app.register(maaRoutes(deps));
  await app.register(mediaRoutes(deps));
  await app.register(chatRoutes(deps));
  await app.register(leaderboardsRoutes(deps));
  await app.register(badgesRoutes(deps));
  await app.register(notificationsRoutes(deps));

  attachSockets(app.server, deps);
  return app;
}

/**
 * Query strings, path parameters and headers arrive as text, so they are coerced to the schema's
 * types ('5' → 5, ?tag=a → ['a']). JSON bodies already carry types: nothing is coerced there, so
 * `"userId": ["…"]` or `"dailyGoal": "3"` is a 400, not silently accepted. In both, unknown fields
 * are refused rather than dropped: a client sending `role` or `score` must learn it cannot set them.
 */
function validatorCompiler() {
  const options = { removeAdditional: false, allErrors: true, useDefaults: true, strict: false } as const;
  // ajv-formats is CommonJS: its function is the module's default export.
  const addFormats = ajvFormats as unknown as (ajv: Ajv) => Ajv;
  const withFormats = (ajv: Ajv) => {
    addFormats(ajv);
    // ajv-formats splits a date-time at every whitespace character before it looks at it: 100 KB of
    // spaces took 40–49 ms (C7's bound is 50). No valid date-time comes near 100 characters.
    const full = ajv.formats['date-time'] as { validate: (s: string) => boolean };
    ajv.addFormat('date-time', { ...full, validate: (s: string) => s.length <= 100 && full.validate(s) });
    return ajv;
  };
  const coercing = withFormats(new Ajv({ ...options, coerceTypes: 'array' }));
  const exact = withFormats(new Ajv({ ...options, coerceTypes: false }));
  return ({ schema, httpPart }: { schema: object; httpPart?: string }) =>
    (httpPart === 'body' ? exact : coercing).compile(schema);
}

/**
 * Helmet's headers for these options, computed once: they are the same for every answer, and
 * building them per request (as @fastify/helmet does) was a tenth of the time of a trivial request.
 */
export function securityHeaders(options: HelmetOptions): Record<string, string> {
  const headers: Record<string, string> = {};
  const res = {
    setHeader: (name: string, value: string | number) => {
      headers[name.toLowerCase()] = String(value);
    },
    removeHeader: (name: string) => {
      delete headers[name.toLowerCase()];
    },
  };
  helmet(options)({} as never, res as never, () => {});
  return headers;
}

function bearerToken(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (!header) return undefined;
  const match = /^Bearer ([A-Za-z0-9._~+/=-]+)$/.exec(header);
  return match?.[1];
}

async function authenticate(request: FastifyRequest, deps: Deps) {
  // Unknown routes (no url) answer 404 to everyone rather than asking for a sign-in first.
  const policy =
    request.routeOptions.url === undefined ? 'optional' : (request.routeOptions.config.auth ?? 'required');
  if (policy === 'none') return;
  const bearer = bearerToken(request);
  const cookie = bearer ? undefined : request.cookies[accessCookieName(deps.config.isProduction)];
  const principal = await deps.auth.authenticate(bearer ?? cookie);
  if (principal) {
    request.principal = principal;
    request.authVia = bearer ? 'bearer' : 'cookie';
    request.log = request.log.child({ userId: principal.userId });
  }
  if (!principal && policy === 'required') throw unauthorized();
  if (
    principal &&
    request.routeOptions.config.verified &&
    deps.config.REQUIRE_VERIFIED_EMAIL &&
    !principal.emailVerified
  ) {
    throw forbidden('email_not_verified', 'Confirm your email address first; we can send the mail again.');
  }
  // Bearer tokens cannot be attached by another site, so only cookie-carried mutations are checked.
  if (request.authVia === 'cookie' && !SAFE_METHODS.has(request.method))
    requireAllowedOrigin(request, deps.config);
}

async function rateLimit(request: FastifyRequest, reply: FastifyReply, deps: Deps) {
  const routeLimit = request.routeOptions.config.rateLimit;
  const multiplier = deps.config.RATE_LIMIT_MULTIPLIER;
  if (routeLimit === false || multiplier === 0) return;
  const who = request.principal ? `u:${request.principal.userId}` : `ip:${request.ip}`;
  const budgets: { key: string; max: number; windowMs: number; onStoreFailure?: number }[] = [
    { key: `api:${who}`, max: deps.config.RATE_LIMIT_PER_MINUTE, windowMs: 60_000 },
  ];
  if (routeLimit) {
    const scope = routeLimit.scope ?? `${request.method}:${request.routeOptions.url}`;
    budgets.push({
      key: `${scope}:${who}`,
      max: routeLimit.max,
      windowMs: routeLimit.windowMs,
      ...(routeLimit.onStoreFailure !== undefined ? { onStoreFailure: routeLimit.onStoreFailure } : {}),
    });
  }
  // The strictest budget is the one the client needs to hear about.
  let tightest: Awaited<ReturnType<typeof deps.rateLimiter.hit>> | undefined;
  for (const b of budgets) {
    const max = Math.max(1, Math.floor(b.max * multiplier));
    const result = await deps.rateLimiter.hit(b.key, max, b.windowMs, {
      onStoreFailure: b.onStoreFailure ?? 1,
    });
    if (!tightest || !result.allowed || result.remaining < tightest.remaining) tightest = result;
    if (!result.allowed) break;
  }
  if (!tightest) return;
  const resetSeconds = Math.max(1, Math.ceil(tightest.resetMs / 1000));
  reply.header('ratelimit-limit', String(tightest.limit));
  reply.header('ratelimit-remaining', String(tightest.remaining));
  reply.header('ratelimit-reset', String(resetSeconds));
  if (!tightest.allowed) throw tooManyRequests(resetSeconds);
}
