import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Deps } from '../../deps.js';
import { clearAuthCookies, signedIn } from '../../http/auth.js';
import { problemResponse } from '../../http/problem.js';
import { NoContent } from '../../http/schemas.js';
import {
  AccountExport,
  DeleteMeBody,
  Profile,
  ProfileParams,
  SearchUsersQuery,
  UserList,
} from './users.schemas.js';

const tags = ['users'];

// Search and profiles need a sign-in but not a verified email: they only read what people chose to
// show, and let a new user find friends while the mail is on its way. Acting on it (requests, blocks)
// needs the verified address. Searching has its own budget against scraping.
const searchBudget = { max: 60, windowMs: 60_000, scope: 'user-search' };

export const usersRoutes =
  (deps: Deps): FastifyPluginAsyncTypebox =>
  async (app) => {
    const { users } = deps;

    app.get(
      '/v1/users',
      {
        config: { rateLimit: searchBudget },
        schema: {
          operationId: 'searchUsers',
          summary: 'Find people by the start of their username or name',
          description:
            'Discoverable people only, never me, nobody I blocked and nobody who blocked me. Ordered by ' +
            'the matched text; use nextCursor with the same q.',
          tags,
          querystring: SearchUsersQuery,
          response: { 200: UserList },
        },
      },
      async (request) => users.search(signedIn(request).userId, request.query),
    );

    app.get(
      '/v1/users/:username',
      {
        schema: {
          operationId: 'getUserProfile',
          summary: 'A person’s profile by username (ignoring case)',
          description:
            'Always id, username, name, avatarUrl and relationship (null on my own profile); about, badges, ' +
            'score and streaks when the profile is public, or friends-only and we are friends, or mine.',
          tags,
          params: ProfileParams,
          response: {
            200: Profile,
            404: problemResponse('No such person, or one of us blocked the other.'),
          },
        },
      },
      async (request) => users.profile(signedIn(request).userId, request.params.username),
    );

    app.get(
      '/v1/me/export',
      {
        config: { rateLimit: { max: 10, windowMs: 3600_000, scope: 'export' } },
        schema: {
          operationId: 'exportMyData',
          summary: 'All of my data as one JSON document',
          tags: ['accounts'],
          response: { 200: AccountExport },
        },
      },
      async (request, reply) => {
        reply.header('content-disposition', 'attachment; filename="taskmaa-export.json"');
        return deps.accountData.exportAccount(signedIn(request).userId);
      },
    );

    app.delete(
      '/v1/me',
      {
        schema: {
          operationId: 'deleteMe',
          summary: 'Delete my account and everything that is mine; needs my password',
          tags: ['accounts'],
          body: DeleteMeBody,
          response: { 204: NoContent },
        },
      },
      async (request, reply) => {
        await deps.accountData.deleteAccount(signedIn(request), request.body.password);
        clearAuthCookies(reply, deps.config);
        return reply.code(204).send(null);
      },
    );
  };
