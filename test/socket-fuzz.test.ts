import { randomUUID } from 'node:crypto';
import { io as connect, type Socket } from 'socket.io-client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Message } from '../src/modules/chat/chat.schemas.js';
import { CLIENT_EVENTS, everyClientEventListed } from './authz/coverage.js';
import { type Caller, chatKit, range, seededRandom, seedFromEnv, sleep } from './chat-kit.js';
import { figure } from './figures.js';
import { eventually, startTestApp, type TestApp } from './helpers.js';

// RELIABILITY.md C3: a seeded fuzzer throws malformed, oversize, unknown, wrongly typed, deeply nested,
// __proto__-laden, binary and flooding events at every client→server event of the real app, through
// real socket.io clients, while other people keep chatting. Rate limits are on (the default budgets).
let t: TestApp;
const kit = chatKit(() => t);
const { person, direct, group, open, emit, send } = kit;

beforeAll(async () => {
  t = await startTestApp({ listen: true, worker: true });
});
afterEach(() => kit.closeAll());
afterAll(async () => {
  kit.closeAll();
  await t?.close();
});

// Every client→server event is fuzzed: the list is the one the authorization matrix must cover, which
// fails to compile while an event of ClientToServerEvents is missing from it.
const EVENTS = CLIENT_EVENTS;
type Event = (typeof EVENTS)[number];

/** The codes a refused event may answer; anything else (internal_error above all) is a failure. */
const STABLE_CODES = new Set([
  'invalid_payload',
  'unknown_event',
  'not_found',
  'rate_limited',
  'empty_message',
  'invalid_characters',
]);

type Outcome =
  | { kind: 'ack'; value: unknown }
  | { kind: 'disconnect'; reason: string }
  | { kind: 'timeout' }
  | { kind: 'none' };

/** Emits raw arguments (the ack, if any, last) and waits for the ack, a disconnect or the timeout. */
function fire(
  socket: Socket,
  event: string,
  args: unknown[],
  withAck = true,
  timeoutMs = 8000,
): Promise<Outcome> {
  if (!socket.connected) return Promise.resolve({ kind: 'disconnect', reason: 'was not connected' });
  if (!withAck) {
    socket.emit(event, ...args);
    return Promise.resolve({ kind: 'none' });
  }
  return new Promise((resolve) => {
    const done = (o: Outcome) => {
      clearTimeout(timer);
      socket.off('disconnect', onDisconnect);
      resolve(o);
    };
    const onDisconnect = (reason: string) => done({ kind: 'disconnect', reason });
    const timer = setTimeout(() => done({ kind: 'timeout' }), timeoutMs);
    socket.on('disconnect', onDisconnect);
    socket.emit(event, ...args, (value: unknown) => done({ kind: 'ack', value }));
  });
}

/** An `{ ok: false, error: { code, detail } }` with nothing else in it, and the code when it is one. */
function errorCode(value: unknown): string | undefined {
  const v = value as { ok?: unknown; error?: { code?: unknown; detail?: unknown } } | null;
  if (!v || typeof v !== 'object' || v.ok !== false || !v.error || typeof v.error !== 'object')
    return undefined;
  if (Object.keys(v).sort().join() !== 'error,ok') return undefined;
  if (Object.keys(v.error).sort().join() !== 'code,detail') return undefined;
  if (typeof v.error.code !== 'string' || typeof v.error.detail !== 'string') return undefined;
  return v.error.code;
}

type Kind = 'id' | 'cmid' | 'body' | 'media' | 'seq' | 'limit' | 'echo' | 'board';
type Field = { name: string; kind: Kind; required: boolean };
const conversationField: Field = { name: 'conversationId', kind: 'id', required: true };
const FIELDS: Record<Event, Field[]> = {
  'system:ping': [{ name: 'echo', kind: 'echo', required: false }],
  'chat:send': [
    conversationField,
    { name: 'clientMessageId', kind: 'cmid', required: true },
    { name: 'body', kind: 'body', required: false },
    { name: 'mediaId', kind: 'media', required: false },
  ],
  'chat:typing': [conversationField],
  'chat:delivered': [conversationField, { name: 'seq', kind: 'seq', required: true }],
  'chat:read': [conversationField, { name: 'seq', kind: 'seq', required: true }],
  'chat:sync': [
    conversationField,
    { name: 'afterSeq', kind: 'seq', required: true },
    { name: 'limit', kind: 'limit', required: false },
  ],
  'leaderboard:watch': [{ name: 'board', kind: 'board', required: true }],
  'leaderboard:unwatch': [{ name: 'board', kind: 'board', required: true }],
};

