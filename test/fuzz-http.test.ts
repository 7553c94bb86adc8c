import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { ValidateFunction } from 'ajv';
import type { InjectOptions } from 'fastify';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { refreshCookieName } from '../src/http/auth.js';
import { accessCookieName } from '../src/lib/auth.js';
import { seedFromEnv } from './chat-kit.js';
import { figure } from './figures.js';
import {
  adversarialStrings,
  type Body,
  describePlan,
  docValidators,
  docVerdict,
  EMAIL,
  extraFieldsFor,
  leaksIn,
  MASS_ASSIGNMENT,
  type MutationContext,
  mutate,
  mutationsFor,
  ODD_STRINGS,
  type OpenApiDoc,
  type Operation,
  oddStrings,
  operationsOf,
  type PatternField,
  type Plan,
  patternFields,
  payloadOf,
  type Rng,
  rng,
  urlOf,
  validPlan,
} from './fuzz-kit.js';
import { aUser, DEFAULT_PASSWORD, lane, signIn, startTestApp, type TestApp } from './helpers.js';

// RELIABILITY C1 (schema-driven fuzz), with A6 (mass assignment), A7 (excess exposure) and C7 (ReDoS).
// Every operation of the app's own /openapi.json gets valid and mutated requests, signed in (a verified
// user with a task, a daily, a friend, a group task, a conversation, media...) and not; every answer
// must be < 500, declared for its operation, valid against the declared schema, problem+json with a
// code when an error, and free of hashes, tokens and other people's emails. Seeded: SEED=... replays a
// run; FUZZ_RUNS (requests per operation, default 40) makes it longer.

const SEED = seedFromEnv();
const RUNS = Math.max(4, Number(process.env.FUZZ_RUNS ?? 40));
const CONCURRENCY = lane.services ? 4 : 1;
const C7_LIMIT_MS = 50;
/**
 * Wall-clock budget for the fuzz requests (FUZZ_BUDGET_S): each phase gets its share, and stops
 * sending when that is spent (the skipped requests are printed). None when FUZZ_RUNS is set.
 */
const BUDGET_S = Number(process.env.FUZZ_BUDGET_S ?? (process.env.FUZZ_RUNS ? Number.POSITIVE_INFINITY : 45));

/** Figures of both tests, printed together at the end. */
const figures = { c1: '', c7: '' };

type Caller = {
  name:
    | 'me'
    | 'anonymous'
    | 'unverified'
    | 'garbage token'
    | 'revoked token'
    | 'cookie'
    | 'cookie, foreign origin';
  headers: Record<string, string>;
  email?: string;
};

interface Violation {
  kind: '5xx' | 'undeclared' | 'schema' | 'problem' | 'leak' | 'a6' | 'oracle' | 'invariant';
  op: string;
  request: string;
  status: number;
  detail: string;
  /** What makes two violations the same defect, for the report; default: kind and detail. */
  sig?: string;
}

interface Person {
  id: string;
  username: string;
  email: string;
  token: string;
  headers: Record<string, string>;
}

let t: TestApp;
let doc: OpenApiDoc;
let ops: Operation[];
let validators: ReturnType<typeof docValidators>;
/** The app's own compiled validators, per route and part, caught as requests pass (C7). */
const appValidators = new Map<string, ValidateFunction>();

beforeAll(async () => {
  t = await startTestApp({
    env: { RATE_LIMIT_MULTIPLIER: '0' },
    beforeReady(app) {
      app.addHook('onRequest', async (request) => {
        const url = request.routeOptions.url;
        if (!url) return;
        for (const part of ['params', 'querystring', 'headers', 'body'] as const) {
          const key = `${request.method} ${url} ${part}`;
          if (appValidators.has(key)) continue;
          const v = request.getValidationFunction(part);
          if (v) appValidators.set(key, v as unknown as ValidateFunction);
        }
      });
    },
  });
  doc = (await t.app.inject({ method: 'GET', url: '/openapi.json' })).json() as OpenApiDoc;
  ops = operationsOf(doc);
  validators = docValidators(doc);
});
afterAll(async () => {
  if (figures.c1 || figures.c7) console.log([figures.c1, figures.c7].filter(Boolean).join('; '));
  await t?.close();
});

// ---------------------------------------------------------------------------------------------------
// The world: the signed-in user with some of everything, and others who own things too.

async function person(verified = true, password?: string): Promise<Person> {
  const u = await aUser(t.deps, { verified, ...(password ? { password } : {}) });
  const s = await signIn(t.deps, u.id);
  return { id: u.id, username: u.username, email: u.email, token: s.token, headers: s.headers };
}

async function call(who: Person | null, method: string, url: string, payload?: unknown) {
  const res = await t.app.inject({
    method: method as 'GET',
    url,
    headers: who?.headers ?? {},
    ...(payload === undefined ? {} : { payload: payload as object }),
  });
  if (res.statusCode >= 300) throw new Error(`setup ${method} ${url} → ${res.statusCode} ${res.body}`);
  return res.statusCode === 204 ? {} : (res.json() as Record<string, unknown>);
}

const upload = (who: Person, url: string, method: 'POST' | 'PUT', png: Buffer) =>
  t.app
    .inject({
      method,
      url,
      headers: { ...who.headers, 'content-type': 'multipart/form-data; boundary=X' },
      payload: Buffer.concat([
        Buffer.from('--X\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'),
        Buffer.from('Content-Type: image/png\r\n\r\n'),
        png,
        Buffer.from('\r\n--X--\r\n'),
      ]),
    })
    .then((r) => {
      if (r.statusCode >= 300) throw new Error(`upload ${url} → ${r.statusCode} ${r.body}`);
      return r.json() as Record<string, unknown>;
    });

