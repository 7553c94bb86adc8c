import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { makeAccessTokens } from '../src/lib/tokens.js';
import { fakeClock } from './helpers.js';

const secret = 'k'.repeat(40);
const clock = fakeClock();
const tokens = makeAccessTokens({ secret, ttlSeconds: 900, clock });
const principal = { userId: '0192f4a4-0000-7000-8000-000000000001', sessionId: 'sess-1' };

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
const forge = (header: unknown, claims: unknown, key = secret) => {
  const data = `${b64(header)}.${b64(claims)}`;
  return `${data}.${createHmac('sha256', key).update(data).digest('base64url')}`;
};
const now = () => Math.floor(clock.now().getTime() / 1000);
const goodClaims = () => ({
  iss: 'taskmaa',
  aud: 'taskmaa-api',
  sub: principal.userId,
  sid: principal.sessionId,
  typ: 'access',
  iat: now(),
  exp: now() + 900,
});

describe('access tokens', () => {
  it('round-trip a principal with its expiry', () => {
    const { token, expiresIn } = tokens.sign(principal);
    expect(expiresIn).toBe(900);
    expect(tokens.verify(token)).toEqual({ ...principal, expiresAt: (now() + 900) * 1000 });
  });

  it('expire', () => {
    const { token } = tokens.sign(principal);
    const later = makeAccessTokens({
      secret,
      ttlSeconds: 900,
      clock: { now: () => new Date(clock.now().getTime() + 900_000) },
    });
    expect(later.verify(token)).toBeNull();
  });

  it('refuse forgeries and confusions', () => {
    const cases: Record<string, string> = {
      'alg none': `${b64({ alg: 'none', typ: 'JWT' })}.${b64(goodClaims())}.`,
      'alg none, no sig part': `${b64({ alg: 'none' })}.${b64(goodClaims())}`,
      'other key': forge({ alg: 'HS256', typ: 'JWT' }, goodClaims(), 'x'.repeat(40)),
      'HS512 header': forge({ alg: 'HS512', typ: 'JWT' }, goodClaims()),
      'RS256 header': forge({ alg: 'RS256', typ: 'JWT' }, goodClaims()),
      'embedded jwk': forge({ alg: 'HS256', typ: 'JWT', jwk: { kty: 'oct', k: 'AAAA' } }, goodClaims()),
      'kid injection': forge({ alg: 'HS256', typ: 'JWT', kid: '../../dev/null' }, goodClaims()),
      jku: forge({ alg: 'HS256', typ: 'JWT', jku: 'https://evil.test/keys' }, goodClaims()),
      'wrong audience': forge({ alg: 'HS256', typ: 'JWT' }, { ...goodClaims(), aud: 'other' }),
      'wrong issuer': forge({ alg: 'HS256', typ: 'JWT' }, { ...goodClaims(), iss: 'other' }),
      'refresh used as access': forge({ alg: 'HS256', typ: 'JWT' }, { ...goodClaims(), typ: 'refresh' }),
      expired: forge({ alg: 'HS256', typ: 'JWT' }, { ...goodClaims(), exp: now() - 1 }),
      'issued in the future': forge({ alg: 'HS256', typ: 'JWT' }, { ...goodClaims(), iat: now() + 3600 }),
      'no subject': forge({ alg: 'HS256', typ: 'JWT' }, { ...goodClaims(), sub: undefined }),
      'tampered claims': (() => {
        const [h, , s] = tokens.sign(principal).token.split('.');
        return `${h}.${b64({ ...goodClaims(), sub: 'someone-else' })}.${s}`;
      })(),
      garbage: 'not.a.token',
      'too long': `${'a'.repeat(3000)}.b.c`,
    };
    for (const [name, token] of Object.entries(cases)) expect(tokens.verify(token), name).toBeNull();
    expect(
      tokens.verify(forge({ alg: 'HS256', typ: 'JWT' }, goodClaims())),
      'control: a well-formed token',
    ).not.toBeNull();
  });
});
