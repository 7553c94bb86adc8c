import { inflateSync } from 'node:zlib';
import { type ImageKind, sniffImage } from '../../lib/images.js';

// What an upload is, decided by its bytes alone: the name and the declared type are never read.

export type MediaKind = ImageKind | 'pdf';

const PDF_HEADER = /^%PDF-(?:1\.[0-7]|2\.0)[\r\n\s%]/;

export function sniffMedia(data: Buffer): MediaKind | null {
  const image = sniffImage(data);
  if (image) return image;
  return PDF_HEADER.test(data.toString('latin1', 0, 16)) ? 'pdf' : null;
}

// Markup a browser or an HTML-sniffing tool would act on; XMP metadata (`<x:xmpmeta`, `<rdf:…`) is
// none of these.
const MARKUP =
  /<(?:script|html|head|body|iframe|frame|frameset|svg|object|embed|meta|link|style|form|img|base|applet)[\s/>]|<!doctype\s+html|<\?php/i;
// Content sniffers (browsers, mail clients, Acrobat's header search) decide on the first bytes.
const SNIFFED_BYTES = 1024;

/**
 * Why a file is refused as a polyglot (a file that is also something else), or null: markup where
 * sniffers look, a ZIP (JAR, APK, Office) read from its end, or an image that is also a PDF. Images
 * are re-encoded, so nothing inside them is ever served; refusing such files anyway keeps hostile
 * uploads out of the store. PDFs are stored as uploaded, so pdfProblem looks further into them.
 * Only markers that random (compressed) data cannot plausibly contain are looked for in the body.
 */
export function carriedPayload(data: Buffer, kind: MediaKind): string | null {
  if (MARKUP.test(data.toString('latin1', 0, SNIFFED_BYTES))) return 'markup';
  if (zipAtEnd(data)) return 'archive';
  if (kind !== 'pdf' && data.includes('%PDF-', 0, 'latin1')) return 'pdf_inside';
  return null;
}

/** A ZIP is found by its end-of-central-directory record, which must end the file exactly. */
function zipAtEnd(data: Buffer): boolean {
  const from = Math.max(0, data.length - 22 - 0xffff);
  let at = data.lastIndexOf('PK\x05\x06', data.length - 22, 'latin1');
  while (at >= from) {
    if (at + 22 + data.readUInt16LE(at + 20) === data.length) return true;
    at = at > 0 ? data.lastIndexOf('PK\x05\x06', at - 1, 'latin1') : -1;
  }
  return false;
}

// Names of PDF features that run or launch something: scripts, launch actions, embedded files,
// rich media (Flash), XFA forms (scripted).
const ACTIVE_NAME = /\/(?:JS|JavaScript|Launch|EmbeddedFiles?|RichMedia|XFA)(?![A-Za-z0-9])/;
const MAX_OBJECT_STREAM_BYTES = 32 * 1024 * 1024;

export type PdfProblem = 'malformed' | 'active_content' | 'unreadable_objects';

/**
 * A PDF is kept when it is well formed at both ends (a version header; `startxref` and a final
 * `%%EOF` with only whitespace after it) and its objects (everything but stream data, plus the
 * compressed object streams, with `#xx` name escapes undone) declare no active content and carry
 * no markup. A best-effort screen, not a parser: what is served is also sandboxed and downloaded.
 */
export function pdfProblem(data: Buffer): PdfProblem | null {
  if (!PDF_HEADER.test(data.toString('latin1', 0, 16))) return 'malformed';
  const eof = data.lastIndexOf('%%EOF', undefined, 'latin1');
  if (eof < 0 || data.length - eof > 1024) return 'malformed';
  if (!/^[\s\0]*$/.test(data.toString('latin1', eof + 5))) return 'malformed';
  const startxref = data.lastIndexOf('startxref', eof, 'latin1');
  if (startxref < 0 || !/^startxref\s+\d+\s*$/.test(data.toString('latin1', startxref, eof))) {
    return 'malformed';
  }

  // Stream data (images, fonts, page content: compressed, random-looking) is set aside; the object
  // text around it is what declares actions.
  const text = data.toString('latin1');
  const objects: string[] = [];
  const objectStreams: Buffer[] = [];
  let outsideFrom = 0;
  for (let at = text.indexOf('stream'); at >= 0; at = text.indexOf('stream', at + 6)) {
    const after = text.charCodeAt(at + 6);
    if (text.startsWith('end', at - 3) || (after !== 0x0a && after !== 0x0d)) continue;
    if (!/>>\s*$/.test(text.slice(Math.max(0, at - 64), at))) continue;
    const start = at + (text.startsWith('\r\n', at + 6) ? 8 : 7);
    const end = text.indexOf('endstream', start);
    if (end < 0) return 'malformed';
    objects.push(text.slice(outsideFrom, start));
    outsideFrom = end;
    const dictionary = text.slice(Math.max(0, text.lastIndexOf(' obj', at), at - 4096), at);
    if (/\/ObjStm\b/.test(dictionary)) {
      // Only Flate (what every writer uses) is decoded; an object stream we cannot read is refused.
      const filter = /\/Filter\s*(\[[^\]]*\]|\/\w+)/.exec(dictionary)?.[1];
      if (filter?.replace(/[[\]\s]/g, '') !== '/FlateDecode') return 'unreadable_objects';
      objectStreams.push(data.subarray(start, end));
    }
    at = end;
  }
  objects.push(text.slice(outsideFrom));
  if (activeOrMarkup(objects.join('\n'))) return 'active_content';

  let inflated = 0;
  for (const stream of objectStreams) {
    let decoded: Buffer;
    try {
      decoded = inflateSync(stream, { maxOutputLength: Math.max(1, MAX_OBJECT_STREAM_BYTES - inflated) });
    } catch {
      return 'unreadable_objects';
    }
    inflated += decoded.length;
    if (activeOrMarkup(decoded.toString('latin1'))) return 'active_content';
  }
  return null;
}

function activeOrMarkup(objectText: string): boolean {
  const names = objectText.includes('#')
    ? objectText.replace(/#([0-9A-Fa-f]{2})/g, (_, hex: string) =>
        String.fromCharCode(Number.parseInt(hex, 16)),
      )
    : objectText;
  return ACTIVE_NAME.test(names) || MARKUP.test(objectText);
}
