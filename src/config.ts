import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { type Static, Type as T } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

// The only reader of process.env. Each variable has a description (copied into .env.example, which a
// test keeps in step) and a default, or is optional. Values arrive as strings; TypeBox converts them.
const EnvSchema = T.Object({
  NODE_ENV: T.Union([T.Literal('development'), T.Literal('test'), T.Literal('production')], {
    default: 'development',
    description: 'development | test | production. Production requires secrets and Secure cookies.',
  }),
  ROLE: T.Union([T.Literal('serve'), T.Literal('api'), T.Literal('worker')], {
    default: 'serve',
    description: 'serve = api and worker in one process; api = HTTP and sockets only; worker = jobs only.',
  }),
  HOST: T.Optional(
    T.String({
      minLength: 1,
      description: 'Interface to listen on. Default 127.0.0.1, or 0.0.0.0 in production.',
    }),
  ),
  PORT: T.Integer({
    minimum: 0,
    maximum: 65535,
    default: 3000,
    description: 'HTTP port (0 = any free port).',
  }),
  PUBLIC_URL: T.Optional(
    T.String({
      pattern: '^https?://[^\\s]+$',
      description:
        'Public base URL of this API, used in the OpenAPI servers list. Default http://localhost:PORT.',
    }),
  ),
  APP_URL: T.String({
    pattern: '^https?://[^\\s]+$',
    default: 'http://localhost:5173',
    description: "The client's address; links in mails point here.",
  }),
  CORS_ORIGINS: T.Optional(
    T.String({
      description:
        'Comma-separated origins allowed for CORS, cookie-authenticated mutations and sockets. Default: the origin of APP_URL.',
    }),
  ),
  TRUST_PROXY: T.String({
    default: 'false',
    description: 'false, true, or comma-separated proxy addresses/CIDRs whose X-Forwarded-For is trusted.',
  }),
  DATA_DIR: T.String({
    minLength: 1,
    default: './data',
    description: 'Embedded database, development secrets, dev mailbox and uploads live here.',
  }),
  DATABASE_URL: T.Optional(
    T.String({
      pattern: '^postgres(ql)?://',
      description: 'PostgreSQL connection string. Unset = embedded PGlite under DATA_DIR.',
    }),
  ),
  DATABASE_POOL_MAX: T.Integer({
    minimum: 1,
    maximum: 200,
    default: 10,
    description: 'PostgreSQL pool size.',
  }),
  DATABASE_STATEMENT_TIMEOUT_MS: T.Integer({
    minimum: 100,
    default: 10000,
    description: 'Longest a single SQL statement may run on PostgreSQL.',
  }),
  REDIS_URL: T.Optional(
    T.String({
      pattern: '^rediss?://',
      description: 'Redis connection string. Unset = in-process cache, jobs, rate limits and socket adapter.',
    }),
  ),
  REDIS_PREFIX: T.String({
    pattern: '^[a-zA-Z0-9_-]{1,40}$',
    default: 'taskmaa',
    description: 'Prefix of every Redis key, queue and stream, so environments can share a server.',
  }),
  REDIS_COMMAND_TIMEOUT_MS: T.Integer({
    minimum: 50,
    default: 1000,
    description: 'A Redis command slower than this fails, so a hung Redis never hangs a request.',
  }),
  LOG_LEVEL: T.Union(
    ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => T.Literal(l)),
    { default: 'info', description: 'pino log level.' },
  ),
  BODY_LIMIT_BYTES: T.Integer({
    minimum: 1024,
    default: 1_048_576,
    description: 'Largest JSON request body; larger gets 413.',
  }),
  MEDIA_QUOTA_BYTES: T.Integer({
    minimum: 0,
    default: 209_715_200,
    description:
      'Total bytes of chat files (stored re-encoded) one user may keep; an upload beyond gets 409 media_quota_exceeded.',
  }),
  SOCKET_PING_INTERVAL_MS: T.Integer({
    minimum: 1000,
    default: 25_000,
    description:
      'How often the server pings each socket; with the timeout, how soon a vanished client is dropped.',
  }),
  SOCKET_PING_TIMEOUT_MS: T.Integer({
    minimum: 1000,
    default: 20_000,
    description:
      'How long a ping may go unanswered before the socket is closed (and the user may go offline).',
  }),
  PRESENCE_OFFLINE_GRACE_MS: T.Integer({
    minimum: 0,
    default: 5000,
    description:
      'How long a user has no connection left before friends hear they went offline (reloads, flaky links).',
  }),
  REQUEST_TIMEOUT_MS: T.Integer({
    minimum: 1000,
    default: 30000,
    description: 'A request that has not been fully received and answered within this is cut off.',
  }),
  RATE_LIMIT_MULTIPLIER: T.Number({
    minimum: 0,
    default: 1,
    description: 'Scales every rate limit; 0 turns them off (load tests, local experiments).',
  }),
  RATE_LIMIT_PER_MINUTE: T.Integer({
    minimum: 1,
    default: 600,
    description: 'General API budget per minute: per user when signed in, per IP otherwise.',
  }),
  ACCESS_TOKEN_SECRET: T.Optional(
    T.String({
      minLength: 32,
      description:
        'HMAC key (≥ 32 chars) for access tokens. Required in production; generated once under DATA_DIR otherwise.',
    }),
  ),
  ACCESS_TOKEN_TTL_SECONDS: T.Integer({
    minimum: 60,
    maximum: 3600,
    default: 900,
    description: 'Access token lifetime.',
  }),
  SMTP_URL: T.Optional(
    T.String({
      pattern: '^smtps?://',
      description:
        'SMTP server for mail (smtp:// or smtps://, credentials in the URL). Unset = dev mailbox under DATA_DIR/mail.',
    }),
  ),
  MAIL_FROM: T.String({
    minLength: 3,
    default: 'TaskMaa <no-reply@taskmaa.local>',
    description: 'The From address of every mail.',
  }),
  REQUIRE_VERIFIED_EMAIL: T.Boolean({
    default: true,
    description:
      'Refuse social features (friends, chat, group tasks) with 403 email_not_verified until the email is confirmed.',
  }),
  GRACE_HOURS: T.Integer({
    minimum: 0,
    maximum: 12,
    default: 3,
    description:
      "Hours after today's day start during which yesterday's dailies may still be checked in (marked late).",
  }),
  ROLLOVER_EVERY_MS: T.Integer({
    minimum: 10_000,
    default: 300_000,
    description: 'How often the worker closes the logical days that have ended, in every time zone.',
  }),
  MAA_NUDGES: T.Boolean({
    default: true,
    description:
      "Maa's scheduled words (a job every 15 minutes, in the users' morning and evening windows). false keeps only her words about events (a podium finish, a friend passing, a comeback).",
  }),
  METRICS_TOKEN: T.Optional(
    T.String({ minLength: 16, description: 'If set, /metrics requires `Authorization: Bearer <token>`.' }),
  ),
  MAA_LLM_URL: T.Optional(
    T.String({
      pattern: '^https?://[^\\s]+$',
      description:
        "Base URL of an OpenAI-compatible API (…/v1) for Maa's words; /chat/completions is appended. Unset = templates only.",
    }),
  ),
  MAA_LLM_MODEL: T.Optional(
    T.String({ minLength: 1, description: 'Model name sent to MAA_LLM_URL. Default gpt-4o-mini.' }),
  ),
  MAA_LLM_API_KEY: T.Optional(
    T.String({ minLength: 1, description: 'Bearer token for MAA_LLM_URL, if it needs one.' }),
  ),
  JOBS_CONCURRENCY: T.Integer({
    minimum: 1,
    maximum: 64,
    default: 4,
    description: 'Jobs run at once per worker.',
  }),
  JOBS_LOCK_MS: T.Integer({
    minimum: 1000,
    default: 30_000,
    description:
      'Production mode: how long a worker holds a running job (renewed while it runs); a dead worker’s jobs run again this long after, at most.',
  }),
  JOBS_DRAIN_MS: T.Integer({
    minimum: 0,
    default: 5000,
    description:
      'After SIGTERM, how long a worker waits for its running jobs; longer ones are left to run again (production mode: on another worker once their lock expires; embedded: at the next start). With SHUTDOWN_DRAIN_DELAY_MS, below SHUTDOWN_TIMEOUT_MS.',
  }),
  OUTBOX_SWEEP_MS: T.Integer({
    minimum: 100,
    default: 5000,
    description: 'How often a worker looks for outbox rows nobody relayed (after a crash).',
  }),
  SHUTDOWN_DRAIN_DELAY_MS: T.Integer({
    minimum: 0,
    default: 0,
    description:
      'After SIGTERM, readiness is 503 for this long before the listener closes (load balancer grace).',
  }),
  SHUTDOWN_TIMEOUT_MS: T.Integer({
    minimum: 1000,
    default: 9000,
    description: 'After SIGTERM, give up waiting for in-flight work and exit non-zero after this.',
  }),
  FAULT_POINT: T.Optional(
    T.Union([T.Literal('outbox.after_commit'), T.Literal('outbox.after_enqueue')], {
      description:
        'Fault tests only, ignored unless NODE_ENV=test: the process SIGKILLs itself the first time it reaches this point.',
    }),
  ),
});

