import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Deps } from '../../deps.js';
import { signedIn } from '../../http/auth.js';
import { IdempotencyHeaders, idempotencyKey, sendOutcome } from '../../http/idempotency.js';
import { problemResponse } from '../../http/problem.js';
import { NoContent } from '../../http/schemas.js';
import {
  Completion,
  CreateGroupTaskBody,
  GroupTask,
  GroupTaskList,
  GroupTaskParams,
  Invitation,
  InvitationList,
  InvitationPage,
  InvitationParams,
  InviteBody,
  ListGroupTasksQuery,
  ListInvitationsQuery,
  Member,
  MemberList,
  MemberParams,
  SetRoleBody,
  UpdateGroupTaskBody,
} from './groups.schemas.js';

const tags = ['groups'];
const social = { verified: true } as const;
const forbidden = problemResponse(
  'email_not_verified; not_group_owner / not_group_admin / not_member / not_friends (for a group task I can see); or a foreign Origin.',
);
const unknown = problemResponse('No such group task (unknown, malformed, or private and I am not in it).');
const closedOrDue = problemResponse('group_closed, or group_past_due.');
const keyMismatch = problemResponse('This Idempotency-Key was used for a different request.');
const unknownInvitation = problemResponse('No such invitation to me.');

export const groupsRoutes =
  (deps: Deps): FastifyPluginAsyncTypebox =>
  async (app) => {
    const { groups } = deps;

    app.post(
      '/v1/group-tasks',
      {
        config: { ...social, rateLimit: { max: 60, windowMs: 3600_000, scope: 'group-task-create' } },
        schema: {
          operationId: 'createGroupTask',
          summary:
            'Create a group task (I own it and am its first member); invite friends (Idempotency-Key supported)',
          tags,
          headers: IdempotencyHeaders,
          body: CreateGroupTaskBody,
          response: {
            201: GroupTask,
            400: problemResponse('Invalid input, due_in_past, or cannot_invite_self.'),
            403: forbidden,
            422: keyMismatch,
          },
        },
      },
      async (request, reply) =>
        sendOutcome(
          reply,
          await groups.create(signedIn(request).userId, request.body, idempotencyKey(request)),
        ),
    );

    app.get(
      '/v1/group-tasks',
      {
        config: social,
        schema: {
          operationId: 'listGroupTasks',
          summary: 'Group tasks I am in, or public ones to discover, newest first, a page at a time',
          tags,
          querystring: ListGroupTasksQuery,
          response: { 200: GroupTaskList, 400: problemResponse('invalid_cursor.'), 403: forbidden },
        },
      },
      async (request) => groups.list(signedIn(request).userId, request.query),
    );

    app.get(
      '/v1/group-tasks/:id',
      {
        config: social,
        schema: {
          operationId: 'getGroupTask',
          summary: 'A group task I am in, or a public one',
          tags,
          params: GroupTaskParams,
          response: { 200: GroupTask, 403: forbidden, 404: unknown },
        },
      },
      async (request) => groups.get(signedIn(request).userId, request.params.id),
    );

    app.patch(
      '/v1/group-tasks/:id',
      {
        config: social,
        schema: {
          operationId: 'updateGroupTask',
          summary: 'Edit a group task (owner or admin; not after closing)',
          tags,
          params: GroupTaskParams,
          body: UpdateGroupTaskBody,
          response: {
            200: GroupTask,
            400: problemResponse('Invalid input or due_in_past.'),
            403: forbidden,
            404: unknown,
            409: closedOrDue,
          },
        },
      },
      async (request) => groups.update(signedIn(request).userId, request.params.id, request.body),
    );

    app.delete(
      '/v1/group-tasks/:id',
      {
        config: social,
        schema: {
          operationId: 'deleteGroupTask',
          summary: 'Delete a group task (owner)',
          tags,
          params: GroupTaskParams,
          response: { 204: NoContent, 403: forbidden, 404: unknown },
        },
      },
      async (request, reply) => {
        await groups.remove(signedIn(request).userId, request.params.id);
        return reply.code(204).send(null);
      },
    );

    app.post(
      '/v1/group-tasks/:id/invitations',
      {
        config: { ...social, rateLimit: { max: 100, windowMs: 3600_000, scope: 'group-invite' } },
        schema: {
          operationId: 'inviteToGroupTask',
          summary: 'Invite friends to a group task (owner or admin); people already invited are skipped',
          tags,
          params: GroupTaskParams,
          body: InviteBody,
          response: {
            201: InvitationList,
            400: problemResponse('Invalid input or cannot_invite_self.'),
            403: forbidden,
            404: unknown,
            409: closedOrDue,
          },
        },
      },
      async (request, reply) =>
        reply
          .code(201)
          .send(await groups.invite(signedIn(request).userId, request.params.id, request.body.userIds)),
    );

    app.get(
      '/v1/group-invitations',
      {
        config: social,
        schema: {
          operationId: 'listGroupInvitations',
          summary: 'Pending group-task invitations to me, newest first, a page at a time',
          tags,
          querystring: ListInvitationsQuery,
          response: { 200: InvitationPage, 400: problemResponse('invalid_cursor.'), 403: forbidden },
        },
      },
      async (request) => groups.listInvitations(signedIn(request).userId, request.query),
    );

    for (const [verb, status] of [
      ['accept', 'accepted'],
      ['decline', 'declined'],
    ] as const) {
      app.post(
        `/v1/group-invitations/:id/${verb}`,
        {
          config: social,
          schema: {
            operationId: `${verb}GroupInvitation`,
            summary:
              verb === 'accept' ? 'Accept an invitation: join the group task' : 'Decline an invitation',
            tags,
            params: InvitationParams,
            response: {
              200: Invitation,
              403: forbidden,
              404: unknownInvitation,
              409: problemResponse('invitation_answered (otherwise), or group_closed.'),
            },
          },
        },
        async (request) => groups.answer(signedIn(request).userId, request.params.id, status),
      );
    }

    app.post(
      '/v1/group-tasks/:id/join',
      {
        config: social,
        schema: {
          operationId: 'joinGroupTask',
          summary: 'Join a public group task (a member already: answered as is)',
          tags,
          params: GroupTaskParams,
          response: { 200: GroupTask, 403: forbidden, 404: unknown, 409: closedOrDue },
        },
      },
      async (request) => groups.join(signedIn(request).userId, request.params.id),
    );

    app.post(
      '/v1/group-tasks/:id/leave',
      {
        config: social,
        schema: {
          operationId: 'leaveGroupTask',
          summary: 'Leave a group task (an owner hands it to the earliest member, or it goes when empty)',
          tags,
          params: GroupTaskParams,
          response: { 204: NoContent, 403: forbidden, 404: unknown },
        },
      },
      async (request, reply) => {
        await groups.leave(signedIn(request).userId, request.params.id);
        return reply.code(204).send(null);
      },
    );

    app.patch(
      '/v1/group-tasks/:id/members/:userId',
      {
        config: social,
        schema: {
          operationId: 'setGroupMemberRole',
          summary: 'Make a member an admin, or a member again (owner)',
          tags,
          params: MemberParams,
          body: SetRoleBody,
          response: {
            200: Member,
            403: problemResponse(
              'not_group_owner, cannot_change_owner, email_not_verified, or a foreign Origin.',
            ),
            404: problemResponse('No such group task I can see, or no such member in it.'),
          },
        },
      },
      async (request) =>
        groups.setRole(signedIn(request).userId, request.params.id, request.params.userId, request.body.role),
    );

    app.delete(
      '/v1/group-tasks/:id/members/:userId',
      {
        config: social,
        schema: {
          operationId: 'removeGroupMember',
          summary: 'Remove a member (owner or admin; never the owner)',
          tags,
          params: MemberParams,
          response: { 204: NoContent, 403: forbidden, 404: problemResponse('No such group task or member.') },
        },
      },
      async (request, reply) => {
        await groups.removeMember(signedIn(request).userId, request.params.id, request.params.userId);
        return reply.code(204).send(null);
      },
    );

    app.get(
      '/v1/group-tasks/:id/members',
      {
        config: social,
        schema: {
          operationId: 'listGroupMembers',
          summary: 'Members of a group task, earliest joined first',
          tags,
          params: GroupTaskParams,
          response: { 200: MemberList, 403: forbidden, 404: unknown },
        },
      },
      async (request) => groups.members(signedIn(request).userId, request.params.id, 'joined'),
    );

    app.get(
      '/v1/group-tasks/:id/leaderboard',
      {
        config: social,
        schema: {
          operationId: 'groupTaskLeaderboard',
          summary: 'Members by rank, then those not yet done',
          tags,
          params: GroupTaskParams,
          response: { 200: MemberList, 403: forbidden, 404: unknown },
        },
      },
      async (request) => groups.members(signedIn(request).userId, request.params.id, 'rank'),
    );

    app.post(
      '/v1/group-tasks/:id/complete',
      {
        config: social,
        schema: {
          operationId: 'completeGroupTask',
          summary: 'Finish: get my rank (asking again answers the same rank; Idempotency-Key supported)',
          tags,
          headers: IdempotencyHeaders,
          params: GroupTaskParams,
          response: { 200: Completion, 403: forbidden, 404: unknown, 409: closedOrDue, 422: keyMismatch },
        },
      },
      async (request, reply) =>
        sendOutcome(
          reply,
          await groups.complete(signedIn(request).userId, request.params.id, idempotencyKey(request)),
        ),
    );

    app.post(
      '/v1/group-tasks/:id/close',
      {
        config: social,
        schema: {
          operationId: 'closeGroupTask',
          summary: 'Close a group task and pay points by rank (owner; closing twice is harmless)',
          tags,
          params: GroupTaskParams,
          response: { 200: GroupTask, 403: forbidden, 404: unknown },
        },
      },
      async (request) => groups.close(signedIn(request).userId, request.params.id),
    );
  };