async function buildWorld() {
  const d = t.deps;
  // My password is not the one the generator knows (DEFAULT_PASSWORD, for signing in as loginUser):
  // deleteMe and changePassword can never succeed, so the run keeps its user.
  const [
    me,
    friend,
    friend2,
    loginUser,
    requester,
    target,
    blocked,
    stranger,
    stranger2,
    stranger3,
    unverified,
  ] = await Promise.all([
    person(true, `me-only ${randomUUID()}`),
    person(),
    person(),
    person(),
    person(),
    person(),
    person(),
    person(),
    person(),
    person(),
    person(false, `unverified ${randomUUID()}`),
  ]);
  const befriend = async (a: Person, b: Person) => {
    const asked = await d.friends.sendRequest(a.id, b.id);
    await d.friends.accept(b.id, asked.body.id);
  };
  await befriend(me, friend);
  await befriend(me, friend2);
  await befriend(stranger, stranger2);
  const incoming = (await d.friends.sendRequest(requester.id, me.id)).body.id;
  const outgoing = (await d.friends.sendRequest(me.id, target.id)).body.id;
  const theirRequest = (await d.friends.sendRequest(stranger3.id, stranger.id)).body.id;
  await d.friends.block(me.id, blocked.id);

  const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#c33' } })
    .png()
    .toBuffer();
  const due = new Date(Date.now() + 7 * 86400_000).toISOString();

  // Mine: tasks (one done), dailies (one checked in), a group race with my friend in it, an
  // invitation from my friend, a conversation with messages both ways, a file sent in it, an avatar.
  const tasks: string[] = [];
  for (const body of [
    { title: 'Buy milk', tags: ['home'], priority: 'high', dueAt: due },
    { title: 'Call Maa' },
    { title: 'Water plants', description: 'the balcony ones' },
  ])
    tasks.push((await call(me, 'POST', '/v1/tasks', body)).id as string);
  await call(me, 'POST', `/v1/tasks/${tasks[1]}/complete`);
  const dailies: string[] = [];
  for (const body of [{ title: 'Walk' }, { title: 'Read', weekdays: [1, 2, 3, 4, 5, 6, 7] }])
    dailies.push((await call(me, 'POST', '/v1/dailies', body)).id as string);
  await call(me, 'POST', `/v1/dailies/${dailies[0]}/check-ins`, {});
  const myGroup = (await call(me, 'POST', '/v1/group-tasks', {
    title: 'Race to 10k steps',
    visibility: 'public',
    dueAt: due,
  })) as { id: string };
  await d.groups.join(friend.id, myGroup.id);
  const friendGroup = (await call(friend, 'POST', '/v1/group-tasks', {
    title: 'Private race',
    visibility: 'private',
    dueAt: due,
    inviteUserIds: [me.id],
  })) as { id: string };
  const direct = (await call(me, 'POST', '/v1/conversations', { userId: friend.id })) as { id: string };
  const media = (await upload(me, '/v1/media', 'POST', png)) as { id: string };
  const messages: string[] = [];
  messages.push(
    (
      (await call(me, 'POST', `/v1/conversations/${direct.id}/messages`, {
        clientMessageId: 'setup-1',
        body: 'Hello!',
        mediaId: media.id,
      })) as { id: string }
    ).id,
  );
  messages.push(
    (
      (await call(friend, 'POST', `/v1/conversations/${direct.id}/messages`, {
        clientMessageId: 'setup-2',
        body: 'Hi back',
      })) as { id: string }
    ).id,
  );
  const { rows: groupConv } = await d.db.query<{ id: string }>(
    'SELECT id FROM conversations WHERE group_task_id = $1',
    [myGroup.id],
  );
  const avatar = (await upload(me, '/v1/me/avatar', 'PUT', png)) as { avatarUrl: string };
  const spareSessions: string[] = [];
  for (let i = 0; i < 6; i++) spareSessions.push((await signIn(d, me.id)).sessionId);

  // Theirs: the same kinds of things, owned by people I have nothing to do with.
  const theirTask = (await call(stranger, 'POST', '/v1/tasks', { title: 'Secret plan' })).id as string;
  const theirDaily = (await call(stranger, 'POST', '/v1/dailies', { title: 'Secret habit' })).id as string;
  await call(stranger, 'POST', `/v1/dailies/${theirDaily}/check-ins`, {});
  const theirGroup = (await call(stranger, 'POST', '/v1/group-tasks', {
    title: 'Their private race',
    visibility: 'private',
    dueAt: due,
    inviteUserIds: [stranger2.id],
  })) as { id: string };
  const theirDirect = (await call(stranger, 'POST', '/v1/conversations', { userId: stranger2.id })) as {
    id: string;
  };
  const theirMedia = (await upload(stranger, '/v1/media', 'POST', png)) as { id: string };
  const theirMessage = (
    (await call(stranger, 'POST', `/v1/conversations/${theirDirect.id}/messages`, {
      clientMessageId: 'their-1',
      body: 'psst',
      mediaId: theirMedia.id,
    })) as { id: string }
  ).id;
  const theirSession = (await signIn(d, stranger.id)).sessionId;
  const { rows: invs } = await d.db.query<{ id: string; to_user_id: string }>(
    'SELECT id, to_user_id FROM group_invitations',
  );
  const { rows: notes } = await d.db.query<{ id: string; user_id: string }>(
    'SELECT id, user_id FROM notifications',
  );
  const { rows: theirConvs } = await d.db.query<{ id: string }>(
    'SELECT id FROM conversations WHERE group_task_id = $1',
    [theirGroup.id],
  );
  const today = new Date().toISOString().slice(0, 10);
  const yesterday = new Date(Date.now() - 86400_000).toISOString().slice(0, 10);

  // Pools: what a valid request may name; mine first, then someone else's.
  const pools: Record<string, string[]> = {
    tasks: [...tasks, theirTask],
    dailies: [...dailies, theirDaily],
    sessions: [...spareSessions, theirSession],
    'friend-requests': [incoming, outgoing, theirRequest],
    'group-tasks': [myGroup.id, friendGroup.id, theirGroup.id],
    'group-invitations': invs.map((i) => i.id),
    media: [media.id, theirMedia.id],
    conversations: [
      direct.id,
      direct.id,
      ...groupConv.map((c) => c.id),
      theirDirect.id,
      ...theirConvs.map((c) => c.id),
    ],
    message: [...messages, theirMessage],
    // Mine listed more than once: valid requests mostly name what works.
    userId: [
      friend.id,
      friend.id,
      friend2.id,
      friend2.id,
      stranger.id,
      requester.id,
      target.id,
      blocked.id,
      me.id,
      unverified.id,
    ],
    login: [loginUser.username, loginUser.email],
    password: [DEFAULT_PASSWORD],
    refreshToken: [],
    username: [me.username, friend.username, stranger.username, blocked.username],
    avatar: [avatar.avatarUrl.split('/').pop() as string],
    notification: notes.map((n) => n.id),
    date: [today, yesterday],
    clientMessageId: ['fuzz-retry-1', 'fuzz-retry-2'],
    cursor: [],
  };
  return {
    me,
    friend,
    friend2,
    loginUser,
    stranger,
    stranger2,
    stranger3,
    unverified,
    requester,
    target,
    blocked,
    pools,
    png,
  };
}

type World = Awaited<ReturnType<typeof buildWorld>>;

// ---------------------------------------------------------------------------------------------------
// Checking one answer