type Env = Static<typeof EnvSchema>;

export type Config = Omit<Env, 'HOST' | 'PUBLIC_URL' | 'CORS_ORIGINS' | 'TRUST_PROXY'> & {
  HOST: string;
  PUBLIC_URL: string;
  CORS_ORIGINS: string[];
  TRUST_PROXY: boolean | string | string[];
  DATA_DIR: string;
  ACCESS_TOKEN_SECRET: string;
  isProduction: boolean;
};

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Every variable the service reads, with its description: .env.example mirrors this. */
export const configVariables = Object.entries(EnvSchema.properties).map(([name, schema]) => ({
  name,
  description: (schema as { description?: string }).description ?? '',
}));

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const raw: Record<string, unknown> = {};
  for (const name of Object.keys(EnvSchema.properties)) {
    const value = env[name];
    if (value !== undefined && value !== '') raw[name] = value.trim();
  }
  const withDefaults = Value.Default(EnvSchema, Value.Convert(EnvSchema, raw));
  const firstError = Value.Errors(EnvSchema, withDefaults).First();
  if (firstError) {
    const name = firstError.path.replace(/^\//, '').split('/')[0] ?? '';
    const shown = name in raw ? ` (got ${JSON.stringify(redactIfSecret(name, String(raw[name])))})` : '';
    throw new ConfigError(`Invalid environment variable ${name}: ${firstError.message}${shown}`);
  }
  const parsed = withDefaults as Env;
  if (parsed.ROLE !== 'serve' && (!parsed.DATABASE_URL || !parsed.REDIS_URL)) {
    throw new ConfigError(
      `Invalid environment variable ROLE: ROLE=${parsed.ROLE} runs beside other processes, so it needs DATABASE_URL and REDIS_URL (the embedded mode is one process: ROLE=serve)`,
    );
  }
  // The drain delay and the job drain come one after the other before the shutdown deadline.
  if (parsed.SHUTDOWN_DRAIN_DELAY_MS + parsed.JOBS_DRAIN_MS >= parsed.SHUTDOWN_TIMEOUT_MS) {
    throw new ConfigError(
      `Invalid environment variable JOBS_DRAIN_MS: with SHUTDOWN_DRAIN_DELAY_MS (${parsed.SHUTDOWN_DRAIN_DELAY_MS} + ${parsed.JOBS_DRAIN_MS} ms) it must end before SHUTDOWN_TIMEOUT_MS (${parsed.SHUTDOWN_TIMEOUT_MS} ms), or a long job makes the shutdown exit non-zero`,
    );
  }
  const isProduction = parsed.NODE_ENV === 'production';
  const dataDir = resolve(parsed.DATA_DIR);
  return {
    ...parsed,
    isProduction,
    DATA_DIR: dataDir,
    HOST: parsed.HOST ?? (isProduction ? '0.0.0.0' : '127.0.0.1'),
    PUBLIC_URL: stripSlash(parsed.PUBLIC_URL ?? `http://localhost:${parsed.PORT}`),
    APP_URL: stripSlash(parsed.APP_URL),
    CORS_ORIGINS: parseOrigins(parsed.CORS_ORIGINS ?? new URL(parsed.APP_URL).origin),
    TRUST_PROXY: parseTrustProxy(parsed.TRUST_PROXY),
    ACCESS_TOKEN_SECRET: parsed.ACCESS_TOKEN_SECRET ?? developmentSecret(parsed.NODE_ENV, dataDir),
  };
}

