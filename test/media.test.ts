import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { accessCookieName } from '../src/lib/auth.js';
import { AppError } from '../src/lib/errors.js';
import { aUser, eventually, signIn, startTestApp, type TestApp } from './helpers.js';

// Chat uploads through HTTP (RELIABILITY A5, D1, D2): the type is decided by content, images are
// re-encoded, hostile files are refused with stable codes, and a file is served only to its uploader
// and to members who can see a message carrying it. Chat rows are written with SQL here.
const QUOTA = 4_000_000;
let t: TestApp;
beforeAll(async () => {
  t = await startTestApp({
    worker: true,
    env: { RATE_LIMIT_MULTIPLIER: '0', MEDIA_QUOTA_BYTES: String(QUOTA) },
  });
});
afterAll(() => t?.close());

type Session = Awaited<ReturnType<typeof signIn>>;
const someone = async () => signIn(t.deps, (await aUser(t.deps)).id);

function multipart(data: Buffer, opts: { field?: string; filename?: string; type?: string } = {}) {
  const boundary = `----taskmaa${randomBytes(8).toString('hex')}`;
  const head = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="${opts.field ?? 'file'}"; filename="${opts.filename ?? 'file.bin'}"\r\n` +
      `Content-Type: ${opts.type ?? 'application/octet-stream'}\r\n\r\n`,
  );
  return {
    payload: Buffer.concat([head, data, Buffer.from(`\r\n--${boundary}--\r\n`)]),
    headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
  };
}

const upload = (
  s: { headers: Record<string, string> },
  data: Buffer,
  opts?: Parameters<typeof multipart>[1],
) => {
  const body = multipart(data, opts);
  return t.app.inject({
    method: 'POST',
    url: '/v1/media',
    headers: { ...s.headers, ...body.headers },
    payload: body.payload,
  });
};
const fetchMedia = (headers: Record<string, string>, id: string) =>
  t.app.inject({ method: 'GET', url: `/v1/media/${id}`, headers });

async function uploaded(s: Session, data: Buffer): Promise<{ id: string; url: string; bytes: number }> {
  const res = await upload(s, data);
  expect(res.statusCode, res.body).toBe(201);
  return res.json();
}

const storedKey = async (id: string) =>
  (await t.deps.db.query<{ storageKey: string }>('SELECT storage_key FROM media WHERE id = $1', [id])).rows[0]
    ?.storageKey;
const filePath = (key: string) => join(t.config.DATA_DIR, 'uploads', key);
const mediaFiles = () => {
  const dir = join(t.config.DATA_DIR, 'uploads', 'media');
  return existsSync(dir) ? readdirSync(dir).sort() : [];
};

// --- files -------------------------------------------------------------------------------------------

const solid = (width: number, height: number, channels: 3 | 4 = 3) =>
  sharp({ create: { width, height, channels, background: { r: 200, g: 80, b: 40, alpha: 0.5 } } });
const png = (w: number, h: number) => solid(w, h, 4).png().toBuffer();
const jpeg = (w: number, h: number) => solid(w, h).jpeg().toBuffer();

async function animatedGif(frames: number, width = 40, height = 30) {
  const colours = ['red', 'green', 'blue', 'yellow'];
  const raw = await Promise.all(
    Array.from({ length: frames }, (_, i) =>
      sharp({ create: { width, height, channels: 3, background: colours[i % colours.length] as string } })
        .raw()
        .toBuffer(),
    ),
  );
  return sharp(Buffer.concat(raw), {
    raw: { width, height: height * frames, channels: 3, pageHeight: height },
  })
    .gif({ delay: Array(frames).fill(100), loop: 0 })
    .toBuffer();
}

/** A minimal well-formed PDF: catalog, pages, one page, its content, an xref table and a trailer. */
function pdf(
  extraObjects: string[] = [],
  opts: { catalogExtra?: string; after?: string; padding?: number } = {},
) {
  const content = 'BT /F1 24 Tf 72 720 Td (Hello Maa) Tj ET';
  const padding = opts.padding ? randomBytes(opts.padding).toString('latin1') : '';
  const objects = [
    `<< /Type /Catalog /Pages 2 0 R ${opts.catalogExtra ?? ''}>>`,
    '<< /Type /Pages /Kids [3 0 R] /Count 1 >>',
    '<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>',
    `<< /Length ${content.length} >>\nstream\n${content}\nendstream`,
    ...(padding ? [`<< /Length ${padding.length} /Filter /DCTDecode >>\nstream\n${padding}\nendstream`] : []),
    ...extraObjects,
  ];
  let out = '%PDF-1.7\n%\xe2\xe3\xcf\xd3\n';
  const offsets: number[] = [];
  objects.forEach((o, i) => {
    offsets.push(Buffer.byteLength(out, 'latin1'));
    out += `${i + 1} 0 obj\n${o}\nendobj\n`;
  });
  const xref = Buffer.byteLength(out, 'latin1');
  out += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n`;
  out += offsets.map((o) => `${String(o).padStart(10, '0')} 00000 n \n`).join('');
  out += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n${opts.after ?? ''}`;
  return Buffer.from(out, 'latin1');
}

function crc32(data: Buffer): number {
  let c = ~0;
  for (const byte of data) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

/** A real PNG whose header declares width × height (its data stays tiny: a decompression bomb's shape). */
async function pngDeclaring(width: number, height: number) {
  const file = Buffer.from(await png(1, 1));
  file.writeUInt32BE(width, 16);
  file.writeUInt32BE(height, 20);
  file.writeUInt32BE(crc32(file.subarray(12, 29)), 29);
  return file;
}

/** A JPEG with a comment segment right after its start marker. */
const jpegWithComment = async (comment: string) => {
  const file = await jpeg(16, 16);
  const text = Buffer.from(comment, 'latin1');
  const segment = Buffer.alloc(4 + text.length);
  segment.writeUInt16BE(0xfffe, 0);
  segment.writeUInt16BE(text.length + 2, 2);
  text.copy(segment, 4);
  return Buffer.concat([file.subarray(0, 2), segment, file.subarray(2)]);
};
const emptyZip = Buffer.concat([Buffer.from('PK\x05\x06', 'latin1'), Buffer.alloc(18)]);

// --- tests -------------------------------------------------------------------------------------------

describe('POST /v1/media', () => {
  it('accepts each kind by content: images re-encoded (animation kept), PDFs as sent', async () => {
    const s = await someone();
    const cases = [
      { name: 'jpeg', data: await jpeg(2400, 1600), mime: 'image/webp', format: 'webp', w: 2048, h: 1365 },
      { name: 'png', data: await png(300, 200), mime: 'image/webp', format: 'webp', w: 300, h: 200 },
      {
        name: 'webp',
        data: await solid(120, 90).webp().toBuffer(),
        mime: 'image/webp',
        format: 'webp',
        w: 120,
        h: 90,
      },
      { name: 'gif', data: await animatedGif(3), mime: 'image/gif', format: 'gif', w: 40, h: 30, pages: 3 },
      { name: 'pdf', data: pdf(), mime: 'application/pdf' },
      // Well past the 1 MB JSON body limit.
      { name: 'pdf of 3 MB', data: pdf([], { padding: 3_000_000 }), mime: 'application/pdf' },
    ];
    for (const c of cases) {
      // A misleading name and type change nothing.
      const res = await upload(s, c.data, { filename: '../../evil.html', type: 'text/html' });
      expect(res.statusCode, c.name).toBe(201);
      const body = res.json();
      expect(Object.keys(body).sort(), c.name).toEqual(
        c.w ? ['bytes', 'height', 'id', 'mime', 'url', 'width'] : ['bytes', 'id', 'mime', 'url'],
      );
      expect(body.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(body.url).toBe(`${t.config.PUBLIC_URL}/v1/media/${body.id}`);
      expect(body.mime, c.name).toBe(c.mime);

      const key = (await storedKey(body.id)) as string;
      expect(key).toMatch(/^media\/[0-9a-f-]{36}\.(webp|gif|pdf)$/);
      expect(key).not.toContain(body.id);
      const stored = readFileSync(filePath(key));
      expect(stored.length, c.name).toBe(body.bytes);
      if (c.format) {
        const meta = await sharp(stored, { animated: true }).metadata();
        expect(meta.format, c.name).toBe(c.format);
        expect([meta.width, meta.pageHeight ?? meta.height], c.name).toEqual([c.w, c.h]);
        expect([body.width, body.height], c.name).toEqual([c.w, c.h]);
        expect(meta.pages ?? 1, c.name).toBe(c.pages ?? 1);
      } else {
        expect(stored.equals(c.data)).toBe(true);
      }

      const served = await fetchMedia(s.headers, body.id);
      expect(served.statusCode, c.name).toBe(200);
      expect(served.headers['content-type'], c.name).toBe(c.mime);
      expect(served.rawPayload.equals(stored), c.name).toBe(true);
      expect(served.headers['x-content-type-options']).toBe('nosniff');
      expect(served.headers['cache-control']).toMatch(/^private, max-age=\d+$/);
      expect(served.headers['content-security-policy']).toMatch(/\bsandbox\b/);
      expect(served.headers['content-security-policy']).toMatch(/default-src 'none'/);
      expect(served.headers['content-disposition'], c.name).toBe(
        `${c.mime === 'application/pdf' ? 'attachment' : 'inline'}; filename="${body.id}.${key.split('.').pop()}"`,
      );
    }
  });

  it('strips EXIF (GPS included) from photos', async () => {
    const s = await someone();
    const photo = await solid(640, 480)
      .jpeg()
      .withExif({
        IFD0: { Copyright: 'secret-owner', Make: 'SpyCam' },
        IFD3: {
          GPSLatitudeRef: 'N',
          GPSLatitude: '28/1 36/1 0/1',
          GPSLongitudeRef: 'E',
          GPSLongitude: '77/1 12/1 0/1',
        },
      })
      .toBuffer();
    const original = await sharp(photo).metadata();
    expect(original.exif?.includes(Buffer.from('SpyCam'))).toBe(true);

    const { id } = await uploaded(s, photo);
    const stored = readFileSync(filePath((await storedKey(id)) as string));
    const meta = await sharp(stored).metadata();
    expect(meta.exif).toBeUndefined();
    expect(meta.xmp).toBeUndefined();
    for (const text of ['secret-owner', 'SpyCam', 'Exif', 'GPS'])
      expect(stored.includes(Buffer.from(text)), text).toBe(false);
  });

  it('D1/D2: refuses the hostile corpus with stable codes, storing nothing and leaving no file', async () => {
    const s = await someone();
    const filesBefore = mediaFiles();
    const halfOf = (b: Buffer) => b.subarray(0, Math.floor(b.length / 2));
    const noisyPng = await sharp({
      create: {
        width: 300,
        height: 300,
        channels: 3,
        background: 'white',
        noise: { type: 'gaussian', mean: 128, sigma: 40 },
      },
    })
      .png()
      .toBuffer();
    const noisyJpeg = await sharp(noisyPng).jpeg().toBuffer();
    const gif = await animatedGif(4);
    const gifFrameFlood = Buffer.from(gif);
    const descriptor = gifFrameFlood.indexOf(0x2c, 13);
    gifFrameFlood.writeUInt16LE(65535, descriptor + 5);
    gifFrameFlood.writeUInt16LE(65535, descriptor + 7);
    const objectStream = deflateSync(Buffer.from('6 0 << /S /JavaScript /JS (app.alert(1)) >>'));

    const corpus: { name: string; data: Buffer; status: number; code: string; filename?: string }[] = [
      // Wrong magic, whatever the name says.
      { name: 'empty file', data: Buffer.alloc(0), status: 415, code: 'unsupported_media' },
      { name: 'random bytes', data: randomBytes(4096), status: 415, code: 'unsupported_media' },
      {
        name: 'windows executable',
        data: Buffer.from('MZ\x90\x00 This program'),
        status: 415,
        code: 'unsupported_media',
      },
      {
        name: 'zip as .pdf',
        data: Buffer.concat([Buffer.from('PK\x03\x04'), emptyZip]),
        status: 415,
        code: 'unsupported_media',
      },
      { name: 'bmp', data: Buffer.from('BM6\x00\x00\x00\x00\x00'), status: 415, code: 'unsupported_media' },
      {
        name: 'svg as .png',
        data: Buffer.from(
          '<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)</script></svg>',
        ),
        status: 415,
        code: 'unsupported_media',
      },
      {
        name: 'html as .png',
        data: Buffer.from('<!doctype html><html><script>fetch("/v1/me")</script></html>'),
        status: 415,
        code: 'unsupported_media',
      },
      {
        name: 'pdf header not at the start',
        data: Buffer.concat([Buffer.from('\n'), pdf()]),
        status: 415,
        code: 'unsupported_media',
      },
      // Polyglots: a file that is also something else.
      {
        name: 'png + appended html',
        data: Buffer.concat([await png(8, 8), Buffer.from('<html><script>alert(1)</script></html>')]),
        status: 400,
        code: 'unsafe_media',
      },
      { name: 'gifar (gif + zip)', data: Buffer.concat([gif, emptyZip]), status: 400, code: 'unsafe_media' },
      {
        name: 'jpeg carrying html where sniffers look',
        data: await jpegWithComment('<html><body><script>alert(1)</script></body></html>'),
        status: 400,
        code: 'unsafe_media',
      },
      {
        name: 'jpeg that is also a pdf',
        data: await jpegWithComment('%PDF-1.4 1 0 obj << >> endobj'),
        status: 400,
        code: 'unsafe_media',
      },
      {
        name: 'webp + trailing data',
        data: Buffer.concat([await solid(8, 8).webp().toBuffer(), Buffer.from('<?php system($_GET[0]); ?>')]),
        status: 400,
        code: 'unsafe_media',
      },
      {
        name: 'pdf + html',
        data: Buffer.concat([
          Buffer.from('%PDF-1.4\n<html><script>alert(1)</script></html>\n'),
          pdf().subarray(9),
        ]),
        status: 400,
        code: 'unsafe_media',
      },
      { name: 'pdf + zip', data: Buffer.concat([pdf(), emptyZip]), status: 400, code: 'unsafe_media' },
      {
        name: 'pdf running javascript',
        data: pdf(['<< /S /JavaScript /JS (app.alert(1)) >>'], { catalogExtra: '/OpenAction 5 0 R ' }),
        status: 400,
        code: 'unsafe_media',
      },
      {
        name: 'pdf javascript with escaped names',
        data: pdf(['<< /S /J#61vaScript /J#53 (app.alert(1)) >>'], { catalogExtra: '/OpenAction 5 0 R ' }),
        status: 400,
        code: 'unsafe_media',
      },
      {
        name: 'pdf javascript in a compressed object stream',
        data: pdf([
          `<< /Type /ObjStm /N 1 /First 4 /Filter /FlateDecode /Length ${objectStream.length} >>\nstream\n${objectStream.toString('latin1')}\nendstream`,
        ]),
        status: 400,
        code: 'unsafe_media',
      },
      {
        name: 'pdf launching a program',
        data: pdf(['<< /S /Launch /F (cmd.exe) >>'], { catalogExtra: '/OpenAction 5 0 R ' }),
        status: 400,
        code: 'unsafe_media',
      },
      // Pixel floods: tiny files declaring a huge canvas.
      {
        name: 'png declaring 100000×100000',
        data: await pngDeclaring(100_000, 100_000),
        status: 400,
        code: 'invalid_image',
      },
      { name: 'gif frame of 65535×65535', data: gifFrameFlood, status: 400, code: 'invalid_image' },
      // Truncated files.
      { name: 'truncated png', data: halfOf(noisyPng), status: 400, code: 'invalid_image' },
      { name: 'truncated jpeg', data: halfOf(noisyJpeg), status: 400, code: 'invalid_image' },
      { name: 'truncated gif', data: halfOf(gif), status: 400, code: 'invalid_image' },
      {
        name: 'truncated webp',
        data: halfOf(await solid(64, 64).webp().toBuffer()),
        status: 400,
        code: 'invalid_image',
      },
      { name: 'truncated pdf', data: halfOf(pdf()), status: 400, code: 'invalid_pdf' },
      {
        name: 'pdf with junk after %%EOF',
        data: pdf([], { after: 'not a pdf' }),
        status: 400,
        code: 'invalid_pdf',
      },
      // Too big: refused while streaming.
      {
        name: 'over 10 MB',
        data: Buffer.concat([await png(8, 8), Buffer.alloc(10 * 1024 * 1024)]),
        status: 413,
        code: 'payload_too_large',
      },
    ];

    let accepted = 0;
    const wrong: string[] = [];
    for (const c of corpus) {
      const res = await upload(s, c.data, { filename: 'photo.png', type: 'image/png' });
      if (res.statusCode < 300) accepted++;
      const code = String(res.headers['content-type']).startsWith('application/problem+json')
        ? res.json().code
        : '';
      if (res.statusCode !== c.status || code !== c.code)
        wrong.push(`${c.name}: ${res.statusCode} ${code}, expected ${c.status} ${c.code}`);
    }
    console.log(`D2: ${accepted} of ${corpus.length} hostile uploads accepted`);
    expect(wrong).toEqual([]);
    expect(accepted).toBe(0);

    const rows = await t.deps.db.query('SELECT 1 FROM media WHERE owner_id = $1', [s.userId]);
    expect(rows.rowCount).toBe(0);
    // D1: nothing written, not even a temporary file.
    expect(mediaFiles()).toEqual(filesBefore);
    expect(readdirSync(join(t.config.DATA_DIR, 'uploads')).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    // Refusals are logged with a reason and never with content.
    const refused = t.logs().filter((l) => l.msg === 'upload refused');
    expect(refused.map((l) => l.reason)).toEqual(
      expect.arrayContaining(['markup', 'archive', 'active_content']),
    );
    expect(JSON.stringify(refused)).not.toContain('alert');
  });

  it('refuses a body that is not multipart, a wrong field, an unverified or signed-out caller', async () => {
    const s = await someone();
    const json = await t.app.inject({
      method: 'POST',
      url: '/v1/media',
      headers: s.headers,
      payload: { file: 'x' },
    });
    expect(json.statusCode).toBe(415);
    const wrongField = await upload(s, await png(4, 4), { field: 'image' });
    expect([wrongField.statusCode, wrongField.json().code]).toEqual([400, 'file_required']);
    const unverified = await signIn(t.deps, (await aUser(t.deps, { verified: false })).id);
    const refused = await upload(unverified, await png(4, 4));
    expect([refused.statusCode, refused.json().code]).toEqual([403, 'email_not_verified']);
    expect((await upload({ headers: {} }, await png(4, 4))).statusCode).toBe(401);
  });

  it('keeps each user within MEDIA_QUOTA_BYTES: 409 media_quota_exceeded, nothing stored', async () => {
    const s = await someone();
    const big = pdf([], { padding: 1_500_000 });
    await uploaded(s, big);
    await uploaded(s, big);
    const files = mediaFiles();
    const over = await upload(s, big);
    expect(over.statusCode).toBe(409);
    expect(over.json().code).toBe('media_quota_exceeded');
    expect(mediaFiles()).toEqual(files);
    const used = await t.deps.db.query<{ n: number }>('SELECT count(*) AS n FROM media WHERE owner_id = $1', [
      s.userId,
    ]);
    expect(used.rows[0]?.n).toBe(2);
    // What still fits is accepted; other people have their own quota.
    await uploaded(s, pdf());
    await uploaded(await someone(), big);
  });
});

// --- access ------------------------------------------------------------------------------------------

async function conversation(members: { userId: string; fromSeq?: number }[]) {
  const id = randomUUID();
  const now = t.deps.clock.now();
  await t.deps.db.query(
    `INSERT INTO conversations (id, kind, direct_key, created_at, updated_at) VALUES ($1, 'direct', $2, $3, $3)`,
    [id, `test:${id}`, now],
  );
  for (const m of members) {
    await t.deps.db.query(
      'INSERT INTO conversation_members (conversation_id, user_id, joined_at, from_seq) VALUES ($1, $2, $3, $4)',
      [id, m.userId, now, m.fromSeq ?? 1],
    );
  }
  return id;
}

async function message(conversationId: string, seq: number, senderId: string, mediaId: string | null) {
  const id = randomUUID();
  await t.deps.db.query(
    `INSERT INTO messages (id, conversation_id, seq, sender_id, body, media_id, created_at)
     VALUES ($1, $2, $3, $4, 'look', $5, $6)`,
    [id, conversationId, seq, senderId, mediaId, t.deps.clock.now()],
  );
  await t.deps.db.query('UPDATE conversations SET last_seq = $2 WHERE id = $1', [conversationId, seq]);
  return id;
}

describe('GET /v1/media/:id (A5)', () => {
  it('serves the uploader (bearer or cookie) and nobody else; unknown and malformed ids look alike', async () => {
    const owner = await someone();
    const stranger = await someone();
    const { id } = await uploaded(owner, await png(10, 10));
    expect((await fetchMedia(owner.headers, id)).statusCode).toBe(200);
    const byCookie = await fetchMedia({ cookie: `${accessCookieName(false)}=${owner.token}` }, id);
    expect(byCookie.statusCode).toBe(200);
    expect(byCookie.headers['content-type']).toBe('image/webp');

    const notFound = [id, id.toUpperCase(), randomUUID(), 'not-a-uuid', '..%2F..%2Fsecrets.json'];
    for (const probe of notFound) {
      const res = await fetchMedia(stranger.headers, probe);
      expect(res.statusCode, probe).toBe(404);
      expect(res.json().code, probe).toBe('not_found');
    }
    // Signed out: the platform's 401 for every id alike, so it tells nothing about existence.
    for (const probe of [id, randomUUID()]) {
      const res = await fetchMedia({}, probe);
      expect(res.statusCode).toBe(401);
      expect(res.json().code).toBe('unauthorized');
    }
  });

  it('serves conversation members once a live message they can see carries it', async () => {
    const owner = await someone();
    const member = await someone();
    const lateJoiner = await someone();
    const hider = await someone();
    const outsider = await someone();
    const { id } = await uploaded(owner, pdf());
    const conv = await conversation([
      { userId: owner.userId },
      { userId: member.userId },
      { userId: lateJoiner.userId, fromSeq: 2 },
      { userId: hider.userId },
    ]);
    const status = async (s: Session) => (await fetchMedia(s.headers, id)).statusCode;

    expect(await status(member)).toBe(404);
    const messageId = await message(conv, 1, owner.userId, id);
    expect(await status(member)).toBe(200);
    expect(await status(hider)).toBe(200);
    expect(await status(lateJoiner)).toBe(404);
    expect(await status(outsider)).toBe(404);

    // Deleted for me: not for me any more.
    await t.deps.db.query('INSERT INTO message_hidden (user_id, message_id) VALUES ($1, $2)', [
      hider.userId,
      messageId,
    ]);
    expect(await status(hider)).toBe(404);
    expect(await status(member)).toBe(200);

    // Deleted for everyone: members lose it.
    await t.deps.db.query('UPDATE messages SET deleted_at = $2 WHERE id = $1', [
      messageId,
      t.deps.clock.now(),
    ]);
    expect(await status(member)).toBe(404);
  });
});

// --- service ------------------------------------------------------------------------------------------

const rejection = async (p: Promise<unknown>) => {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AppError);
  return { status: (err as AppError).status, code: (err as AppError).code };
};

describe('media service (for chat and account deletion)', () => {
  it('claim: only my own, unattached file; discard deletes it and purges the file', async () => {
    const me = await someone();
    const other = await someone();
    const mine = await uploaded(me, await png(6, 6));
    const theirs = await uploaded(other, await png(6, 6));
    const conv = await conversation([{ userId: me.userId }, { userId: other.userId }]);
    const { media, db } = t.deps;

    expect(await rejection(db.tx((tx) => media.claim(tx, me.userId, theirs.id)))).toEqual({
      status: 404,
      code: 'not_found',
    });
    expect(await rejection(db.tx((tx) => media.claim(tx, me.userId, randomUUID())))).toMatchObject({
      status: 404,
    });
    expect(await rejection(db.tx((tx) => media.claim(tx, me.userId, 'nope')))).toMatchObject({ status: 404 });

    // The send: claim then store the message, in one transaction.
    const claimed = await db.tx(async (tx) => {
      const view = await media.claim(tx, me.userId, mine.id);
      await tx.query(
        `INSERT INTO messages (id, conversation_id, seq, sender_id, body, media_id, created_at)
         VALUES ($1, $2, 1, $3, '', $4, now())`,
        [randomUUID(), conv, me.userId, view.id],
      );
      return view;
    });
    expect(claimed).toEqual(mine);
    expect(await rejection(db.tx((tx) => media.claim(tx, me.userId, mine.id)))).toEqual({
      status: 409,
      code: 'media_attached',
    });

    // Deleted for everyone: the message is erased first, then the file discarded.
    const key = (await storedKey(mine.id)) as string;
    expect(existsSync(filePath(key))).toBe(true);
    await db.tx(async (tx) => {
      await tx.query(`UPDATE messages SET media_id = NULL, deleted_at = now() WHERE media_id = $1`, [
        mine.id,
      ]);
      await media.discard(tx, mine.id);
    });
    expect(await storedKey(mine.id)).toBeUndefined();
    await eventually(() => expect(existsSync(filePath(key))).toBe(false));
    await db.tx((tx) => media.discard(tx, mine.id)); // twice is fine
  });

  it('forgetUser lists every key of the user; exportFor lists their uploads', async () => {
    const me = await someone();
    const a = await uploaded(me, await png(5, 5));
    const b = await uploaded(me, pdf());
    const keys = await t.deps.db.tx((tx) => t.deps.media.forgetUser(tx, me.userId));
    expect(keys.sort()).toEqual([await storedKey(a.id), await storedKey(b.id)].sort());
    const exported = await t.deps.media.exportFor(me.userId);
    expect(exported.map((e) => [e.id, e.mime, e.bytes])).toEqual(
      expect.arrayContaining([
        [a.id, 'image/webp', a.bytes],
        [b.id, 'application/pdf', b.bytes],
      ]),
    );
    expect(exported).toHaveLength(2);
  });

  it('media.prune deletes files never sent after 24 h, with their files, and keeps sent or recent ones', async () => {
    const me = await someone();
    const other = await someone();
    const stale = await uploaded(me, await png(7, 7));
    const sent = await uploaded(me, await png(8, 8));
    const fresh = await uploaded(me, await png(9, 9));
    const conv = await conversation([{ userId: me.userId }, { userId: other.userId }]);
    await message(conv, 1, me.userId, sent.id);
    const dayAgo = new Date(t.deps.clock.now().getTime() - 25 * 3600_000);
    await t.deps.db.query('UPDATE media SET created_at = $2 WHERE id = ANY($1::uuid[])', [
      [stale.id, sent.id],
      dayAgo,
    ]);
    const staleKey = (await storedKey(stale.id)) as string;

    await t.deps.jobs.enqueue('media.prune', {}, { jobId: `media-prune-${me.userId}` });
    await eventually(async () => {
      expect(await storedKey(stale.id)).toBeUndefined();
      expect(existsSync(filePath(staleKey))).toBe(false);
    });
    for (const kept of [sent, fresh])
      expect(existsSync(filePath((await storedKey(kept.id)) as string))).toBe(true);
    expect((await fetchMedia(other.headers, sent.id)).statusCode).toBe(200);
  });
});
