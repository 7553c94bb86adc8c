import { Type as T } from '@sinclair/typebox';
import type { FastifyRequest } from 'fastify';

/** The 204 response every delete-like route declares. */
export const NoContent = T.Null({ description: 'Done; no body.' });

/** preValidation for routes whose body is optional: a browser may send none at all. */
export const emptyBodyIsObject = async (request: FastifyRequest) => {
  request.body ??= {};
};
