import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Deps } from '../../deps.js';
import { signedIn } from '../../http/auth.js';
import { problemResponse } from '../../http/problem.js';
import { MaaHistory, MaaHistoryQuery, MaaMessage, MaaMessageQuery } from './maa.schemas.js';

const tags = ['maa'];
const badCursor = problemResponse('The cursor is not one this list handed out.');

export const maaRoutes =
  (deps: Deps): FastifyPluginAsyncTypebox =>
  async (app) => {
    const { maa } = deps;

    app.get(
      '/v1/maa/message',
      {
        schema: {
          operationId: 'getMaaMessage',
          summary: 'A word from Maa for this moment (occasion chosen from my day unless given)',
          tags,
          querystring: MaaMessageQuery,
          response: { 200: MaaMessage },
        },
      },
      async (request) => maa.message(signedIn(request).userId, request.query.occasion),
    );

    app.get(
      '/v1/maa/messages',
      {
        schema: {
          operationId: 'listMaaMessages',
          summary: 'What Maa said to me, newest first, a page at a time',
          tags,
          querystring: MaaHistoryQuery,
          response: { 200: MaaHistory, 400: badCursor },
        },
      },
      async (request) => maa.history(signedIn(request).userId, request.query),
    );
  };
