import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Config } from '../config.js';
import { accessCookieName } from '../lib/auth.js';
import { forbidden, unauthorized } from '../lib/errors.js';
import type { Principal } from '../lib/tokens.js';

export const refreshCookieName = (secure: boolean) => (secure ? '__Host-taskmaa_rt' : 'taskmaa_rt');

// One set of attributes for setting and clearing, so logout clears exactly the cookies login set.
const attributes = (secure: boolean) => ({ httpOnly: true, sameSite: 'lax' as const, secure, path: '/' });

export function setAuthCookies(
  reply: FastifyReply,
  config: Pick<Config, 'isProduction'>,
  tokens: { accessToken: string; expiresIn: number; refreshToken: string },
  refreshMaxAgeSeconds: number,
) {
  const secure = config.isProduction;
  reply.setCookie(accessCookieName(secure), tokens.accessToken, {
    ...attributes(secure),
    maxAge: tokens.expiresIn,
  });
  reply.setCookie(refreshCookieName(secure), tokens.refreshToken, {
    ...attributes(secure),
    maxAge: refreshMaxAgeSeconds,
  });
}

export function clearAuthCookies(reply: FastifyReply, config: Pick<Config, 'isProduction'>) {
  const secure = config.isProduction;
  reply.clearCookie(accessCookieName(secure), attributes(secure));
  reply.clearCookie(refreshCookieName(secure), attributes(secure));
}

/** Cookies ride along on cross-site requests; what a cookie authorises must come from our pages. */
export function requireAllowedOrigin(request: FastifyRequest, config: Pick<Config, 'CORS_ORIGINS'>) {
  const origin = request.headers.origin;
  if (!origin || !config.CORS_ORIGINS.includes(origin)) {
    throw forbidden('origin_not_allowed', 'This request must come from an allowed Origin.');
  }
}

/** The caller of a route whose policy is 'required'. */
export function signedIn(request: FastifyRequest): Principal {
  if (!request.principal) throw unauthorized();
  return request.principal;
}
