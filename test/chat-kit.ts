import { randomUUID } from 'node:crypto';
import { io as connect, type ManagerOptions, type Socket, type SocketOptions } from 'socket.io-client';
import { expect } from 'vitest';
import type { Conversation, Message, MessagePage } from '../src/modules/chat/chat.schemas.js';
import { aUser, signIn, type TestApp } from './helpers.js';

// People, conversations and real socket.io clients for the chat tests.

export type Caller = { userId: string; username: string; token: string; headers: Record<string, string> };
export type Ack<T = unknown> = { ok: true; data: T } | { ok: false; error: { code: string; detail: string } };
type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE';

export function chatKit(t: () => TestApp) {
  const sockets: Socket[] = [];

  async function person(): Promise<Caller> {
    const user = await aUser(t().deps);
    return { ...(await signIn(t().deps, user.id)), username: user.username };
  }

  const call = (who: Caller | null, method: Method, url: string, payload?: unknown) =>
    t().app.inject({
      method,
      url,
      headers: who?.headers ?? {},
      ...(payload === undefined ? {} : { payload: payload as object }),
    });

  async function befriend(a: Caller, b: Caller) {
    const asked = await t().deps.friends.sendRequest(a.userId, b.userId);
    await t().deps.friends.accept(b.userId, asked.body.id);
  }

  async function direct(a: Caller, b: Caller): Promise<Conversation> {
    await befriend(a, b);
    const res = await call(a, 'POST', '/v1/conversations', { userId: b.userId });
    expect(res.statusCode, res.body).toBe(201);
    return res.json();
  }

  /** A public group task owned by `owner` that `others` joined; its conversation id. */
  async function group(
    owner: Caller,
    others: Caller[],
  ): Promise<{ groupId: string; conversationId: string }> {
    const res = await call(owner, 'POST', '/v1/group-tasks', {
      title: 'Chat group',
      visibility: 'public',
      dueAt: new Date(Date.now() + 3600_000).toISOString(),
    });
    expect(res.statusCode, res.body).toBe(201);
    const groupId = (res.json() as { id: string }).id;
    for (const o of others) await t().deps.groups.join(o.userId, groupId);
    const { rows } = await t().deps.db.query<{ id: string }>(
      'SELECT id FROM conversations WHERE group_task_id = $1',
      [groupId],
    );
    return { groupId, conversationId: (rows[0] as { id: string }).id };
  }

  /** A connected socket (welcomed), reconnecting by itself unless told otherwise. */
  function open(
    who: Caller,
    opts: Partial<ManagerOptions & SocketOptions> = {},
    url = t().url,
  ): Promise<Socket> {
    const socket = connect(url, {
      transports: ['websocket'],
      auth: { token: who.token },
      reconnection: false,
      forceNew: true,
      ...opts,
    });
    sockets.push(socket);
    return new Promise((resolve, reject) => {
      socket.once('system:welcome', () => resolve(socket));
      socket.once('connect_error', reject);
    });
  }

  function emit<T = unknown>(
    socket: Socket,
    event: string,
    payload: unknown,
    timeoutMs = 10_000,
  ): Promise<Ack<T>> {
    return socket.timeout(timeoutMs).emitWithAck(event, payload) as Promise<Ack<T>>;
  }

  async function send(socket: Socket, conversationId: string, body: string, clientMessageId = randomUUID()) {
    const ack = await emit<Message>(socket, 'chat:send', { conversationId, clientMessageId, body });
    if (!ack.ok) throw new Error(`send refused: ${ack.error.code} ${ack.error.detail}`);
    return ack.data;
  }

  /** Every chat:message a socket receives, in arrival order. */
  function inbox(socket: Socket): Message[] {
    const got: Message[] = [];
    socket.on('chat:message', (m: Message) => got.push(m));
    return got;
  }

  /** Everything after `afterSeq` through chat:sync, page by page (a client's resync after a lost session). */
  async function syncAll(socket: Socket, conversationId: string, afterSeq: number, timeoutMs = 10_000) {
    const got: Message[] = [];
    for (let after = afterSeq; ; ) {
      const ack = await emit<MessagePage>(
        socket,
        'chat:sync',
        { conversationId, afterSeq: after },
        timeoutMs,
      );
      if (!ack.ok) throw new Error(`sync refused: ${ack.error.code} ${ack.error.detail}`);
      got.push(...ack.data.items);
      if (ack.data.nextCursor === null) return got;
      after = Number(ack.data.nextCursor);
    }
  }

  /** Every message `who` can see through GET /v1/conversations/:id/messages, oldest first. */
  async function historyAll(who: Caller, conversationId: string): Promise<Message[]> {
    const pages: Message[][] = [];
    for (let before: string | null = ''; before !== null; ) {
      const res = await call(
        who,
        'GET',
        `/v1/conversations/${conversationId}/messages?limit=100${before ? `&before=${before}` : ''}`,
      );
      expect(res.statusCode, res.body).toBe(200);
      const page = res.json() as MessagePage;
      pages.unshift(page.items);
      before = page.nextCursor;
    }
    return pages.flat();
  }

  return {
    sockets,
    syncAll,
    historyAll,
    person,
    call,
    befriend,
    direct,
    group,
    open,
    emit,
    send,
    inbox,
    closeAll() {
      for (const s of sockets.splice(0)) s.disconnect();
    },
  };
}

/** The p-th percentile (0..100) of some numbers, nearest rank; NaN when there are none. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number;
}

/** Positions where a sequence does not strictly increase. */
export function inversions(seqs: number[]): number {
  let n = 0;
  for (let i = 1; i < seqs.length; i++) if ((seqs[i] as number) <= (seqs[i - 1] as number)) n++;
  return n;
}

/** from..to, inclusive. */
export const range = (from: number, to: number) =>
  Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A small seeded generator (mulberry32): the same seed gives the same run. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** The seed for a randomised test: SEED from the environment, or a fresh one (print it). */
export const seedFromEnv = () =>
  process.env.SEED ? Number(process.env.SEED) : Math.floor(Math.random() * 2 ** 31);