/** Operations that end the caller's session or account: "me" calls them on a session of its own. */
const SESSION_ENDING = new Set(['logout', 'revokeSession', 'changePassword', 'deleteMe', 'resetPassword']);
/** Run after everything else, so what they remove is there for the rest first. */
const LATE = new Set([
  'blockUser',
  'leaveGroupTask',
  'closeGroupTask',
  'declineFriendRequest',
  'acceptFriendRequest',
  'declineGroupInvitation',
  'acceptGroupInvitation',
  'revokeSession',
  'logout',
  'changePassword',
  'resetPassword',
]);
/** Argon2 on the valid path: fewer valid requests, the mutated ones fail before hashing. */
const SLOW = new Set(['register', 'login', 'changePassword', 'deleteMe', 'resetPassword']);
const TOKEN_ROUTES = new Set(['login', 'refresh', 'register']);

interface Stats {
  requests: number;
  byStatus: Map<number, number>;
  /** Per operation: statuses seen, for FUZZ_VERBOSE. */
  perOp: Map<string, Map<string, { n: number; example: string }>>;
  successes: Map<string, number>;
  routeMisses: number;
  /** Requests carrying an undeclared field past sign-in (A6), and requests judged by the document. */
  massAssignments: number;
  /** Document/server disagreements that do not fail the run (printed). */
  notes: string[];
  judged: number;
  slowest: { ms: number; request: string };
  bodies: string[];
  violations: Violation[];
}

const newStats = (): Stats => ({
  requests: 0,
  byStatus: new Map(),
  perOp: new Map(),
  successes: new Map(),
  routeMisses: 0,
  massAssignments: 0,
  notes: [],
  judged: 0,
  slowest: { ms: 0, request: '' },
  bodies: [],
  violations: [],
});

/** Whether the request gets past authentication; undefined when the document cannot say. */
function passesAuth(op: Operation, caller: Caller): boolean | undefined {
  if (op.auth === 'none') return true;
  switch (caller.name) {
    case 'me':
    case 'cookie':
      return true;
    case 'cookie, foreign origin':
      return op.method === 'GET' ? true : undefined;
    case 'unverified':
      return undefined; // verified-only routes answer 403 first, and the document does not name them
    default:
      return op.auth === 'optional';
  }
}

async function send(plan: Plan, caller: Caller, stats: Stats, secrets: Set<string>) {
  const { payload, contentType } = payloadOf(plan);
  const headers: Record<string, string> = { ...caller.headers, ...plan.headers };
  if (contentType !== undefined) headers['content-type'] = contentType;
  const request = describePlan(plan, caller.name);
  const started = performance.now();
  let res: Awaited<ReturnType<typeof t.app.inject>>;
  try {
    res = await t.app.inject({
      method: plan.method ?? plan.op.method,
      url: urlOf(plan),
      headers,
      ...(payload !== undefined ? { payload } : {}),
    });
  } catch (err) {
    stats.violations.push({ kind: '5xx', op: plan.op.operationId, request, status: 0, detail: String(err) });
    return undefined;
  }
  const ms = performance.now() - started;
  stats.requests++;
  if (ms > stats.slowest.ms) stats.slowest = { ms, request };
  const status = res.statusCode;
  stats.byStatus.set(status, (stats.byStatus.get(status) ?? 0) + 1);
  const op = plan.op;
  const seen = stats.perOp.get(op.operationId) ?? new Map<string, { n: number; example: string }>();
  stats.perOp.set(op.operationId, seen);
  // Same defect, same signature: kind, status and code (or media type) unless told otherwise.
  let what = '';
  const bad = (kind: Violation['kind'], detail: string, sig = `${kind} ${status} ${what}`) =>
    stats.violations.push({ kind, op: op.operationId, request, status, detail, sig });
  const mediaType =
    String(res.headers['content-type'] ?? '')
      .split(';')[0]
      ?.trim() ?? '';
  const head = plan.method === 'HEAD';
  const isJson = !head && (mediaType === 'application/json' || mediaType === 'application/problem+json');
  let body: unknown;
  if (isJson) {
    try {
      body = res.json();
    } catch {
      bad('schema', `unparsable ${mediaType}: ${res.body.slice(0, 120)}`);
    }
  }
  const code = (body as { code?: unknown } | undefined)?.code;
  what = typeof code === 'string' ? code : mediaType;
  const label = `${status}${typeof code === 'string' ? ` ${code}` : ''}`;
  seen.set(label, { n: (seen.get(label)?.n ?? 0) + 1, example: seen.get(label)?.example ?? request });

  if (status >= 500) bad('5xx', `${String(code)}: ${res.body.slice(0, 300)}`);
  const declared = op.responses[String(status)];
  if (status === 404 && code === 'route_not_found') stats.routeMisses++;
  else if (!declared) bad('undeclared', `${status} ${String(code ?? mediaType)}: ${res.body.slice(0, 200)}`);
  else if (status === 204 || status === 304) {
    if (res.body.length) bad('schema', `${status} with a body`);
  } else if (!mediaType || !declared.content?.[mediaType]) {
    // An error that is not problem+json is reported once, below.
    if (status < 400 || status === 503)
      bad(
        'schema',
        `${status} as ${mediaType || '(no content-type)'}; declared ${Object.keys(declared.content ?? {})}`,
      );
  } else if (isJson && body !== undefined) {
    const err = validators.response(op, String(status), mediaType, body);
    if (err) bad('schema', `${status}: ${err}`, `schema ${op.operationId} ${status}: ${err.slice(0, 80)}`);
  }
  if (status >= 400 && status !== 503) {
    if (head) {
      if (mediaType !== 'application/problem+json') bad('problem', `${status} to HEAD as ${mediaType}`);
    } else if (mediaType !== 'application/problem+json') bad('problem', `${status} as ${mediaType}`);
    else if (typeof code !== 'string' || !code) bad('problem', `${status} without a code`);
  }
  if (status >= 200 && status < 300) {
    stats.successes.set(op.operationId, (stats.successes.get(op.operationId) ?? 0) + 1);
    const next = (body as { nextCursor?: unknown } | undefined)?.nextCursor;
    if (typeof next === 'string') cursorsOf(op.operationId).push(next);
  }
  if (!mediaType.startsWith('image/') && mediaType !== 'application/pdf') {
    const requestText = `${urlOf(plan)} ${typeof payload === 'string' ? payload : ''} ${JSON.stringify(plan.headers)}`;
    // Email-shaped text the fuzz stored earlier (a group task's title, say) comes back in later
    // answers about it: content the fuzz wrote, not an account's address.
    if (requestText.includes('@'))
      for (const m of requestText.matchAll(EMAIL)) sentEmails.add(m[0].toLowerCase());
    const leaks = leaksIn(res.body, {
      requestText: `${requestText} ${[...sentEmails].join(' ')}`,
      // Signing in answers with the account signed into, whoever asked.
      ownEmail: TOKEN_ROUTES.has(op.operationId)
        ? ((body as { user?: { email?: string } } | undefined)?.user?.email ?? caller.email)
        : caller.email,
      secrets,
      tokenRoute: TOKEN_ROUTES.has(op.operationId),
    });
    for (const l of leaks) bad('leak', l, `leak ${op.operationId}: ${l.split(' ')[0]}`);
    if (res.body.length < 200_000) stats.bodies.push(res.body);
  }
  if (status >= 200 && status < 300) {
    // Tokens from signing in: refresh and logout get real ones, and no other response may carry them.
    const tokens = body as { accessToken?: unknown; refreshToken?: unknown } | undefined;
    if (TOKEN_ROUTES.has(op.operationId) && typeof tokens?.refreshToken === 'string') {
      refreshTokens.push(tokens.refreshToken);
      secrets.add(tokens.refreshToken);
      if (typeof tokens.accessToken === 'string') secrets.add(tokens.accessToken);
    }
  }

  // A6: a field the operation does not declare is refused, whoever sends it (once past sign-in).
  const auth = passesAuth(op, caller);
  if (plan.mode === 'massAssignment' && auth === true) stats.massAssignments++;
  if (plan.mode === 'massAssignment' && auth === true && status !== 400)
    bad('a6', `expected 400 for an undeclared field, got ${status}`, `a6 ${op.operationId} ${status}`);
  // What the document says of the request, against what the server did with it.
  if (auth === true) {
    const verdict = docVerdict(plan, validators);
    if (verdict !== undefined) stats.judged++;
    if (typeof verdict === 'string' && status < 400)
      bad(
        'oracle',
        `accepted (${status}) what the document refuses: ${verdict}`,
        `oracle ${op.operationId} accepted`,
      );
    if (
      verdict === null &&
      status === 400 &&
      code === 'validation_failed' &&
      !CROSS_FIELD_RULES[op.operationId]?.(plan)
    )
      // Reported, not failed: a rule the schema does not express is a gap in the document only.
      stats.notes.push(
        `${op.operationId} refused what the document accepts: ${request.slice(0, 200)} → ${res.body.slice(0, 160)}`,
      );
  }
  return res;
}

