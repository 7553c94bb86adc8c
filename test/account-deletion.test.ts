import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { io as connect, type Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { figure } from './figures.js';
import { aUser, DEFAULT_PASSWORD, eventually, signIn, startTestApp, type TestApp } from './helpers.js';

// G1: deleting a rich account leaves nothing of the user but tombstones, in every table column that
// references users, in Redis and in the upload folder; others' data is unchanged; the token and the
// socket stop at once. Also the export of everything that is theirs.
let t: TestApp;
beforeAll(async () => {
  t = await startTestApp({ listen: true, worker: true, env: { RATE_LIMIT_MULTIPLIER: '1' } });
});
afterAll(() => t?.close());

type Session = Awaited<ReturnType<typeof signIn>>;
const call = (
  method: 'GET' | 'POST' | 'PUT' | 'DELETE',
  url: string,
  s: Session | null,
  payload?: unknown,
  extra: Record<string, string> = {},
) =>
  t.app.inject({
    method,
    url,
    headers: { ...(s ? s.headers : {}), ...extra },
    ...(payload === undefined ? {} : { payload: payload as never }),
  });

async function avatarUpload(s: Session) {
  const res = await upload(s, 'PUT', '/v1/me/avatar');
  expect(res.statusCode).toBe(200);
  return new URL(res.json().avatarUrl).pathname.split('/').pop() as string;
}

async function upload(s: Session, method: 'PUT' | 'POST', url: string) {
  const image = await sharp({ create: { width: 64, height: 64, channels: 3, background: 'orange' } })
    .png()
    .toBuffer();
  const boundary = 'deletion-test-boundary';
  const body = Buffer.concat([
    Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n`,
    ),
    image,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
  return call(method, url, s, body, { 'content-type': `multipart/form-data; boundary=${boundary}` });
}

const mediaFiles = () => readdirSafe(join(t.config.DATA_DIR, 'uploads', 'media'));
function readdirSafe(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir) : [];
}

/** Every (table, column) that references users, read from the catalogue. */
async function userColumns() {
  const { rows } = await t.deps.db.query<{ child: string; column: string }>(
    `SELECT kcu.table_name AS child, kcu.column_name AS column
     FROM information_schema.referential_constraints rc
     JOIN information_schema.key_column_usage kcu ON kcu.constraint_name = rc.constraint_name
     JOIN information_schema.constraint_column_usage ccu ON ccu.constraint_name = rc.unique_constraint_name
     WHERE ccu.table_name = 'users' AND rc.constraint_schema = 'public'`,
  );
  return rows;
}

async function rowsOf(userId: string) {
  const counts: Record<string, number> = {};
  for (const { child, column } of await userColumns()) {
    const { rows } = await t.deps.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM ${child} WHERE ${column} = $1`,
      [userId],
    );
    counts[`${child}.${column}`] = rows[0]?.n ?? 0;
  }
  const users = await t.deps.db.query<{ n: number }>('SELECT count(*)::int AS n FROM users WHERE id = $1', [
    userId,
  ]);
  counts['users.id'] = users.rows[0]?.n ?? 0;
  return counts;
}

describe('account deletion (G1)', () => {
  it('leaves nothing of the user, frees the names, ends tokens and sockets, and keeps others intact', async () => {
    const user = await aUser(t.deps);
    const me = await signIn(t.deps, user.id);
    const friend = await aUser(t.deps);
    const friendSession = await signIn(t.deps, friend.id);
    const asker = await aUser(t.deps);
    const askerSession = await signIn(t.deps, asker.id);
    const stranger = await aUser(t.deps);

    // A rich account: tasks (one done), a daily with a check-in and closed days, friends, requests
    // both ways, a block, an avatar, two sessions and an open socket.
    const task = (await call('POST', '/v1/tasks', me, { title: 'Buy milk', tags: ['home'] })).json();
    await call('POST', `/v1/tasks/${task.id}/complete`, me, {}, { 'idempotency-key': 'deletion-k1' });
    await call('POST', '/v1/tasks', me, { title: 'Second' });
    const daily = (await call('POST', '/v1/dailies', me, { title: 'Stretch' })).json();
    await call('POST', `/v1/dailies/${daily.id}/check-ins`, me, {});
    await t.deps.dailies.closeDays(user.id);
    const req = (await call('POST', '/v1/friend-requests', me, { userId: friend.id })).json();
    expect((await call('POST', `/v1/friend-requests/${req.id}/accept`, friendSession)).statusCode).toBe(200);
    expect((await call('POST', '/v1/friend-requests', askerSession, { userId: user.id })).statusCode).toBe(
      201,
    );
    expect((await call('POST', '/v1/friend-requests', me, { userId: stranger.id })).statusCode).toBe(201);
    expect((await call('POST', '/v1/blocks', me, { userId: asker.id })).statusCode).toBeLessThan(300);
    const avatarFile = await avatarUpload(me);
    // Chat: a direct conversation with messages both ways, one carrying a photo, one hidden for
    // them, and an upload never sent.
    const chat = (await call('POST', '/v1/conversations', me, { userId: friend.id })).json();
    const photo = (await upload(me, 'POST', '/v1/media')).json();
    await upload(me, 'POST', '/v1/media');
    const messages = `/v1/conversations/${chat.id}/messages`;
    expect((await call('POST', messages, me, { clientMessageId: 'c1', body: 'my secret' })).statusCode).toBe(
      201,
    );
    expect((await call('POST', messages, me, { clientMessageId: 'c2', mediaId: photo.id })).statusCode).toBe(
      201,
    );
    const fromFriend = (
      await call('POST', messages, friendSession, { clientMessageId: 'f1', body: 'hi!' })
    ).json();
    expect((await call('DELETE', `${messages}/${fromFriend.id}?scope=me`, me)).statusCode).toBe(204);
    expect(mediaFiles()).toHaveLength(2);
    const second = await signIn(t.deps, user.id);
    const friendTask = (await call('POST', '/v1/tasks', friendSession, { title: 'Friend task' })).json();

    const before = await rowsOf(user.id);
    expect(Object.values(before).reduce((a, b) => a + b, 0)).toBeGreaterThan(10);

    // The export holds all of it.
    const exported = await call('GET', '/v1/me/export', me);
    expect(exported.statusCode).toBe(200);
    const doc = exported.json();
    expect(doc.account).toMatchObject({ id: user.id, username: user.username });
    expect(doc.tasks).toHaveLength(2);
    expect(doc.dailies).toHaveLength(1);
    expect(doc.checkIns).toHaveLength(1);
    expect(doc.scoreEvents.length).toBeGreaterThanOrEqual(2);
    expect(doc.friends).toHaveLength(1);
    expect(doc.friendRequests.length).toBeGreaterThanOrEqual(3);
    expect(doc.blocks).toHaveLength(1);
    expect(doc.groupTasks).toEqual([]);
    expect(doc.groupInvitations).toEqual([]);
    expect(Array.isArray(doc.maaMessages)).toBe(true);
    expect(doc.sessions.length).toBeGreaterThanOrEqual(2);
    expect(doc.messages.map((m: { body: string }) => m.body)).toEqual(['my secret', '']);
    expect(doc.media).toHaveLength(2);
    expect(doc.conversations).toHaveLength(1);
    expect(JSON.stringify(doc)).not.toMatch(/password_?hash|passwordHash|\$argon2/i);

    const socket: Socket = connect(t.url, {
      transports: ['websocket'],
      auth: { token: second.token },
      reconnection: false,
      forceNew: true,
    });
    await new Promise((resolve, reject) => {
      socket.once('system:welcome', resolve);
      socket.once('connect_error', reject);
    });
    const socketGone = new Promise((resolve) => socket.once('disconnect', resolve));

    const wrong = await call('DELETE', '/v1/me', me, { password: 'not it at all' });
    expect(wrong.statusCode).toBe(400);
    expect(wrong.json().code).toBe('current_password_incorrect');
    const files = () =>
      mediaFiles().length + (existsSync(join(t.config.DATA_DIR, 'uploads', 'avatars', avatarFile)) ? 1 : 0);
    const filesBefore = files();
    const deleted = await call('DELETE', '/v1/me', me, { password: DEFAULT_PASSWORD });
    expect(deleted.statusCode).toBe(204);

    await socketGone;
    expect((await call('GET', '/v1/me', me)).statusCode).toBe(401);
    expect((await call('GET', '/v1/tasks', second)).statusCode).toBe(401);

    const after = await rowsOf(user.id);
    const left = Object.entries(after).filter(([, n]) => n > 0);
    console.log(
      `G1: ${Object.keys(after).length} user-referencing columns scanned, ${Object.values(before).reduce((a, b) => a + b, 0)} rows before, ${left.length} columns with rows after`,
    );
    figure(
      'deletion.residual_rows',
      Object.values(after).reduce((a, b) => a + b, 0),
      {
        columns: Object.keys(after).length,
        rowsBefore: Object.values(before).reduce((a, b) => a + b, 0),
      },
    );
    expect(left).toEqual([]);
    expect(
      await t.deps.db
        .query('SELECT 1 FROM score_events WHERE source_key = $1', [task.id])
        .then((r) => r.rows),
    ).toEqual([]);

    // The avatar file is purged by the job.
    await eventually(
      () => expect(existsSync(join(t.config.DATA_DIR, 'uploads', 'avatars', avatarFile))).toBe(false),
      10_000,
    );

    // Their messages stay as tombstones for the friend; the friend's own message is intact; every
    // upload of theirs is purged.
    const seen = (await call('GET', messages, friendSession)).json().items;
    expect(seen.map((m: { senderId: string | null; body: string }) => [m.senderId, m.body])).toEqual([
      [null, ''],
      [null, ''],
      [friend.id, 'hi!'],
    ]);
    expect(
      seen.slice(0, 2).every((m: { deletedAt: string | null; media: unknown }) => m.deletedAt && !m.media),
    ).toBe(true);
    await eventually(() => expect(mediaFiles()).toEqual([]), 10_000);
    figure('deletion.residual_files', files(), { filesBefore });
    expect((await call('GET', `/v1/media/${photo.id}`, friendSession)).statusCode).toBe(404);

    // Nothing in Redis names the user.
    if (t.deps.redis) {
      const keys = await t.deps.redis.keys(`${t.config.REDIS_PREFIX}:*`);
      const theirs = keys.filter((k) =>
        [user.id, user.username.toLowerCase(), user.email.toLowerCase()].some((f) => k.includes(f)),
      );
      expect(theirs).toEqual([]);
      figure('deletion.residual_keys', theirs.length, { keys: keys.length });
    }

    // Others are untouched; the friendship is gone from their side too.
    expect((await call('GET', `/v1/tasks/${friendTask.id}`, friendSession)).statusCode).toBe(200);
    expect((await call('GET', '/v1/friends', friendSession)).json().items).toEqual([]);
    expect((await call('GET', '/v1/me', askerSession)).statusCode).toBe(200);

    // The username and email are free again.
    const again = await call('POST', '/v1/auth/register', null, {
      username: user.username,
      email: user.email,
      password: 'a whole new life',
    });
    expect(again.statusCode).toBe(201);
  });

  it('needs the password, and a signed-in caller', async () => {
    expect((await call('DELETE', '/v1/me', null, { password: 'x' })).statusCode).toBe(401);
    const s = await signIn(t.deps, (await aUser(t.deps)).id);
    expect((await call('DELETE', '/v1/me', s, {})).statusCode).toBe(400);
    expect(
      (await call('DELETE', '/v1/me', s, { password: DEFAULT_PASSWORD, confirm: true })).statusCode,
    ).toBe(400);
    expect((await call('GET', '/v1/me', s)).statusCode).toBe(200);
  });
});
