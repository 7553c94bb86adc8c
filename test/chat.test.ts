import { randomUUID } from 'node:crypto';
import { Value } from '@sinclair/typebox/value';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  Conversation,
  ConversationList,
  CursorState,
  Message,
  MessagePage,
} from '../src/modules/chat/chat.schemas.js';
import { type Ack, chatKit } from './chat-kit.js';
import { eventually, startTestApp, type TestApp } from './helpers.js';

// Chat through HTTP and real socket.io clients on a real database, in both lanes.
let t: TestApp;
const kit = chatKit(() => t);
const { person, call, befriend, direct, group, open, emit, send, inbox } = kit;

beforeAll(async () => {
  t = await startTestApp({
    listen: true,
    worker: true,
    env: {
      RATE_LIMIT_MULTIPLIER: '0',
      PRESENCE_OFFLINE_GRACE_MS: '200',
      SOCKET_PING_INTERVAL_MS: '1000',
      SOCKET_PING_TIMEOUT_MS: '1000',
    },
  });
});
afterEach(() => kit.closeAll());
afterAll(() => t?.close());

const conversationOf = async (who: Parameters<typeof call>[0], id: string): Promise<Conversation> => {
  const res = await call(who, 'GET', `/v1/conversations/${id}`);
  expect(res.statusCode, res.body).toBe(200);
  expect(Value.Check(Conversation, res.json()), res.body).toBe(true);
  return res.json();
};