const notAString = [0, -1, 1.5, true, false, null, [], ['x'], {}, { a: 1 }];
/** Values each kind of field must refuse (never undefined: JSON would drop it, leaving a valid payload). */
const WRONG: Record<Kind, unknown[]> = {
  id: notAString,
  cmid: [...notAString, '', 'has space', 'ü', 'a/b', '<script>', 'x\n', 'x'.repeat(65)],
  body: [...notAString, 'x'.repeat(4001)],
  media: [...notAString, 'not-a-uuid', ''],
  seq: [-1, -0.5, 1.5, '1', null, true, [], {}, 2 ** 53, 1e300],
  limit: [0, 101, 1.5, '10', null, true, [], {}, -1],
  echo: [0, null, true, [], {}, 'x'.repeat(101)],
  board: [
    ...notAString,
    '',
    'global',
    'global:day',
    'GLOBAL:WEEK',
    'global:week ',
    'friends:all\u0000',
    'group:x',
  ],
};
/** Just past each string field's limit, or far past it. */
const LIMIT: Partial<Record<Kind, number>> = {
  id: 64,
  cmid: 64,
  body: 4000,
  echo: 100,
  media: 36,
  board: 12,
};
const EXTRA_KEYS = [
  'constructor',
  'prototype',
  'senderId',
  'userId',
  'seq',
  'role',
  'admin',
  'toString',
  'x',
];
const UNKNOWN_EVENTS = [
  'chat:nope',
  'CHAT:SEND',
  'chat:send ',
  ' chat:send',
  'chat:sendx',
  'system:pingg',
  '__proto__',
  'constructor',
  'toString',
  'hasOwnProperty',
  'error',
  'chat:',
  ':',
  '',
  'x'.repeat(5000),
  '💬',
  'chat:send\u0000',
  '123',
];

function nested(depth: number, leaf: unknown, asArray: boolean): unknown {
  let v = leaf;
  for (let i = 0; i < depth; i++) v = asArray ? [v] : { a: v };
  return v;
}

