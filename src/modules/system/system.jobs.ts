import { Type as T } from '@sinclair/typebox';
import type { Clock } from '../../lib/clock.js';
import type { Db } from '../../lib/db.js';
import { pruneIdempotencyKeys } from '../../lib/idempotency.js';
import { defineJob, pruneLocalJobs } from '../../lib/jobs.js';
import { pruneOutbox } from '../../lib/outbox.js';

export const PRUNE_EVERY_MS = 3600_000;

/** Housekeeping: relayed outbox rows, finished embedded jobs and old idempotency keys are deleted. */
export const systemJobs = (deps: { db: Db; clock: Clock }) => [
  defineJob({
    name: 'system.prune',
    payload: T.Object({}, { additionalProperties: false }),
    attempts: 3,
    async handler(_payload, { log }) {
      const now = deps.clock.now();
      const outbox = await pruneOutbox(deps.db, now);
      const jobs = await pruneLocalJobs(deps.db, now);
      const idempotencyKeys = await pruneIdempotencyKeys(deps.db, now);
      if (outbox || jobs || idempotencyKeys) log.info({ outbox, jobs, idempotencyKeys }, 'pruned');
    },
  }),
];
