import { Type as T } from '@sinclair/typebox';
import { defineJob } from '../../lib/jobs.js';
import { OCCASIONS } from './maa.lines.js';
import { EVENT_JOB, NUDGES_JOB, type NudgesService } from './maa.nudges.js';

export const maaJobs = (deps: { nudges: NudgesService }) => [
  defineJob({
    name: NUDGES_JOB,
    payload: T.Object({}, { additionalProperties: false }),
    attempts: 2,
    async handler(_payload, { log }) {
      const spoken = await deps.nudges.sweep();
      if (spoken) log.info({ spoken }, 'maa nudges sent');
    },
  }),
  defineJob({
    name: EVENT_JOB,
    payload: T.Object(
      {
        userId: T.String({ format: 'uuid' }),
        occasion: T.Union(OCCASIONS.map((o) => T.Literal(o))),
        /** A podium finish's place (group_rank), for the lines that name it. */
        rank: T.Optional(T.Integer({ minimum: 1 })),
      },
      { additionalProperties: false },
    ),
    // A late word from Maa is worth little: a few quick tries. Claims make a retry speak once.
    attempts: 3,
    async handler({ userId, occasion, rank }) {
      await deps.nudges.nudge(userId, occasion, rank === undefined ? {} : { rank });
    },
  }),
];