/** A payload every handler must refuse: a valid one (to a conversation of the sender), then broken. */
function fuzzer(seed: number, targets: string[], foreign: string[]) {
  const rnd = seededRandom(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
  const junk = (): unknown =>
    pick([
      () => 'x'.repeat(1 + Math.floor(rnd() * 300)),
      () => nested(1 + Math.floor(rnd() * 1000), 'deep', rnd() < 0.5),
      () => Buffer.alloc(Math.floor(rnd() * 2048), 7),
      () => [1, 'two', null, { three: [3] }],
      () => Number.MAX_VALUE,
      () => null,
    ])();
  const valid = (event: Event): Record<string, unknown> => {
    const conversationId = pick(targets);
    switch (event) {
      case 'system:ping':
        return { echo: 'hi' };
      case 'chat:send':
        return { conversationId, clientMessageId: `fz-${Math.floor(rnd() * 1e9)}`, body: 'hello' };
      case 'chat:typing':
        return { conversationId };
      case 'chat:delivered':
      case 'chat:read':
        return { conversationId, seq: 1 };
      case 'chat:sync':
        return { conversationId, afterSeq: 0, limit: 10 };
      case 'leaderboard:watch':
      case 'leaderboard:unwatch':
        return { board: pick(['global:week', 'global:all', 'friends:week', 'friends:all']) };
    }
  };
  type Mutation = {
    name: string;
    when(event: Event): boolean;
    apply(event: Event, p: Record<string, unknown>): unknown;
  };
  const stringField = (event: Event) => FIELDS[event].filter((f) => LIMIT[f.kind] !== undefined);
  const mutations: Mutation[] = [
    {
      name: 'not an object',
      when: () => true,
      apply: (_e, p) =>
        pick([
          null,
          0,
          'chat',
          true,
          [],
          [p],
          Buffer.from('binary payload'),
          nested(1000, p, true),
          nested(1000, 1, false),
        ]),
    },
    {
      name: 'missing field',
      when: (e) => FIELDS[e].some((f) => f.required),
      apply: (e, p) => {
        const { name } = pick(FIELDS[e].filter((f) => f.required));
        const { [name]: _, ...rest } = p;
        return rest;
      },
    },
    {
      name: 'extra field',
      when: () => true,
      apply: (e, p) => {
        const key = pick(EXTRA_KEYS.filter((k) => !FIELDS[e].some((f) => f.name === k)));
        return { ...p, [key]: junk() };
      },
    },
    {
      name: '__proto__',
      when: () => true,
      apply: (_e, p) => {
        // Only JSON.parse makes an own __proto__ key (a literal would set the prototype instead).
        const key = pick([
          '"__proto__":{"admin":true,"polluted":1}',
          '"constructor":{"prototype":{"polluted":1}}',
          '"__proto__":null',
        ]);
        const rest = JSON.stringify(p).slice(1);
        return JSON.parse(`{${key}${rest === '}' ? '' : ','}${rest}`);
      },
    },
    {
      name: 'wrong type',
      when: () => true,
      apply: (e, p) => {
        const f = pick(FIELDS[e]);
        return { ...p, [f.name]: pick(WRONG[f.kind]) };
      },
    },
    {
      name: 'oversize string',
      when: (e) => stringField(e).length > 0,
      apply: (e, p) => {
        const f = pick(stringField(e));
        const limit = LIMIT[f.kind] as number;
        // At most 60 KB, so that even three of these stay under the 256 KB frame limit (the frames
        // beyond it are tried on their own below).
        const [unit, bytes] = pick([
          ['x', 1],
          ['é', 2],
          ['💬', 4],
        ] as const);
        const length = Math.min(
          pick([limit + 1, limit + 10, 10 * limit, 60_000]),
          Math.floor(60_000 / bytes),
        );
        return { ...p, [f.name]: unit.repeat(Math.max(length, limit + 1)) };
      },
    },
    {
      name: 'not my conversation',
      when: (e) => e.startsWith('chat:'),
      apply: (_e, p) => ({
        ...p,
        conversationId: pick([randomUUID(), randomUUID().toUpperCase(), pick(foreign), 'not-a-uuid', '']),
      }),
    },
    {
      name: 'empty message',
      when: (e) => e === 'chat:send',
      apply: (_e, p) => {
        const { mediaId: _, ...rest } = p;
        return { ...rest, body: pick(['', ' ', '\n\t ']) };
      },
    },
    {
      name: 'NUL in body',
      when: (e) => e === 'chat:send',
      apply: (_e, p) => ({ ...p, body: pick(['a\u0000b', '\u0000', `${'x'.repeat(100)}\u0000`]) }),
    },
    {
      name: 'binary body',
      when: (e) => e === 'chat:send',
      apply: (_e, p) => ({ ...p, body: Buffer.alloc(1 + Math.floor(rnd() * 4096), 65) }),
    },
    {
      name: 'someone else’s media',
      when: (e) => e === 'chat:send',
      apply: (_e, p) => ({ ...p, mediaId: randomUUID() }),
    },
  ];

  return {
    rnd,
    pick,
    /** One fuzzed call: the event, its arguments before the ack, and whether it takes an ack. */
    next(): { event: string; args: unknown[]; withAck: boolean; mutations: string[]; known: boolean } {
      const event = pick(EVENTS);
      let payload: unknown = valid(event);
      const applied: string[] = [];
      const rounds = 1 + (rnd() < 0.5 ? 1 : 0) + (rnd() < 0.2 ? 1 : 0);
      for (let i = 0; i < rounds; i++) {
        if (
          payload === null ||
          typeof payload !== 'object' ||
          Array.isArray(payload) ||
          Buffer.isBuffer(payload)
        )
          break;
        const m = pick(mutations.filter((x) => x.when(event)));
        payload = m.apply(event, payload as Record<string, unknown>);
        applied.push(m.name);
      }
      let name: string = event;
      let known = true;
      if (rnd() < 0.08) {
        name =
          rnd() < 0.7
            ? pick(UNKNOWN_EVENTS)
            : String.fromCodePoint(...range(1, 12).map(() => 33 + Math.floor(rnd() * 0x2fff)));
        known = false;
      }
      // The arguments around the ack: usually one payload, sometimes extra ones, none, or no ack at all.
      const shape = rnd();
      if (shape < 0.06)
        return {
          event: name,
          args: [payload, junk(), 42],
          withAck: true,
          mutations: [...applied, 'extra arguments'],
          known,
        };
      // ({} is a valid ping.)
      if (shape < 0.1 && event !== 'system:ping')
        return { event: name, args: [], withAck: true, mutations: ['no payload'], known };
      if (shape < 0.14)
        return { event: name, args: [payload], withAck: false, mutations: [...applied, 'no ack'], known };
      return { event: name, args: [payload], withAck: true, mutations: applied, known };
    },
  };
}

describe('C3 socket fuzz', () => {
  it('every fuzzed event gets an error ack with a stable code (or a clean disconnect); no crash, nothing broadcast, others unaffected', async () => {
    const seed = seedFromEnv();
    const uncaught: unknown[] = [];
    const onUncaught = (err: unknown) => uncaught.push(err);
    process.on('uncaughtException', onUncaught);
    process.on('unhandledRejection', onUncaught);
    const logsBefore = t.logs().length;
    try {
      // The targets: a group and a direct conversation of the fuzzing users, with a bystander member in
      // both; a group they are not in; and a pair chatting on the side.
      const fuzzers = await Promise.all(range(1, 4).map(() => person()));
      const [bystander, outsider, c, d] = [await person(), await person(), await person(), await person()];
      const g = await group(bystander, fuzzers);
      const dm = await direct(fuzzers[0] as Caller, bystander);
      const foreign = await group(outsider, []);
      const side = await direct(c, d);
      const targets = [g.conversationId, dm.id];
      const watched = new Set([...targets, foreign.conversationId]);

      const bystanderSocket = await open(bystander);
      const broadcasts: string[] = [];
      for (const event of ['chat:message', 'chat:typing', 'chat:receipt', 'chat:deleted'])
        bystanderSocket.on(event, (e: { conversationId?: string }) => {
          if (e?.conversationId && watched.has(e.conversationId)) broadcasts.push(event);
        });
      const [sc, sd] = [await open(c), await open(d)];
      const sideHeard: number[] = [];
      sd.on('chat:message', (m: Message) => m.conversationId === side.id && sideHeard.push(m.seq));

      // Health and the side chat, all along.
      let running = true;
      const health = { ok: 0, bad: 0 };
      const healthLoop = (async () => {
        while (running) {
          const res = await fetch(`${t.url}/health/live`).catch(() => undefined);
          if (res?.status === 200) health.ok++;
          else health.bad++;
          await sleep(150);
        }
      })();
      let sideSent = 0;
      const sideLoop = (async () => {
        while (running) {
          await send(sideSent % 2 ? sd : sc, side.id, `side ${sideSent}`);
          sideSent++;
          await sleep(900); // within the send budget of 10 per 10 s each
        }
      })();

      // 1. The fuzz: 5 sockets for each fuzzing user, each firing one event every 50 ms (under the
      // per-socket flood guard), for a few seconds.
      const gen = fuzzer(seed, targets, [foreign.conversationId]);
      const sockets = (
        await Promise.all(fuzzers.map((f) => Promise.all(range(1, 5).map(() => open(f)))))
      ).flat();
      const codes = new Map<string, number>();
      const failures: string[] = [];
      let events = 0;
      let noAck = 0;
      const FUZZ_MS = 5000;
      const stopAt = Date.now() + FUZZ_MS;
      await Promise.all(
        sockets.map(async (socket) => {
          const pending: Promise<void>[] = [];
          while (Date.now() < stopAt) {
            const call = gen.next();
            events++;
            pending.push(
              fire(socket, call.event, call.args, call.withAck).then((o) => {
                const what = `${call.event.slice(0, 40)} ${call.mutations.join('+')}`;
                if (o.kind === 'none') {
                  noAck++;
                  return;
                }
                if (o.kind !== 'ack') return void failures.push(`${what}: ${o.kind}`);
                const code = errorCode(o.value);
                if (!code || !STABLE_CODES.has(code))
                  return void failures.push(`${what}: ${JSON.stringify(o.value).slice(0, 200)}`);
                codes.set(code, (codes.get(code) ?? 0) + 1);
              }),
            );
            await sleep(50);
          }
          await Promise.all(pending);
        }),
      );
      // Every fuzzing socket is still connected and answers (events without an ack left no trace).
      const alive = await Promise.all(sockets.map((s) => fire(s, 'system:ping', [{ echo: 'still there?' }])));
      const dead = alive.filter(
        (o) => !(o.kind === 'ack' && (o.value as { ok?: boolean }).ok === true),
      ).length;

      // 2. Frames near and over the 256 KB transport limit, protocol garbage, too many attachments: an
      // error ack below the limit, a clean disconnect for what the transport cannot accept.
      const breaker = await person();
      const frameLimit = 256 * 1024;
      const sized = (bytes: number) => {
        const base = JSON.stringify([
          'chat:send',
          { conversationId: g.conversationId, clientMessageId: 'big', body: '' },
        ]);
        return {
          conversationId: g.conversationId,
          clientMessageId: 'big',
          body: 'x'.repeat(bytes - base.length - 8),
        };
      };
      const edgeCases: {
        name: string;
        run(s: Socket): Promise<Outcome>;
        expect: 'ack' | 'disconnect' | 'either';
      }[] = [
        {
          name: 'text frame 200 bytes under the limit',
          run: (s) => fire(s, 'chat:send', [sized(frameLimit - 200)]),
          expect: 'ack',
        },
        {
          name: 'text frame 200 bytes over the limit',
          run: (s) => fire(s, 'chat:send', [sized(frameLimit + 200)]),
          expect: 'disconnect',
        },
        {
          name: 'binary attachment under the limit',
          run: (s) =>
            fire(s, 'chat:send', [
              {
                conversationId: g.conversationId,
                clientMessageId: 'b',
                body: Buffer.alloc(frameLimit - 1024),
              },
            ]),
          expect: 'ack',
        },
        {
          name: 'binary attachment over the limit',
          run: (s) =>
            fire(s, 'chat:send', [
              {
                conversationId: g.conversationId,
                clientMessageId: 'b',
                body: Buffer.alloc(frameLimit + 1024),
              },
            ]),
          expect: 'disconnect',
        },
        {
          name: 'eleven binary attachments',
          run: (s) =>
            fire(s, 'chat:send', [
              {
                conversationId: g.conversationId,
                clientMessageId: 'b',
                body: range(1, 11).map(() => Buffer.alloc(8)),
              },
            ]),
          expect: 'disconnect',
        },
        { name: 'a reserved event name', run: (s) => raw(s, '2["disconnect",{}]'), expect: 'disconnect' },
        { name: 'broken JSON', run: (s) => raw(s, '2["chat:send",{"conversationId":'), expect: 'disconnect' },
        { name: 'unknown packet type', run: (s) => raw(s, '9'), expect: 'disconnect' },
        { name: 'a null event', run: (s) => raw(s, '2null'), expect: 'disconnect' },
        {
          name: 'an attachment that never comes',
          run: (s) => raw(s, '51-["chat:send",{"_placeholder":true,"num":0}]', '2["system:ping",{}]'),
          expect: 'disconnect',
        },
        {
          name: 'a binary event claiming 99 attachments',
          run: (s) => raw(s, '599-["chat:send",{}]'),
          expect: 'disconnect',
        },
        { name: 'engine.io garbage', run: (s) => rawEngine(s, 'zz garbage'), expect: 'disconnect' },
        {
          name: '100,000 nested arrays',
          run: (s) => raw(s, `2990001["chat:send",${'['.repeat(100_000)}${']'.repeat(100_000)}]`),
          expect: 'either',
        },
        { name: 'an ack for nothing', run: (s) => raw(s, '3999999["x"]'), expect: 'either' },
      ];
      const edges: string[] = [];
      for (const edge of edgeCases) {
        const s = await open(breaker);
        const o = await edge.run(s);
        // An error ack with a stable code, a clean disconnect, or (where either is fine) nothing at all
        // while the connection keeps working.
        const ok =
          (o.kind === 'ack' && STABLE_CODES.has(errorCode(o.value) ?? '')) ||
          o.kind === 'disconnect' ||
          (o.kind === 'none' && edge.expect === 'either');
        const fits = edge.expect === 'either' || o.kind === edge.expect;
        edges.push(
          `${edge.name} → ${o.kind === 'ack' ? errorCode(o.value) : o.kind === 'disconnect' ? `disconnect (${o.reason})` : o.kind}`,
        );
        if (!ok || !fits) failures.push(`edge: ${edges.at(-1)}`);
        s.disconnect();
      }

      // The same over long-polling, whose requests the transport limits too.
      for (const [name, bytes, want] of [
        ['polling: a payload under the limit', frameLimit - 1000, 'ack'],
        ['polling: a payload over the limit', frameLimit + 1000, 'disconnect'],
      ] as const) {
        const s = await open(breaker, { transports: ['polling'] });
        const o = await fire(s, 'chat:send', [sized(bytes)]);
        edges.push(`${name} → ${o.kind === 'ack' ? errorCode(o.value) : o.kind}`);
        if (o.kind !== want || (o.kind === 'ack' && !STABLE_CODES.has(errorCode(o.value) ?? '')))
          failures.push(`edge: ${edges.at(-1)}`);
        s.disconnect();
      }

      // Handshakes: malformed credentials are refused; a forged recovery id starts afresh.
      const handshakes: string[] = [];
      for (const [name, auth, want] of [
        ['token a number', { token: 123 }, 'refused'],
        ['token 200 KB', { token: 'x'.repeat(200_000) }, 'refused'],
        ['token nested', { token: nested(1000, 'x', false) }, 'refused'],
        ['auth an array', ['token'], 'refused'],
        ['forged recovery id', { token: breaker.token, pid: 'nope', offset: 'nope' }, 'fresh'],
        ['recovery id __proto__', { token: breaker.token, pid: '__proto__', offset: '0-0' }, 'fresh'],
        ['recovery id of the wrong type', { token: breaker.token, pid: { a: 1 }, offset: [1] }, 'fresh'],
      ] as const) {
        const o = await handshake(auth);
        handshakes.push(`${name} → ${o}`);
        if (want === 'refused' ? !o.startsWith('refused') : o !== 'welcome (recovered: false)')
          failures.push(`handshake: ${handshakes.at(-1)}`);
      }

      // 3. Floods at every event (and an unknown one): error acks, then the connection is dropped.
      const flooder = await person();
      const floods: string[] = [];
      for (const event of [...EVENTS, 'chat:nope']) {
        const s = await open(flooder);
        const payload =
          event === 'system:ping' ? { echo: 1 } : { conversationId: randomUUID(), seq: 1, afterSeq: 0 };
        const outcomes = await Promise.all(range(1, 200).map(() => fire(s, event, [payload], true, 5000)));
        const acked = outcomes.filter((o) => o.kind === 'ack');
        const badAcks = acked.filter((o) => !STABLE_CODES.has(errorCode(o.value) ?? '')).length;
        const limited = acked.filter((o) => errorCode(o.value) === 'rate_limited').length;
        const dropped = outcomes.some((o) => o.kind === 'disconnect' && o.reason === 'io server disconnect');
        const timeouts = outcomes.filter((o) => o.kind === 'timeout').length;
        floods.push(
          `${event}: ${acked.length} acks (${limited} rate_limited), ${dropped ? 'disconnected' : 'NOT disconnected'}`,
        );
        if (badAcks || !dropped || timeouts || limited === 0 || acked.length > 120)
          failures.push(
            `flood ${event}: ${badAcks} bad acks, ${timeouts} timeouts, ${limited} rate_limited, ${acked.length} acks, dropped ${dropped}`,
          );
      }
      // The flooder comes back: a clean disconnect, not a ban.
      const back = await open(flooder);
      expect(await emit(back, 'system:ping', {})).toMatchObject({ ok: true });

      running = false;
      await Promise.all([healthLoop, sideLoop]);
      // The side chat still works after all that.
      await send(sc, side.id, 'after the storm');
      sideSent++;
      await eventually(() => expect(sideHeard).toHaveLength(sideSent));
      await sleep(200);

      const { rows } = await t.deps.db.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM messages WHERE conversation_id = ANY($1::uuid[])',
        [[...watched]],
      );
      const { rows: cursors } = await t.deps.db.query<{ moved: number }>(
        `SELECT count(*)::int AS moved FROM conversation_members
          WHERE conversation_id = ANY($1::uuid[]) AND (delivered_seq > 0 OR read_seq > 0)`,
        [[...watched]],
      );
      const errorLogs = t
        .logs()
        .slice(logsBefore)
        .filter((l) => (l.level as number) >= 50);
      const polluted =
        Object.keys(Object.prototype).length + ('polluted' in {} ? 1 : 0) + ('admin' in {} ? 1 : 0);
      const total = events + edges.length + handshakes.length + (EVENTS.length + 1) * 200;
      console.log(
        `C3 (seed ${seed}): ${total} events, ${uncaught.length} crashes, ${broadcasts.length} invalid broadcasts` +
          ` (${events} fuzzed on ${sockets.length} sockets: ${[...codes].map(([k, n]) => `${k} ${n}`).join(', ')},` +
          ` ${noAck} without an ack; ${dead} fuzzing sockets lost; ${failures.length} failures; health ${health.ok} ok / ${health.bad} not;` +
          ` side chat ${sideHeard.length}/${sideSent} in order; ${rows[0]?.n} messages and ${cursors[0]?.moved} cursors moved in the targets;` +
          ` ${errorLogs.length} error logs)\n  edges: ${edges.join('; ')}\n  handshakes: ${handshakes.join('; ')}` +
          `\n  floods: ${floods.join('; ')}`,
      );
      const c3 = { events: total, sockets: sockets.length };
      figure('fuzz.socket.crashes', uncaught.length + dead, c3);
      figure('fuzz.socket.invalid_broadcasts', broadcasts.length, c3);
      figure('fuzz.socket.side_chat_lost', sideSent - sideHeard.length, { messages: sideSent });
      expect(failures.slice(0, 20)).toEqual([]);
      expect(everyClientEventListed).toBe(true);
      expect(events).toBeGreaterThan(500);
      expect(dead).toBe(0);
      expect(uncaught).toEqual([]);
      expect(broadcasts).toEqual([]);
      expect(rows[0]?.n).toBe(0);
      expect(cursors[0]?.moved).toBe(0);
      expect(health).toMatchObject({ bad: 0 });
      expect(health.ok).toBeGreaterThan(10);
      expect(sideHeard).toEqual(range(1, sideSent));
      expect(
        errorLogs.map((l) => `${l.msg}: ${(l.err as { message?: string } | undefined)?.message}`),
      ).toEqual([]);
      expect(polluted).toBe(0);
    } finally {
      process.off('uncaughtException', onUncaught);
      process.off('unhandledRejection', onUncaught);
    }
  }, 60_000);
});

