import type { Logger } from 'pino';
import { uuidv7 } from 'uuidv7';
import type { Clock } from '../../lib/clock.js';
import type { Db, Queryable } from '../../lib/db.js';
import { AppError, conflict, forbidden, invalid, notFound, tooManyRequests } from '../../lib/errors.js';
import { UUID } from '../../lib/formats.js';
import type { RateLimiter } from '../../lib/ratelimit.js';
import type { Realtime } from '../../realtime/port.js';
import { avatarUrl } from '../accounts/accounts.service.js';
import type { FriendsService } from '../friends/friends.service.js';
import type { MediaService } from '../media/media.service.js';
import { mediaView } from '../media/media.service.js';
import { decodeCursor, encodeCursor, isInstant, isString } from '../users/users.summary.js';
import type { ListedConversationRow, MemberRow, MessageRow } from './chat.repo.js';
import * as repo from './chat.repo.js';
import type {
  Conversation,
  ConversationList,
  CursorState,
  ListConversationsQuery,
  Message,
  MessagePage,
  MessagesQuery,
  SendMessage,
} from './chat.schemas.js';

/** PRODUCT.md: about 10 messages per 10 s per user, over REST and sockets together. */
export const SEND_BUDGET = { max: 10, windowMs: 10_000 };
/** Deleting for everyone is allowed this long after sending. */
const DELETE_WINDOW_MS = 24 * 3600_000;
/** How long a typing indicator lasts unless repeated (clients let it lapse by themselves). */
export const TYPING_TTL_MS = 6000;

const conversationNotFound = () => notFound('conversation');
const notFriends = () => forbidden('not_friends', 'You can message friends only.');

export type ChatService = ReturnType<typeof makeChatService>;

/**
 * Turns per conversation, so that this process emits a conversation's messages in seq order. Seqs are
 * taken under the conversation's lock, but COMMITs are acknowledged in any order (PostgreSQL may answer
 * a later transaction's COMMIT first), so without this receivers could hear seq n + 1 before n.
 */
function emitTurns() {
  const tails = new Map<string, Promise<void>>();
  return (conversationId: string) => {
    const before = tails.get(conversationId) ?? Promise.resolve();
    let done!: () => void;
    const mine = new Promise<void>((resolve) => {
      done = resolve;
    });
    const tail = before.then(() => mine);
    tails.set(conversationId, tail);
    void tail.then(() => {
      if (tails.get(conversationId) === tail) tails.delete(conversationId);
    });
    return { before, done };
  };
}

/** The message of a send was stored by a concurrent send of it (see send). */
class StoredMeanwhile extends Error {}