/** nextCursor values seen, per operation, for later valid requests to page on. */
const cursors = new Map<string, string[]>();
const cursorsOf = (operationId: string) => {
  const list = cursors.get(operationId) ?? [];
  cursors.set(operationId, list);
  return list;
};
let refreshTokens: string[] = [];

/**
 * Rules across fields that the document states in prose only: the server refuses these with
 * validation_failed although each field is valid on its own.
 */
const CROSS_FIELD_RULES: Record<string, (p: Plan) => boolean> = {
  listMessages: (p) => p.query.before !== undefined && p.query.after !== undefined,
};

/** Runs jobs `concurrency` at a time until done or `deadline` (performance.now()); how many were skipped. */
async function runAll(
  jobs: (() => Promise<unknown>)[],
  concurrency: number,
  deadline: number,
): Promise<number> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < jobs.length && performance.now() < deadline) {
        const job = jobs[next++] as () => Promise<unknown>;
        await job();
      }
    }),
  );
  return jobs.length - Math.min(next, jobs.length);
}

function pickCaller(r: Rng, callers: Record<Caller['name'], Caller>): Caller {
  const x = r.next();
  if (x < 0.62) return callers.me;
  if (x < 0.84) return callers.anonymous;
  return r.pick([
    callers.unverified,
    callers['garbage token'],
    callers['revoked token'],
    callers.cookie,
    callers['cookie, foreign origin'],
  ]);
}

/** Multipart operations: a tiny valid file, or a broken one. */
function multipartBody(r: Rng, png: Buffer, valid: boolean): { mode: string; body: Body } {
  if (valid)
    return {
      mode: 'valid',
      body: {
        kind: 'multipart',
        parts: [{ field: 'file', filename: 'a.png', contentType: 'image/png', data: png }],
      },
    };
  const gif = Buffer.from('R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==', 'base64');
  const choices: [string, Body][] = [
    [
      'text file',
      {
        kind: 'multipart',
        parts: [{ field: 'file', filename: 'a.txt', contentType: 'text/plain', data: Buffer.from('hello') }],
      },
    ],
    [
      'truncated png',
      {
        kind: 'multipart',
        parts: [{ field: 'file', filename: 'a.png', contentType: 'image/png', data: png.subarray(0, 40) }],
      },
    ],
    [
      'gif',
      {
        kind: 'multipart',
        parts: [{ field: 'file', filename: 'a.gif', contentType: 'image/gif', data: gif }],
      },
    ],
    [
      'svg as png',
      {
        kind: 'multipart',
        parts: [
          {
            field: 'file',
            filename: 'a.png',
            contentType: 'image/png',
            data: Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'),
          },
        ],
      },
    ],
    [
      'empty file',
      {
        kind: 'multipart',
        parts: [{ field: 'file', filename: 'a.png', contentType: 'image/png', data: Buffer.alloc(0) }],
      },
    ],
    [
      'wrong field',
      {
        kind: 'multipart',
        parts: [{ field: 'avatar', filename: 'a.png', contentType: 'image/png', data: png }],
      },
    ],
    ['a field, no file', { kind: 'multipart', parts: [{ field: 'file', data: Buffer.from('not a file') }] }],
    [
      'two files',
      {
        kind: 'multipart',
        parts: [
          { field: 'file', filename: 'a.png', contentType: 'image/png', data: png },
          { field: 'file', filename: 'b.png', contentType: 'image/png', data: png },
        ],
      },
    ],
    ['no parts', { kind: 'multipart', parts: [] }],
    [
      'bad boundary',
      {
        kind: 'raw',
        text: '--Y\r\nContent-Disposition: form-data; name="file"\r\n\r\nx',
        contentType: 'multipart/form-data; boundary=X',
      },
    ],
    ['no boundary', { kind: 'raw', text: 'x', contentType: 'multipart/form-data' }],
    ['json instead', { kind: 'raw', text: '{"file":"x"}', contentType: 'application/json' }],
    ['no body', { kind: 'none' }],
    [
      'odd filename',
      {
        kind: 'multipart',
        parts: [
          { field: 'file', filename: '../../\u202Eevil\u0000.png', contentType: 'image/png', data: png },
        ],
      },
    ],
  ];
  const [mode, body] = r.pick(choices);
  return { mode: `multipart: ${mode}`, body };
}

// ---------------------------------------------------------------------------------------------------

/** Email-shaped strings any fuzzed request has carried (see the leak check). */
const sentEmails = new Set<string>();