function redactIfSecret(name: string, value: string): string {
  return /SECRET|TOKEN|PASSWORD|URL|KEY/.test(name) ? '<redacted>' : value;
}

function stripSlash(url: string): string {
  return url.replace(/\/+$/, '');
}

function parseOrigins(list: string): string[] {
  const origins = list
    .split(',')
    .map((o) => o.trim())
    .filter(Boolean);
  for (const origin of origins) {
    let parsed: URL;
    try {
      parsed = new URL(origin);
    } catch {
      throw new ConfigError(
        `Invalid environment variable CORS_ORIGINS: ${JSON.stringify(origin)} is not a URL`,
      );
    }
    if (parsed.origin !== origin) {
      throw new ConfigError(
        `Invalid environment variable CORS_ORIGINS: ${JSON.stringify(origin)} must be a bare origin like ${parsed.origin}`,
      );
    }
  }
  return origins;
}

function parseTrustProxy(value: string): boolean | string | string[] {
  if (value === 'false') return false;
  if (value === 'true') return true;
  return value
    .split(',')
    .map((v) => v.trim())
    .filter(Boolean);
}

// In development and tests a random key is made once and kept under DATA_DIR, so tokens survive
// restarts without anyone having to invent a secret. Production must be told its secrets.
function developmentSecret(nodeEnv: Env['NODE_ENV'], dataDir: string): string {
  if (nodeEnv === 'production') {
    throw new ConfigError(
      'Invalid environment variable ACCESS_TOKEN_SECRET: required in production (≥ 32 chars)',
    );
  }
  const file = join(dataDir, 'secrets.json');
  if (existsSync(file)) {
    const stored = JSON.parse(readFileSync(file, 'utf8')) as { accessTokenSecret?: string };
    if (stored.accessTokenSecret && stored.accessTokenSecret.length >= 32) return stored.accessTokenSecret;
  }
  mkdirSync(dataDir, { recursive: true });
  const secret = randomBytes(48).toString('base64url');
  writeFileSync(file, `${JSON.stringify({ accessTokenSecret: secret }, null, 2)}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  return secret;
}
