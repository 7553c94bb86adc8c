import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Deps } from '../../deps.js';
import { signedIn } from '../../http/auth.js';
import { problemResponse } from '../../http/problem.js';
import {
  ListNotificationsQuery,
  MarkReadBody,
  MarkReadResult,
  NotificationList,
} from './notifications.schemas.js';

const tags = ['notifications'];

// Personal, like my tasks: signed in is enough (no verified email needed to read what I was told).
export const notificationsRoutes =
  (deps: Deps): FastifyPluginAsyncTypebox =>
  async (app) => {
    const { notifications } = deps;

    app.get(
      '/v1/notifications',
      {
        schema: {
          operationId: 'listNotifications',
          summary: 'My notifications, newest first, a page at a time, with my unread count',
          tags,
          querystring: ListNotificationsQuery,
          response: {
            200: NotificationList,
            400: problemResponse('Invalid input, or invalid_cursor (also for a cursor of the other filter).'),
          },
        },
      },
      async (request) => notifications.list(signedIn(request).userId, request.query),
    );

    app.post(
      '/v1/notifications/read',
      {
        schema: {
          operationId: 'markNotificationsRead',
          summary: 'Mark some of my notifications (ids not mine are ignored) or all of them read',
          tags,
          body: MarkReadBody,
          response: { 200: MarkReadResult },
        },
      },
      async (request) => notifications.markRead(signedIn(request).userId, request.body),
    );
  };
