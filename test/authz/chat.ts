/**
 * The matrix's chat resources (RELIABILITY A1, A4, A5): conversations, messages and media, over HTTP
 * and through a real socket.io client. Only how each resource is built and requested lives here; who
 * gets what is in the table, test/authz/matrix.ts.
 *
 * Every setup goes through the services (as the routes would), so conversations, memberships and
 * cursors are the real ones: a direct conversation is opened by the owner with the friend, and a group
 * conversation is the one a group task gets when it is made. Each has a message from the owner.
 */

import { randomBytes, randomUUID } from 'node:crypto';
import sharp from 'sharp';
import type { Operation, Resource, Response, World } from './matrix.js';

/** A 4×4 PNG, made once: uploads are re-encoded, so any real image does. */
let pngOnce: Promise<Buffer> | undefined;
const png = () => {
  pngOnce ??= sharp({ create: { width: 4, height: 4, channels: 3, background: '#c85028' } })
    .png()
    .toBuffer();
  return pngOnce;
};

function multipart(data: Buffer) {
  const boundary = `----authz${randomBytes(8).toString('hex')}`;
  const head = `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n`;
  return {
    body: Buffer.concat([Buffer.from(head), data, Buffer.from(`\r\n--${boundary}--\r\n`)]),
    headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
  };
}

const vars = (w: World, name: string): string => {
  const v = w.vars[name];
  if (v === undefined) throw new Error(`The setup kept no ${name}`);
  return v;
};

/** The owner's message (messageId), carrying mediaId if given; the other side's (otherMessageId) if asked. */
async function converse(w: World, other: string, o: { mediaId?: string; reply?: boolean }) {
  const id = vars(w, 'conversationId');
  const owner = await w.someone('owner');
  const mine = await w.deps.chat.send(owner.userId, id, {
    clientMessageId: 'setup-owner',
    body: 'Namaste',
    ...(o.mediaId ? { mediaId: o.mediaId } : {}),
  });
  w.vars.messageId = mine.message.id;
  if (!o.reply) return;
  const them = await w.someone(other);
  w.vars.otherMessageId = (
    await w.deps.chat.send(them.userId, id, { clientMessageId: 'setup-other', body: 'Hi' })
  ).message.id;
}

/**
 * The owner opened the direct conversation with the friend (once: `open direct` finds it) and wrote in
 * it; the friend answered if `reply`.
 */
async function directWithFriend(w: World, o: { mediaId?: boolean; reply?: boolean } = {}) {
  const [owner, friend] = [await w.someone('owner'), await w.someone('friend')];
  w.vars.conversationId = (await w.deps.chat.openDirect(owner.userId, friend.userId)).body.id;
  const media = o.mediaId ? await w.deps.media.upload(owner.userId, await png()) : undefined;
  if (media) w.vars.mediaId = media.id;
  await converse(w, 'friend', {
    ...(media ? { mediaId: media.id } : {}),
    ...(o.reply ? { reply: true } : {}),
  });
}

/**
 * A public group task the owner made and `member` joined: its conversation. Public on purpose: an
 * outsider may know the group task exists, but its conversation (whose id only members are shown)
 * stays 404 to them, like anyone else's.
 */
async function groupWithMember(w: World, o: { mediaId?: boolean } = {}) {
  const [owner, member] = [await w.someone('owner'), await w.someone('member')];
  const made = await w.deps.groups.create(owner.userId, {
    title: 'Race',
    visibility: 'public',
    dueAt: new Date(w.deps.clock.now().getTime() + 3600_000).toISOString(),
  });
  w.vars.groupId = made.body.id;
  await w.deps.groups.join(member.userId, w.vars.groupId);
  const { rows } = await w.deps.db.query<{ id: string }>(
    'SELECT id FROM conversations WHERE group_task_id = $1',
    [w.vars.groupId],
  );
  w.vars.conversationId = (rows[0] as { id: string }).id;
  const media = o.mediaId ? await w.deps.media.upload(owner.userId, await png()) : undefined;
  if (media) w.vars.mediaId = media.id;
  await converse(w, 'member', media ? { mediaId: media.id } : {});
}

// ---------------------------------------------------------------------------------------------------
// Operations

const conversationUrl = (w: World, rest = '') => `/v1/conversations/${vars(w, 'conversationId')}${rest}`;
const json = <T>(res: Response) => res.json() as T;

/** The conversation's HTTP routes; `read` names whether the caller may still write in it. */
const httpOperations: Record<string, Operation> = {
  read: {
    request: (w) => ({ method: 'GET', url: conversationUrl(w) }),
    success: (res) => `200 ${json<{ canSend: boolean }>(res).canSend ? 'can send' : 'read-only'}`,
  },
  list: {
    request: () => ({ method: 'GET', url: '/v1/conversations' }),
    success: (res, w) =>
      json<{ items: { id: string }[] }>(res).items.some((c) => c.id === w.vars.conversationId)
        ? '200 listed'
        : '200 absent',
  },
  history: { request: (w) => ({ method: 'GET', url: conversationUrl(w, '/messages') }) },
  send: {
    request: (w) => ({
      method: 'POST',
      url: conversationUrl(w, '/messages'),
      body: { clientMessageId: `m-${randomUUID()}`, body: 'Hello' },
    }),
  },
  'read cursor': {
    request: (w) => ({ method: 'POST', url: conversationUrl(w, '/read'), body: { seq: 1 } }),
  },
};

