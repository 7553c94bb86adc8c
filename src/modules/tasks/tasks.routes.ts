import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Deps } from '../../deps.js';
import { signedIn } from '../../http/auth.js';
import { IdempotencyHeaders, idempotencyKey, sendOutcome } from '../../http/idempotency.js';
import { problemResponse } from '../../http/problem.js';
import { NoContent } from '../../http/schemas.js';
import {
  CreateTaskBody,
  ListTasksQuery,
  Task,
  TaskList,
  TaskParams,
  UpdateTaskBody,
} from './tasks.schemas.js';

const tags = ['tasks'];
const notMine = problemResponse('No such task of mine (unknown, malformed or someone else’s id).');
const keyMismatch = problemResponse('This Idempotency-Key was used for a different request.');

export const tasksRoutes =
  (deps: Deps): FastifyPluginAsyncTypebox =>
  async (app) => {
    const { tasks } = deps;

    app.post(
      '/v1/tasks',
      {
        schema: {
          operationId: 'createTask',
          summary: 'Create a task (Idempotency-Key supported)',
          tags,
          headers: IdempotencyHeaders,
          body: CreateTaskBody,
          response: { 201: Task, 422: keyMismatch },
        },
      },
      async (request, reply) =>
        sendOutcome(
          reply,
          await tasks.create(signedIn(request).userId, request.body, idempotencyKey(request)),
        ),
    );

    app.get(
      '/v1/tasks',
      {
        schema: {
          operationId: 'listTasks',
          summary: 'My tasks, filtered and sorted, a page at a time',
          tags,
          querystring: ListTasksQuery,
          response: { 200: TaskList },
        },
      },
      async (request) => tasks.list(signedIn(request).userId, request.query),
    );

    app.get(
      '/v1/tasks/:id',
      {
        schema: {
          operationId: 'getTask',
          summary: 'One of my tasks',
          tags,
          params: TaskParams,
          response: { 200: Task, 404: notMine },
        },
      },
      async (request) => tasks.get(signedIn(request).userId, request.params.id),
    );

    app.patch(
      '/v1/tasks/:id',
      {
        schema: {
          operationId: 'updateTask',
          summary: 'Change a task’s title, description, priority, due date or tags',
          tags,
          params: TaskParams,
          body: UpdateTaskBody,
          response: { 200: Task, 404: notMine },
        },
      },
      async (request) => tasks.update(signedIn(request).userId, request.params.id, request.body),
    );

    app.delete(
      '/v1/tasks/:id',
      {
        schema: {
          operationId: 'deleteTask',
          summary: 'Delete a task; points it earned stay earned',
          tags,
          params: TaskParams,
          response: { 204: NoContent, 404: notMine },
        },
      },
      async (request, reply) => {
        await tasks.remove(signedIn(request).userId, request.params.id);
        return reply.code(204).send(null);
      },
    );

    app.post(
      '/v1/tasks/:id/complete',
      {
        schema: {
          operationId: 'completeTask',
          summary: 'Mark a task done and earn its points (once per task); a done task is returned as is',
          tags,
          headers: IdempotencyHeaders,
          params: TaskParams,
          response: { 200: Task, 404: notMine, 422: keyMismatch },
        },
      },
      async (request, reply) =>
        sendOutcome(
          reply,
          await tasks.complete(signedIn(request).userId, request.params.id, idempotencyKey(request)),
        ),
    );

    app.post(
      '/v1/tasks/:id/reopen',
      {
        schema: {
          operationId: 'reopenTask',
          summary: 'Mark a done task open again (points stay); an open task is returned as is',
          tags,
          params: TaskParams,
          response: { 200: Task, 404: notMine },
        },
      },
      async (request) => tasks.reopen(signedIn(request).userId, request.params.id),
    );
  };
