import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Config } from '../../config.js';
import type { Clock } from '../../lib/clock.js';
import type { Db, Queryable } from '../../lib/db.js';
import { AppError, conflict, invalid, notFound } from '../../lib/errors.js';
import { UUID } from '../../lib/formats.js';
import { ImageError, imageEnd, reencode } from '../../lib/images.js';
import type { Outbox } from '../../lib/outbox.js';
import { type FileStorage, newKey } from '../../lib/storage.js';
import { PURGE_FILES_JOB } from '../users/users.data.js';
import { carriedPayload, pdfProblem, sniffMedia } from './media.content.js';
import type { MediaMime, MediaRow } from './media.repo.js';
import * as repo from './media.repo.js';
import type { MediaView } from './media.schemas.js';

export const MEDIA_MAX_BYTES = 10 * 1024 * 1024;
/** Files nobody attached to a message within this long are deleted by the prune job. */
export const UNATTACHED_TTL_MS = 24 * 3600_000;
const FOLDER = 'media';
const MAX_SIDE = 2048;
const PRUNE_BATCH = 500;
const PRUNE_MAX_BATCHES = 20;

/**
 * How a stored file is shown to clients (the url needs the same sign-in to fetch). `mime` is a
 * column of the media table, whose CHECK allows only MediaMime values.
 */
export function mediaView(
  row: { id: string; mime: string; bytes: number; width: number | null; height: number | null },
  publicUrl: string,
): MediaView {
  return {
    id: row.id,
    url: `${publicUrl}/v1/media/${row.id}`,
    mime: row.mime as MediaMime,
    bytes: row.bytes,
    ...(row.width !== null ? { width: row.width } : {}),
    ...(row.height !== null ? { height: row.height } : {}),
  };
}

interface Prepared {
  data: Buffer;
  mime: MediaMime;
  ext: string;
  width: number | null;
  height: number | null;
}

const unsafe = () =>
  invalid('unsafe_media', 'That file also carries content of another kind (markup, scripts, an archive).');
const invalidImage = () => invalid('invalid_image', 'That image could not be read.');

export type MediaService = ReturnType<typeof makeMediaService>;