export function makeChatService(deps: {
  db: Db;
  clock: Clock;
  realtime: Realtime;
  rateLimiter: RateLimiter;
  friends: Pick<FriendsService, 'relation'>;
  media: Pick<MediaService, 'claim' | 'discard' | 'forgetUser'>;
  log: Logger;
  publicUrl: string;
  rateLimitMultiplier: number;
}) {
  const { db, clock, realtime, friends, media, log, publicUrl } = deps;
  const takeTurn = emitTurns();

  const toMessage = (m: MessageRow): Message => ({
    id: m.id,
    conversationId: m.conversationId,
    seq: m.seq,
    senderId: m.senderId,
    clientMessageId: m.clientMessageId,
    body: m.body,
    media:
      m.mediaId && m.mediaMime && m.mediaBytes !== null
        ? mediaView(
            {
              id: m.mediaId,
              mime: m.mediaMime,
              bytes: m.mediaBytes,
              width: m.mediaWidth,
              height: m.mediaHeight,
            },
            publicUrl,
          )
        : null,
    createdAt: m.createdAt.toISOString(),
    deletedAt: m.deletedAt ? m.deletedAt.toISOString() : null,
  });

  async function views(q: Queryable, rows: ListedConversationRow[]): Promise<Conversation[]> {
    const ids = rows.map((r) => r.id);
    const [members, last] = await Promise.all([
      repo.membersOf(q, ids),
      repo.messagesByIds(
        q,
        rows.flatMap((r) => (r.lastMessageId ? [r.lastMessageId] : [])),
      ),
    ]);
    const byConversation = new Map<string, MemberRow[]>();
    for (const m of members)
      byConversation.set(m.conversationId, [...(byConversation.get(m.conversationId) ?? []), m]);
    const lastById = new Map(last.map((m) => [m.id, m]));
    return rows.map((r) => {
      const lastMessage = r.lastMessageId ? lastById.get(r.lastMessageId) : undefined;
      return {
        id: r.id,
        kind: r.kind,
        groupTaskId: r.groupTaskId,
        title: r.title,
        members: (byConversation.get(r.id) ?? []).map((m) => ({
          userId: m.id,
          username: m.username,
          name: m.name,
          avatarUrl: avatarUrl(publicUrl, m.avatarKey),
          deliveredSeq: m.deliveredSeq,
          readSeq: m.readSeq,
        })),
        memberCount: r.memberCount,
        lastSeq: r.lastSeq,
        lastMessage: lastMessage ? toMessage(lastMessage) : null,
        unreadCount: r.unreadCount,
        canSend: r.canSend,
        updatedAt: r.updatedAt.toISOString(),
      };
    });
  }

  async function view(q: Queryable, userId: string, id: string): Promise<Conversation> {
    const [row] = await repo.listConversations(q, { userId, ids: [id], limit: 1 });
    if (!row) throw conversationNotFound();
    return (await views(q, [row]))[0] as Conversation;
  }

  /** My membership of the conversation; anything else (unknown, malformed, not mine) is a 404. */
  async function member(q: Queryable, userId: string, id: string) {
    if (!UUID.test(id)) throw conversationNotFound();
    const m = await repo.membership(q, id.toLowerCase(), userId);
    if (!m) throw conversationNotFound();
    return m;
  }

  /** A direct conversation carries messages only while the two are friends (a block ends that). */
  async function requireFriends(
    q: Queryable,
    userId: string,
    conversationId: string,
    lock: boolean,
    knownOther?: string | null,
  ) {
    const other = knownOther === undefined ? await repo.otherMember(q, conversationId, userId) : knownOther;
    if (!other) throw notFriends();
    const relation = await friends.relation(userId, other, q, lock ? { lock: 'shared' } : {});
    if (!relation.isFriend) throw notFriends();
  }

  async function spendSendBudget(userId: string): Promise<boolean> {
    if (deps.rateLimitMultiplier <= 0) return true;
    const max = Math.max(1, Math.floor(SEND_BUDGET.max * deps.rateLimitMultiplier));
    return (await deps.rateLimiter.hit(`chat-send:${userId}`, max, SEND_BUDGET.windowMs)).allowed;
  }

  // The cursors this process last announced, per member of a conversation (the newest 10,000): moves
  // finish in any order (two devices reading at once), but receipts only ever go forward.
  const announced = new Map<string, { deliveredSeq: number; readSeq: number }>();
  function emitReceipt(memberIds: string[], state: Omit<CursorState, 'unreadCount'>) {
    const key = `${state.conversationId}:${state.userId}`;
    const last = announced.get(key);
    const next = {
      ...state,
      deliveredSeq: Math.max(state.deliveredSeq, last?.deliveredSeq ?? 0),
      readSeq: Math.max(state.readSeq, last?.readSeq ?? 0),
    };
    if (last && next.deliveredSeq === last.deliveredSeq && next.readSeq === last.readSeq) return;
    announced.delete(key);
    announced.set(key, next);
    if (announced.size > 10_000) announced.delete(announced.keys().next().value as string);
    realtime.toUsers(memberIds, 'chat:receipt', next);
  }

  async function moveCursor(userId: string, conversationId: string, seq: number, read: boolean) {
    if (!UUID.test(conversationId)) throw conversationNotFound();
    const id = conversationId.toLowerCase();
    const cursor = await repo.advanceCursor(db, { conversationId: id, userId, seq, read });
    if (!cursor) throw conversationNotFound();
    const state = { conversationId: id, userId, deliveredSeq: cursor.deliveredSeq, readSeq: cursor.readSeq };
    // Committed (one statement outside a transaction): every member's devices, mine included, hear it.
    if (cursor.moved) emitReceipt(await repo.receiptAudience(db, id, userId), state);
    return { ...state, unreadCount: await repo.unreadCount(db, id, userId, cursor.readSeq) };
  }

  return {
    toMessage,

    /** The one direct conversation of two friends: 201 when this call made it, 200 after that. */
    async openDirect(userId: string, otherId: string): Promise<{ status: 200 | 201; body: Conversation }> {
      const other = otherId.toLowerCase();
      if (other === userId)
        throw invalid('cannot_message_self', 'You cannot start a conversation with yourself.', [
          { field: 'body/userId', message: 'is you' },
        ]);
      const now = clock.now();
      return db.tx(async (tx) => {
        const relation = await friends.relation(userId, other, tx, { lock: 'shared' });
        if (!relation.isFriend) throw notFriends();
        const key = repo.directKey(userId, other);
        const id = uuidv7();
        const created = await repo.insertDirect(tx, { id, key, userIds: [userId, other], now });
        const found = created ? { id } : await repo.findDirect(tx, key);
        if (!found) throw new AppError(500, 'internal', 'direct conversation lost');
        return { status: created ? 201 : 200, body: await view(tx, userId, found.id) };
      });
    },

    async list(userId: string, query: ListConversationsQuery): Promise<ConversationList> {
      const limit = query.limit ?? 20;
      const after = query.cursor
        ? decodeCursor(query.cursor, (v): v is { u: string; i: string } => {
            const c = v as { u?: unknown; i?: unknown };
            return isInstant(c.u) && isString(c.i) && UUID.test(c.i);
          })
        : undefined;
      const rows = await repo.listConversations(db, {
        userId,
        limit: limit + 1,
        ...(after ? { after: { updatedAt: new Date(after.u), id: after.i } } : {}),
      });
      const page = rows.slice(0, limit);
      const last = page[page.length - 1];
      return {
        items: await views(db, page),
        nextCursor:
          rows.length > limit && last ? encodeCursor({ u: last.updatedAt.toISOString(), i: last.id }) : null,
      };
    },

    async get(userId: string, id: string): Promise<Conversation> {
      await member(db, userId, id);
      return view(db, userId, id.toLowerCase());
    },

    async history(userId: string, conversationId: string, query: MessagesQuery): Promise<MessagePage> {
      if (query.before !== undefined && query.after !== undefined)
        throw invalid('validation_failed', 'Send before or after, not both.', [
          { field: 'query/after', message: 'cannot be combined with before' },
        ]);
      const me = await member(db, userId, conversationId);
      const limit = query.limit ?? 50;
      const rows = await repo.history(db, {
        conversationId: conversationId.toLowerCase(),
        userId,
        fromSeq: me.fromSeq,
        ...(query.before !== undefined ? { before: query.before } : {}),
        ...(query.after !== undefined ? { after: query.after } : {}),
        limit: limit + 1,
      });
      const forward = query.after !== undefined;
      // One row too many says there is more, past the far end of the page.
      const more = rows.length > limit;
      const page = more ? (forward ? rows.slice(0, limit) : rows.slice(1)) : rows;
      const edge = forward ? page[page.length - 1] : page[0];
      return { items: page.map(toMessage), nextCursor: more && edge ? String(edge.seq) : null };
    },

    /**
     * Stores a message once per clientMessageId: a retry (after a lost ack) gets the stored message
     * back, with `created: false`. The seq is taken under the conversation's lock, so seqs are gapless
     * and in commit order; recipients are the members at commit, share-locked against removal.
     */
    async send(
      userId: string,
      conversationId: string,
      input: SendMessage,
    ): Promise<{ created: boolean; message: Message }> {
      const body = input.body ?? '';
      if (body.trim() === '' && input.mediaId === undefined)
        throw invalid('empty_message', 'Send a body, a mediaId, or both.', [
          { field: 'body/body', message: 'is empty' },
        ]);
      if (!UUID.test(conversationId)) throw conversationNotFound();
      const id = conversationId.toLowerCase();
      const withinBudget = await spendSendBudget(userId);
      const now = clock.now();
      let turn: ReturnType<typeof takeTurn> | undefined;
      const attempt = () =>
        db.tx(async (tx) => {
          const conversation = await repo.lockForSend(tx, id, userId, input.clientMessageId);
          if (!conversation?.isMember) throw conversationNotFound();
          const existing =
            conversation.stored && (await repo.findByClientId(tx, id, userId, input.clientMessageId));
          if (existing) {
            const same =
              existing.deletedAt !== null ||
              (existing.body === body && existing.mediaId === (input.mediaId?.toLowerCase() ?? null));
            if (!same)
              throw conflict(
                'client_message_id_reused',
                'This clientMessageId was used for a different message in this conversation.',
              );
            return { created: false, message: toMessage(existing) };
          }
          if (!withinBudget) throw tooManyRequests(Math.ceil(SEND_BUDGET.windowMs / 1000));
          if (conversation.kind === 'direct')
            await requireFriends(tx, userId, id, true, conversation.otherId);
          const attached = input.mediaId ? await media.claim(tx, userId, input.mediaId.toLowerCase()) : null;
          const messageId = uuidv7();
          const stored = await repo.insertMessage(tx, {
            id: messageId,
            conversationId: id,
            senderId: userId,
            clientMessageId: input.clientMessageId,
            body,
            mediaId: attached?.id ?? null,
            now,
          });
          if (!stored) throw new StoredMeanwhile();
          const { seq, memberIds: recipients } = stored;
          // Taken under the conversation's lock, so in seq order (a retried attempt gives its turn back).
          turn?.done();
          const myTurn = takeTurn(id);
          turn = myTurn;
          // My cursors moved with the insert: my unread count drops to 0 there. No receipt goes out
          // for it: the message itself tells every member its sender has read up to its seq.
          const message: Message = {
            id: messageId,
            conversationId: id,
            seq,
            senderId: userId,
            clientMessageId: input.clientMessageId,
            body,
            media: attached,
            createdAt: now.toISOString(),
            deletedAt: null,
          };
          tx.afterCommit(async () => {
            try {
              await myTurn.before;
              realtime.toUsers(recipients, 'chat:message', message);
            } finally {
              myTurn.done();
            }
          });
          return { created: true, message };
        });
      // The same message sent twice at once: the second waited for the first's lock, and its first
      // read could not see what the first stored. Once more, it does, and answers as a retry.
      const sending = attempt().catch((err) => {
        if (err instanceof StoredMeanwhile) return attempt();
        throw err;
      });
      // A transaction that failed after taking its turn gives it back.
      sending.catch(() => turn?.done());
      return sending;
    },

    markDelivered: (userId: string, conversationId: string, seq: number) =>
      moveCursor(userId, conversationId, seq, false),
    markRead: (userId: string, conversationId: string, seq: number) =>
      moveCursor(userId, conversationId, seq, true),

    /** To the other members' devices; only where I could send (a former friend sees no typing). */
    async typing(userId: string, conversationId: string): Promise<{ expiresInMs: number }> {
      await member(db, userId, conversationId);
      const id = conversationId.toLowerCase();
      const conversation = await repo.findConversation(db, id);
      if (conversation?.kind === 'direct') await requireFriends(db, userId, id, false);
      const others = (await repo.memberIds(db, id)).filter((m) => m !== userId);
      realtime.toUsers(others, 'chat:typing', { conversationId: id, userId, expiresInMs: TYPING_TTL_MS });
      return { expiresInMs: TYPING_TTL_MS };
    },

    /**
     * me: hidden from my history on all my devices. everyone: the sender, within 24 h, erases it for
     * all (a tombstone keeps its seq); its media goes too. Deleting again is harmless.
     */
    async deleteMessage(
      userId: string,
      conversationId: string,
      messageId: string,
      scope: 'me' | 'everyone',
    ): Promise<void> {
      const now = clock.now();
      await db.tx(async (tx) => {
        const me = await member(tx, userId, conversationId);
        const id = conversationId.toLowerCase();
        if (!UUID.test(messageId)) throw notFound('message');
        const message = await repo.findMessage(tx, id, messageId.toLowerCase(), { lock: true });
        if (!message || message.seq < me.fromSeq) throw notFound('message');
        const event = { conversationId: id, messageId: message.id, seq: message.seq, scope };
        if (scope === 'me') {
          await repo.hide(tx, userId, message.id);
          tx.afterCommit(() => realtime.toUser(userId, 'chat:deleted', event));
          return;
        }
        if (message.senderId !== userId)
          throw forbidden('not_sender', 'Only its sender may delete a message for everyone.');
        if (message.deletedAt) return;
        if (now.getTime() - message.createdAt.getTime() > DELETE_WINDOW_MS)
          throw conflict('delete_window_passed', 'Messages can be deleted for everyone within 24 hours.');
        await repo.tombstone(tx, message.id, now);
        if (message.mediaId) await media.discard(tx, message.mediaId);
        const recipients = await repo.memberIds(tx, id);
        tx.afterCommit(() => realtime.toUsers(recipients, 'chat:deleted', event));
      });
    },

    /** Account deletion step, in its transaction: tombstones and media keys to purge. */
    async forgetUser(q: Queryable, userId: string): Promise<string[]> {
      const keys = await media.forgetUser(q, userId);
      await repo.forgetSender(q, userId, clock.now());
      log.debug({ userId }, 'chat history tombstoned');
      return keys;
    },

    exportFor: (userId: string) => repo.exportChat(db, userId),
  };
}
