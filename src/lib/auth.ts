import type { AccessTokens, Principal } from './tokens.js';

/** Whether a session is still live. The accounts module answers it from its session store. */
export interface SessionCheck {
  isActive(principal: Principal): Promise<boolean>;
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
      return (await sessions.isActive(principal)) ? principal : null;
    },
  };
}

/** Cookie names: the `__Host-` prefix pins the cookie to our host and path / whenever it is Secure. */
export function accessCookieName(secure: boolean): string {
  return secure ? '__Host-taskmaa_at' : 'taskmaa_at';
}