describe('C1 schema-driven HTTP fuzz', () => {
  let w: World;
  let stats: Stats;
  let secrets: Set<string>;
  const before: Record<string, unknown> = {};

  const snapshot = async () => {
    const q = async (sql: string, params: unknown[]) =>
      JSON.stringify((await t.deps.db.query(sql, params)).rows);
    // People who never send a request: nothing of theirs may change. The callers (me, unverified)
    // may change their own settings, never these columns.
    const others = [
      w.friend,
      w.friend2,
      w.stranger,
      w.stranger2,
      w.stranger3,
      w.requester,
      w.target,
      w.blocked,
    ].map((p) => p.id);
    return {
      callers: await q(
        'SELECT id, username, email, email_verified_at, password_hash, created_at FROM users WHERE id = ANY($1) ORDER BY id',
        [[w.me.id, w.unverified.id]],
      ),
      others: await q('SELECT * FROM users WHERE id = ANY($1) ORDER BY id', [others]),
      theirTasks: await q('SELECT * FROM tasks WHERE user_id = $1 ORDER BY id', [w.stranger.id]),
      theirDailies: await q('SELECT * FROM dailies WHERE user_id = $1 ORDER BY id', [w.stranger.id]),
      theirCheckIns: await q('SELECT * FROM daily_check_ins WHERE user_id = $1 ORDER BY daily_id', [
        w.stranger.id,
      ]),
      theirGroups: await q('SELECT * FROM group_tasks WHERE owner_id = $1 ORDER BY id', [w.stranger.id]),
      theirMessages: await q(
        'SELECT m.* FROM messages m JOIN conversation_members c USING (conversation_id) WHERE c.user_id = $1 ORDER BY m.id',
        [w.stranger.id],
      ),
      theirMedia: await q('SELECT * FROM media WHERE owner_id = $1 ORDER BY id', [w.stranger.id]),
      theirScore: await q('SELECT * FROM score_events WHERE user_id = $1 ORDER BY id', [w.stranger.id]),
      theirSessions: await q('SELECT * FROM sessions WHERE user_id = $1 ORDER BY id', [w.stranger.id]),
    };
  };

  beforeAll(async () => {
    w = await buildWorld();
    refreshTokens = w.pools.refreshToken as string[];
    Object.assign(before, await snapshot());
    secrets = new Set<string>(
      [
        w.me,
        w.friend,
        w.stranger,
        w.stranger2,
        w.stranger3,
        w.unverified,
        w.requester,
        w.target,
        w.blocked,
      ].map((p) => p.token),
    );
    const { rows } = await t.deps.db.query<{ h: string }>(
      'SELECT token_hash AS h FROM refresh_tokens UNION ALL SELECT token_hash FROM mail_tokens',
    );
    for (const r of rows) secrets.add(r.h);
  });

  it('answers every operation within its document, signed in and not', async () => {
    const r = rng(SEED);
    const odd = [...ODD_STRINGS, ...oddStrings(r.seed(), 40)];
    const now = new Date();
    // Plans are made when their turn comes (each from a seed of its own, drawn now), so they can
    // name what earlier requests made: cursors of the same operation, refresh tokens from a login.
    let currentOp = '';
    const pools = (kind: string) =>
      kind === 'cursor'
        ? cursorsOf(currentOp)
        : kind === 'idempotencyKey' // reused within an operation: replays, and 422 for another body
          ? [`${currentOp}-key-1`, `${currentOp}-key-2`]
          : (w.pools[kind] ?? []);
    const ctx: MutationContext = { r, pools, now, odd };
    const ctxFor = (seed: number, op: Operation): MutationContext => {
      currentOp = op.operationId;
      return { ...ctx, r: rng(seed) };
    };
    const revoked = await signIn(t.deps, w.me.id);
    await t.deps.db.query("UPDATE sessions SET revoked_at = now(), revoked_reason = 'logout' WHERE id = $1", [
      revoked.sessionId,
    ]);
    // Both cookies: the access token, and a refresh token (made up: refresh and logout check the Origin
    // of a cookie-carried one before reading it).
    const secure = t.config.isProduction;
    const cookie = `${accessCookieName(secure)}=${w.me.token}; ${refreshCookieName(secure)}=${randomUUID()}`;
    const callers: Record<Caller['name'], Caller> = {
      me: { name: 'me', headers: w.me.headers, email: w.me.email },
      anonymous: { name: 'anonymous', headers: {} },
      unverified: { name: 'unverified', headers: w.unverified.headers, email: w.unverified.email },
      'garbage token': {
        name: 'garbage token',
        headers: { authorization: 'Bearer eyJhbGciOiJub25lIn0.e30.' },
      },
      'revoked token': { name: 'revoked token', headers: revoked.headers },
      cookie: { name: 'cookie', headers: { cookie, origin: 'http://app.test' }, email: w.me.email },
      'cookie, foreign origin': {
        name: 'cookie, foreign origin',
        headers: { cookie, origin: 'https://evil.test' },
        email: w.me.email,
      },
    };

    stats = newStats();
    const started = performance.now();
    const phases: (() => Promise<unknown>)[][] = [[], [], [], []];
    let planned = 0;
    for (const op of ops) {
      const phase =
        op.operationId === 'deleteMe'
          ? 3
          : op.method === 'DELETE' || LATE.has(op.operationId)
            ? 2
            : op.method === 'GET'
              ? 0
              : 1;
      const validShare = SLOW.has(op.operationId) ? 0.15 : 0.35;
      const sample = validPlan(op, ctx);
      const applicable = op.multipart ? [] : mutationsFor(sample, ctx);
      for (let i = 0; i < RUNS; i++) {
        const caller = pickCaller(r, callers);
        const valid = r.chance(validShare) || (!applicable.length && !op.multipart);
        const mutation = valid || op.multipart ? undefined : r.pick(applicable);
        const seed = r.seed();
        planned++;
        phases[phase]?.push(async () => {
          const c = ctxFor(seed, op);
          let plan: Plan = validPlan(op, c);
          if (op.multipart) {
            const { mode, body } = multipartBody(c.r, w.png, valid);
            plan = { ...plan, mode, body };
          } else if (mutation) plan = mutate(plan, mutation, c);
          let who = caller;
          if ((who.name === 'me' || who.name === 'cookie') && SESSION_ENDING.has(op.operationId)) {
            // A session of its own, so ending it leaves the rest of the run signed in.
            const s = await signIn(t.deps, w.me.id);
            who =
              who.name === 'me'
                ? { ...who, headers: s.headers }
                : {
                    ...who,
                    headers: {
                      ...who.headers,
                      cookie: `${accessCookieName(t.config.isProduction)}=${s.token}`,
                    },
                  };
          }
          await send(plan, who, stats, secrets);
        });
      }
      // A6 sweep: every undeclared field, one at a time, on a valid body, as me.
      if (op.jsonBody) {
        for (const field of extraFieldsFor(op)) {
          const seed = r.seed();
          planned++;
          phases[phase]?.push(async () => {
            const plan = validPlan(op, ctxFor(seed, op));
            if (plan.body.kind !== 'json') return;
            (plan.body.value as Record<string, unknown>)[field] = MASS_ASSIGNMENT[field];
            plan.mode = 'massAssignment';
            let who = callers.me;
            if (SESSION_ENDING.has(op.operationId))
              who = { ...who, headers: (await signIn(t.deps, w.me.id)).headers };
            await send(plan, who, stats, secrets);
          });
        }
      }
    }
    // Each phase may run until its share of the budget, counted from the start (time a phase leaves
    // unused goes to the next).
    let skipped = 0;
    let through = 0;
    for (const jobs of phases) {
      through += jobs.length;
      const deadline = started + (BUDGET_S * 1000 * through) / Math.max(1, planned);
      skipped += await runAll(r.shuffle(jobs), CONCURRENCY, deadline);
    }
    const seconds = (performance.now() - started) / 1000;

    // Invariants: nothing of anyone else's changed, my protected columns did not move, the score is
    // its ledger, no mass-assigned value landed anywhere, and nothing was logged as a server error.
    const after = await snapshot();
    for (const [k, v] of Object.entries(after)) {
      if (v === before[k]) continue;
      const was = JSON.parse(String(before[k])) as Record<string, unknown>[];
      const now = JSON.parse(v) as Record<string, unknown>[];
      const changes = now
        .flatMap((row, i) =>
          Object.keys(row)
            .filter((col) => JSON.stringify(row[col]) !== JSON.stringify(was[i]?.[col]))
            .map(
              (col) =>
                `${String(row.id ?? i)}.${col}: ${JSON.stringify(was[i]?.[col])} → ${JSON.stringify(row[col])}`,
            ),
        )
        .concat(now.length !== was.length ? [`${was.length} rows → ${now.length}`] : []);
      stats.violations.push({
        kind: 'invariant',
        op: '-',
        request: '-',
        status: 0,
        detail: `${k} changed: ${changes.slice(0, 3).join('; ')}`,
      });
    }
    const { rows: ledger } = await t.deps.db.query<{ user_id: string; ledger: number; board: number | null }>(
      `SELECT e.user_id, sum(e.points)::int AS ledger, max(b.score) AS board
         FROM score_events e LEFT JOIN leaderboard_scores b ON b.user_id = e.user_id AND b.period = 'all'
        GROUP BY e.user_id`,
    );
    for (const l of ledger)
      if (l.ledger !== l.board)
        stats.violations.push({
          kind: 'invariant',
          op: '-',
          request: '-',
          status: 0,
          detail: `score of ${l.user_id}: ledger ${l.ledger}, board ${l.board}`,
        });
    const { rows: planted } = await t.deps.db.query<{ n: number }>(
      `SELECT (SELECT count(*) FROM users WHERE username = 'mass_assigned' OR email = 'mass@example.test')
            + (SELECT count(*) FROM tasks WHERE id = $1 OR user_id = $1)
            + (SELECT count(*) FROM group_tasks WHERE id = $1)
            + (SELECT count(*) FROM messages WHERE id = $1 OR sender_id = $1) AS n`,
      [MASS_ASSIGNMENT.id],
    );
    if (Number(planted[0]?.n) !== 0)
      stats.violations.push({
        kind: 'a6',
        op: '-',
        request: '-',
        status: 0,
        detail: 'a mass-assigned value was stored',
      });
    const { rows: gaps } = await t.deps.db.query<{ conversation_id: string; n: number; top: number }>(
      'SELECT conversation_id, count(*)::int AS n, max(seq)::int AS top FROM messages GROUP BY 1',
    );
    for (const g of gaps)
      if (g.n !== g.top)
        stats.violations.push({
          kind: 'invariant',
          op: '-',
          request: '-',
          status: 0,
          detail: `conversation ${g.conversation_id}: ${g.n} messages, last seq ${g.top}`,
        });
    const { rows: hashes } = await t.deps.db.query<{ h: string }>(
      'SELECT token_hash AS h FROM refresh_tokens UNION ALL SELECT token_hash FROM mail_tokens',
    );
    for (const { h } of hashes)
      if (stats.bodies.some((b) => b.includes(h)))
        stats.violations.push({
          kind: 'leak',
          op: '-',
          request: '-',
          status: 0,
          detail: `stored token hash ${h.slice(0, 8)}…`,
        });
    const errorsLogged = t.logs().filter((l) => Number(l.level) >= 50);
    for (const l of errorsLogged.slice(0, 20))
      stats.violations.push({
        kind: 'invariant',
        op: '-',
        request: String(l.reqId ?? '-'),
        status: 0,
        detail: `error logged: ${String(l.msg)} ${JSON.stringify(l.err ?? '').slice(0, 300)}`,
      });

    const count = (k: Violation['kind']) => stats.violations.filter((v) => v.kind === k).length;
    const never = ops.filter((o) => !stats.successes.has(o.operationId)).map((o) => o.operationId);
    console.log(
      [
        `C1 fuzz (seed ${SEED}, FUZZ_RUNS ${RUNS}, ${lane.services ? 'services' : 'embedded'} lane): ${stats.requests} requests (${planned} planned${skipped ? `, ${skipped} skipped at the ${BUDGET_S} s budget` : ''}) over ${ops.length} operations in ${seconds.toFixed(1)} s`,
        `  ${count('5xx')} 5xx, ${count('undeclared')} undeclared statuses, ${count('schema')} schema mismatches, ${count('problem')} errors not problem+json with a code, ${count('leak')} leaks, ${count('a6')} A6 failures, ${count('oracle')} requests accepted that the document refuses (${new Set(stats.notes).size} refused that it accepts, noted), ${count('invariant')} broken invariants, ${errorsLogged.length} errors logged`,
        `  statuses: ${[...stats.byStatus]
          .sort((a, b) => a[0] - b[0])
          .map(([s, n]) => `${s}×${n}`)
          .join(' ')}; route misses (404 route_not_found) ${stats.routeMisses}`,
        `  A6: ${stats.massAssignments} requests with an undeclared body field past sign-in; ${stats.judged} requests judged valid or invalid by the document against the answer`,
        `  operations with a 2xx: ${stats.successes.size}/${ops.length}${never.length ? ` (never: ${never.join(', ')})` : ''}`,
        `  slowest request ${stats.slowest.ms.toFixed(0)} ms: ${stats.slowest.request.slice(0, 160)}`,
      ].join('\n'),
    );
    if (process.env.FUZZ_VERBOSE)
      for (const [id, seen] of stats.perOp)
        console.log(
          `  ${id}: ${[...seen].map(([s, { n, example }]) => `${s}×${n}${process.env.FUZZ_VERBOSE === '2' ? ` (${example.slice(0, 160)})` : ''}`).join(', ')}`,
        );
    const c1 = { requests: stats.requests, operations: ops.length };
    figure('fuzz.http.5xx', count('5xx'), c1);
    figure('fuzz.http.undeclared_statuses', count('undeclared'), c1);
    figure('fuzz.http.schema_mismatches', count('schema'), c1);
    figure('fuzz.http.leaks', count('leak'), c1);
    figure('fuzz.http.broken_invariants', count('invariant') + count('a6'), c1);
    figures.c1 = `C1: ${stats.requests} requests over ${ops.length} operations, ${count('5xx')} 5xx, ${count('undeclared')} undeclared statuses, ${count('schema')} schema mismatches, ${count('leak')} leaks, ${count('a6')} A6 failures`;
    for (const n of new Set(stats.notes)) console.log(`  note: ${n}`);
    const grouped = new Map<string, Violation[]>();
    for (const v of stats.violations) {
      const key = v.sig ?? `${v.kind} ${v.detail.slice(0, 120)}`;
      grouped.set(key, [...(grouped.get(key) ?? []), v]);
    }
    for (const [key, vs] of grouped) {
      const opsHit = [...new Set(vs.map((v) => v.op))];
      const first = vs[0] as Violation;
      console.log(
        `  ✗ ${key} ×${vs.length} on ${opsHit.length} operation(s): ${opsHit.slice(0, 8).join(', ')}${opsHit.length > 8 ? ', …' : ''}\n      ${first.detail.slice(0, 160)}\n      e.g. ${first.request.slice(0, 300)}`,
      );
    }
    expect([...grouped.keys()]).toEqual([]);
  }, 300_000);
});

