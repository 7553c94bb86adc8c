import { type Static, Type as T } from '@sinclair/typebox';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { AppError, type FieldError } from '../lib/errors.js';

export const PROBLEM_TYPE = 'application/problem+json';

export const Problem = T.Object(
  {
    type: T.String({ description: 'A URI naming the kind of problem; about:blank or a docs link.' }),
    title: T.String(),
    status: T.Integer(),
    code: T.String({ description: 'Stable snake_case code clients can branch on.' }),
    detail: T.String(),
    instance: T.Optional(T.String({ description: 'The request id, for support.' })),
    errors: T.Optional(
      T.Array(T.Object({ field: T.String(), message: T.String() }, { additionalProperties: false }), {
        description: 'For invalid input: each offending field.',
      }),
    ),
  },
  { $id: 'Problem', additionalProperties: false, description: 'RFC 9457 problem details.' },
);
export type Problem = Static<typeof Problem>;

/** A response entry for OpenAPI and serialization: problem details under their own media type. */
export const problemResponse = (description: string) => ({
  description,
  content: { [PROBLEM_TYPE]: { schema: Problem } },
});

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  408: 'Request Timeout',
  409: 'Conflict',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

export function problem(status: number, code: string, detail: string, extra: Partial<Problem> = {}): Problem {
  return {
    type: 'about:blank',
    title: TITLES[status] ?? 'Error',
    status,
    code,
    detail,
    ...extra,
  };
}

interface AjvError {
  instancePath: string;
  keyword: string;
  message?: string;
  params: Record<string, unknown>;
}

const CONTEXT_NAMES: Record<string, string> = {
  querystring: 'query',
  params: 'params',
  body: 'body',
  headers: 'headers',
};

export function validationFields(context: string, errors: AjvError[]): FieldError[] {
  const base = CONTEXT_NAMES[context] ?? context;
  return errors.map((e) => {
    let path = e.instancePath;
    if (e.keyword === 'required') path += `/${String(e.params.missingProperty)}`;
    if (e.keyword === 'additionalProperties') path += `/${String(e.params.additionalProperty)}`;
    const message =
      e.keyword === 'additionalProperties'
        ? 'is not allowed'
        : e.keyword === 'required'
          ? 'is required'
          : (e.message ?? 'is invalid');
    return { field: `${base}${path}`, message };
  });
}

/** Fastify's own client errors, with the stable codes we promise for them. */
const FASTIFY_CODES: Record<string, [number, string, string]> = {
  FST_ERR_CTP_BODY_TOO_LARGE: [413, 'payload_too_large', 'The request body is too large.'],
  FST_ERR_CTP_INVALID_MEDIA_TYPE: [415, 'unsupported_media_type', 'Send JSON (application/json).'],
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: [400, 'invalid_body', 'Content-Length does not match the body.'],
  FST_ERR_CTP_EMPTY_JSON_BODY: [400, 'invalid_body', 'The JSON body is empty.'],
  FST_ERR_CTP_INVALID_JSON_BODY: [400, 'invalid_json', 'The body is not valid JSON.'],
  FST_ERR_CTP_EMPTY_TYPE: [400, 'invalid_body', 'Content-Type is empty.'],
  FST_ERR_CTP_INVALID_TYPE: [400, 'invalid_body', 'Content-Type is invalid.'],
  FST_REQ_FILE_TOO_LARGE: [413, 'payload_too_large', 'The file is too large.'],
  FST_FILES_LIMIT: [413, 'payload_too_large', 'Send one file.'],
  FST_PARTS_LIMIT: [413, 'payload_too_large', 'Too many parts in the form.'],
  FST_FIELDS_LIMIT: [413, 'payload_too_large', 'Too many fields in the form.'],
  FST_INVALID_MULTIPART_CONTENT_TYPE: [415, 'unsupported_media_type', 'Send multipart/form-data.'],
};

/** Turns anything thrown into problem details; 5xx details never reach the client. */
export function toProblem(err: unknown, request: FastifyRequest): { problem: Problem; retryAfter?: number } {
  const instance = String(request.id);
  if (err instanceof AppError) {
    return {
      problem: problem(err.status, err.code, err.message, {
        instance,
        ...(err.extra.errors ? { errors: err.extra.errors } : {}),
      }),
      ...(err.extra.retryAfterSeconds !== undefined ? { retryAfter: err.extra.retryAfterSeconds } : {}),
    };
  }
  const e = err as FastifyError & { validationContext?: string; validation?: AjvError[] };
  if (e.validation) {
    const errors = validationFields(e.validationContext ?? 'body', e.validation);
    const detail = errors.map((f) => `${f.field} ${f.message}`).join('; ');
    return { problem: problem(400, 'validation_failed', detail, { instance, errors }) };
  }
  const known = e.code ? FASTIFY_CODES[e.code] : undefined;
  if (known) return { problem: problem(known[0], known[1], known[2], { instance }) };
  // busboy (under @fastify/multipart) throws plain errors on a form it cannot read.
  if (/^Multipart: |Malformed part header|Unexpected end of form/i.test(e.message ?? '')) {
    return {
      problem: problem(400, 'invalid_multipart', 'The multipart form could not be read.', { instance }),
    };
  }
  // secure-json-parse and other parsers signal a bad body with a 400 and no code of ours.
  if (e.statusCode === 400 && /JSON|prototype|constructor/i.test(e.message ?? '')) {
    return { problem: problem(400, 'invalid_json', 'The body is not valid JSON.', { instance }) };
  }
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    const code = (e.code ?? 'bad_request').replace(/^FST_ERR_/, '').toLowerCase();
    return {
      problem: problem(e.statusCode, code, e.message || 'The request was not accepted.', { instance }),
    };
  }
  return {
    problem: problem(500, 'internal_error', 'Something went wrong on our side; it has been logged.', {
      instance,
    }),
  };
}

export function sendProblem(reply: FastifyReply, p: Problem, retryAfter?: number) {
  if (retryAfter !== undefined) reply.header('retry-after', String(Math.max(1, Math.ceil(retryAfter))));
  return reply.code(p.status).type(PROBLEM_TYPE).send(p);
}
