import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type as T } from '@sinclair/typebox';
import type { Deps } from '../../deps.js';
import { signedIn } from '../../http/auth.js';
import { problemResponse } from '../../http/problem.js';
import { AppError, invalid } from '../../lib/errors.js';
import { MediaParams, MediaView } from './media.schemas.js';
import { MEDIA_MAX_BYTES } from './media.service.js';

const tags = ['media'];
// A browser revalidates within the hour, so a deleted message's file stops showing soon after.
const CACHE_SECONDS = 3600;
// Whatever is served can never run as a page of ours: no sniffing, no scripts, no plugins, no framing.
const SANDBOX = "default-src 'none'; frame-ancestors 'none'; sandbox";
const EXTENSIONS = { 'image/webp': 'webp', 'image/gif': 'gif', 'application/pdf': 'pdf' } as const;

export const mediaRoutes =
  (deps: Deps): FastifyPluginAsyncTypebox =>
  async (app) => {
    const { media } = deps;

    app.post(
      '/v1/media',
      {
        config: {
          verified: true,
          multipart: { maxBytes: MEDIA_MAX_BYTES },
          rateLimit: { max: 60, windowMs: 3600_000, scope: 'media-upload' },
        },
        schema: {
          operationId: 'uploadMedia',
          summary:
            'Upload a file for a message (JPEG, PNG, WebP or GIF image, or PDF ≤ 10 MB in the field `file`); images are stored re-encoded',
          tags,
          response: {
            201: MediaView,
            400: problemResponse(
              'No file in the field `file`, or a file that is truncated, malformed, too many pixels, or carries content of another kind (invalid_image, invalid_pdf, unsafe_media).',
            ),
            409: problemResponse('My files would exceed the storage quota (media_quota_exceeded).'),
            415: problemResponse(
              'Not multipart/form-data, or not an image or PDF by its content (unsupported_media).',
            ),
          },
        },
      },
      async (request, reply) => {
        if (!request.isMultipart()) {
          throw new AppError(
            415,
            'unsupported_media_type',
            'Send multipart/form-data with the file in the field `file`.',
          );
        }
        const part = await request.file({
          limits: { fileSize: MEDIA_MAX_BYTES, files: 1, fields: 0, parts: 1 },
        });
        if (part?.fieldname !== 'file') throw invalid('file_required', 'Send the file in the field `file`.');
        const created = await media.upload(signedIn(request).userId, await part.toBuffer());
        return reply.code(201).send(created);
      },
    );

    app.get(
      '/v1/media/:id',
      {
        config: { verified: true },
        schema: {
          operationId: 'getMedia',
          summary:
            'A file, for its uploader and the members who can see a message carrying it (bearer or cookie)',
          tags,
          params: MediaParams,
          response: {
            200: {
              description: 'The stored file; PDFs as an attachment.',
              content: Object.fromEntries(
                Object.keys(EXTENSIONS).map((mime) => [mime, { schema: T.String({ format: 'binary' }) }]),
              ),
            },
            403: problemResponse('email_not_verified.'),
            404: problemResponse('No such file, or not one I can see.'),
          },
        },
      },
      async (request, reply) => {
        const file = await media.read(signedIn(request).userId, request.params.id);
        const name = `${request.params.id.toLowerCase()}.${EXTENSIONS[file.mime]}`;
        reply.header('cache-control', `private, max-age=${CACHE_SECONDS}`);
        reply.header('x-content-type-options', 'nosniff');
        reply.header('content-security-policy', SANDBOX);
        reply.header(
          'content-disposition',
          `${file.mime === 'application/pdf' ? 'attachment' : 'inline'}; filename="${name}"`,
        );
        // Buffers are sent as they are; the typed reply only knows the JSON-ish schemas.
        return reply.type(file.mime).send(file.data as never);
      },
    );
  };