// ---------------------------------------------------------------------------------------------------

describe('C7 patterns against 100 KB adversarial strings', () => {
  it('validates each in under 50 ms, with the app’s own compiled validators', async () => {
    const r = rng(SEED ^ 0x5eed);
    const fields = ops.flatMap(patternFields);
    const now = new Date();
    const ctx = { r, pools: () => [] as string[], now };
    // Reach every route once, signed in (the catching hook runs after authentication), so its
    // validators are caught whatever the other suites did.
    const { headers } = await signIn(t.deps, (await aUser(t.deps)).id);
    for (const op of new Set(fields.map((f) => f.op))) {
      const key = `${op.method} ${fastifyPath(op.path)}`;
      if (![...appValidators.keys()].some((k) => k.startsWith(key)))
        await t.app.inject({ method: op.method, url: urlOf(validPlan(op, ctx)), headers });
    }
    let slowest = { ms: 0, what: '' };
    let slowestHttp = { ms: 0, what: '' };
    let checked = 0;
    const over: string[] = [];
    const missing: string[] = [];
    for (const f of fields) {
      const validate = appValidators.get(`${f.op.method} ${fastifyPath(f.op.path)} ${f.part}`);
      if (!validate) {
        missing.push(`${f.op.operationId} ${f.part}.${f.name}`);
        continue;
      }
      const base = baseInput(f, ctx);
      const strings = r.shuffle(adversarialStrings(f.schema)).slice(0, 10);
      for (const s of strings) {
        const input = { ...base, [f.name]: f.inArray ? [s] : s };
        // A busy machine: the median of three readings; a slow one is read again after a pause, and
        // the fastest reading counts (a backtracking pattern is slow every time, a busy core is not).
        const readings = [
          time(() => validate(input)),
          time(() => validate(input)),
          time(() => validate(input)),
        ];
        let ms = readings.sort((a, b) => a - b)[1] as number;
        for (let retry = 0; ms >= C7_LIMIT_MS && retry < 5; retry++) {
          await new Promise((resolve) => setTimeout(resolve, 50));
          ms = Math.min(
            ms,
            time(() => validate(input)),
          );
        }
        checked++;
        const what = `${f.op.operationId} ${f.part}.${f.name}${f.inArray ? '[]' : ''} /${f.schema.pattern ?? f.schema.format}/ ← ${JSON.stringify(s.slice(0, 6))}… ${s.length} chars`;
        if (ms > slowest.ms) slowest = { ms, what };
        if (ms >= C7_LIMIT_MS) over.push(`${what}: ${ms.toFixed(1)} ms`);
      }
      // The same through HTTP once per field (bodies and queries; a long path parameter misses the route).
      if (f.part === 'body' || f.part === 'querystring') {
        const s = strings[0] as string;
        const plan = validPlan(f.op, ctx);
        if (f.part === 'body' && plan.body.kind === 'json')
          (plan.body.value as Record<string, unknown>)[f.name] = f.inArray ? [s] : s;
        if (f.part === 'querystring') plan.query[f.name] = s;
        const { payload, contentType } = payloadOf(plan);
        const started = performance.now();
        const res = await t.app.inject({
          method: f.op.method,
          url: urlOf(plan),
          headers: { authorization: 'Bearer x', ...(contentType ? { 'content-type': contentType } : {}) },
          ...(payload !== undefined ? { payload } : {}),
        });
        const ms = performance.now() - started;
        expect(res.statusCode, `${f.op.operationId} ${f.name}`).toBeLessThan(500);
        if (ms > slowestHttp.ms)
          slowestHttp = { ms, what: `${f.op.operationId} ${f.part}.${f.name} → ${res.statusCode}` };
      }
    }
    figures.c7 = `C7 slowest ${slowest.ms.toFixed(1)} ms`;
    console.log(
      `C7 (seed ${SEED}): ${checked} validations of 100 KB strings over ${fields.length} pattern/format fields; slowest ${slowest.ms.toFixed(1)} ms (${slowest.what}); slowest HTTP round trip ${slowestHttp.ms.toFixed(0)} ms (${slowestHttp.what})${missing.length ? `; no validator caught for ${missing.join(', ')}` : ''}`,
    );
    expect(over).toEqual([]);
    expect(missing).toEqual([]);
  }, 120_000);
});

