import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Clock } from './clock.js';

/** Who a valid access token speaks for. */
export interface Principal {
  userId: string;
  sessionId: string;
  /** When the access token stops being valid (ms since epoch); sockets disconnect then. */
  expiresAt?: number;
  /** Known once the session is looked up; social features need a verified email. */
  emailVerified?: boolean;
}

export interface AccessTokens {
  sign(principal: Principal): { token: string; expiresIn: number };
  /** Null for anything but a well-formed, correctly signed, unexpired access token for this API. */
  verify(token: string): Principal | null;
}

const ISSUER = 'taskmaa';
const AUDIENCE = 'taskmaa-api';
// Only these header fields are accepted: a token naming its own key (jwk, jku, kid, x5u) or another
// algorithm is refused rather than interpreted.
const HEADER = { alg: 'HS256', typ: 'JWT' } as const;
const HEADER_B64 = Buffer.from(JSON.stringify(HEADER)).toString('base64url');
const MAX_TOKEN_LENGTH = 2048;

const b64json = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

function parseJson(part: string): unknown {
  try {
    return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
}

export function makeAccessTokens(opts: { secret: string; ttlSeconds: number; clock: Clock }): AccessTokens {
  const key = Buffer.from(opts.secret, 'utf8');
  const sign = (data: string) => createHmac('sha256', key).update(data).digest();

  return {
    sign({ userId, sessionId }) {
      const iat = Math.floor(opts.clock.now().getTime() / 1000);
      const body = b64json({
        iss: ISSUER,
        aud: AUDIENCE,
        sub: userId,
        sid: sessionId,
        typ: 'access',
        iat,
        exp: iat + opts.ttlSeconds,
      });
      const data = `${HEADER_B64}.${body}`;
      return { token: `${data}.${sign(data).toString('base64url')}`, expiresIn: opts.ttlSeconds };
    },
    verify(token) {
      if (typeof token !== 'string' || token.length > MAX_TOKEN_LENGTH) return null;
      const parts = token.split('.');
      if (parts.length !== 3) return null;
      const [headerPart, bodyPart, sigPart] = parts as [string, string, string];
      const header = parseJson(headerPart) as Record<string, unknown> | undefined;
      if (!header || typeof header !== 'object') return null;
      const keys = Object.keys(header);
      if (header.alg !== HEADER.alg || (header.typ !== undefined && header.typ !== HEADER.typ)) return null;
      if (keys.some((k) => k !== 'alg' && k !== 'typ')) return null;
      const expected = sign(`${headerPart}.${bodyPart}`);
      const given = Buffer.from(sigPart, 'base64url');
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
      const claims = parseJson(bodyPart) as Record<string, unknown> | undefined;
      if (!claims || typeof claims !== 'object') return null;
      const now = Math.floor(opts.clock.now().getTime() / 1000);
      if (claims.iss !== ISSUER || claims.aud !== AUDIENCE || claims.typ !== 'access') return null;
      if (typeof claims.exp !== 'number' || claims.exp <= now) return null;
      if (typeof claims.iat !== 'number' || claims.iat > now + 60) return null;
      if (typeof claims.sub !== 'string' || typeof claims.sid !== 'string') return null;
      return { userId: claims.sub, sessionId: claims.sid, expiresAt: claims.exp * 1000 };
    },
  };
}
