import type { Redis } from 'ioredis';
import type { Db } from '../../lib/db.js';
import type { Readiness } from './system.schemas.js';

export interface Lifecycle {
  /** Set once shutdown begins: readiness turns 503 so load balancers stop sending traffic. */
  draining: boolean;
}

export function makeSystemService(deps: { db: Db; redis: Redis | undefined; lifecycle: Lifecycle }) {
  const probe = async (check: () => Promise<unknown>): Promise<'up' | 'down'> => {
    try {
      await withTimeout(check(), 1000);
      return 'up';
    } catch {
      return 'down';
    }
  };
  return {
    async readiness(): Promise<Readiness> {
      const [database, redis] = await Promise.all([
        probe(() => deps.db.ping()),
        deps.redis ? probe(() => (deps.redis as Redis).ping()) : Promise.resolve('not_configured' as const),
      ]);
      const ok = !deps.lifecycle.draining && database === 'up' && redis !== 'down';
      return {
        status: ok ? 'ok' : 'unavailable',
        draining: deps.lifecycle.draining,
        checks: { database, redis },
      };
    },
  };
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('timed out')), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