/** The socket twins: emitted by the actor on a socket of their own, answered by an ack. */
const socketOperations: Record<string, Operation> = {
  'chat:send': {
    request: (w) => ({
      event: 'chat:send',
      payload: { conversationId: vars(w, 'conversationId'), clientMessageId: randomUUID(), body: 'Hello' },
    }),
  },
  'chat:typing': {
    request: (w) => ({ event: 'chat:typing', payload: { conversationId: vars(w, 'conversationId') } }),
  },
  'chat:read': {
    request: (w) => ({ event: 'chat:read', payload: { conversationId: vars(w, 'conversationId'), seq: 1 } }),
  },
  'chat:delivered': {
    request: (w) => ({
      event: 'chat:delivered',
      payload: { conversationId: vars(w, 'conversationId'), seq: 1 },
    }),
  },
  'chat:sync': {
    request: (w) => ({
      event: 'chat:sync',
      payload: { conversationId: vars(w, 'conversationId'), afterSeq: 0 },
    }),
  },
};

/** Opening "the" direct conversation with someone: the existing one is `200 same`. */
const openDirect = (withRole: string): Operation => ({
  request: async (w) => ({
    method: 'POST',
    url: '/v1/conversations',
    body: { userId: (await w.someone(withRole)).userId },
  }),
  success: (res, w) =>
    `${res.statusCode} ${json<{ id: string }>(res).id === w.vars.conversationId ? 'same' : 'other'}`,
});

const deleteMessage = (which: 'messageId' | 'otherMessageId', scope: 'me' | 'everyone'): Operation => ({
  request: (w) => ({
    method: 'DELETE',
    url: conversationUrl(w, `/messages/${vars(w, which)}?scope=${scope}`),
  }),
});

const readMedia = (which: 'mediaId' | 'unattachedId'): Operation => ({
  request: (w) => ({ method: 'GET', url: `/v1/media/${vars(w, which)}` }),
});

const pick = (ops: Record<string, Operation>, names: string[]) =>
  Object.fromEntries(names.map((n) => [n, ops[n] as Operation]));

// ---------------------------------------------------------------------------------------------------
// Resources

export const chatResources: Record<string, Resource> = {
  /** The owner and the friend, with the owner's message. */
  'direct conversation': {
    setup: (w) => directWithFriend(w),
    operations: { ...httpOperations, 'open direct': openDirect('owner'), ...socketOperations },
  },
  /**
   * The same, after the owner blocked the friend: the owner's side of an ended friendship (the other
   * side is the `blocked friend` actor on `direct conversation`). Unfriending ends it the same way.
   */
  'direct conversation (owner blocked the friend)': {
    async setup(w) {
      await directWithFriend(w);
      await w.deps.friends.block((await w.someone('owner')).userId, (await w.someone('friend')).userId);
    },
    operations: {
      ...pick(httpOperations, ['read', 'list', 'history', 'send', 'read cursor']),
      'open direct with the friend': openDirect('friend'),
      ...pick(socketOperations, ['chat:send', 'chat:typing', 'chat:sync']),
    },
  },
  /** The conversation of the owner's public group task, which `member` joined; the owner's message. */
  'group conversation': {
    setup: (w) => groupWithMember(w),
    operations: { ...httpOperations, ...socketOperations },
  },

  /** The owner's message in the direct conversation (messageId). */
  'message (direct)': {
    setup: (w) => directWithFriend(w),
    operations: {
      'delete for me': deleteMessage('messageId', 'me'),
      'delete for everyone': deleteMessage('messageId', 'everyone'),
    },
  },
  /** The friend's message in the same conversation: its sender may retract it, friends or not. */
  "message (direct, the friend's)": {
    setup: (w) => directWithFriend(w, { reply: true }),
    operations: { 'delete for everyone': deleteMessage('otherMessageId', 'everyone') },
  },
  /** The owner's message in the group conversation. */
  'message (group)': {
    setup: (w) => groupWithMember(w),
    operations: {
      'delete for me': deleteMessage('messageId', 'me'),
      'delete for everyone': deleteMessage('messageId', 'everyone'),
    },
  },

  /**
   * The owner's uploads: one carried by their message in the direct conversation with the friend
   * (mediaId), one in no message (unattachedId); and uploading one of one's own.
   */
  media: {
    async setup(w) {
      await directWithFriend(w, { mediaId: true });
      w.vars.unattachedId = (await w.deps.media.upload((await w.someone('owner')).userId, await png())).id;
    },
    operations: {
      'read attached': readMedia('mediaId'),
      'read unattached': readMedia('unattachedId'),
      upload: {
        async request() {
          const { body, headers } = multipart(await png());
          return { method: 'POST', url: '/v1/media', body, headers };
        },
      },
    },
  },
  /** The owner's upload carried by their message in the group conversation. */
  'media (group)': {
    setup: (w) => groupWithMember(w, { mediaId: true }),
    operations: { 'read attached': readMedia('mediaId') },
  },
};