describe('direct conversations', () => {
  it('one per pair of friends, whoever opens it and however often; strangers and self refused', async () => {
    const [a, b, stranger] = [await person(), await person(), await person()];
    await befriend(a, b);
    const opened = await Promise.all([
      call(a, 'POST', '/v1/conversations', { userId: b.userId }),
      call(b, 'POST', '/v1/conversations', { userId: a.userId }),
      call(a, 'POST', '/v1/conversations', { userId: b.userId }),
    ]);
    const ids = new Set(opened.map((r) => (r.json() as Conversation).id));
    expect(ids.size).toBe(1);
    expect(opened.map((r) => r.statusCode).sort()).toEqual([200, 200, 201]);
    const c = opened[0]?.json() as Conversation;
    expect(c).toMatchObject({ kind: 'direct', memberCount: 2, lastSeq: 0, unreadCount: 0, canSend: true });
    expect(c.members.map((m) => m.userId).sort()).toEqual([a.userId, b.userId].sort());

    const refused = await call(a, 'POST', '/v1/conversations', { userId: stranger.userId });
    expect(refused.statusCode).toBe(403);
    expect(refused.json().code).toBe('not_friends');
    expect((await call(a, 'POST', '/v1/conversations', { userId: randomUUID() })).statusCode).toBe(403);
    expect((await call(a, 'POST', '/v1/conversations', { userId: a.userId })).json().code).toBe(
      'cannot_message_self',
    );
    // Not theirs: 404, like an unknown id.
    expect((await call(stranger, 'GET', `/v1/conversations/${c.id}`)).statusCode).toBe(404);
    expect((await call(stranger, 'GET', `/v1/conversations/${c.id}/messages`)).statusCode).toBe(404);
    expect((await call(a, 'GET', '/v1/conversations/not-a-uuid')).statusCode).toBe(404);
  });

  it('the same message sent 8 times at once is stored once, and every send answers with it', async () => {
    const [a, b] = [await person(), await person()];
    const c = await direct(a, b);
    const sends = await Promise.all(
      Array.from({ length: 8 }, () =>
        t.deps.chat.send(a.userId, c.id, { clientMessageId: 'at-once', body: 'once' }),
      ),
    );
    expect(sends.filter((r) => r.created)).toHaveLength(1);
    expect(new Set(sends.map((r) => `${r.message.id}:${r.message.seq}`))).toEqual(
      new Set([`${sends[0]?.message.id}:1`]),
    );
    const next = await t.deps.chat.send(a.userId, c.id, { clientMessageId: 'after', body: 'next' });
    expect(next.message.seq).toBe(2);
  });

  it('REST send, exactly once per clientMessageId, history both ways, unread and read', async () => {
    const [a, b] = [await person(), await person()];
    const c = await direct(a, b);
    const url = `/v1/conversations/${c.id}/messages`;
    const first = await call(a, 'POST', url, { clientMessageId: 'm-1', body: 'Namaste' });
    expect(first.statusCode, first.body).toBe(201);
    expect(Value.Check(Message, first.json())).toBe(true);
    expect(first.json()).toMatchObject({ seq: 1, senderId: a.userId, body: 'Namaste', media: null });
    // A retry after a lost response: the same message, nothing new stored.
    const retry = await call(a, 'POST', url, { clientMessageId: 'm-1', body: 'Namaste' });
    expect(retry.statusCode).toBe(200);
    expect(retry.json()).toEqual(first.json());
    const reused = await call(a, 'POST', url, { clientMessageId: 'm-1', body: 'something else' });
    expect(reused.statusCode).toBe(409);
    expect(reused.json().code).toBe('client_message_id_reused');

    for (let i = 2; i <= 7; i++)
      expect(
        (await call(i % 2 ? a : b, 'POST', url, { clientMessageId: `m-${i}`, body: `#${i}` })).statusCode,
      ).toBe(201);
    // Bad input gets a clear error.
    for (const bad of [
      { clientMessageId: 'x' },
      { clientMessageId: 'x', body: '   ' },
      { clientMessageId: 'x', body: 'a'.repeat(4001) },
      { clientMessageId: 'has space', body: 'hi' },
      { clientMessageId: 'x', body: 'hi', senderId: b.userId },
      { clientMessageId: 'x', body: 'hi', seq: 99 },
      { body: 'hi' },
    ]) {
      const res = await call(a, 'POST', url, bad);
      expect(res.statusCode, JSON.stringify(bad)).toBe(400);
    }

    const newest = await call(b, 'GET', `${url}?limit=3`);
    expect(Value.Check(MessagePage, newest.json())).toBe(true);
    const page = newest.json() as MessagePage;
    expect(page.items.map((m) => m.seq)).toEqual([5, 6, 7]);
    expect(page.nextCursor).toBe('5');
    const older = (await call(b, 'GET', `${url}?limit=3&before=${page.nextCursor}`)).json() as MessagePage;
    expect(older.items.map((m) => m.seq)).toEqual([2, 3, 4]);
    const oldest = (await call(b, 'GET', `${url}?limit=3&before=${older.nextCursor}`)).json() as MessagePage;
    expect(oldest).toMatchObject({ nextCursor: null });
    expect(oldest.items.map((m) => m.seq)).toEqual([1]);
    const forward = (await call(b, 'GET', `${url}?after=2&limit=2`)).json() as MessagePage;
    expect(forward.items.map((m) => m.seq)).toEqual([3, 4]);
    expect(forward.nextCursor).toBe('4');
    expect((await call(b, 'GET', `${url}?after=2&before=5`)).statusCode).toBe(400);
    expect((await call(b, 'GET', `${url}?limit=100000`)).statusCode).toBe(400);
    // Found by the C1 fuzz: a seq past what a bigint holds was a 500 on PostgreSQL.
    expect((await call(b, 'GET', `${url}?before=1e308`)).statusCode).toBe(400);

    // b sent 2, 4, 6 (each marks b read up to it), so only a's 7 is unread for b.
    expect((await conversationOf(b, c.id)).unreadCount).toBe(1);
    // a sent 7 last: nothing unread for a.
    expect((await conversationOf(a, c.id)).unreadCount).toBe(0);
    const read = await call(b, 'POST', `/v1/conversations/${c.id}/read`, { seq: 1000 });
    expect(read.statusCode, read.body).toBe(200);
    expect(Value.Check(CursorState, read.json())).toBe(true);
    // Clamped to the newest message; never backwards.
    expect(read.json()).toMatchObject({ readSeq: 7, deliveredSeq: 7, unreadCount: 0 });
    expect((await call(b, 'POST', `/v1/conversations/${c.id}/read`, { seq: 2 })).json()).toMatchObject({
      readSeq: 7,
    });
    const list = (await call(b, 'GET', '/v1/conversations')).json() as ConversationList;
    expect(Value.Check(ConversationList, list)).toBe(true);
    expect(list.items.find((x) => x.id === c.id)).toMatchObject({ lastSeq: 7, lastMessage: { seq: 7 } });
  });

  it('unfriending or blocking stops sending at once (history stays readable); typing too', async () => {
    const [a, b] = [await person(), await person()];
    const c = await direct(a, b);
    const url = `/v1/conversations/${c.id}/messages`;
    expect((await call(a, 'POST', url, { clientMessageId: '1', body: 'hi' })).statusCode).toBe(201);
    await t.deps.friends.unfriend(b.userId, a.userId);
    const refused = await call(a, 'POST', url, { clientMessageId: '2', body: 'still there?' });
    expect(refused.statusCode).toBe(403);
    expect(refused.json().code).toBe('not_friends');
    expect((await conversationOf(a, c.id)).canSend).toBe(false);
    expect(((await call(a, 'GET', url)).json() as MessagePage).items).toHaveLength(1);
    const sa = await open(a);
    const typing = await emit(sa, 'chat:typing', { conversationId: c.id });
    expect(typing).toMatchObject({ ok: false, error: { code: 'not_friends' } });
  });
});

