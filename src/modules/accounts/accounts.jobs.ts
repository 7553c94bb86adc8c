import { Type as T } from '@sinclair/typebox';
import { defineJob } from '../../lib/jobs.js';
import type { Mailer } from '../../lib/mailer.js';
import { accountMail } from './accounts.mail.js';
import { type AccountsService, SEND_MAIL_JOB } from './accounts.service.js';

export const ACCOUNTS_PRUNE_EVERY_MS = 3600_000;

export const accountsJobs = (deps: { accounts: AccountsService; mailer: Mailer }) => [
  defineJob({
    name: 'accounts.prune',
    payload: T.Object({}, { additionalProperties: false }),
    attempts: 3,
    async handler(_payload, { log }) {
      const pruned = await deps.accounts.prune();
      if (pruned.sessions || pruned.refreshTokens || pruned.mailTokens)
        log.info(pruned, 'pruned account records');
    },
  }),
  defineJob({
    name: SEND_MAIL_JOB,
    payload: T.Object(
      {
        userId: T.String({ format: 'uuid' }),
        purpose: T.Union([T.Literal('verify_email'), T.Literal('reset_password')]),
        requestId: T.String({ format: 'uuid' }),
      },
      { additionalProperties: false },
    ),
    // SMTP outages are retried for about an hour (2 s doubling, 11 runs) before the job is left failed.
    attempts: 11,
    backoffMs: 2000,
    handler: (payload) =>
      deps.accounts.sendAccountMail(payload, (user, link) =>
        deps.mailer.send(accountMail(payload.purpose, user, link)),
      ),
  }),
];