/** Socket.io packets written as they are, then a ping: what came back first. */
async function raw(socket: Socket, ...packets: string[]): Promise<Outcome> {
  const gone = new Promise<Outcome>((resolve) =>
    socket.once('disconnect', (reason) => resolve({ kind: 'disconnect', reason })),
  );
  const acked = new Promise<Outcome>((resolve) => {
    // An ack id of our own far above the client's: the server answers it as a normal ack packet.
    socket.io.engine.on('packet', (p: { type: string; data?: unknown }) => {
      if (p.type === 'message' && typeof p.data === 'string' && p.data.startsWith('3990001'))
        resolve({ kind: 'ack', value: JSON.parse(p.data.slice('3990001'.length))[0] });
    });
  });
  for (const p of packets) socket.io.engine.send(p);
  const settled = await Promise.race([gone, acked, sleep(1500).then(() => undefined)]);
  if (settled) return settled;
  // Neither: the connection must still work.
  const ping = await fire(socket, 'system:ping', [{}], true, 3000);
  return ping.kind === 'ack' && (ping.value as { ok?: boolean }).ok === true ? { kind: 'none' } : ping;
}

/** Bytes on the WebSocket itself, below engine.io. */
async function rawEngine(socket: Socket, data: string): Promise<Outcome> {
  const gone = new Promise<Outcome>((resolve) =>
    socket.once('disconnect', (reason) => resolve({ kind: 'disconnect', reason })),
  );
  (socket.io.engine.transport as unknown as { ws: { send(d: string): void } }).ws.send(data);
  return Promise.race([gone, sleep(3000).then((): Outcome => ({ kind: 'timeout' }))]);
}

/** A connection with these handshake credentials: welcomed, refused (and why), or neither. */
async function handshake(auth: unknown): Promise<string> {
  const socket = connect(t.url, {
    transports: ['websocket'],
    auth: auth as Record<string, unknown>,
    reconnection: false,
    forceNew: true,
  });
  kit.sockets.push(socket);
  const outcome = await Promise.race([
    new Promise<string>((resolve) =>
      socket.once('system:welcome', (w: { recovered: boolean }) =>
        resolve(`welcome (recovered: ${w.recovered})`),
      ),
    ),
    new Promise<string>((resolve) =>
      socket.once('connect_error', (err) => resolve(`refused (${err.message})`)),
    ),
    // A CONNECT packet the parser rejects closes the connection itself.
    new Promise<string>((resolve) =>
      socket.io.once('close', (reason) => {
        // A connect_error, if one comes, says more.
        void sleep(100).then(() => resolve(`refused (closed: ${reason})`));
      }),
    ),
    sleep(5000).then(() => 'nothing'),
  ]);
  socket.disconnect();
  return outcome;
}
