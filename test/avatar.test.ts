import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { aUser, signIn, startTestApp, type TestApp } from './helpers.js';

// Avatar uploads through HTTP: content decides the type, every stored byte is re-encoded by us.
let t: TestApp;
beforeAll(async () => {
  t = await startTestApp({ env: { RATE_LIMIT_MULTIPLIER: '0' } });
});
afterAll(() => t?.close());

function multipart(data: Buffer, opts: { field?: string; filename?: string; type?: string } = {}) {
  const boundary = `----taskmaa${Math.random().toString(16).slice(2)}`;
  const head = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="${opts.field ?? 'file'}"; filename="${opts.filename ?? 'me.png'}"\r\n` +
      `Content-Type: ${opts.type ?? 'image/png'}\r\n\r\n`,
  );
  return {
    payload: Buffer.concat([head, data, Buffer.from(`\r\n--${boundary}--\r\n`)]),
    headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
  };
}

const upload = async (headers: Record<string, string>, body: ReturnType<typeof multipart>) =>
  t.app.inject({
    method: 'PUT',
    url: '/v1/me/avatar',
    headers: { ...headers, ...body.headers },
    payload: body.payload,
  });

const png = (w: number, h: number) =>
  sharp({ create: { width: w, height: h, channels: 3, background: { r: 200, g: 80, b: 40 } } })
    .png()
    .toBuffer();

describe('avatar', () => {
  it('is re-encoded to a 512×512 WebP without metadata, served under a server-chosen name', async () => {
    const s = await signIn(t.deps, (await aUser(t.deps)).id);
    const photo = await sharp({
      create: { width: 1200, height: 800, channels: 3, background: { r: 10, g: 120, b: 200 } },
    })
      .jpeg()
      .withExif({
        IFD0: { Copyright: 'secret-owner' },
        IFD3: { GPSLatitudeRef: 'N', GPSLatitude: '28/1 36/1 0/1' },
      })
      .toBuffer();
    expect((await sharp(photo).metadata()).exif).toBeDefined();

    const res = await upload(
      s.headers,
      multipart(photo, { filename: '../../etc/passwd.jpg', type: 'image/jpeg' }),
    );
    expect(res.statusCode).toBe(200);
    const url = new URL(res.json().avatarUrl);
    expect(url.pathname).toMatch(/^\/v1\/avatars\/[0-9a-f-]{36}\.webp$/);

    const served = await t.app.inject({ method: 'GET', url: url.pathname });
    expect(served.statusCode).toBe(200);
    expect(served.headers['content-type']).toBe('image/webp');
    expect(served.headers['x-content-type-options']).toBe('nosniff');
    const meta = await sharp(served.rawPayload).metadata();
    expect(meta).toMatchObject({ format: 'webp', width: 512, height: 512 });
    expect(meta.exif).toBeUndefined();
    expect(served.rawPayload.includes(Buffer.from('secret-owner'))).toBe(false);

    // A new upload replaces the file; the old name is gone.
    const second = await upload(s.headers, multipart(await png(64, 64)));
    expect(second.json().avatarUrl).not.toBe(res.json().avatarUrl);
    expect((await t.app.inject({ method: 'GET', url: url.pathname })).statusCode).toBe(404);

    const removed = await t.app.inject({ method: 'DELETE', url: '/v1/me/avatar', headers: s.headers });
    expect(removed.json().avatarUrl).toBeNull();
    expect(
      (await t.app.inject({ method: 'GET', url: new URL(second.json().avatarUrl).pathname })).statusCode,
    ).toBe(404);
  });

  it('refuses what is not a PNG, JPEG or WebP by its content, whatever its name and type say', async () => {
    const s = await signIn(t.deps, (await aUser(t.deps)).id);
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"></svg>');
    const html = Buffer.from('<html><script>alert(1)</script></html>');
    const gif = await sharp({ create: { width: 4, height: 4, channels: 3, background: 'red' } })
      .gif()
      .toBuffer();
    for (const [name, data] of [
      ['svg', svg],
      ['html', html],
      ['gif', gif],
    ] as const) {
      const res = await upload(s.headers, multipart(data, { filename: 'x.png', type: 'image/png' }));
      expect(res.statusCode, name).toBe(415);
      expect(res.json().code, name).toBe('unsupported_image');
    }
    const truncated = (await png(300, 300)).subarray(0, 60);
    const bad = await upload(s.headers, multipart(truncated));
    expect(bad.statusCode).toBe(400);
    expect(bad.json().code).toBe('invalid_image');
    expect(
      (await t.app.inject({ method: 'GET', url: '/v1/me', headers: s.headers })).json().avatarUrl,
    ).toBeNull();
  });

  it('refuses a pixel flood and a file over 5 MB, and a body that is not multipart', async () => {
    const s = await signIn(t.deps, (await aUser(t.deps)).id);
    const flood = await sharp({ create: { width: 9000, height: 5000, channels: 3, background: 'white' } })
      .png({ compressionLevel: 9 })
      .toBuffer();
    const floodRes = await upload(s.headers, multipart(flood));
    expect(floodRes.statusCode).toBe(400);
    expect(floodRes.json().code).toBe('invalid_image');

    const big = Buffer.concat([await png(8, 8), Buffer.alloc(5 * 1024 * 1024 + 10)]);
    const bigRes = await upload(s.headers, multipart(big));
    expect(bigRes.statusCode).toBe(413);
    expect(bigRes.json().code).toBe('payload_too_large');

    const json = await t.app.inject({
      method: 'PUT',
      url: '/v1/me/avatar',
      headers: s.headers,
      payload: { file: 'x' },
    });
    expect(json.statusCode).toBe(415);
    const wrongField = await upload(s.headers, multipart(await png(8, 8), { field: 'avatar' }));
    expect(wrongField.statusCode).toBe(400);
    expect(wrongField.json().code).toBe('file_required');
  });

  it('needs a signed-in caller, and names that are not ours are 404', async () => {
    expect((await upload({}, multipart(await png(8, 8)))).statusCode).toBe(401);
    expect((await t.app.inject({ method: 'GET', url: '/v1/avatars/../../secrets.json' })).statusCode).toBe(
      404,
    );
    const unknown = await t.app.inject({
      method: 'GET',
      url: '/v1/avatars/00000000-0000-4000-8000-000000000000.webp',
    });
    expect(unknown.statusCode).toBe(404);
  });
});