const fastifyPath = (path: string) => path.replace(/\{([^}]+)\}/g, ':$1');

function time(fn: () => unknown): number {
  const started = performance.now();
  fn();
  return performance.now() - started;
}

/** The rest of the part a field lives in, filled validly, so the pattern is what is tested. */
function baseInput(f: PatternField, ctx: Parameters<typeof validPlan>[1]): Record<string, unknown> {
  const plan = validPlan(f.op, ctx);
  if (f.part === 'params') return { ...plan.params };
  if (f.part === 'querystring') return { ...plan.query };
  if (f.part === 'headers') return { ...plan.headers };
  return plan.body.kind === 'json' ? { ...(plan.body.value as Record<string, unknown>) } : {};
}

// ---------------------------------------------------------------------------------------------------

describe('C1 detectors', () => {
  // The checks above must be able to fail: each detector is shown what it must catch.
  it('catch leaks, schema mismatches and invalid requests', () => {
    const own = {
      requestText: '',
      ownEmail: 'me@example.test',
      secrets: ['s3cr3t-refresh-token-value'],
      tokenRoute: false,
    };
    expect(leaksIn('{"email":"me@example.test"}', own)).toEqual([]);
    expect(leaksIn('{"email":"other@example.test"}', own)).toEqual(['email other@example.test']);
    expect(leaksIn('{"h":"$argon2id$v=19$m=19456"}', own)).toHaveLength(1);
    expect(leaksIn('{"t":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.c2lnbmF0dXJlc2ln"}', own)).toHaveLength(
      1,
    );
    expect(leaksIn('{"t":"s3cr3t-refresh-token-value"}', own)).toHaveLength(1);
    const getTask = ops.find((o) => o.operationId === 'getTask') as Operation;
    expect(validators.response(getTask, '200', 'application/json', { id: 'x' })).toMatch(/required|format/);
    expect(validators.response(getTask, '404', 'application/problem+json', { type: 'about:blank' })).toMatch(
      /required/,
    );
    const createTask = ops.find((o) => o.operationId === 'createTask') as Operation;
    const plan = validPlan(createTask, { r: rng(1), pools: () => [], now: new Date() });
    expect(docVerdict(plan, validators)).toBeNull();
    (plan.body as { value: Record<string, unknown> }).value.role = 'admin';
    expect(docVerdict(plan, validators)).toMatch(/additional/);
  });
});

