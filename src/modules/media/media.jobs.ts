import { Type as T } from '@sinclair/typebox';
import { defineJob } from '../../lib/jobs.js';
import type { MediaService } from './media.service.js';

export const MEDIA_PRUNE_JOB = 'media.prune';
export const MEDIA_PRUNE_EVERY_MS = 3600_000;

export const mediaJobs = (deps: { media: Pick<MediaService, 'prune'> }) => [
  defineJob({
    name: MEDIA_PRUNE_JOB,
    payload: T.Object({}, { additionalProperties: false }),
    attempts: 3,
    async handler(_payload, { log }) {
      const pruned = await deps.media.prune();
      if (pruned) log.info({ pruned }, 'pruned unattached media');
    },
  }),
];