export function makeMediaService(deps: {
  db: Db;
  clock: Clock;
  outbox: Outbox;
  storage: FileStorage;
  log: Logger;
  config: Pick<Config, 'PUBLIC_URL' | 'MEDIA_QUOTA_BYTES'>;
}) {
  const { db, clock, outbox, storage, log, config } = deps;
  const view = (row: MediaRow) => mediaView(row, config.PUBLIC_URL);

  /**
   * What will be stored: images decoded and re-encoded by us (JPEG, PNG and WebP as WebP, GIF as
   * GIF, animations kept), PDFs as uploaded once they pass their checks. The type comes from the
   * content only. Refusals are logged with their reason, never with content.
   */
  async function prepare(upload: Buffer): Promise<Prepared> {
    const kind = sniffMedia(upload);
    if (!kind) {
      throw new AppError(415, 'unsupported_media', 'Send a JPEG, PNG, WebP or GIF image, or a PDF.');
    }
    const refuse = (reason: string, error: AppError) => {
      log.info({ kind, reason, bytes: upload.length }, 'upload refused');
      return error;
    };
    const payload = carriedPayload(upload, kind);
    if (payload) throw refuse(payload, unsafe());

    if (kind === 'pdf') {
      const problem = pdfProblem(upload);
      if (problem === 'malformed') {
        throw refuse(problem, invalid('invalid_pdf', 'That PDF is truncated or malformed.'));
      }
      if (problem) throw refuse(problem, unsafe());
      return { data: upload, mime: 'application/pdf', ext: 'pdf', width: null, height: null };
    }

    const end = imageEnd(upload, kind);
    if (end === null) throw refuse('truncated', invalidImage());
    if (end < upload.length) throw refuse('trailing_data', unsafe());
    const gif = kind === 'gif';
    try {
      const image = await reencode(upload, {
        maxSide: MAX_SIDE,
        format: gif ? 'gif' : 'webp',
        animated: gif || kind === 'webp',
      });
      return {
        data: image.data,
        mime: gif ? 'image/gif' : 'image/webp',
        ext: gif ? 'gif' : 'webp',
        width: image.width,
        height: image.height,
      };
    } catch (err) {
      if (err instanceof ImageError) throw refuse('undecodable', invalidImage());
      throw err;
    }
  }

  return {
    /**
     * Checks, re-encodes and stores an upload under a server-chosen key, within the owner's quota.
     * The row is written first and the file second: a crash in between leaves a row without a file
     * (served as 404, pruned after a day), never a file nobody can find.
     */
    async upload(userId: string, upload: Buffer): Promise<MediaView> {
      const file = await prepare(upload);
      const row = await db.tx(async (tx) => {
        if (!(await repo.lockOwner(tx, userId))) throw notFound('user');
        const used = await repo.storedBytes(tx, userId);
        if (used + file.data.length > config.MEDIA_QUOTA_BYTES) {
          throw conflict(
            'media_quota_exceeded',
            `Your files use ${used} of ${config.MEDIA_QUOTA_BYTES} bytes; delete messages with files to make room.`,
          );
        }
        return repo.insertMedia(tx, {
          id: randomUUID(),
          ownerId: userId,
          storageKey: newKey(FOLDER, file.ext),
          mime: file.mime,
          bytes: file.data.length,
          width: file.width,
          height: file.height,
          createdAt: clock.now(),
        });
      });
      try {
        await storage.put(row.storageKey, file.data);
      } catch (err) {
        await repo.deleteMedia(db, row.id).catch(() => {});
        throw err;
      }
      // The account may have been deleted meanwhile, its purge job already run: leave nothing.
      if (!(await repo.exists(db, row.id))) {
        await storage.delete(row.storageKey);
        throw notFound('user');
      }
      log.info({ mediaId: row.id, mime: row.mime, bytes: row.bytes }, 'media stored');
      return view(row);
    },

    /** The file for someone who may see it; anyone else, or an id that is not one, gets 404. */
    async read(userId: string, id: string): Promise<{ mime: MediaMime; data: Buffer }> {
      if (!UUID.test(id)) throw notFound('media');
      const row = await repo.findVisible(db, id.toLowerCase(), userId);
      const data = row ? await storage.get(row.storageKey) : null;
      if (!row || !data) throw notFound('media');
      return { mime: row.mime, data };
    },

    /**
     * Inside a message send's transaction: the caller's own file, locked until commit, that no
     * message carries yet. Foreign or unknown → 404; already in a message → 409 media_attached.
     */
    async claim(q: Queryable, userId: string, mediaId: string): Promise<MediaView> {
      if (!UUID.test(mediaId)) throw notFound('media');
      const row = await repo.findOwnedForUpdate(q, mediaId.toLowerCase(), userId);
      if (!row) throw notFound('media');
      if (await repo.isAttached(q, row.id)) {
        throw conflict('media_attached', 'That file is already in a message; upload it again.');
      }
      return view(row);
    },

    /**
     * Inside the transaction deleting a message for everyone: the row goes and the file is purged by
     * a job after commit. The message's media_id becomes NULL through the foreign key, so the
     * message must already be marked deleted (or keep a body) when this runs.
     */
    async discard(q: Queryable, mediaId: string): Promise<void> {
      if (!UUID.test(mediaId)) return;
      const key = await repo.deleteMedia(q, mediaId.toLowerCase());
      if (key) await outbox.add(q, PURGE_FILES_JOB, { keys: [key] });
    },

    /**
     * Account deletion: the storage keys of every file of the user, for the caller's purge job (the
     * rows cascade with the user). Uploads of the user wait for this transaction, so none slips by.
     */
    async forgetUser(q: Queryable, userId: string): Promise<string[]> {
      await repo.lockOwner(q, userId);
      return repo.keysOf(q, userId);
    },

    /** The account export's part: what the user uploaded (metadata; the files are in their chats). */
    async exportFor(userId: string) {
      const rows = await repo.listOwned(db, userId);
      return rows.map((r) => ({
        id: r.id,
        mime: r.mime,
        bytes: r.bytes,
        width: r.width,
        height: r.height,
        createdAt: r.createdAt.toISOString(),
      }));
    },

    /**
     * Deletes files never attached to a message within UNATTACHED_TTL_MS, a batch per transaction;
     * their files are purged by the purge job. Returns how many went.
     */
    async prune(): Promise<number> {
      const before = new Date(clock.now().getTime() - UNATTACHED_TTL_MS);
      let pruned = 0;
      for (let batch = 0; batch < PRUNE_MAX_BATCHES; batch++) {
        const { locked, keys } = await db.tx(async (tx) => {
          const ids = await repo.lockUnattached(tx, before, PRUNE_BATCH);
          const gone = ids.length ? await repo.deleteUnattached(tx, ids) : [];
          if (gone.length) await outbox.add(tx, PURGE_FILES_JOB, { keys: gone });
          return { locked: ids.length, keys: gone };
        });
        pruned += keys.length;
        if (locked < PRUNE_BATCH) break;
      }
      return pruned;
    },
  };
}
