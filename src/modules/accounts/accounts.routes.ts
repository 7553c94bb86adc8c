import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type as T } from '@sinclair/typebox';
import type { FastifyRequest } from 'fastify';
import type { Deps } from '../../deps.js';
import {
  clearAuthCookies,
  refreshCookieName,
  requireAllowedOrigin,
  setAuthCookies,
  signedIn,
} from '../../http/auth.js';
import { problemResponse } from '../../http/problem.js';
import { emptyBodyIsObject, NoContent } from '../../http/schemas.js';
import { AppError, invalid, notFound, unauthorized } from '../../lib/errors.js';
import {
  Accepted,
  AuthResult,
  ChangePasswordBody,
  EmailBody,
  LoginBody,
  Me,
  RefreshBody,
  RegisterBody,
  ResetBody,
  SessionList,
  SessionParams,
  TokenBody,
  UpdateMeBody,
} from './accounts.schemas.js';
import { AVATAR_MAX_BYTES } from './accounts.service.js';

const REFRESH_COOKIE_MAX_AGE = 30 * 86400;
const tags = ['accounts'];

// Per-IP budgets, checked before the body is even read; login keeps half its budget when Redis is
// down (never fails open). Per-account budgets live in the service.
const perIp = {
  register: { max: 10, windowMs: 3600_000, scope: 'register' },
  login: { max: 20, windowMs: 60_000, scope: 'login', onStoreFailure: 0.5 },
  refresh: { max: 60, windowMs: 60_000, scope: 'refresh' },
  mail: { max: 5, windowMs: 3600_000, scope: 'mail', onStoreFailure: 0.5 },
  token: { max: 20, windowMs: 3600_000, scope: 'mail-token', onStoreFailure: 0.5 },
};

const context = (request: FastifyRequest) => ({
  ip: request.ip,
  userAgent: String(request.headers['user-agent'] ?? ''),
});

