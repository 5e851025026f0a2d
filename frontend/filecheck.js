// What the page can tell about a file before sending it: its type from the name and from
// its first bytes, and its SHA-256. The service has the last word on what it accepts.

import { extensionOf, typeLabel } from './format.js';

/** Extensions the service accepts, and the content type each one means. */
export const TYPE_BY_EXTENSION = {
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  gif: 'image/gif',
  webp: 'image/webp',
  bmp: 'image/bmp',
  tif: 'image/tiff',
  tiff: 'image/tiff',
};

export const ALLOWED_TYPES = new Set(Object.values(TYPE_BY_EXTENSION));

/** Types a browser can usually draw, so a local preview is worth trying. */
const PREVIEWABLE = new Set(['image/png', 'image/jpeg', 'image/gif', 'image/webp', 'image/bmp', 'image/svg+xml', 'image/avif']);

/** The image format the first bytes show, or null when they show none the service knows. */
export function sniff(bytes) {
  const b = bytes;
  const starts = (...sig) => sig.every((v, i) => b[i] === v);
  const ascii = (at, text) => [...text].every((ch, i) => b[at + i] === ch.charCodeAt(0));
  if (starts(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a)) return 'image/png';
  if (starts(0xff, 0xd8, 0xff)) return 'image/jpeg';
  if (ascii(0, 'GIF87a') || ascii(0, 'GIF89a')) return 'image/gif';
  if (ascii(0, 'RIFF') && ascii(8, 'WEBP')) return 'image/webp';
  if (ascii(0, 'BM')) return 'image/bmp';
  if (starts(0x49, 0x49, 0x2a, 0x00) || starts(0x4d, 0x4d, 0x00, 0x2a)) return 'image/tiff';
  return null;
}

/**
 * Looks at a file before anything is sent.
 * - contentType: what to declare (from the extension when it is a known one, so that the
 *   name and the type agree, else what the browser says).
 * - concern: a reason the service will probably refuse it at creation ({code, ...}), or null.
 *   The page still asks the service, whose answer decides.
 * - mismatch: the bytes are another image format than the name says, or no image at all
 *   (`actual` is null); uploading them could only fail verification, so the page stops
 *   before sending anything.
 */
export async function inspectFile(file) {
  const ext = extensionOf(file.name);
  const byExtension = TYPE_BY_EXTENSION[ext];
  const contentType = byExtension || file.type || 'application/octet-stream';
  let concern = null;
  if (file.size === 0) {
    concern = { code: 'invalid_size' };
  } else if (!byExtension) {
    concern = ALLOWED_TYPES.has(file.type)
      ? { code: 'extension_mismatch' }
      : { code: 'unsupported_type' };
  }

  let mismatch = null;
  if (!concern) {
    const head = new Uint8Array(await file.slice(0, 16).arrayBuffer());
    const actual = sniff(head);
    if (actual !== contentType) {
      mismatch = { declared: contentType, actual };
    }
  }
  return { contentType, concern, mismatch, extension: ext, label: typeLabel(contentType, file.name) };
}

export function canPreview(file) {
  const type = TYPE_BY_EXTENSION[extensionOf(file.name)] || file.type;
  return PREVIEWABLE.has(type) && file.size <= 60 * 1024 * 1024;
}

/** True where the browser can hash (WebCrypto needs a secure context such as https or localhost). */
export function canHash() {
  return Boolean(globalThis.crypto?.subtle?.digest);
}

/** Base64 of the SHA-256 of a Blob (read into memory, so keep it to sensible sizes). */
export async function sha256Base64(blob) {
  const digest = await crypto.subtle.digest('SHA-256', await blob.arrayBuffer());
  const bytes = new Uint8Array(digest);
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}
