/**
 * Personal resources of the authorization matrix (RELIABILITY A1): the owner's tasks, dailies and
 * check-ins, and the routes that act on the caller's own account. A personal route needs a sign-in but
 * not a verified email; anyone else's object is a 404, never a 403 that would confirm it exists.
 *
 * - task, daily, check-in: the owner's, read and changed by each actor.
 * - account: routes whose object is the caller (/v1/me...): each actor must get their own, never the
 *   owner's, so an operation names the body '200 own' only when it is the caller's.
 * - session: the owner's other session, which only the owner may end.
 */
import sharp from 'sharp';
import { DEFAULT_PASSWORD } from '../helpers.js';
import type { Resource, Response, World } from './matrix.js';

const ids = (res: Response) => ((res.json() as { items: { id: string }[] }).items ?? []).map((i) => i.id);
const listedIf = (found: boolean) => (found ? '200 includes' : '200 excludes');
/** Whether a list holds the resource the setup kept under `key`. */
const lists = (key: string) => (res: Response, w: World) => listedIf(ids(res).includes(w.vars[key] ?? ''));

/** '200 own' when the body is about the caller (the row's actor), '200 other' otherwise. */
async function own(w: World, userId: unknown) {
  const me = await w.person(w.actor);
  return userId === me?.userId ? '200 own' : '200 other';
}

/** A one-file multipart body, as a browser would send an avatar. */
async function avatarUpload() {
  const png = await sharp({
    create: { width: 8, height: 8, channels: 3, background: { r: 200, g: 80, b: 40 } },
  })
    .png()
    .toBuffer();
  const boundary = 'authzmatrixboundary';
  const body = Buffer.concat([
    Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n`,
    ),
    png,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
  return { body, headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } };
}

export const personalResources: Record<string, Resource> = {
  /** An open task of the owner's. */
  task: {
    async setup(w) {
      const owner = await w.someone('owner');
      w.vars.taskId = (await w.deps.tasks.create(owner.userId, { title: 'Mine' })).body.id;
    },
    operations: {
      create: { request: () => ({ method: 'POST', url: '/v1/tasks', body: { title: 'Theirs' } }) },
      list: { request: () => ({ method: 'GET', url: '/v1/tasks' }), success: lists('taskId') },
      read: { request: (w) => ({ method: 'GET', url: `/v1/tasks/${w.vars.taskId}` }) },
      edit: {
        request: (w) => ({ method: 'PATCH', url: `/v1/tasks/${w.vars.taskId}`, body: { title: 'X' } }),
      },
      complete: { request: (w) => ({ method: 'POST', url: `/v1/tasks/${w.vars.taskId}/complete` }) },
      reopen: { request: (w) => ({ method: 'POST', url: `/v1/tasks/${w.vars.taskId}/reopen` }) },
      delete: { request: (w) => ({ method: 'DELETE', url: `/v1/tasks/${w.vars.taskId}` }) },
    },
  },

  /** A daily of the owner's, due every day, checked in today (so there is a check-in to undo). */
  daily: {
    async setup(w) {
      const owner = await w.someone('owner');
      const daily = await w.deps.dailies.create(owner.userId, { title: 'Pray' });
      w.vars.dailyId = daily.id;
      const checkIn = await w.deps.dailies.checkIn(owner.userId, daily.id, undefined);
      w.vars.date = checkIn.body.date;
    },
    operations: {
      create: { request: () => ({ method: 'POST', url: '/v1/dailies', body: { title: 'Theirs' } }) },
      list: { request: () => ({ method: 'GET', url: '/v1/dailies' }), success: lists('dailyId') },
      today: { request: () => ({ method: 'GET', url: '/v1/dailies/today' }), success: lists('dailyId') },
      read: { request: (w) => ({ method: 'GET', url: `/v1/dailies/${w.vars.dailyId}` }) },
      edit: {
        request: (w) => ({ method: 'PATCH', url: `/v1/dailies/${w.vars.dailyId}`, body: { title: 'X' } }),
      },
      history: { request: (w) => ({ method: 'GET', url: `/v1/dailies/${w.vars.dailyId}/history` }) },
      delete: { request: (w) => ({ method: 'DELETE', url: `/v1/dailies/${w.vars.dailyId}` }) },
      'check in': {
        request: (w) => ({ method: 'POST', url: `/v1/dailies/${w.vars.dailyId}/check-ins`, body: {} }),
      },
      'undo the check-in': {
        request: (w) => ({ method: 'DELETE', url: `/v1/dailies/${w.vars.dailyId}/check-ins/${w.vars.date}` }),
      },
    },
  },

  /** The caller's own account: what each actor reads or changes must be their own. */
  account: {
    operations: {
      read: {
        request: () => ({ method: 'GET', url: '/v1/me' }),
        success: (res, w) => own(w, (res.json() as { id: string }).id),
      },
      edit: {
        request: () => ({ method: 'PATCH', url: '/v1/me', body: { name: 'Renamed' } }),
        success: (res, w) => own(w, (res.json() as { id: string }).id),
      },
      stats: { request: () => ({ method: 'GET', url: '/v1/me/stats' }) },
      export: {
        request: () => ({ method: 'GET', url: '/v1/me/export' }),
        success: (res, w) => own(w, (res.json() as { account: { id: string } }).account?.id),
      },
      'set the avatar': {
        request: async () => ({ method: 'PUT', url: '/v1/me/avatar', ...(await avatarUpload()) }),
        success: (res, w) => own(w, (res.json() as { id: string }).id),
      },
      'remove the avatar': {
        request: () => ({ method: 'DELETE', url: '/v1/me/avatar' }),
        success: (res, w) => own(w, (res.json() as { id: string }).id),
      },
      'list sessions': { request: () => ({ method: 'GET', url: '/v1/auth/sessions' }) },
      'change the password': {
        request: () => ({
          method: 'POST',
          url: '/v1/auth/password/change',
          body: { currentPassword: DEFAULT_PASSWORD, password: 'a brand new passphrase 2026' },
        }),
      },
      'sign out': { request: () => ({ method: 'POST', url: '/v1/auth/logout', body: {} }) },
      delete: {
        request: () => ({ method: 'DELETE', url: '/v1/me', body: { password: DEFAULT_PASSWORD } }),
      },
      "Maa's word": { request: () => ({ method: 'GET', url: '/v1/maa/message' }) },
      "Maa's messages": { request: () => ({ method: 'GET', url: '/v1/maa/messages' }) },
    },
  },

  /**
   * The caller's own connection: a ping, and unwatching a board (watching is a board's own row).
   * Neither names an object; only who may hold a connection at all is at stake.
   */
  connection: {
    operations: {
      ping: { request: () => ({ event: 'system:ping', payload: { echo: 'hi' } }) },
      'unwatch a board': {
        request: () => ({ event: 'leaderboard:unwatch', payload: { board: 'global:all' } }),
      },
    },
  },

  /** A second session of the owner's (another device). */
  session: {
    async setup(w) {
      const owner = await w.someone('owner');
      const { rows } = await w.deps.db.query<{ id: string }>(
        'SELECT id FROM sessions WHERE user_id = $1 LIMIT 1',
        [owner.userId],
      );
      w.vars.sessionId = rows[0]?.id ?? '';
    },
    operations: {
      'end it': { request: (w) => ({ method: 'DELETE', url: `/v1/auth/sessions/${w.vars.sessionId}` }) },
    },
  },
};
