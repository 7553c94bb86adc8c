import type { AccessTokens, Principal } from './tokens.js';

/** Whether a session is still live, and what requests must know of its user. Answered by accounts. */
export interface SessionCheck {
  lookup(principal: Principal): Promise<{ emailVerified: boolean } | null>;
}

export interface Authenticator {
  /** The principal behind an access token, if the token is valid and its session not revoked. */
  authenticate(token: string | undefined): Promise<Principal | null>;
}

export function makeAuthenticator(tokens: AccessTokens, sessions: SessionCheck): Authenticator {
  return {
    async authenticate(token) {
      if (!token) return null;
      const principal = tokens.verify(token);
      if (!principal) return null;
      // Checked on every request and handshake, so a revoked session stops working at once.
      const live = await sessions.lookup(principal);
      return live ? { ...principal, emailVerified: live.emailVerified } : null;
    },
  };
}

/** Cookie names: the `__Host-` prefix pins the cookie to our host and path / whenever it is Secure. */
export function accessCookieName(secure: boolean): string {
  return secure ? '__Host-taskmaa_at' : 'taskmaa_at';
}
