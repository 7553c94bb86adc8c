import { type Static, Type as T } from '@sinclair/typebox';

const strict = { additionalProperties: false } as const;

export const MediaMime = T.Union([
  T.Literal('image/webp'),
  T.Literal('image/gif'),
  T.Literal('application/pdf'),
]);

/** An uploaded file as clients see it; chat messages embed it as `media`. */
export const MediaView = T.Object(
  {
    id: T.String({ format: 'uuid' }),
    url: T.String({
      description: 'Where the file is served; the same sign-in (bearer or cookie) is needed to fetch it.',
    }),
    mime: MediaMime,
    bytes: T.Integer({ minimum: 1, description: 'Size of the stored (re-encoded) file.' }),
    width: T.Optional(T.Integer({ minimum: 1, description: 'Images only: pixels (one frame).' })),
    height: T.Optional(T.Integer({ minimum: 1, description: 'Images only: pixels (one frame).' })),
  },
  { ...strict, $id: 'MediaView' },
);
export type MediaView = Static<typeof MediaView>;

export const MediaParams = T.Object(
  {
    // Any text: an id that is not a UUID is simply not found (404), like a foreign one.
    id: T.String({ description: 'The media id.' }),
  },
  strict,
);
export type MediaParams = Static<typeof MediaParams>;
