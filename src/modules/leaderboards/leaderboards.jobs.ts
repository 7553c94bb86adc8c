import { Type as T } from '@sinclair/typebox';
import { defineJob } from '../../lib/jobs.js';
import { type LeaderboardsService, SYNC_JOB } from './leaderboards.service.js';

export const leaderboardsJobs = (deps: { leaderboards: LeaderboardsService }) => [
  defineJob({
    name: SYNC_JOB,
    payload: T.Object({ userId: T.String({ format: 'uuid' }) }, { additionalProperties: false }),
    handler: (payload) => deps.leaderboards.sync(payload.userId),
  }),
];
