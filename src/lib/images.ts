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

export class ImageError extends Error {
  override name = 'ImageError';
}

// A decompression bomb (a tiny file declaring a huge canvas) is refused before it is decoded.
const MAX_INPUT_PIXELS = 40_000_000;

/**
 * Decodes and re-encodes an image: what is stored is pixels we produced, never the uploaded bytes,
 * so metadata (EXIF, GPS) and anything smuggled after the image data are gone.
 */
export async function reencode(
  data: Buffer,
  opts: { maxSide: number; cover?: boolean; format: 'webp' },
): Promise<{ data: Buffer; width: number; height: number }> {
  try {
    const { data: out, info } = await sharp(data, { limitInputPixels: MAX_INPUT_PIXELS, failOn: 'error' })
      .rotate()
      .resize(opts.maxSide, opts.maxSide, {
        fit: opts.cover ? 'cover' : 'inside',
        withoutEnlargement: !opts.cover,
      })
      .webp({ quality: 82 })
      .toBuffer({ resolveWithObject: true });
    return { data: out, width: info.width, height: info.height };
  } catch (err) {
    throw new ImageError(err instanceof Error ? err.message : String(err));
  }
}
