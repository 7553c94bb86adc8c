import type { Deps } from '../../deps.js';
import { defineSocketHandler } from '../../realtime/handlers.js';
import { PingPayload } from './system.schemas.js';

/** `system:ping`: lets clients check the link and measure clock skew against the server. */
export const systemSocketHandlers = (deps: Pick<Deps, 'clock'>) => [
  defineSocketHandler({
    event: 'system:ping',
    payload: PingPayload,
    async handle(_ctx, payload) {
      return {
        serverTime: deps.clock.now().toISOString(),
        ...(payload.echo !== undefined ? { echo: payload.echo } : {}),
      };
    },
  }),
];
