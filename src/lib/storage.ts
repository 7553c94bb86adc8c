import { randomUUID } from 'node:crypto';
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/**
 * Uploaded files under server-chosen keys (`<folder>/<uuid>.<ext>`); a client's file name never
 * reaches the disk. Local files under DATA_DIR: with several api processes, DATA_DIR must be shared.
 */
export interface FileStorage {
  put(key: string, data: Buffer): Promise<void>;
  get(key: string): Promise<Buffer | null>;
  delete(key: string): Promise<void>;
}

const KEY = /^[a-z]+\/[0-9a-f-]{36}\.[a-z0-9]{2,5}$/;

export const newKey = (folder: string, ext: string) => `${folder}/${randomUUID()}.${ext}`;

export function localStorage(root: string): FileStorage {
  const path = (key: string) => {
    if (!KEY.test(key)) throw new Error(`invalid storage key ${JSON.stringify(key)}`);
    return join(root, key);
  };
  return {
    async put(key, data) {
      const target = path(key);
      mkdirSync(dirname(target), { recursive: true });
      // Written aside and renamed, so a reader never sees half a file.
      const tmp = `${target}.${randomUUID()}.tmp`;
      writeFileSync(tmp, data, { mode: 0o600 });
      renameSync(tmp, target);
    },
    async get(key) {
      if (!KEY.test(key)) return null;
      try {
        return await readFile(join(root, key));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw err;
      }
    },
    async delete(key) {
      rmSync(path(key), { force: true });
    },
  };
}
