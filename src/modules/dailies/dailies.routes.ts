import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Deps } from '../../deps.js';
import { signedIn } from '../../http/auth.js';
import { IdempotencyHeaders, idempotencyKey, sendOutcome } from '../../http/idempotency.js';
import { problemResponse } from '../../http/problem.js';
import { emptyBodyIsObject, NoContent } from '../../http/schemas.js';
import {
  CheckIn,
  CheckInBody,
  CheckInParams,
  CreateDailyBody,
  Daily,
  DailyList,
  DailyParams,
  History,
  HistoryQuery,
  Stats,
  UpdateDailyBody,
} from './dailies.schemas.js';

const tags = ['dailies'];
const missing = (what: string) => problemResponse(`No such ${what} of mine.`);

export const dailiesRoutes =
  (deps: Deps): FastifyPluginAsyncTypebox =>
  async (app) => {
    const { dailies } = deps;

    app.post(
      '/v1/dailies',
      {
        schema: {
          operationId: 'createDaily',
          summary: 'Create a daily',
          tags,
          body: CreateDailyBody,
          response: { 201: Daily },
        },
      },
      async (request, reply) =>
        reply.code(201).send(await dailies.create(signedIn(request).userId, request.body)),
    );

    app.get(
      '/v1/dailies',
      {
        schema: {
          operationId: 'listDailies',
          summary: 'My dailies, each with whether it is due and done today and its streak',
          tags,
          response: { 200: DailyList },
        },
      },
      async (request) => dailies.list(signedIn(request).userId),
    );

    app.get(
      '/v1/dailies/today',
      {
        schema: {
          operationId: 'listDailiesToday',
          summary: 'The dailies due today',
          tags,
          response: { 200: DailyList },
        },
      },
      async (request) => dailies.list(signedIn(request).userId, true),
    );

    app.get(
      '/v1/dailies/:id',
      {
        schema: {
          operationId: 'getDaily',
          summary: 'One daily',
          tags,
          params: DailyParams,
          response: { 200: Daily, 404: missing('daily') },
        },
      },
      async (request) => dailies.get(signedIn(request).userId, request.params.id),
    );

    app.patch(
      '/v1/dailies/:id',
      {
        schema: {
          operationId: 'updateDaily',
          summary: 'Change a daily',
          tags,
          params: DailyParams,
          body: UpdateDailyBody,
          response: { 200: Daily, 404: missing('daily') },
        },
      },
      async (request) => dailies.update(signedIn(request).userId, request.params.id, request.body),
    );

    app.delete(
      '/v1/dailies/:id',
      {
        schema: {
          operationId: 'deleteDaily',
          summary: 'Delete a daily (its history leaves sight; points already earned stay)',
          tags,
          params: DailyParams,
          response: { 204: NoContent, 404: missing('daily') },
        },
      },
      async (request, reply) => {
        await dailies.remove(signedIn(request).userId, request.params.id);
        return reply.code(204).send(null);
      },
    );

    app.post(
      '/v1/dailies/:id/check-ins',
      {
        schema: {
          operationId: 'checkInDaily',
          summary: 'Check a daily in for today, or for yesterday within the grace window (marked late)',
          description: 'Idempotent per day: 201 when recorded, 200 when that day was already checked in.',
          tags,
          params: DailyParams,
          headers: IdempotencyHeaders,
          body: CheckInBody,
          response: {
            200: CheckIn,
            201: CheckIn,
            404: missing('daily'),
            422: problemResponse('Idempotency-Key reused with another request.'),
          },
        },
        preValidation: emptyBodyIsObject,
      },
      async (request, reply) =>
        sendOutcome(
          reply,
          await dailies.checkIn(
            signedIn(request).userId,
            request.params.id,
            request.body.date,
            idempotencyKey(request),
          ),
        ),
    );

    app.delete(
      '/v1/dailies/:id/check-ins/:date',
      {
        schema: {
          operationId: 'undoCheckIn',
          summary: 'Undo a check-in, within the same window as checking in',
          tags,
          params: CheckInParams,
          response: { 204: NoContent, 404: missing('check-in') },
        },
      },
      async (request, reply) => {
        await dailies.undoCheckIn(signedIn(request).userId, request.params.id, request.params.date);
        return reply.code(204).send(null);
      },
    );

    app.get(
      '/v1/dailies/:id/history',
      {
        schema: {
          operationId: 'getDailyHistory',
          summary: 'Each day of a daily as done, late, missed, not_due, frozen or pending (today)',
          description: 'Defaults to the 30 days ending today; at most 366 days at once.',
          tags,
          params: DailyParams,
          querystring: HistoryQuery,
          response: { 200: History, 404: missing('daily') },
        },
      },
      async (request) => dailies.history(signedIn(request).userId, request.params.id, request.query),
    );

    app.get(
      '/v1/me/stats',
      {
        schema: {
          operationId: 'getMyStats',
          summary: 'Streaks, freezes, score, today and the last 7 days',
          tags: ['stats'],
          response: { 200: Stats },
        },
      },
      async (request) => dailies.stats(signedIn(request).userId),
    );
  };
