import { type Static, Type as T } from '@sinclair/typebox';

export const CheckState = T.Union([T.Literal('up'), T.Literal('down'), T.Literal('not_configured')]);

export const Liveness = T.Object({ status: T.Literal('ok') }, { additionalProperties: false });

export const Readiness = T.Object(
  {
    status: T.Union([T.Literal('ok'), T.Literal('unavailable')]),
    draining: T.Boolean({ description: 'True once shutdown has begun.' }),
    checks: T.Object({ database: CheckState, redis: CheckState }, { additionalProperties: false }),
  },
  { additionalProperties: false },
);
export type Readiness = Static<typeof Readiness>;

export const PingPayload = T.Object(
  { echo: T.Optional(T.String({ maxLength: 100 })) },
  { additionalProperties: false },
);
export const Pong = T.Object(
  { serverTime: T.String({ format: 'date-time' }), echo: T.Optional(T.String()) },
  { additionalProperties: false },
);