describe('sockets', () => {
  it('chat:send acks the stored message, every device of every member hears it once, retries store nothing', async () => {
    const [a, b] = [await person(), await person()];
    const c = await direct(a, b);
    const [a1, a2, b1] = [await open(a), await open(a), await open(b)];
    const [inA2, inB1] = [inbox(a2), inbox(b1)];
    const clientMessageId = randomUUID();
    const payload = { conversationId: c.id, clientMessageId, body: 'Did you drink water?' };
    const ack = await emit<Message>(a1, 'chat:send', payload);
    expect(ack.ok).toBe(true);
    if (!ack.ok) return;
    expect(Value.Check(Message, ack.data)).toBe(true);
    // The ack was lost, say: the retry gets the original id and seq.
    const again = await emit<Message>(a1, 'chat:send', payload);
    expect(again).toEqual(ack);
    await eventually(() => {
      expect(inB1.map((m) => m.id)).toEqual([ack.data.id]);
      expect(inA2.map((m) => m.id)).toEqual([ack.data.id]);
    });
    const { rows } = await t.deps.db.query('SELECT id FROM messages WHERE conversation_id = $1', [c.id]);
    expect(rows).toHaveLength(1);
  });

  it('receipts: delivered and read move forward only and reach the sender', async () => {
    const [a, b] = [await person(), await person()];
    const c = await direct(a, b);
    const [sa, sb] = [await open(a), await open(b)];
    const receipts: CursorState[] = [];
    sa.on('chat:receipt', (r: CursorState) => receipts.push(r));
    for (let i = 0; i < 5; i++) await send(sa, c.id, `m${i}`);
    const delivered = await emit<CursorState>(sb, 'chat:delivered', { conversationId: c.id, seq: 5 });
    expect(delivered).toMatchObject({ ok: true, data: { deliveredSeq: 5, readSeq: 0, unreadCount: 5 } });
    // Out of order and concurrent: the cursor ends at the highest, never lower.
    const reads = await Promise.all(
      [4, 2, 5, 1, 3].map((seq) => emit(sb, 'chat:read', { conversationId: c.id, seq })),
    );
    expect(reads.every((r) => r.ok)).toBe(true);
    const state = await conversationOf(b, c.id);
    expect(state.members.find((m) => m.userId === b.userId)).toMatchObject({ deliveredSeq: 5, readSeq: 5 });
    expect(state.unreadCount).toBe(0);
    await eventually(() =>
      expect(receipts.filter((r) => r.userId === b.userId).at(-1)).toMatchObject({
        deliveredSeq: 5,
        readSeq: 5,
      }),
    );
    const readSeqs = receipts.filter((r) => r.userId === b.userId).map((r) => r.readSeq);
    expect(readSeqs).toEqual([...readSeqs].sort((x, y) => x - y));
  });

  it('typing reaches the others only; deletes for me and for everyone', async () => {
    const [a, b] = [await person(), await person()];
    const c = await direct(a, b);
    const [sa, sb] = [await open(a), await open(b)];
    const typed: unknown[] = [];
    const deleted: unknown[] = [];
    sb.on('chat:typing', (e) => typed.push(e));
    sa.on('chat:typing', (e) => typed.push(e));
    sb.on('chat:deleted', (e) => deleted.push(e));
    expect(await emit(sa, 'chat:typing', { conversationId: c.id })).toMatchObject({ ok: true });
    await eventually(() =>
      expect(typed).toEqual([{ conversationId: c.id, userId: a.userId, expiresInMs: 6000 }]),
    );

    const m1 = await send(sa, c.id, 'oops');
    const m2 = await send(sa, c.id, 'keep');
    const del = (who: typeof a, id: string, scope: string) =>
      call(who, 'DELETE', `/v1/conversations/${c.id}/messages/${id}?scope=${scope}`);
    expect((await del(b, m1.id, 'everyone')).json().code).toBe('not_sender');
    expect((await del(a, m1.id, 'everyone')).statusCode).toBe(204);
    expect((await del(a, m1.id, 'everyone')).statusCode).toBe(204);
    expect((await del(b, m2.id, 'me')).statusCode).toBe(204);
    expect((await del(b, randomUUID(), 'me')).statusCode).toBe(404);
    await eventually(() =>
      expect(deleted).toContainEqual({ conversationId: c.id, messageId: m1.id, seq: 1, scope: 'everyone' }),
    );
    const seenByB = ((await call(b, 'GET', `/v1/conversations/${c.id}/messages`)).json() as MessagePage)
      .items;
    expect(seenByB.map((m) => [m.seq, m.body, m.deletedAt !== null])).toEqual([[1, '', true]]);
    const seenByA = ((await call(a, 'GET', `/v1/conversations/${c.id}/messages`)).json() as MessagePage)
      .items;
    expect(seenByA.map((m) => m.body)).toEqual(['', 'keep']);
    // Older than 24 h: too late to delete for everyone.
    await t.deps.db.query(`UPDATE messages SET created_at = created_at - interval '25 hours' WHERE id = $1`, [
      m2.id,
    ]);
    expect((await del(a, m2.id, 'everyone')).json().code).toBe('delete_window_passed');
  });

  it('bad events get error acks, never a crash; the send budget answers rate_limited', async () => {
    const a = await person();
    const sa = await open(a);
    const cases: [string, unknown][] = [
      ['chat:send', null],
      ['chat:send', { conversationId: randomUUID(), clientMessageId: 'x', body: 'hi' }],
      ['chat:send', { conversationId: 'nope', clientMessageId: 'x', body: 'hi' }],
      ['chat:send', { conversationId: randomUUID(), clientMessageId: 'x', body: 'a'.repeat(5000) }],
      ['chat:read', { conversationId: randomUUID(), seq: -1 }],
      ['chat:sync', { conversationId: randomUUID(), afterSeq: 0 }],
      ['chat:nope', {}],
    ];
    const codes = [];
    for (const [event, payload] of cases) {
      const ack = (await emit(sa, event, payload)) as Ack;
      expect(ack.ok).toBe(false);
      if (!ack.ok) codes.push(ack.error.code);
    }
    expect(codes).toEqual([
      'invalid_payload',
      'not_found',
      'not_found',
      'invalid_payload',
      'invalid_payload',
      'not_found',
      'unknown_event',
    ]);
    expect(sa.connected).toBe(true);
  });

  it('group conversations: members join from their join on, removed members hear nothing more', async () => {
    const [owner, m1, late] = [await person(), await person(), await person()];
    const g = await group(owner, [m1]);
    const [so, s1, sLate] = [await open(owner), await open(m1), await open(late)];
    const [in1, inLate] = [inbox(s1), inbox(sLate)];
    await send(so, g.conversationId, 'before you came');
    await t.deps.groups.join(late.userId, g.groupId);
    const after = await send(so, g.conversationId, 'welcome');
    await eventually(() => expect(inLate.map((m) => m.seq)).toEqual([after.seq]));
    const history = (
      await call(late, 'GET', `/v1/conversations/${g.conversationId}/messages`)
    ).json() as MessagePage;
    expect(history.items.map((m) => m.body)).toEqual(['welcome']);
    expect((await conversationOf(late, g.conversationId)).unreadCount).toBe(1);

    await t.deps.groups.removeMember(owner.userId, g.groupId, m1.userId);
    await send(so, g.conversationId, 'after removal');
    await eventually(() => expect(inLate).toHaveLength(2));
    expect(in1.map((m) => m.body)).toEqual(['before you came', 'welcome']);
    expect(
      await emit(s1, 'chat:send', { conversationId: g.conversationId, clientMessageId: 'z', body: 'hi' }),
    ).toMatchObject({
      ok: false,
      error: { code: 'not_found' },
    });
    const list = (await call(owner, 'GET', '/v1/conversations')).json() as ConversationList;
    expect(list.items[0]).toMatchObject({
      id: g.conversationId,
      kind: 'group',
      title: 'Chat group',
      memberCount: 2,
    });
  });
});

