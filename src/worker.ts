import type { Deps } from './deps.js';
import { ACCOUNTS_PRUNE_EVERY_MS, accountsJobs } from './modules/accounts/accounts.jobs.js';
import { dailiesJobs, ROLLOVER_JOB } from './modules/dailies/dailies.jobs.js';
import { friendsJobs } from './modules/friends/friends.jobs.js';
import { groupsJobs } from './modules/groups/groups.jobs.js';
import { PRUNE_EVERY_MS, systemJobs } from './modules/system/system.jobs.js';
import { accountDataJobs } from './modules/users/users.data.js';

/**
 * Every module's job definitions, listed explicitly. Defined in every role, so any process can
 * enqueue with the right retry policy; only workers consume.
 */
export function defineJobs(deps: Deps) {
  const all = [
    ...systemJobs(deps),
    ...accountsJobs(deps),
    ...dailiesJobs(deps),
    ...friendsJobs(deps),
    ...groupsJobs(deps),
    ...accountDataJobs(deps),
  ];
  for (const job of all) deps.jobs.define(job);
}

/** Schedules and consumption: the worker half of ROLE=serve, or ROLE=worker. */
export async function startWorker(deps: Deps) {
  deps.jobs.repeat('system.prune', PRUNE_EVERY_MS);
  deps.jobs.repeat('accounts.prune', ACCOUNTS_PRUNE_EVERY_MS);
  deps.jobs.repeat(ROLLOVER_JOB, deps.config.ROLLOVER_EVERY_MS);
  await deps.jobs.start();
  deps.outbox.startSweeper(deps.config.OUTBOX_SWEEP_MS);
}
