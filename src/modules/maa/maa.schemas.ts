import { type Static, Type as T } from '@sinclair/typebox';
import { OCCASIONS, TONES } from './maa.lines.js';

const strict = { additionalProperties: false } as const;

export const MAA_LIST_MAX = 100;

export const OccasionSchema = T.Union(
  OCCASIONS.map((o) => T.Literal(o)),
  { description: 'What Maa reacts to.' },
);
export const ToneSchema = T.Union(TONES.map((t) => T.Literal(t)));
export const SourceSchema = T.Union([T.Literal('template'), T.Literal('llm')]);

export const MaaMessage = T.Object(
  {
    occasion: OccasionSchema,
    tone: ToneSchema,
    text: T.String(),
    source: SourceSchema,
  },
  { ...strict, $id: 'MaaMessage' },
);
export type MaaMessage = Static<typeof MaaMessage>;

export const MaaMessageQuery = T.Object(
  {
    occasion: T.Optional(
      T.Union(
        OCCASIONS.map((o) => T.Literal(o)),
        { description: 'Omit to let Maa choose from your day (streak, tasks and hours left, misses).' },
      ),
    ),
  },
  strict,
);
export type MaaMessageQuery = Static<typeof MaaMessageQuery>;

export const MaaHistoryItem = T.Object(
  {
    id: T.String({ format: 'uuid' }),
    occasion: OccasionSchema,
    tone: ToneSchema,
    locale: T.Union([T.Literal('en'), T.Literal('hi')]),
    text: T.String(),
    source: SourceSchema,
    createdAt: T.String({ format: 'date-time' }),
  },
  { ...strict, $id: 'MaaHistoryItem' },
);
export type MaaHistoryItem = Static<typeof MaaHistoryItem>;

export const MaaHistoryQuery = T.Object(
  {
    limit: T.Optional(T.Integer({ minimum: 1, maximum: MAA_LIST_MAX, default: 20 })),
    cursor: T.Optional(
      T.String({
        minLength: 1,
        maxLength: 200,
        pattern: '^[A-Za-z0-9_-]+$',
        description: 'nextCursor of the previous page.',
      }),
    ),
  },
  strict,
);
export type MaaHistoryQuery = Static<typeof MaaHistoryQuery>;

export const MaaHistory = T.Object(
  { items: T.Array(MaaHistoryItem), nextCursor: T.Union([T.String(), T.Null()]) },
  strict,
);
export type MaaHistory = Static<typeof MaaHistory>;
