import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type as T } from '@sinclair/typebox';
import type { Deps } from '../../deps.js';
import { signedIn } from '../../http/auth.js';
import { Badge } from '../users/users.schemas.js';

const tags = ['badges'];
const strict = { additionalProperties: false } as const;

const BadgeDef = T.Object(
  {
    code: T.String(),
    name: T.String(),
    description: T.String(),
    icon: T.String({ description: "A key into the clients' icon set." }),
  },
  strict,
);

export const badgesRoutes =
  (deps: Deps): FastifyPluginAsyncTypebox =>
  async (app) => {
    app.get(
      '/v1/badges',
      {
        config: { auth: 'none' },
        schema: {
          operationId: 'listBadges',
          summary: 'Every badge there is: name, description, icon key',
          tags,
          response: { 200: T.Object({ items: T.Array(BadgeDef) }, strict) },
        },
      },
      async () => ({ items: deps.badges.catalogue() }),
    );

    app.get(
      '/v1/me/badges',
      {
        schema: {
          operationId: 'listMyBadges',
          summary: 'The badges I earned, oldest first',
          tags,
          response: { 200: T.Object({ items: T.Array(Badge) }, strict) },
        },
      },
      async (request) => ({ items: await deps.badges.of(signedIn(request).userId) }),
    );
  };
