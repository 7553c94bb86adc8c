import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Deps } from '../../deps.js';
import { signedIn } from '../../http/auth.js';
import { IdempotencyHeaders, idempotencyKey, sendOutcome } from '../../http/idempotency.js';
import { problemResponse } from '../../http/problem.js';
import { NoContent } from '../../http/schemas.js';
import {
  BlockBody,
  BlockedUser,
  BlockList,
  FriendList,
  FriendRequest,
  FriendRequestList,
  FriendRequestParams,
  ListFriendRequestsQuery,
  PageQuery,
  SendFriendRequestBody,
  UserIdParams,
} from './friends.schemas.js';

const tags = ['friends'];
// Every social route needs a confirmed email address (403 email_not_verified until then).
const social = { verified: true } as const;
const forbidden = problemResponse(
  'email_not_verified: confirm your email address first; or a cookie-authenticated request from a foreign Origin.',
);
const notMine = problemResponse('No such request for me to answer (unknown, malformed, or not mine).');
const keyMismatch = problemResponse('This Idempotency-Key was used for a different request.');
// Requests reach other people: a budget of their own against spam.
const requestBudget = { max: 30, windowMs: 3600_000, scope: 'friend-request-send' };

export const friendsRoutes =
  (deps: Deps): FastifyPluginAsyncTypebox =>
  async (app) => {
    const { friends } = deps;

    app.post(
      '/v1/friend-requests',
      {
        config: { ...social, rateLimit: requestBudget },
        schema: {
          operationId: 'sendFriendRequest',
          summary: 'Ask someone to be friends; if they already asked me, this accepts theirs',
          description:
            '201 with the new pending request, or with their request, accepted. Idempotency-Key supported.',
          tags,
          headers: IdempotencyHeaders,
          body: SendFriendRequestBody,
          response: {
            201: FriendRequest,
            400: problemResponse('Invalid input, or cannot_befriend_self.'),
            403: forbidden,
            404: problemResponse('No such person (or one of us blocked the other).'),
            409: problemResponse('already_friends, or request_pending (I asked already).'),
            422: keyMismatch,
          },
        },
      },
      async (request, reply) =>
        sendOutcome(
          reply,
          await friends.sendRequest(signedIn(request).userId, request.body.userId, idempotencyKey(request)),
        ),
    );

    app.get(
      '/v1/friend-requests',
      {
        config: social,
        schema: {
          operationId: 'listFriendRequests',
          summary: 'Pending friend requests to me (incoming) or from me (outgoing), newest first',
          tags,
          querystring: ListFriendRequestsQuery,
          response: { 200: FriendRequestList, 403: forbidden },
        },
      },
      async (request) => friends.listRequests(signedIn(request).userId, request.query),
    );

    app.post(
      '/v1/friend-requests/:id/accept',
      {
        config: social,
        schema: {
          operationId: 'acceptFriendRequest',
          summary: 'Accept a request sent to me; an accepted one is returned as is',
          tags,
          params: FriendRequestParams,
          response: {
            200: FriendRequest,
            403: forbidden,
            404: notMine,
            409: problemResponse('request_not_pending: I declined it already.'),
          },
        },
      },
      async (request) => friends.accept(signedIn(request).userId, request.params.id),
    );

    app.post(
      '/v1/friend-requests/:id/decline',
      {
        config: social,
        schema: {
          operationId: 'declineFriendRequest',
          summary: 'Decline a request sent to me (the sender is not told); a declined one is returned as is',
          tags,
          params: FriendRequestParams,
          response: {
            200: FriendRequest,
            403: forbidden,
            404: notMine,
            409: problemResponse('request_not_pending: I accepted it already.'),
          },
        },
      },
      async (request) => friends.decline(signedIn(request).userId, request.params.id),
    );

    app.delete(
      '/v1/friend-requests/:id',
      {
        config: social,
        schema: {
          operationId: 'cancelFriendRequest',
          summary: 'Withdraw a pending request I sent',
          tags,
          params: FriendRequestParams,
          response: {
            204: NoContent,
            403: forbidden,
            404: problemResponse('No pending request of mine with this id.'),
          },
        },
      },
      async (request, reply) => {
        await friends.cancel(signedIn(request).userId, request.params.id);
        return reply.code(204).send(null);
      },
    );

    app.get(
      '/v1/friends',
      {
        config: social,
        schema: {
          operationId: 'listFriends',
          summary: 'My friends by username, with whether each is online and their current streak',
          tags,
          querystring: PageQuery,
          response: { 200: FriendList, 403: forbidden },
        },
      },
      async (request) => friends.listFriends(signedIn(request).userId, request.query),
    );

    app.delete(
      '/v1/friends/:userId',
      {
        config: social,
        schema: {
          operationId: 'removeFriend',
          summary: 'End a friendship (the other person is told)',
          tags,
          params: UserIdParams,
          response: { 204: NoContent, 403: forbidden, 404: problemResponse('We are not friends.') },
        },
      },
      async (request, reply) => {
        await friends.unfriend(signedIn(request).userId, request.params.userId);
        return reply.code(204).send(null);
      },
    );

    app.post(
      '/v1/blocks',
      {
        config: social,
        schema: {
          operationId: 'blockUser',
          summary: 'Block someone: ends our friendship and pending requests, and hides us from each other',
          description: '201 for a new block; 200 with the existing block when already blocked.',
          tags,
          body: BlockBody,
          response: {
            200: BlockedUser,
            201: BlockedUser,
            400: problemResponse('Invalid input, or cannot_block_self.'),
            403: forbidden,
            404: problemResponse('No such person.'),
          },
        },
      },
      async (request, reply) =>
        sendOutcome(reply, await friends.block(signedIn(request).userId, request.body.userId)),
    );

    app.delete(
      '/v1/blocks/:userId',
      {
        config: social,
        schema: {
          operationId: 'unblockUser',
          summary: 'Lift a block I made (an ended friendship stays ended)',
          tags,
          params: UserIdParams,
          response: { 204: NoContent, 403: forbidden, 404: problemResponse('I have not blocked them.') },
        },
      },
      async (request, reply) => {
        await friends.unblock(signedIn(request).userId, request.params.userId);
        return reply.code(204).send(null);
      },
    );

    app.get(
      '/v1/blocks',
      {
        config: social,
        schema: {
          operationId: 'listBlocks',
          summary: 'People I blocked, newest first',
          tags,
          querystring: PageQuery,
          response: { 200: BlockList, 403: forbidden },
        },
      },
      async (request) => friends.listBlocks(signedIn(request).userId, request.query),
    );
  };
