import { Type as T } from '@sinclair/typebox';
import { defineJob } from '../../lib/jobs.js';
import { NOTIFICATIONS_PRUNE_JOB, type NotificationsService } from './notifications.service.js';

export { NOTIFICATIONS_PRUNE_EVERY_MS, NOTIFICATIONS_PRUNE_JOB } from './notifications.service.js';

export const notificationsJobs = (deps: { notifications: Pick<NotificationsService, 'prune'> }) => [
  defineJob({
    name: NOTIFICATIONS_PRUNE_JOB,
    payload: T.Object({}, { additionalProperties: false }),
    attempts: 3,
    async handler(_payload, { log }) {
      const { aged, overCap } = await deps.notifications.prune();
      if (aged || overCap) log.info({ aged, overCap }, 'pruned notifications');
    },
  }),
];
