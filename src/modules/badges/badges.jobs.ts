import { Type as T } from '@sinclair/typebox';
import { defineJob } from '../../lib/jobs.js';
import { type BadgesService, EVALUATE_JOB } from './badges.service.js';

export const badgesJobs = (deps: { badges: BadgesService }) => [
  defineJob({
    name: EVALUATE_JOB,
    payload: T.Object({ userId: T.String({ format: 'uuid' }) }, { additionalProperties: false }),
    handler: async (payload) => {
      await deps.badges.evaluate(payload.userId);
    },
  }),
];
