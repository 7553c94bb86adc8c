import type { Deps } from './deps.js';
import { ACCOUNTS_PRUNE_EVERY_MS, accountsJobs } from './modules/accounts/accounts.jobs.js';
import { badgesJobs } from './modules/badges/badges.jobs.js';
import { dailiesJobs, ROLLOVER_JOB } from './modules/dailies/dailies.jobs.js';
import { FEED_PRUNE_EVERY_MS, FEED_PRUNE_JOB, feedJobs } from './modules/feed/feed.jobs.js';
import { friendsJobs } from './modules/friends/friends.jobs.js';
import { groupsJobs } from './modules/groups/groups.jobs.js';
import { leaderboardsJobs } from './modules/leaderboards/leaderboards.jobs.js';
import { maaJobs } from './modules/maa/maa.jobs.js';
import { NUDGES_EVERY_MS, NUDGES_JOB } from './modules/maa/maa.nudges.js';
import { MEDIA_PRUNE_EVERY_MS, MEDIA_PRUNE_JOB, mediaJobs } from './modules/media/media.jobs.js';
import {
  NOTIFICATIONS_PRUNE_EVERY_MS,
  NOTIFICATIONS_PRUNE_JOB,
  notificationsJobs,
} from './modules/notifications/notifications.jobs.js';
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
    ...mediaJobs(deps),
    ...leaderboardsJobs(deps),
    ...badgesJobs(deps),
    ...feedJobs(deps),
    ...maaJobs(deps),
    ...notificationsJobs(deps),
    ...accountDataJobs(deps),
  ];
  for (const job of all) deps.jobs.define(job);
}

/** Schedules and consumption: the worker half of ROLE=serve, or ROLE=worker. */
export async function startWorker(deps: Deps) {
  deps.jobs.repeat('system.prune', PRUNE_EVERY_MS);
  deps.jobs.repeat('accounts.prune', ACCOUNTS_PRUNE_EVERY_MS);
  deps.jobs.repeat(ROLLOVER_JOB, deps.config.ROLLOVER_EVERY_MS);
  deps.jobs.repeat(MEDIA_PRUNE_JOB, MEDIA_PRUNE_EVERY_MS);
  deps.jobs.repeat(FEED_PRUNE_JOB, FEED_PRUNE_EVERY_MS);
  if (deps.config.MAA_NUDGES) deps.jobs.repeat(NUDGES_JOB, NUDGES_EVERY_MS);
  deps.jobs.repeat(NOTIFICATIONS_PRUNE_JOB, NOTIFICATIONS_PRUNE_EVERY_MS);
  await deps.jobs.start();
  deps.outbox.startSweeper(deps.config.OUTBOX_SWEEP_MS);
}
