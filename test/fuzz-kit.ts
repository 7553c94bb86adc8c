import { Ajv, type ValidateFunction } from 'ajv';
import ajvFormats from 'ajv-formats';
import fc from 'fast-check';

// The schema-driven HTTP fuzzer of RELIABILITY C1 (test/fuzz-http.test.ts): reads operations from the
// app's own OpenAPI document, generates valid and mutated requests from their schemas, and checks every
// answer against what the document declares. Knows no route by name: new routes are fuzzed as they land.

// ---------------------------------------------------------------------------------------------------
// Seeded randomness

export interface Rng {
  next(): number;
  /** An integer in [lo, hi]. */
  int(lo: number, hi: number): number;
  pick<T>(xs: readonly T[]): T;
  chance(p: number): boolean;
  shuffle<T>(xs: T[]): T[];
  hex(bytes: number): string;
  uuid(): string;
  /** A seed for a derived generator (fast-check, another Rng). */
  seed(): number;
}

/** mulberry32: the same seed gives the same run. */
export function rng(seed: number): Rng {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
  const int = (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1));
  const hex = (bytes: number) => {
    let s = '';
    for (let i = 0; i < bytes; i++) s += int(0, 255).toString(16).padStart(2, '0');
    return s;
  };
  return {
    next,
    int,
    pick: <T>(xs: readonly T[]) => {
      if (xs.length === 0) throw new Error('pick from nothing');
      return xs[int(0, xs.length - 1)] as T;
    },
    chance: (p) => next() < p,
    shuffle<T>(xs: T[]) {
      for (let i = xs.length - 1; i > 0; i--) {
        const j = int(0, i);
        [xs[i], xs[j]] = [xs[j] as T, xs[i] as T];
      }
      return xs;
    },
    hex,
    uuid() {
      const h = hex(16);
      const variant = ((Number.parseInt(h[16] as string, 16) & 0x3) | 0x8).toString(16);
      return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
    },
    seed: () => int(0, 2 ** 31 - 1),
  };
}

// ---------------------------------------------------------------------------------------------------
// The document

// biome-ignore lint/suspicious/noExplicitAny: JSON Schema is dynamic by nature
export type Schema = Record<string, any>;

export interface Parameter {
  in: 'path' | 'query' | 'header' | 'cookie';
  name: string;
  required?: boolean;
  schema: Schema;
}

export interface MediaType {
  schema?: Schema;
}

export interface Operation {
  operationId: string;
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  path: string;
  /** none: security []; optional: anonymous allowed too; required: a principal is needed. */
  auth: 'none' | 'optional' | 'required';
  parameters: Parameter[];
  /** The JSON body schema, if the operation takes one. */
  jsonBody?: Schema;
  bodyRequired: boolean;
  multipart: boolean;
  responses: Record<string, { content?: Record<string, MediaType> }>;
}

export interface OpenApiDoc {
  paths: Record<string, Record<string, Schema>>;
  components: { schemas: Record<string, Schema> };
}

export function operationsOf(doc: OpenApiDoc): Operation[] {
  const ops: Operation[] = [];
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const security = (op.security ?? []) as Record<string, unknown>[];
      const auth =
        security.length === 0
          ? 'none'
          : security.some((s) => Object.keys(s).length === 0)
            ? 'optional'
            : 'required';
      const content = (op.requestBody?.content ?? {}) as Record<string, MediaType>;
      ops.push({
        operationId: op.operationId,
        method: method.toUpperCase() as Operation['method'],
        path,
        auth,
        parameters: (op.parameters ?? []) as Parameter[],
        jsonBody: content['application/json']?.schema,
        bodyRequired: Boolean(op.requestBody?.required),
        multipart: Boolean(content['multipart/form-data']),
        responses: op.responses,
      });
    }
  }
  return ops;
}

/** Parameters of one kind as an object schema (unknown query fields are refused: README). */
export function partSchema(op: Operation, where: 'path' | 'query' | 'header'): Schema | undefined {
  const params = op.parameters.filter((p) => p.in === where);
  if (params.length === 0) return undefined;
  return {
    type: 'object',
    properties: Object.fromEntries(params.map((p) => [p.name, p.schema])),
    required: params.filter((p) => p.required).map((p) => p.name),
    additionalProperties: where === 'header',
  };
}

// ---------------------------------------------------------------------------------------------------
// Validators: the app's own options (src/http/app.ts validatorCompiler), and $refs into the document.

export function makeAjv(coerce: boolean): Ajv {
  const addFormats = ajvFormats as unknown as (ajv: Ajv) => Ajv;
  return addFormats(
    new Ajv({
      removeAdditional: false,
      allErrors: true,
      useDefaults: false,
      strict: false,
      coerceTypes: coerce ? 'array' : false,
    }),
  );
}

function rewriteRefs(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(rewriteRefs);
  if (schema && typeof schema === 'object') {
    const out: Schema = {};
    for (const [k, v] of Object.entries(schema)) {
      if (k === '$id') continue;
      out[k] = k === '$ref' && typeof v === 'string' && v.startsWith('#/') ? `doc${v}` : rewriteRefs(v);
    }
    return out;
  }
  return schema;
}

