import type { Deps } from '../../deps.js';
import { defineSocketHandler } from '../../realtime/handlers.js';
import {
  ChatCursorPayload,
  ChatSendPayload,
  ChatSyncPayload,
  ChatTypingPayload,
  HISTORY_MAX,
} from './chat.schemas.js';

/**
 * The socket twins of the chat routes. The sender is always the socket's user, never anything in the
 * payload; the send budget is the service's, shared with REST.
 */
export const chatSocketHandlers = ({ chat }: Pick<Deps, 'chat'>) => [
  defineSocketHandler({
    verified: true,
    event: 'chat:send',
    payload: ChatSendPayload,
    async handle(ctx, { conversationId, ...input }) {
      return (await chat.send(ctx.userId, conversationId, input)).message;
    },
  }),
  defineSocketHandler({
    verified: true,
    event: 'chat:typing',
    payload: ChatTypingPayload,
    rateLimit: { max: 20, windowMs: 10_000 },
    handle: (ctx, p) => chat.typing(ctx.userId, p.conversationId),
  }),
  defineSocketHandler({
    verified: true,
    event: 'chat:delivered',
    payload: ChatCursorPayload,
    handle: (ctx, p) => chat.markDelivered(ctx.userId, p.conversationId, p.seq),
  }),
  defineSocketHandler({
    verified: true,
    event: 'chat:read',
    payload: ChatCursorPayload,
    handle: (ctx, p) => chat.markRead(ctx.userId, p.conversationId, p.seq),
  }),
  defineSocketHandler({
    verified: true,
    event: 'chat:sync',
    payload: ChatSyncPayload,
    handle: (ctx, p) =>
      chat.history(ctx.userId, p.conversationId, { after: p.afterSeq, limit: p.limit ?? HISTORY_MAX }),
  }),
];