// ---------------------------------------------------------------------------------------------------
// Defects the fuzz found, one request each: they pass once the fix lands.

describe('C1 regressions', () => {
  /** The answer is < 500, declared for the operation, and problem+json with a code. */
  async function expectDeclared(operationId: string, request: InjectOptions): Promise<number> {
    const op = ops.find((o) => o.operationId === operationId) as Operation;
    const res = await t.app.inject(request);
    const what = `${operationId}: ${res.statusCode} ${res.headers['content-type']} ${res.body.slice(0, 200)}`;
    expect(res.statusCode, what).toBeLessThan(500);
    expect(Object.keys(op.responses), what).toContain(String(res.statusCode));
    if (res.statusCode >= 400) {
      expect(String(res.headers['content-type']), what).toMatch(/^application\/problem\+json/);
      expect(typeof (res.json() as { code?: unknown }).code, what).toBe('string');
    }
    return res.statusCode;
  }
  let me: Awaited<ReturnType<typeof signIn>>;
  let taskId: string;
  beforeAll(async () => {
    me = await signIn(t.deps, (await aUser(t.deps)).id);
    const res = await t.app.inject({
      method: 'POST',
      url: '/v1/tasks',
      headers: me.headers,
      payload: { title: 'x' },
    });
    taskId = (res.json() as { id: string }).id;
  });

  it('a multipart upload without a boundary is refused, not a 500', async () => {
    for (const [operationId, method, url] of [
      ['uploadMedia', 'POST', '/v1/media'],
      ['setAvatar', 'PUT', '/v1/me/avatar'],
    ] as const)
      await expectDeclared(operationId, {
        method,
        url,
        headers: { ...me.headers, 'content-type': 'multipart/form-data' },
        payload: 'x',
      });
  });

  it('a path with a broken percent-escape answers problem+json', async () => {
    await expectDeclared('getTask', { method: 'GET', url: '/v1/tasks/%ZZ', headers: me.headers });
  });

  it('a path parameter longer than 100 characters answers a declared problem', async () => {
    await expectDeclared('getTask', {
      method: 'GET',
      url: `/v1/tasks/${'a'.repeat(101)}`,
      headers: me.headers,
    });
  });

  it('a body sent to a route that takes none gets a declared status', async () => {
    await expectDeclared('completeTask', {
      method: 'POST',
      url: `/v1/tasks/${taskId}/complete`,
      headers: { ...me.headers, 'content-type': 'application/xml' },
      payload: '<a/>',
    });
    await expectDeclared('reopenTask', {
      method: 'POST',
      url: `/v1/tasks/${taskId}/reopen`,
      headers: { ...me.headers, 'content-type': 'text/plain' },
      payload: 'x'.repeat(1_100_000),
    });
    await expectDeclared('deleteAvatar', {
      method: 'DELETE',
      url: '/v1/me/avatar',
      headers: { ...me.headers, 'content-type': 'application/json' },
      payload: '{"a":',
    });
  });

  it('an avatar upload without a file, or with a broken image, gets a declared status', async () => {
    for (const payload of [
      '--X--\r\n',
      '--X\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\n\r\n--X--\r\n',
    ])
      await expectDeclared('setAvatar', {
        method: 'PUT',
        url: '/v1/me/avatar',
        headers: { ...me.headers, 'content-type': 'multipart/form-data; boundary=X' },
        payload,
      });
  });

  it('a JSON route refuses a multipart body instead of reading it as empty', async () => {
    const created = await t.app.inject({
      method: 'POST',
      url: '/v1/dailies',
      headers: me.headers,
      payload: { title: 'Stretch' },
    });
    const dailyId = (created.json() as { id: string }).id;
    const status = await expectDeclared('checkInDaily', {
      method: 'POST',
      url: `/v1/dailies/${dailyId}/check-ins`,
      headers: { ...me.headers, 'content-type': 'multipart/form-data; boundary=X' },
      payload: '--X\r\nContent-Disposition: form-data; name="date"\r\n\r\n2020-01-01\r\n--X--\r\n',
    });
    expect(status).toBe(415);
  });

  it('registering a taken username or email gets a declared status', async () => {
    const taken = await aUser(t.deps);
    await expectDeclared('register', {
      method: 'POST',
      url: '/v1/auth/register',
      payload: {
        username: taken.username,
        email: 'fresh-one@example.test',
        password: 'a long unusual passphrase 1',
      },
    });
  });

  it('a wrong password, an unknown refresh token and a foreign-origin refresh cookie get declared statuses', async () => {
    const user = await aUser(t.deps);
    await expectDeclared('login', {
      method: 'POST',
      url: '/v1/auth/login',
      payload: { login: user.username, password: 'not the password' },
    });
    await expectDeclared('refresh', {
      method: 'POST',
      url: '/v1/auth/refresh',
      payload: { refreshToken: 'not-a-refresh-token' },
    });
    await expectDeclared('refresh', {
      method: 'POST',
      url: '/v1/auth/refresh',
      headers: {
        cookie: `${refreshCookieName(t.config.isProduction)}=not-a-refresh-token`,
        origin: 'https://evil.test',
      },
      payload: {},
    });
  });
});
