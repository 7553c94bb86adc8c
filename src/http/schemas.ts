import { Type as T } from '@sinclair/typebox';
import type { FastifyRequest } from 'fastify';

// PostgreSQL text cannot hold NUL, so no string that reaches the database may contain one.
export const NO_NUL = '^[^\\u0000]*$';
// Not blank and no NUL. Unambiguous (the leading spaces and the first other character cannot
// overlap), so it is linear even on 100 KB of hostile input. Text checked by it is stored trimmed.
export const NOT_BLANK = '^\\s*[^\\s\\u0000][^\\u0000]*$';

/** The title of a daily or a group task. */
export const Title = T.String({
  minLength: 1,
  maxLength: 200,
  pattern: NOT_BLANK,
  description: 'Not blank; stored trimmed.',
});
export const Description = T.String({ maxLength: 5000, pattern: NO_NUL });

/** The 204 response every delete-like route declares. */
export const NoContent = T.Null({ description: 'Done; no body.' });

/** preValidation for routes whose body is optional: a browser may send none at all. */
export const emptyBodyIsObject = async (request: FastifyRequest) => {
  request.body ??= {};
};
