import { defineJob } from '../../lib/jobs.js';
import { FriendsNotifyPayload } from './friends.schemas.js';
import { FRIENDS_NOTIFY_JOB, type FriendsService } from './friends.service.js';

export const friendsJobs = (deps: { friends: FriendsService }) => [
  defineJob({
    name: FRIENDS_NOTIFY_JOB,
    payload: FriendsNotifyPayload,
    // A live notice is worth little after a minute: a few quick retries, then it is dropped.
    attempts: 3,
    backoffMs: 1000,
    handler: (payload) => deps.friends.deliver(payload),
  }),
];