/** Validates bodies against the document: responses (exact types) and request parts. */
export function docValidators(doc: OpenApiDoc) {
  const exact = makeAjv(false);
  const coercing = makeAjv(true);
  const components = rewriteRefs({ components: doc.components }) as Schema;
  exact.addSchema(components, 'doc');
  coercing.addSchema(components, 'doc');
  const cache = new Map<string, ValidateFunction>();
  const compile = (key: string, schema: Schema, coerce: boolean) => {
    let v = cache.get(key);
    if (!v) {
      v = (coerce ? coercing : exact).compile(rewriteRefs(schema) as Schema);
      cache.set(key, v);
    }
    return v;
  };
  const describe = (v: ValidateFunction) =>
    (v.errors ?? [])
      .slice(0, 4)
      .map((e) => `${e.instancePath || '/'} ${e.message}`)
      .join('; ');
  return {
    /** null when valid, else what is wrong. */
    response(op: Operation, status: string, mediaType: string, body: unknown): string | null {
      const schema = op.responses[status]?.content?.[mediaType]?.schema;
      if (!schema) return `no schema for ${status} ${mediaType}`;
      const v = compile(`res ${op.operationId} ${status} ${mediaType}`, schema, false);
      return v(body) ? null : describe(v);
    },
    /** Request parts as the server sees them: text coerced in params, query and headers; JSON exact. */
    request(op: Operation, part: 'path' | 'query' | 'header' | 'body', data: unknown): string | null {
      const schema = part === 'body' ? op.jsonBody : partSchema(op, part);
      if (!schema) return null;
      const v = compile(`req ${op.operationId} ${part}`, schema, part !== 'body');
      // Coercion rewrites its input: validate a copy.
      return v(structuredClone(data)) ? null : describe(v);
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// Valid values from schemas

/** Real values the world offers for a field: ids of things that exist (mine and others'). */
export type Pools = (kind: string) => readonly string[];

export interface GenContext {
  r: Rng;
  pools: Pools;
  /** Field name, for picking a pool (userId, mediaId...). */
  name: string;
  /** The pool for this field when known (path parameters). */
  kind?: string;
  now: Date;
}

const ALNUM = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
const WORDS = [
  'milk',
  'run',
  'Maa',
  'call',
  'read',
  'water plants',
  'गृहकार्य',
  'Überweisung',
  'done ✓',
  '日报',
];

function randomFrom(r: Rng, alphabet: string, n: number) {
  let s = '';
  for (let i = 0; i < n; i++) s += alphabet[r.int(0, alphabet.length - 1)];
  return s;
}

const isoDate = (d: Date) => d.toISOString().slice(0, 10);

/** The pool kind a field name points at, for ids in bodies and queries. */
export function kindOfField(name: string): string | undefined {
  if (/^(userId|userIds|inviteUserIds)$/.test(name)) return 'userId';
  if (name === 'mediaId') return 'media';
  if (name === 'ids') return 'notification';
  if (name === 'date') return 'date';
  if (name === 'cursor') return 'cursor';
  if (name === 'clientMessageId') return 'clientMessageId';
  if (name === 'idempotency-key') return 'idempotencyKey';
  if (name === 'refreshToken') return 'refreshToken';
  if (name === 'login') return 'login';
  if (name === 'password') return 'password';
  return undefined;
}

function typeOf(schema: Schema): string | undefined {
  if (typeof schema.type === 'string') return schema.type;
  if (Array.isArray(schema.enum)) return typeof schema.enum[0];
  return undefined;
}

function matches(schema: Schema, s: string) {
  const len = [...s].length;
  if (schema.minLength !== undefined && len < schema.minLength) return false;
  if (schema.maxLength !== undefined && len > schema.maxLength) return false;
  if (schema.pattern && !new RegExp(schema.pattern, 'u').test(s)) return false;
  return true;
}

function validString(schema: Schema, c: GenContext): string {
  const { r } = c;
  const kind = c.kind ?? kindOfField(c.name);
  const pool = kind ? c.pools(kind) : [];
  if (pool.length && r.chance(0.8)) return r.pick(pool);
  if (Array.isArray(schema.enum)) return String(r.pick(schema.enum));
  switch (schema.format) {
    case 'email':
      return `fz_${r.hex(5)}@example.test`;
    case 'date-time':
      return new Date(c.now.getTime() + r.int(1, 60 * 24 * 30) * 60_000).toISOString();
    case 'date':
      return isoDate(new Date(c.now.getTime() - r.int(0, 2) * 86400_000));
    case 'uuid':
      return r.uuid();
  }
  const min = schema.minLength ?? 0;
  const max = Math.min(schema.maxLength ?? 40, Math.max(min, 40));
  const candidates = [
    () => randomFrom(r, ALNUM, r.int(Math.max(min, 1), Math.max(min, Math.min(max, 16)))),
    () => r.pick(WORDS),
    () => `${r.pick(WORDS)} ${randomFrom(r, ALNUM, 6)}`,
    () => `${String(r.int(0, 23)).padStart(2, '0')}:${String(r.int(0, 59)).padStart(2, '0')}`,
    () => isoDate(c.now),
    () => `${r.uuid()}.webp`,
    () => r.uuid(),
    () => randomFrom(r, '!#$%&*+-.0123456789:=?@ABCXYZ^_abcxyz~', r.int(Math.max(min, 1), 24)),
  ];
  for (let attempt = 0; attempt < 60; attempt++) {
    const s = (
      candidates[attempt < 30 ? r.int(0, candidates.length - 1) : attempt % candidates.length] as () => string
    )();
    if (matches(schema, s)) return s;
  }
  return 'x'.repeat(Math.max(min, 1));
}

/** A value the schema accepts (best effort: enough for every schema in this document). */
export function validValue(schema: Schema, c: GenContext): unknown {
  const { r } = c;
  if (schema.anyOf || schema.oneOf) {
    const options = (schema.anyOf ?? schema.oneOf) as Schema[];
    const nonNull = options.filter((o) => o.type !== 'null');
    return validValue(r.chance(0.9) && nonNull.length ? r.pick(nonNull) : r.pick(options), c);
  }
  if (schema.const !== undefined) return schema.const;
  if (Array.isArray(schema.enum) && schema.type !== 'string') return r.pick(schema.enum);
  switch (typeOf(schema)) {
    case 'string':
      return validString(schema, c);
    case 'integer':
    case 'number': {
      const kind = kindOfField(c.name);
      const pool = kind ? c.pools(kind) : [];
      if (pool.length && r.chance(0.5)) return Number(r.pick(pool));
      const lo = schema.minimum ?? (schema.exclusiveMinimum !== undefined ? schema.exclusiveMinimum + 1 : 0);
      const hi = Math.min(schema.maximum ?? lo + 100, lo + 100);
      return r.int(lo, hi);
    }
    case 'boolean':
      return r.chance(0.5);
    case 'null':
      return null;
    case 'array': {
      const items = (schema.items ?? {}) as Schema;
      const min = schema.minItems ?? 0;
      const max = Math.min(schema.maxItems ?? 3, Math.max(min, 3));
      const n = r.int(min, max);
      const out: unknown[] = [];
      for (let i = 0; out.length < n && i < n * 5; i++) {
        const v = validValue(items, c);
        if (schema.uniqueItems && out.some((o) => JSON.stringify(o) === JSON.stringify(v))) continue;
        out.push(v);
      }
      return out;
    }
    case 'object':
      return validObject(schema, c);
  }
  return r.pick(['x', 1, true, null]);
}

export function validObject(schema: Schema, c: GenContext): Record<string, unknown> {
  if (schema.anyOf || schema.oneOf) return validValue(schema, c) as Record<string, unknown>;
  const props = (schema.properties ?? {}) as Record<string, Schema>;
  const required = new Set<string>(schema.required ?? []);
  const out: Record<string, unknown> = {};
  const names = Object.keys(props);
  for (const name of names) {
    if (required.has(name) || c.r.chance(0.5))
      out[name] = validValue(props[name] as Schema, { ...c, name, kind: undefined });
  }
  const minProps = schema.minProperties ?? 0;
  for (const name of c.r.shuffle([...names])) {
    if (Object.keys(out).length >= minProps) break;
    if (!(name in out)) out[name] = validValue(props[name] as Schema, { ...c, name, kind: undefined });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Hostile values

const NEST = 1000;
/** 1,000 levels of arrays, and of objects. */
export const deepArray = () => JSON.parse(`${'['.repeat(NEST)}${']'.repeat(NEST)}`) as unknown;
export const deepObject = () => JSON.parse(`${'{"a":'.repeat(NEST)}1${'}'.repeat(NEST)}`) as unknown;

/** Strings that break naive code: RTL, zero-width, emoji, lone surrogates, NUL, controls, injections. */
export const ODD_STRINGS: readonly string[] = [
  '',
  ' ',
  '\u0000',
  'a\u0000b',
  '\u202Egnp.exe',
  '\u200B',
  '\u200B\u200C\u200D\uFEFF',
  '\uFEFFtitle',
  '👩‍👩‍👧‍👦🏳️‍🌈',
  '\uD800',
  '\uDC00x',
  'x\uDBFF',
  'e\u0301\u0301\u0301\u0301',
  'ﷺ𒐫𒈙',
  '\u2028\u2029',
  '\r\n\t\u000b\u000c',
  '\u001b[31mred',
  '\u0085\u00a0',
  "' OR 1=1 --",
  "'; DROP TABLE users; --",
  '<script>alert(1)</script>',
  `{{7*7}}#{7*7}<%= 7*7 %>${['$', '{7*7}'].join('')}`,
  '../../../../etc/passwd',
  '%00%2e%2e%2f',
  '\\u0000',
  'null',
  'true',
  '0',
  '-1',
  '1e309',
  'NaN',
  'undefined',
  '__proto__',
  'constructor',
  'ＡＢＣ１２３',
  'İıŞş',
  'ß'.repeat(30),
];

/** More odd strings, seeded, from fast-check's full code-point range (half surrogates included). */
export function oddStrings(seed: number, n: number): string[] {
  return fc.sample(fc.string({ unit: 'binary', minLength: 1, maxLength: 24 }), { seed, numRuns: n });
}

export const HUGE = 100 * 1024;

/** Values of the wrong type for a schema. */
export function wrongTypes(schema: Schema): unknown[] {
  const t = typeOf(schema) ?? (schema.anyOf ? 'anyOf' : undefined);
  const all: unknown[] = ['text', 42, 1.5, true, null, [], {}, ['a'], { a: 1 }, -1];
  return all.filter((v) => {
    if (t === 'string') return typeof v !== 'string';
    if (t === 'integer') return !Number.isInteger(v);
    if (t === 'number') return typeof v !== 'number';
    if (t === 'boolean') return typeof v !== 'boolean';
    if (t === 'array') return !Array.isArray(v);
    if (t === 'object') return !(v && typeof v === 'object' && !Array.isArray(v));
    return true;
  });
}

/** Values at and just beyond a schema's bounds (some valid, most not). */
export function boundaries(schema: Schema, c: GenContext): unknown[] {
  const out: unknown[] = [];
  const inner = schema.anyOf ? ((schema.anyOf as Schema[]).find((s) => s.type !== 'null') ?? schema) : schema;
  const t = typeOf(inner);
  if (t === 'string') {
    const min = inner.minLength ?? 0;
    const max = inner.maxLength;
    const base = validString(inner, c);
    const fill = (n: number) =>
      n <= 0 ? '' : (base.repeat(Math.ceil(n / Math.max(1, base.length))) || 'x'.repeat(n)).slice(0, n);
    out.push(fill(min), fill(min - 1));
    if (max !== undefined)
      out.push(fill(max), fill(max + 1), `${'😀'.repeat(max)}`, `${'😀'.repeat(max + 1)}`);
  } else if (t === 'integer' || t === 'number') {
    const { minimum: min, maximum: max } = inner;
    if (min !== undefined) out.push(min, min - 1);
    if (max !== undefined) out.push(max, max + 1);
    out.push(0, -1, 0.5, 2 ** 31, 2 ** 53 + 2, -(2 ** 63), 1e308, Number.MAX_SAFE_INTEGER);
  } else if (t === 'array') {
    const items = (inner.items ?? {}) as Schema;
    const max = inner.maxItems ?? 50;
    const min = inner.minItems ?? 0;
    const one = validValue(items, c);
    out.push([], Array(max + 1).fill(one), Array(Math.max(0, min - 1)).fill(one));
    if (inner.uniqueItems) out.push([one, one]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// C7: adversarial strings for patterns

/** 100 KB strings shaped to make a backtracking regex work hard on a pattern (and a format). */
export function adversarialStrings(schema: Schema, size = HUGE): string[] {
  const chars = new Set<string>(['a', ' ', '\t', '0', '-', '.', '_', ':', '@', 'é']);
  // Characters named in the pattern itself, one by one.
  for (const m of String(schema.pattern ?? '').matchAll(/[A-Za-z0-9:._@-]/g)) chars.add(m[0]);
  const out: string[] = [];
  for (const ch of chars) {
    for (const tail of ['\u0000', '!', '\n']) out.push(ch.repeat(size - 1) + tail);
  }
  out.push(
    'a@'.repeat(size / 2),
    `a@${'a.'.repeat(size / 2 - 2)}-`,
    `${'1'.repeat(size - 20)}-01-01T00:00:00Z!`,
  );
  out.push(
    `${'0'.repeat(size / 2)}:${'0'.repeat(size / 2 - 2)}!`,
    ' \t'.repeat(size / 2),
    '😀'.repeat(size / 4),
  );
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Secrets

const JWT = /eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/;
// Bounded like real addresses (local part ≤ 64, labels ≤ 63): unbounded runs backtrack in quadratic
// time over the 100 KB strings the fuzz sends, minutes per request.
export const EMAIL = /[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){1,8}/g;

/**
 * What a response must never carry: argon2 hashes, tokens (JWT-shaped or the ones we know), stored
 * token hashes, and any email other than the caller's own (unless the request itself sent it).
 */
export function leaksIn(
  text: string,
  o: { requestText: string; ownEmail: string | undefined; secrets: Iterable<string>; tokenRoute: boolean },
): string[] {
  const found: string[] = [];
  if (text.includes('$argon2')) found.push('password hash ($argon2)');
  if (!o.tokenRoute) {
    const jwt = JWT.exec(text);
    if (jwt && !o.requestText.includes(jwt[0])) found.push(`token ${jwt[0].slice(0, 24)}…`);
  }
  for (const s of o.secrets) {
    // Refreshing within the second of signing in gives the same access token (same session and claims).
    if (o.tokenRoute && s.startsWith('eyJ')) continue;
    if (s.length >= 16 && text.includes(s) && !o.requestText.includes(s))
      found.push(`secret ${s.slice(0, 12)}…`);
  }
  const own = o.ownEmail?.toLowerCase();
  const req = o.requestText.toLowerCase();
  for (const m of text.includes('@') ? text.matchAll(EMAIL) : []) {
    const e = m[0].toLowerCase();
    if (e === own || req.includes(e)) continue;
    found.push(`email ${m[0]}`);
  }
  return found;
}

// ---------------------------------------------------------------------------------------------------
// Requests

export type Body =
  | { kind: 'none' }
  | { kind: 'json'; value: unknown }
  | { kind: 'raw'; text: string | Buffer; contentType?: string }
  | { kind: 'multipart'; parts: FilePart[]; boundary?: string };

export interface FilePart {
  field: string;
  filename?: string;
  contentType?: string;
  data: Buffer;
}

export interface Plan {
  op: Operation;
  /** 'valid', or the mutation applied. */
  mode: string;
  params: Record<string, string>;
  query: Record<string, string | string[]>;
  headers: Record<string, string>;
  body: Body;
  /** HEAD instead of the operation's GET (Fastify answers HEAD for every GET route). */
  method?: 'HEAD';
  /** Set by the mutation when the server cannot answer it from the document alone (route misses...). */
  unknowable?: boolean;
}

/** The pool a path parameter draws from: named by the segment before it. */
export function kindOfPath(path: string, param: string): string {
  const segments = path.split('/');
  const at = segments.indexOf(`{${param}}`);
  const before = segments[at - 1] ?? '';
  if (param === 'username') return 'username';
  if (param === 'userId' || before === 'members') return 'userId';
  if (param === 'messageId') return 'message';
  if (param === 'date') return 'date';
  if (param === 'file') return 'avatar';
  return before; // tasks, dailies, sessions, friend-requests, group-tasks, group-invitations, media, conversations
}

const asText = (v: unknown): string | string[] =>
  Array.isArray(v)
    ? v.map((x) => String(x))
    : v === null
      ? ''
      : typeof v === 'object'
        ? JSON.stringify(v)
        : String(v);

export function validPlan(op: Operation, c: Omit<GenContext, 'name'>): Plan {
  const params: Record<string, string> = {};
  const query: Record<string, string | string[]> = {};
  const headers: Record<string, string> = {};
  for (const p of op.parameters) {
    if (p.in === 'path') {
      const kind = kindOfPath(op.path, p.name);
      const pool = c.pools(kind);
      params[p.name] =
        pool.length && c.r.chance(0.85)
          ? c.r.pick(pool)
          : String(validValue(p.schema, { ...c, name: p.name, kind }));
    } else if (p.in === 'query') {
      // A made-up cursor is refused (invalid_cursor): mostly page from the start, or from a real one.
      const odds = p.name === 'cursor' ? (c.pools('cursor').length ? 0.5 : 0.1) : 0.4;
      if (p.required || c.r.chance(odds))
        query[p.name] = asText(validValue(p.schema, { ...c, name: p.name }));
    } else if (p.in === 'header') {
      if (p.required || c.r.chance(0.35))
        headers[p.name] = String(validValue(p.schema, { ...c, name: p.name }));
    }
  }
  let body: Body = { kind: 'none' };
  if (op.jsonBody) body = { kind: 'json', value: validObject(op.jsonBody, { ...c, name: '' }) };
  return { op, mode: 'valid', params, query, headers, body };
}

const clone = <T>(v: T): T => structuredClone(v);

/** The properties of a JSON body schema (the first object branch of an anyOf). */
function bodyProps(schema: Schema | undefined): Record<string, Schema> {
  if (!schema) return {};
  if (schema.properties) return schema.properties as Record<string, Schema>;
  const branch = ((schema.anyOf ?? schema.oneOf ?? []) as Schema[]).find((s) => s.properties);
  return (branch?.properties ?? {}) as Record<string, Schema>;
}

/** Fields a client must never set (A6); only those the operation does not declare are used. */
export const MASS_ASSIGNMENT: Record<string, unknown> = {
  role: 'admin',
  isAdmin: true,
  emailVerified: true,
  emailVerifiedAt: '2020-01-01T00:00:00Z',
  email_verified_at: '2020-01-01T00:00:00Z',
  score: 1_000_000,
  streak: 999,
  points: 1000,
  ownerId: '00000000-0000-4000-8000-000000000000',
  userId: '00000000-0000-4000-8000-000000000000',
  senderId: '00000000-0000-4000-8000-000000000000',
  seq: 1,
  rank: 1,
  id: '00000000-0000-4000-8000-000000000000',
  createdAt: '2020-01-01T00:00:00Z',
  status: 'done',
  email: 'mass@example.test',
  username: 'mass_assigned',
  passwordHash: 'x',
};

export function extraFieldsFor(op: Operation): string[] {
  const declared = new Set(Object.keys(bodyProps(op.jsonBody)));
  return Object.keys(MASS_ASSIGNMENT).filter((k) => !declared.has(k));
}

const MALFORMED = [
  '{',
  '{"a":}',
  '{"title": "x",}',
  "{'title': 'x'}",
  '[',
  '{"title":"x"} trailing',
  '\u0000',
  '{"title":"\\ud800"',
  'NaN',
  '{"a":1e999999}',
  '\uFEFF{}',
  '{"title":"x"}\u0000',
  '{"title":"\\x41"}',
];

const WRONG_CONTENT_TYPES = [
  'text/plain',
  'application/xml',
  'application/x-www-form-urlencoded',
  'multipart/form-data',
  'application/json-patch+json',
  'text/json',
  'application/jsonx',
  'application/json; charset=utf-16',
  'application/octet-stream',
  '*/*',
  ';;;',
];

export interface MutationContext extends Omit<GenContext, 'name'> {
  odd: readonly string[];
}

type Mutator = (p: Plan, c: MutationContext) => boolean;

function pickBodyField(p: Plan, c: MutationContext): [Record<string, unknown>, string, Schema] | undefined {
  if (p.body.kind !== 'json' || !p.body.value || typeof p.body.value !== 'object') return undefined;
  const props = bodyProps(p.op.jsonBody);
  const names = Object.keys(props);
  if (!names.length) return undefined;
  const name = c.r.pick(names);
  return [p.body.value as Record<string, unknown>, name, props[name] as Schema];
}

function pickParam(p: Plan, c: MutationContext, where: 'path' | 'query' | 'header'): Parameter | undefined {
  const ps = p.op.parameters.filter((x) => x.in === where);
  return ps.length ? c.r.pick(ps) : undefined;
}

function hugeString(c: MutationContext) {
  const unit = c.r.pick(['a', ' ', '😀', '\u200B', 'é', '\u0000', c.r.pick(c.odd) || 'x']);
  return unit.repeat(Math.ceil(HUGE / Math.max(1, unit.length))).slice(0, HUGE);
}

function setQuery(p: Plan, name: string, v: unknown) {
  p.query[name] = asText(v);
}

/** Every mutation, by name; each returns false when it does not apply to the operation. */
export const MUTATIONS: Record<string, Mutator> = {
  // Bodies
  missingRequired(p, c) {
    if (p.body.kind !== 'json' || !p.op.jsonBody?.required?.length) return false;
    delete (p.body.value as Record<string, unknown>)[c.r.pick(p.op.jsonBody.required as string[])];
    return true;
  },
  bodyWrongType(p, c) {
    const f = pickBodyField(p, c);
    if (!f) return false;
    f[0][f[1]] = c.r.pick(wrongTypes(f[2]));
    return true;
  },
  bodyBoundary(p, c) {
    const f = pickBodyField(p, c);
    if (!f) return false;
    const values = boundaries(f[2], { ...c, name: f[1] });
    if (!values.length) return false;
    f[0][f[1]] = c.r.pick(values);
    return true;
  },
  bodyHuge(p, c) {
    const f = pickBodyField(p, c);
    if (!f) return false;
    f[0][f[1]] = f[2].type === 'array' ? [hugeString(c)] : hugeString(c);
    return true;
  },
  bodyOdd(p, c) {
    const f = pickBodyField(p, c);
    if (!f) return false;
    const s = c.r.pick(c.odd);
    f[0][f[1]] = f[2].type === 'array' ? [s] : s;
    return true;
  },
  bodyOddSuffix(p, c) {
    // A valid value with something odd after it: passes "not blank" patterns, reaches the service.
    const f = pickBodyField(p, c);
    if (!f || typeof f[0][f[1]] !== 'string') return false;
    f[0][f[1]] =
      `${String(f[0][f[1]]).slice(0, 10)}${c.r.pick(['\u0000', '\uD800', '\u202E', '\u200B', '👩‍👩‍👧', '\u0000\u0000x'])}`;
    return true;
  },
  bodyDeep(p, c) {
    if (!p.op.jsonBody) return false;
    const f = pickBodyField(p, c);
    const deep = c.r.chance(0.5) ? deepArray() : deepObject();
    if (f && c.r.chance(0.7)) f[0][f[1]] = deep;
    else p.body = { kind: 'json', value: deep };
    return true;
  },
  bodyProto(p, c) {
    if (!p.op.jsonBody) return false;
    const rest = JSON.stringify(p.body.kind === 'json' ? p.body.value : {}).slice(1, -1);
    const poison = c.r.pick([
      '"__proto__":{"isAdmin":true,"role":"admin"}',
      '"constructor":{"prototype":{"isAdmin":true}}',
      '"__proto__":null',
      '"prototype":{"x":1}',
      '"a":{"__proto__":{"x":1}}',
    ]);
    p.body = { kind: 'raw', text: `{${poison}${rest ? `,${rest}` : ''}}`, contentType: 'application/json' };
    return true;
  },
  massAssignment(p, c) {
    if (p.body.kind !== 'json' || !p.op.jsonBody) return false;
    const extra = extraFieldsFor(p.op);
    if (!extra.length) return false;
    const k = c.r.pick(extra);
    (p.body.value as Record<string, unknown>)[k] = MASS_ASSIGNMENT[k];
    return true;
  },
  wrongContentType(p, c) {
    if (!p.op.jsonBody) return false;
    const text = JSON.stringify(p.body.kind === 'json' ? p.body.value : {});
    p.body = { kind: 'raw', text, contentType: c.r.pick(WRONG_CONTENT_TYPES) };
    return true;
  },
  emptyBody(p, c) {
    if (!p.op.jsonBody) return false;
    p.body = c.r.chance(0.5) ? { kind: 'raw', text: '', contentType: 'application/json' } : { kind: 'none' };
    p.unknowable = true; // routes whose body is optional read none as {}
    return true;
  },
  malformedJson(p, c) {
    if (!p.op.jsonBody) return false;
    p.body = { kind: 'raw', text: c.r.pick(MALFORMED), contentType: 'application/json' };
    return true;
  },
  randomJson(p, c) {
    if (!p.op.jsonBody) return false;
    const [value] = fc.sample(fc.jsonValue({ maxDepth: 3 }), { seed: c.r.seed(), numRuns: 1 });
    p.body = { kind: 'json', value };
    return true;
  },
  /** A body where the operation takes none: malformed, of an unknown type, or too large. */
  strayBody(p, c) {
    if (p.op.jsonBody || p.op.multipart) return false;
    p.body = c.r.pick<Body>([
      { kind: 'raw', text: '{"a":', contentType: 'application/json' },
      { kind: 'raw', text: '<a/>', contentType: 'application/xml' },
      { kind: 'raw', text: '{"role":"admin"}', contentType: 'application/json' },
      { kind: 'raw', text: 'x'.repeat(1_100_000), contentType: 'text/plain' },
    ]);
    p.unknowable = true;
    return true;
  },
  head(p) {
    if (p.op.method !== 'GET') return false;
    p.method = 'HEAD';
    return true;
  },
  // Path parameters
  pathOdd(p, c) {
    const q = pickParam(p, c, 'path');
    if (!q) return false;
    p.params[q.name] = c.r.pick(c.odd) || 'x';
    return true;
  },
  pathLookalike(p, c) {
    const q = pickParam(p, c, 'path');
    if (!q) return false;
    const real = p.params[q.name] ?? '';
    p.params[q.name] = c.r.pick([
      real.toUpperCase(),
      `${real} `,
      ` ${real}`,
      `${real}\u0000`,
      real.slice(0, -1),
      `${real}0`,
      real.replace(/-/g, ''),
      `{${real}}`,
      '00000000-0000-0000-0000-000000000000',
      'ffffffff-ffff-ffff-ffff-ffffffffffff',
      '0',
      '-1',
      '1.5',
      'true',
      'null',
      '..',
      '.',
      "1' OR '1'='1",
      '2026-02-30',
      '0000-00-00',
      '99999-01-01',
    ]);
    return true;
  },
  pathHuge(p, c) {
    const q = pickParam(p, c, 'path');
    if (!q) return false;
    p.params[q.name] = c.r.chance(0.5)
      ? 'a'.repeat(c.r.int(60, 101))
      : hugeString(c).slice(0, c.r.int(100, 5000));
    p.unknowable = true; // beyond Fastify's maxParamLength the route is not matched at all
    return true;
  },
  pathEncoding(p, c) {
    const q = pickParam(p, c, 'path');
    if (!q) return false;
    // Raw, already percent-encoded: bad escapes, encoded slashes, overlong and surrogate UTF-8.
    p.params[q.name] =
      `\u0001RAW${c.r.pick(['%', '%ZZ', '%2F..%2F', '%C0%AF', '%ED%A0%80', '%00', '%FF%FE', 'a%2Fb', '%25'])}`;
    p.unknowable = true;
    return true;
  },
  // Query strings
  queryWrongType(p, c) {
    const q = pickParam(p, c, 'query');
    if (!q) return false;
    setQuery(p, q.name, c.r.pick(['abc', '1.5', '-1', '1e309', '', 'true', '[]', '{}', '0x10', ' 1', '١٢']));
    return true;
  },
  queryBoundary(p, c) {
    const q = pickParam(p, c, 'query');
    if (!q) return false;
    const values = boundaries(q.schema, { ...c, name: q.name });
    if (!values.length) return false;
    setQuery(p, q.name, c.r.pick(values));
    return true;
  },
  queryHuge(p, c) {
    const q = pickParam(p, c, 'query');
    if (!q) return false;
    setQuery(p, q.name, hugeString(c));
    return true;
  },
  queryOdd(p, c) {
    const q = pickParam(p, c, 'query');
    if (!q) return false;
    setQuery(p, q.name, c.r.pick(c.odd));
    return true;
  },
  queryRepeated(p, c) {
    const q = pickParam(p, c, 'query');
    if (!q) return false;
    const v = asText(validValue(q.schema, { ...c, name: q.name }));
    p.query[q.name] = [String(v), String(v)];
    return true;
  },
  queryExtra(p, c) {
    if (!p.op.parameters.some((x) => x.in === 'query')) return false;
    const k = c.r.pick([
      'role',
      'isAdmin',
      'userId',
      '__proto__',
      'constructor',
      'a[b]',
      'limit[]',
      'toString',
      '',
    ]);
    p.query[k] = c.r.pick(['admin', 'true', '1', '{"a":1}']);
    return true;
  },
  // Headers
  headerBad(p, c) {
    const q = pickParam(p, c, 'header');
    if (!q) return false;
    p.headers[q.name] = c.r.pick([
      '',
      ' ',
      'a b',
      'é',
      'k'.repeat(256),
      'k'.repeat(HUGE),
      'key\t1',
      '"quoted"',
      ...['ü', '\u00ff'].map((s) => `key${s}`),
    ]);
    return true;
  },
};

/** The mutations that apply to an operation (a dry run on a copy of a valid plan). */
export function mutationsFor(sample: Plan, c: MutationContext): string[] {
  return Object.keys(MUTATIONS).filter((name) => (MUTATIONS[name] as Mutator)(clone(sample), c));
}

export function mutate(valid: Plan, name: string, c: MutationContext): Plan {
  const p: Plan = { ...clone({ ...valid, op: undefined }), op: valid.op, mode: name } as Plan;
  (MUTATIONS[name] as Mutator)(p, c);
  return p;
}

// ---------------------------------------------------------------------------------------------------
// Rendering, and what the document says of a plan

function percentEncode(s: string): string {
  if (s.startsWith('\u0001RAW')) return s.slice(4);
  let out = '';
  for (const ch of s) {
    if (/^[A-Za-z0-9\-_.~]$/.test(ch)) {
      out += ch;
      continue;
    }
    // UTF-8 of the code point, lone surrogates included (WTF-8): the bytes a sloppy client would send.
    const cp = ch.codePointAt(0) as number;
    const bytes =
      cp < 0x80
        ? [cp]
        : cp < 0x800
          ? [0xc0 | (cp >> 6), 0x80 | (cp & 63)]
          : cp < 0x10000
            ? [0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 63), 0x80 | (cp & 63)]
            : [0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 63), 0x80 | ((cp >> 6) & 63), 0x80 | (cp & 63)];
    for (const b of bytes) out += `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

export const hasLoneSurrogate = (s: string) => /\p{Surrogate}/u.test(s);

export function urlOf(p: Plan): string {
  const path = p.op.path.replace(/\{([^}]+)\}/g, (_, name: string) => percentEncode(p.params[name] ?? ''));
  const pairs: string[] = [];
  for (const [k, v] of Object.entries(p.query)) {
    for (const one of Array.isArray(v) ? v : [v]) pairs.push(`${percentEncode(k)}=${percentEncode(one)}`);
  }
  return pairs.length ? `${path}?${pairs.join('&')}` : path;
}

export function payloadOf(p: Plan): { payload?: string | Buffer; contentType?: string } {
  switch (p.body.kind) {
    case 'none':
      return {};
    case 'json':
      return { payload: JSON.stringify(p.body.value), contentType: 'application/json' };
    case 'raw':
      return {
        payload: p.body.text,
        ...(p.body.contentType !== undefined ? { contentType: p.body.contentType } : {}),
      };
    case 'multipart': {
      const boundary = p.body.boundary ?? '----fuzz7MA4YWxkTrZu0gW';
      const chunks: Buffer[] = [];
      for (const part of p.body.parts) {
        const disposition = `form-data; name="${part.field}"${part.filename !== undefined ? `; filename="${part.filename}"` : ''}`;
        const type = part.contentType ? `\r\nContent-Type: ${part.contentType}` : '';
        chunks.push(
          Buffer.from(`--${boundary}\r\nContent-Disposition: ${disposition}${type}\r\n\r\n`),
          part.data,
        );
        chunks.push(Buffer.from('\r\n'));
      }
      chunks.push(Buffer.from(`--${boundary}--\r\n`));
      return { payload: Buffer.concat(chunks), contentType: `multipart/form-data; boundary=${boundary}` };
    }
  }
}

/**
 * What the document says of a request: a reason it is invalid, null when it is valid, or undefined
 * when the document cannot tell (route misses, encodings, bodies where none is declared).
 */
export function docVerdict(p: Plan, v: ReturnType<typeof docValidators>): string | null | undefined {
  if (p.unknowable) return undefined;
  const texts = [...Object.values(p.params), ...Object.values(p.query).flat(), ...Object.values(p.headers)];
  if (texts.some((t) => hasLoneSurrogate(t) || t.includes('\u0001RAW'))) return undefined;
  if (Object.values(p.params).some((t) => t === '' || t.length > 100)) return undefined;
  const reasons: string[] = [];
  const pathErr = v.request(p.op, 'path', p.params);
  if (pathErr) reasons.push(`path: ${pathErr}`);
  if (p.op.parameters.some((x) => x.in === 'query')) {
    const err = v.request(p.op, 'query', p.query);
    if (err) reasons.push(`query: ${err}`);
  } else if (Object.keys(p.query).length) return undefined;
  const headerErr = v.request(p.op, 'header', p.headers);
  if (headerErr) reasons.push(`header: ${headerErr}`);
  if (p.op.jsonBody) {
    // Routes whose body is optional read a JSON null as no body (emptyBodyIsObject): not judged.
    if (p.body.kind === 'json' && p.body.value === null) return undefined;
    if (p.body.kind === 'raw' && String(p.body.text).trim() === 'null') return undefined;
    if (p.body.kind === 'json') {
      const err = v.request(p.op, 'body', p.body.value);
      if (err) reasons.push(`body: ${err}`);
    } else if (p.body.kind === 'raw') {
      const type = (p.body.contentType ?? '').split(';')[0]?.trim().toLowerCase();
      if (type !== 'application/json') reasons.push(`content-type ${p.body.contentType}`);
      else if (/"(__proto__|constructor)"/.test(String(p.body.text))) reasons.push('prototype keys');
      else {
        try {
          // A leading byte-order mark is allowed (RFC 8259 §8.1; Fastify's parser drops it).
          const parsed = JSON.parse(String(p.body.text).replace(/^\uFEFF/, '')) as unknown;
          const err = v.request(p.op, 'body', parsed);
          if (err) reasons.push(`body: ${err}`);
        } catch {
          reasons.push('malformed JSON');
        }
      }
    } else return undefined;
  } else if (p.body.kind !== 'none') return undefined;
  return reasons.length ? reasons.join(' | ') : null;
}

/** A short, replayable description of a request. */
export function describePlan(p: Plan, caller: string): string {
  const { payload, contentType } = payloadOf(p);
  const body =
    payload === undefined
      ? ''
      : ` ${contentType ?? '(no content-type)'} ${
          Buffer.isBuffer(payload)
            ? `<${payload.length} bytes>`
            : payload.length > 300
              ? `${JSON.stringify(payload.slice(0, 200))}… (${payload.length} chars)`
              : JSON.stringify(payload)
        }`;
  const url = urlOf(p);
  const headers = Object.keys(p.headers).length ? ` headers=${JSON.stringify(p.headers).slice(0, 200)}` : '';
  return `[${p.mode}, ${caller}] ${p.method ?? p.op.method} ${url.length > 300 ? `${url.slice(0, 200)}… (${url.length} chars)` : url}${headers}${body}`;
}

// ---------------------------------------------------------------------------------------------------
// C7: every string field with a pattern (or a format), where a request carries it

export interface PatternField {
  op: Operation;
  part: 'params' | 'querystring' | 'headers' | 'body';
  name: string;
  /** The field is an array of such strings. */
  inArray: boolean;
  schema: Schema;
}

export function patternFields(op: Operation): PatternField[] {
  const out: PatternField[] = [];
  const consider = (part: PatternField['part'], name: string, schema: Schema) => {
    const options = (schema.anyOf ?? [schema]) as Schema[];
    for (const s of options) {
      if (s.type === 'string' && (s.pattern || s.format))
        out.push({ op, part, name, inArray: false, schema: s });
      if (s.type === 'array' && s.items?.type === 'string' && (s.items.pattern || s.items.format))
        out.push({ op, part, name, inArray: true, schema: s.items });
    }
  };
  for (const p of op.parameters) {
    const part =
      p.in === 'path'
        ? 'params'
        : p.in === 'query'
          ? 'querystring'
          : p.in === 'header'
            ? 'headers'
            : undefined;
    if (part) consider(part, p.name, p.schema);
  }
  for (const [name, s] of Object.entries(bodyProps(op.jsonBody))) consider('body', name, s);
  return out;
}
