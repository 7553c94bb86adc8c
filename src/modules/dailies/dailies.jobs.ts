import { Type as T } from '@sinclair/typebox';
import { AppError } from '../../lib/errors.js';
import { defineJob } from '../../lib/jobs.js';
import type { Realtime } from '../../realtime/port.js';
import { DAY_CLOSED_JOB, type DailiesService } from './dailies.service.js';

export const ROLLOVER_JOB = 'dailies.rollover';
const BATCH = 200;

export const dailiesJobs = (deps: { dailies: DailiesService; realtime: Realtime }) => [
  defineJob({
    name: ROLLOVER_JOB,
    payload: T.Object({}, { additionalProperties: false }),
    attempts: 3,
    backoffMs: 30_000,
    // Walks every user whose day has ended since the last run, in batches by id. One user's failure
    // does not hold up the others; the job fails at the end so it is retried for them. A database
    // that is out (or a pool too busy to lend a connection) would fail every user alike, so the run
    // stops there and the retry, logged as a warning, walks them all again.
    async handler(_payload, { log, signal }) {
      let after: string | null = null;
      let users = 0;
      let days = 0;
      const failed: string[] = [];
      for (;;) {
        const ids = await deps.dailies.usersBehind(after, BATCH);
        if (ids.length === 0) break;
        for (const id of ids) {
          // Shutting down past the drain budget: the next run walks the rest (closing is idempotent).
          if (signal.aborted) {
            log.warn({ users, days }, 'rollover stopped by shutdown; the next run goes on');
            return;
          }
          try {
            days += await deps.dailies.closeDays(id);
            users++;
          } catch (err) {
            if (err instanceof AppError && err.status === 503) throw err;
            failed.push(id);
            log.error({ err, userId: id }, 'closing days failed');
          }
        }
        after = ids[ids.length - 1] as string;
      }
      if (users || failed.length) log.info({ users, days, failed: failed.length }, 'days closed');
      if (failed.length) throw new Error(`closing days failed for ${failed.length} users`);
    },
  }),
  defineJob({
    name: DAY_CLOSED_JOB,
    payload: T.Object(
      {
        userId: T.String({ format: 'uuid' }),
        date: T.String({ format: 'date' }),
        outcome: T.Union([T.Literal('met'), T.Literal('frozen'), T.Literal('missed')]),
        currentStreak: T.Integer({ minimum: 0 }),
        longestStreak: T.Integer({ minimum: 0 }),
        freezes: T.Integer({ minimum: 0 }),
      },
      { additionalProperties: false },
    ),
    // Every device of the user updates its streak display when a day closes.
    async handler(payload) {
      deps.realtime.toUser(payload.userId, 'streak:updated', {
        date: payload.date,
        outcome: payload.outcome,
        currentStreak: payload.currentStreak,
        longestStreak: payload.longestStreak,
        freezes: payload.freezes,
      });
    },
  }),
];