export const accountsRoutes =
  (deps: Deps): FastifyPluginAsyncTypebox =>
  async (app) => {
    const { accounts, config } = deps;

    app.post(
      '/v1/auth/register',
      {
        config: { auth: 'none', rateLimit: perIp.register },
        schema: {
          operationId: 'register',
          summary: 'Create an account; a verification mail is queued',
          tags,
          body: RegisterBody,
          response: { 201: Me, 409: problemResponse('username_taken or email_taken.') },
        },
      },
      async (request, reply) => reply.code(201).send(await accounts.register(request.body)),
    );

    app.post(
      '/v1/auth/verify-email',
      {
        config: { auth: 'none', rateLimit: perIp.token },
        schema: {
          operationId: 'verifyEmail',
          summary: 'Confirm an email address with the token from the mail',
          tags,
          body: TokenBody,
          response: { 204: NoContent },
        },
      },
      async (request, reply) => {
        await accounts.verifyEmail(request.body.token);
        return reply.code(204).send(null);
      },
    );

    app.post(
      '/v1/auth/resend-verification',
      {
        config: { auth: 'none', rateLimit: perIp.mail },
        schema: {
          operationId: 'resendVerification',
          summary: 'Send the verification mail again (always 202)',
          tags,
          body: EmailBody,
          response: { 202: Accepted },
        },
      },
      async (request, reply) => {
        await accounts.resendVerification(request.body.email);
        return reply.code(202).send({ status: 'accepted' });
      },
    );

    app.post(
      '/v1/auth/login',
      {
        config: { auth: 'none', rateLimit: perIp.login },
        schema: {
          operationId: 'login',
          summary: 'Sign in with email or username; returns tokens and sets cookies',
          tags,
          body: LoginBody,
          response: {
            200: AuthResult,
            401: problemResponse(
              'invalid_credentials (the same answer for an unknown login and a wrong password).',
            ),
          },
        },
      },
      async (request, reply) => {
        const result = await accounts.login(request.body, context(request));
        setAuthCookies(reply, config, result, REFRESH_COOKIE_MAX_AGE);
        return result;
      },
    );

    app.post(
      '/v1/auth/refresh',
      {
        config: { auth: 'none', rateLimit: perIp.refresh },
        preValidation: emptyBodyIsObject,
        schema: {
          operationId: 'refresh',
          summary: 'Trade a refresh token (body or cookie) for new tokens; the old one stops working',
          tags,
          body: RefreshBody,
          response: {
            200: AuthResult,
            401: problemResponse('The refresh token is unknown, expired, revoked or reused.'),
            403: problemResponse('origin_not_allowed: a refresh cookie sent from a foreign Origin.'),
          },
        },
      },
      async (request, reply) => {
        let token = request.body.refreshToken;
        if (!token) {
          token = request.cookies[refreshCookieName(config.isProduction)];
          if (token) requireAllowedOrigin(request, config);
        }
        if (!token) throw unauthorized('invalid_refresh_token', 'Sign in again.');
        const result = await accounts.refresh(token);
        setAuthCookies(reply, config, result, REFRESH_COOKIE_MAX_AGE);
        return result;
      },
    );

    app.post(
      '/v1/auth/logout',
      {
        config: { auth: 'optional' },
        preValidation: emptyBodyIsObject,
        schema: {
          operationId: 'logout',
          summary: 'End this session (named by the access token, or the refresh token) and clear cookies',
          tags,
          body: RefreshBody,
          response: { 204: NoContent },
        },
      },
      async (request, reply) => {
        let refreshToken = request.body.refreshToken;
        if (!request.principal && !refreshToken) {
          refreshToken = request.cookies[refreshCookieName(config.isProduction)];
          if (refreshToken) requireAllowedOrigin(request, config);
        }
        await accounts.logout({ principal: request.principal, ...(refreshToken ? { refreshToken } : {}) });
        clearAuthCookies(reply, config);
        return reply.code(204).send(null);
      },
    );

    app.get(
      '/v1/auth/sessions',
      {
        schema: {
          operationId: 'listSessions',
          summary: 'My signed-in sessions',
          tags,
          response: { 200: SessionList },
        },
      },
      async (request) => accounts.listSessions(signedIn(request)),
    );

    app.delete(
      '/v1/auth/sessions/:id',
      {
        schema: {
          operationId: 'revokeSession',
          summary: 'End one of my sessions; its sockets disconnect at once',
          tags,
          params: SessionParams,
          response: { 204: NoContent, 404: problemResponse('No such session of mine.') },
        },
      },
      async (request, reply) => {
        await accounts.revokeSession(signedIn(request), request.params.id);
        return reply.code(204).send(null);
      },
    );

    app.post(
      '/v1/auth/password/forgot',
      {
        config: { auth: 'none', rateLimit: perIp.mail },
        schema: {
          operationId: 'forgotPassword',
          summary: 'Mail a password reset link (always 202)',
          tags,
          body: EmailBody,
          response: { 202: Accepted },
        },
      },
      async (request, reply) => {
        await accounts.forgotPassword(request.body.email);
        return reply.code(202).send({ status: 'accepted' });
      },
    );

    app.post(
      '/v1/auth/password/reset',
      {
        config: { auth: 'none', rateLimit: perIp.token },
        schema: {
          operationId: 'resetPassword',
          summary: 'Set a new password with the token from the mail; ends every session',
          tags,
          body: ResetBody,
          response: { 204: NoContent },
        },
      },
      async (request, reply) => {
        await accounts.resetPassword(request.body.token, request.body.password);
        return reply.code(204).send(null);
      },
    );

    app.post(
      '/v1/auth/password/change',
      {
        schema: {
          operationId: 'changePassword',
          summary: 'Change my password; ends every other session',
          tags,
          body: ChangePasswordBody,
          response: { 204: NoContent },
        },
      },
      async (request, reply) => {
        await accounts.changePassword(signedIn(request), request.body.currentPassword, request.body.password);
        return reply.code(204).send(null);
      },
    );

    app.get(
      '/v1/me',
      { schema: { operationId: 'getMe', summary: 'My account and settings', tags, response: { 200: Me } } },
      async (request) => accounts.getMe(signedIn(request).userId),
    );

    app.patch(
      '/v1/me',
      {
        schema: {
          operationId: 'updateMe',
          summary: 'Change my profile and settings',
          tags,
          body: UpdateMeBody,
          response: { 200: Me },
        },
      },
      async (request) => accounts.updateMe(signedIn(request).userId, request.body),
    );

    app.put(
      '/v1/me/avatar',
      {
        config: {
          multipart: { maxBytes: AVATAR_MAX_BYTES },
          rateLimit: { max: 20, windowMs: 3600_000, scope: 'avatar' },
        },
        schema: {
          operationId: 'setAvatar',
          summary: 'Upload my avatar (PNG, JPEG or WebP ≤ 5 MB in the field `file`); stored re-encoded',
          tags,
          response: { 200: Me },
        },
      },
      async (request) => {
        if (!request.isMultipart()) {
          throw new AppError(
            415,
            'unsupported_media_type',
            'Send multipart/form-data with the image in the field `file`.',
          );
        }
        const part = await request.file({
          limits: { fileSize: AVATAR_MAX_BYTES, files: 1, fields: 0, parts: 1 },
        });
        if (part?.fieldname !== 'file') throw invalid('file_required', 'Send the image in the field `file`.');
        return accounts.setAvatar(signedIn(request).userId, await part.toBuffer());
      },
    );

    app.delete(
      '/v1/me/avatar',
      { schema: { operationId: 'deleteAvatar', summary: 'Remove my avatar', tags, response: { 200: Me } } },
      async (request) => accounts.deleteAvatar(signedIn(request).userId),
    );

    app.get(
      '/v1/avatars/:file',
      {
        config: { auth: 'none' },
        schema: {
          operationId: 'getAvatar',
          summary: 'An avatar image (public, immutable)',
          tags,
          params: T.Object(
            { file: T.String({ pattern: '^[0-9a-f-]{36}\\.webp$' }) },
            { additionalProperties: false },
          ),
          response: {
            200: {
              description: 'WebP image.',
              content: { 'image/webp': { schema: T.String({ format: 'binary' }) } },
            },
            404: problemResponse('No such avatar.'),
          },
        },
      },
      async (request, reply) => {
        const image = await accounts.avatar(request.params.file);
        if (!image) throw notFound('avatar');
        // A new upload gets a new name, so a name's bytes never change.
        reply.header('cache-control', 'public, max-age=31536000, immutable');
        reply.header('cross-origin-resource-policy', 'cross-origin');
        // Buffers are sent as they are; the typed reply only knows the JSON-ish schemas.
        return reply.type('image/webp').send(image as never);
      },
    );
  };
