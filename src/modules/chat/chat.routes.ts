import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Deps } from '../../deps.js';
import { signedIn } from '../../http/auth.js';
import { problemResponse } from '../../http/problem.js';
import { NoContent } from '../../http/schemas.js';
import {
  Conversation,
  ConversationList,
  ConversationParams,
  CursorState,
  DeleteMessageQuery,
  ListConversationsQuery,
  Message,
  MessagePage,
  MessageParams,
  MessagesQuery,
  OpenDirectBody,
  ReadBody,
  SendMessageBody,
} from './chat.schemas.js';

const tags = ['chat'];
const social = { verified: true } as const;
const forbidden = problemResponse(
  'email_not_verified, not_friends (a direct conversation), or a foreign Origin.',
);
const unknown = problemResponse('No such conversation of mine (unknown, malformed, or not a member).');

export const chatRoutes =
  (deps: Deps): FastifyPluginAsyncTypebox =>
  async (app) => {
    const { chat } = deps;

    app.get(
      '/v1/conversations',
      {
        config: social,
        schema: {
          operationId: 'listConversations',
          summary: 'My conversations, newest activity first, with the last message and my unread count',
          tags,
          querystring: ListConversationsQuery,
          response: { 200: ConversationList, 400: problemResponse('invalid_cursor.'), 403: forbidden },
        },
      },
      async (request) => chat.list(signedIn(request).userId, request.query),
    );

    app.post(
      '/v1/conversations',
      {
        config: { ...social, rateLimit: { max: 60, windowMs: 3600_000, scope: 'conversation-open' } },
        schema: {
          operationId: 'openDirectConversation',
          summary: 'The one direct conversation with a friend (201 when this made it, 200 after)',
          tags,
          body: OpenDirectBody,
          response: {
            200: Conversation,
            201: Conversation,
            400: problemResponse('Invalid input or cannot_message_self.'),
            403: forbidden,
          },
        },
      },
      async (request, reply) => {
        const { status, body } = await chat.openDirect(signedIn(request).userId, request.body.userId);
        return reply.code(status).send(body);
      },
    );

    app.get(
      '/v1/conversations/:id',
      {
        config: social,
        schema: {
          operationId: 'getConversation',
          summary: 'One of my conversations',
          tags,
          params: ConversationParams,
          response: { 200: Conversation, 403: forbidden, 404: unknown },
        },
      },
      async (request) => chat.get(signedIn(request).userId, request.params.id),
    );

    app.get(
      '/v1/conversations/:id/messages',
      {
        config: social,
        schema: {
          operationId: 'listMessages',
          summary: 'Messages by seq, oldest first in a page: the newest, or before / after a seq',
          tags,
          params: ConversationParams,
          querystring: MessagesQuery,
          response: { 200: MessagePage, 403: forbidden, 404: unknown },
        },
      },
      async (request) => chat.history(signedIn(request).userId, request.params.id, request.query),
    );

    app.post(
      '/v1/conversations/:id/messages',
      {
        config: social,
        schema: {
          operationId: 'sendMessage',
          summary:
            'Send a message (REST twin of chat:send): 201 stored, 200 when this clientMessageId was already stored',
          tags,
          params: ConversationParams,
          body: SendMessageBody,
          response: {
            200: Message,
            201: Message,
            400: problemResponse('Invalid input or empty_message.'),
            403: forbidden,
            404: problemResponse('No such conversation of mine, or no such upload of mine (mediaId).'),
            409: problemResponse('client_message_id_reused, or media_attached (already sent).'),
          },
        },
      },
      async (request, reply) => {
        const { created, message } = await chat.send(
          signedIn(request).userId,
          request.params.id,
          request.body,
        );
        return reply.code(created ? 201 : 200).send(message);
      },
    );

    app.post(
      '/v1/conversations/:id/read',
      {
        config: social,
        schema: {
          operationId: 'markConversationRead',
          summary: 'Move my read cursor to seq (never backwards; also marks delivered)',
          tags,
          params: ConversationParams,
          body: ReadBody,
          response: { 200: CursorState, 403: forbidden, 404: unknown },
        },
      },
      async (request) => chat.markRead(signedIn(request).userId, request.params.id, request.body.seq),
    );

    app.delete(
      '/v1/conversations/:id/messages/:messageId',
      {
        config: social,
        schema: {
          operationId: 'deleteMessage',
          summary: 'Delete a message for me, or for everyone (its sender, within 24 h; leaves a tombstone)',
          tags,
          params: MessageParams,
          querystring: DeleteMessageQuery,
          response: {
            204: NoContent,
            403: problemResponse('not_sender (scope everyone), email_not_verified, or a foreign Origin.'),
            404: problemResponse('No such conversation of mine, or no such message in it.'),
            409: problemResponse('delete_window_passed.'),
          },
        },
      },
      async (request, reply) => {
        await chat.deleteMessage(
          signedIn(request).userId,
          request.params.id,
          request.params.messageId,
          request.query.scope ?? 'me',
        );
        return reply.code(204).send(null);
      },
    );
  };
