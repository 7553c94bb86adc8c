import { defineJob } from '../../lib/jobs.js';
import { CloseDuePayload } from './groups.schemas.js';
import { CLOSE_DUE_JOB, type GroupsService } from './groups.service.js';

export const groupsJobs = (deps: { groups: GroupsService }) => [
  defineJob({
    name: CLOSE_DUE_JOB,
    payload: CloseDuePayload,
    attempts: 10,
    backoffMs: 2000,
    handler: (payload) => deps.groups.closeIfDue(payload),
  }),
];
