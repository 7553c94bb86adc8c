import sharp from 'sharp';

export type ImageKind = 'png' | 'jpeg' | 'webp' | 'gif';

/** The image type by its first bytes, whatever the name or declared type says. */
export function sniffImage(data: Buffer): ImageKind | null {
  if (
    data.length >= 8 &&
    data.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))
  )
    return 'png';
  if (data.length >= 3 && data[0] === 0xff && data[1] === 0xd8 && data[2] === 0xff) return 'jpeg';
  if (
    data.length >= 12 &&
    data.toString('latin1', 0, 4) === 'RIFF' &&
    data.toString('latin1', 8, 12) === 'WEBP'
  )
    return 'webp';
  if (data.length >= 6 && /^GIF8[79]a$/.test(data.toString('latin1', 0, 6))) return 'gif';
  return null;
}

/**
 * Where the image ends by its own structure: past PNG's IEND chunk, GIF's trailer, or the WebP RIFF
 * size. Bytes after that are not part of the image (an appended archive, markup, a second file).
 * JPEG is left to the decoder, which refuses a truncated one; bytes after its end are common in
 * camera files (more pictures, motion clips), so its end is reported as the buffer's end.
 * null when the structure runs past the data: the file is truncated or broken.
 */
export function imageEnd(data: Buffer, kind: ImageKind): number | null {
  switch (kind) {
    case 'png':
      return pngEnd(data);
    case 'gif':
      return gifEnd(data);
    case 'webp': {
      if (data.length < 12) return null;
      const size = data.readUInt32LE(4);
      const end = 8 + size;
      if (end > data.length) return null;
      // Chunks are padded to even sizes; some writers leave the final pad byte out.
      return size % 2 === 1 && end < data.length ? end + 1 : end;
    }
    case 'jpeg':
      return data.length;
  }
}

function pngEnd(data: Buffer): number | null {
  let offset = 8;
  while (offset + 12 <= data.length) {
    const length = data.readUInt32BE(offset);
    const type = data.toString('latin1', offset + 4, offset + 8);
    const next = offset + 12 + length;
    if (next > data.length) return null;
    if (type === 'IEND') return next;
    offset = next;
  }
  return null;
}

function gifEnd(data: Buffer): number | null {
  if (data.length < 13) return null;
  const colorTable = (flags: number) => (flags & 0x80 ? 3 * 2 ** ((flags & 0x07) + 1) : 0);
  // Data sub-blocks: a size byte, that many bytes, until a zero size.
  const skipBlocks = (from: number): number | null => {
    let at = from;
    for (;;) {
      const size = data[at];
      if (size === undefined) return null;
      at += 1 + size;
      if (size === 0) return at;
    }
  };
  let offset: number | null = 13 + colorTable(data[10] ?? 0);
  while (offset !== null) {
    const introducer = data[offset];
    if (introducer === 0x3b) return offset + 1;
    if (introducer === 0x21) offset = skipBlocks(offset + 2);
    else if (introducer === 0x2c) {
      const flags = data[offset + 9];
      if (flags === undefined) return null;
      // Descriptor (10 bytes), local colour table, LZW minimum code size, then the image data.
      offset = skipBlocks(offset + 10 + colorTable(flags) + 1);
    } else return null;
  }
  return null;
}

export class ImageError extends Error {
  override name = 'ImageError';
}

// A decompression bomb (a tiny file declaring a huge canvas) is refused before it is decoded. For an
// animated image the limit counts every frame.
const MAX_INPUT_PIXELS = 40_000_000;

/**
 * Decodes and re-encodes an image: what is stored is pixels we produced, never the uploaded bytes,
 * so metadata (EXIF, GPS) and anything smuggled after the image data are gone. `animated` keeps
 * every frame (GIF, WebP), each fitted within `maxSide`; width and height are those of one frame.
 */
export async function reencode(
  data: Buffer,
  opts: { maxSide: number; cover?: boolean; format: 'webp' | 'gif'; animated?: boolean },
): Promise<{ data: Buffer; width: number; height: number }> {
  try {
    let image = sharp(data, {
      limitInputPixels: MAX_INPUT_PIXELS,
      failOn: 'error',
      ...(opts.animated ? { animated: true } : {}),
    });
    // Orientation is a JPEG (EXIF) matter; frames of an animation are never rotated.
    if (!opts.animated) image = image.rotate();
    image = image.resize(opts.maxSide, opts.maxSide, {
      fit: opts.cover ? 'cover' : 'inside',
      withoutEnlargement: !opts.cover,
    });
    image = opts.format === 'gif' ? image.gif() : image.webp({ quality: 82 });
    const { data: out, info } = await image.toBuffer({ resolveWithObject: true });
    return { data: out, width: info.width, height: info.pageHeight ?? info.height };
  } catch (err) {
    throw new ImageError(err instanceof Error ? err.message : String(err));
  }
}