describe('presence', () => {
  it('friends hear online at the first connection and offline once the last one is gone', async () => {
    const [a, b] = [await person(), await person()];
    await befriend(a, b);
    const sb = await open(b);
    const updates: { userId: string; online: boolean; lastSeenAt: string | null }[] = [];
    sb.on('presence:update', (u) => updates.push(u));
    const [a1, a2] = [await open(a), await open(a)];
    await eventually(() => expect(updates).toEqual([{ userId: a.userId, online: true, lastSeenAt: null }]));
    a1.disconnect();
    a2.disconnect();
    await eventually(() => expect(updates.at(-1)).toMatchObject({ userId: a.userId, online: false }), 10_000);
    expect(updates.filter((u) => u.online)).toHaveLength(1);
    const { rows } = await t.deps.db.query<{ lastSeenAt: Date }>(
      'SELECT last_seen_at FROM users WHERE id = $1',
      [a.userId],
    );
    expect(rows[0]?.lastSeenAt).toBeInstanceOf(Date);
  });

  it('E7: a client that vanishes (stops answering pings) goes offline within the ping timeout', async () => {
    const [a, b] = [await person(), await person()];
    await befriend(a, b);
    const sb = await open(b);
    const updates: { userId: string; online: boolean }[] = [];
    sb.on('presence:update', (u) => updates.push(u));
    const sa = await open(a);
    await eventually(() =>
      expect(updates).toEqual([expect.objectContaining({ userId: a.userId, online: true })]),
    );
    // Its process froze or its network vanished: nothing it would send (pongs included) gets out.
    // (engine.io-client's private send; the only way to silence pongs without killing the TCP link.)
    (sa.io.engine as unknown as { _sendPacket: () => void })._sendPacket = () => {};
    const started = Date.now();
    await eventually(() => expect(updates.at(-1)).toMatchObject({ userId: a.userId, online: false }), 10_000);
    const took = Date.now() - started;
    console.log(
      `E7: vanished client offline after ${took} ms (ping interval 1000 + timeout 1000 + grace 200)`,
    );
    expect(took).toBeLessThan(7000);
  });
});

describe('account deletion', () => {
  it("leaves the deleted sender's messages as tombstones for the others", async () => {
    const [a, b] = [await person(), await person()];
    const c = await direct(a, b);
    const sa = await open(a);
    await send(sa, c.id, 'secret plans');
    const res = await call(a, 'DELETE', '/v1/me', { password: 'correct horse battery staple' });
    expect(res.statusCode, res.body).toBe(204);
    const items = ((await call(b, 'GET', `/v1/conversations/${c.id}/messages`)).json() as MessagePage).items;
    expect(items).toHaveLength(1);
    expect(items[0]).toMatchObject({ senderId: null, body: '', clientMessageId: null, media: null });
    expect(items[0]?.deletedAt).not.toBeNull();
    expect((await conversationOf(b, c.id)).canSend).toBe(false);
  });
});
