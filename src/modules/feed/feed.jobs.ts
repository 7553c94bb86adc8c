import { Type as T } from '@sinclair/typebox';
import { defineJob } from '../../lib/jobs.js';
import type { FeedService } from './feed.service.js';

export const FEED_PRUNE_JOB = 'feed.prune';
export const FEED_PRUNE_EVERY_MS = 6 * 3600_000;

export const feedJobs = (deps: { feed: FeedService }) => [
  defineJob({
    name: FEED_PRUNE_JOB,
    payload: T.Object({}, { additionalProperties: false }),
    attempts: 3,
    async handler(_payload, { log }) {
      const marks = await deps.feed.prune();
      if (marks) log.info({ marks }, 'activity marks pruned');
    },
  }),
];
