import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Deps } from '../../deps.js';
import { signedIn } from '../../http/auth.js';
import { problemResponse } from '../../http/problem.js';
import { BoardQuery, Leaderboard } from './leaderboards.schemas.js';

const tags = ['leaderboards'];

export const leaderboardsRoutes =
  (deps: Deps): FastifyPluginAsyncTypebox =>
  async (app) => {
    for (const kind of ['global', 'friends'] as const) {
      app.get(
        `/v1/leaderboards/${kind}`,
        {
          config: { verified: true },
          schema: {
            operationId: kind === 'global' ? 'globalLeaderboard' : 'friendsLeaderboard',
            summary:
              kind === 'global'
                ? 'The top of everyone with a public profile, and my rank'
                : 'Me and my friends (private profiles left out), best first, and my rank',
            tags,
            querystring: BoardQuery,
            response: { 200: Leaderboard, 403: problemResponse('email_not_verified.') },
          },
        },
        async (request) =>
          deps.leaderboards.board(
            signedIn(request).userId,
            `${kind}:${request.query.period ?? 'week'}`,
            request.query.limit ?? 20,
          ),
      );
    }
  };
