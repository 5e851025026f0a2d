// tus 1.0.0 on the service's own origin (/api/v1/tus), for when storage can't be reached
// from this browser (or ?transport=tus asks for it): creation, the offset (HEAD), PATCH
// with progress (XMLHttpRequest, like transfer.js), termination. Failures are ApiErrors as
// the JSON API's are: the service's {code, message}, or status 0 when it can't be reached.

import { ApiError, credentials } from './api.js';
import { request } from './transfer.js';
import { abortError } from './util.js';

export const TUS_ENDPOINT = '/api/v1/tus';
const VERSION = '1.0.0';
/** How long the last PATCH may wait for its answer once sent: the service verifies the file first. */
const VERIFY_MS = 10 * 60_000;
/** How long a look at whether somewhere answers may take. */
const PROBE_MS = 10_000;

/** `Upload-Metadata`: each key with its value in base64 (of its UTF-8 bytes). */
export function encodeMetadata(pairs) {
  return Object.entries(pairs)
    .filter(([, value]) => value != null && value !== '')
    .map(([key, value]) => {
      let binary = '';
      for (const byte of new TextEncoder().encode(String(value))) binary += String.fromCharCode(byte);
      return `${key} ${btoa(binary)}`;
    })
    .join(',');
}

/** The upload's id: the last segment of its URL (the v1 upload_id). */
export function uploadIdOf(url) {
  return decodeURIComponent(new URL(url, location.href).pathname.split('/').filter(Boolean).pop() || '');
}

/**
 * The page only talks to its own origin: a Location is followed by its path, so that a
 * proxy that told the service another scheme or host does not send the bytes elsewhere.
 */
function onOwnOrigin(given) {
  const url = new URL(given, location.href);
  return new URL(`${url.pathname}${url.search}`, location.origin).href;
}

/**
 * One tus request (transfer.js's `request`, with `Tus-Resumable` and the page's
 * credentials). Resolves with the answer (any status); rejects with an ApiError of status
 * 0 when there is none (code "network", or "stalled" when nothing moved for a long time).
 */
function send(method, url, { headers = {}, body = null, signal, onProgress } = {}) {
  const words = { network: 'The service could not be reached', stalled: 'no progress for a long time' };
  return request(method, url, {
    headers: { 'Tus-Resumable': VERSION, ...credentials(), ...headers },
    body,
    signal,
    onProgress,
    // All of it is sent; the answer may wait for the service's checks.
    answerMs: VERIFY_MS,
    failure: (kind) => new ApiError(0, { code: kind, message: words[kind] }),
  });
}

/** The service's error answer as an ApiError (its JSON {code, message}, Retry-After). */
function failure(xhr) {
  let body = null;
  try {
    body = xhr.responseText ? JSON.parse(xhr.responseText) : null;
  } catch {
    body = null;
  }
  const retryAfter = Number.parseInt(xhr.getResponseHeader('Retry-After') || '', 10);
  return new ApiError(xhr.status, body && typeof body === 'object' ? body : { message: (xhr.responseText || '').slice(0, 200) },
    Number.isFinite(retryAfter) ? retryAfter : null);
}

function offsetOf(xhr) {
  const offset = Number.parseInt(xhr.getResponseHeader('Upload-Offset') || '', 10);
  if (!Number.isFinite(offset) || offset < 0) {
    throw new ApiError(502, { code: 'bad_tus_answer', message: `the service answered ${xhr.status} without an Upload-Offset` });
  }
  return offset;
}

/** POST: a new upload of `size` bytes. Resolves with {url, offset, expiresAt}. */
export async function create({ size, metadata, signal }) {
  const xhr = await send('POST', TUS_ENDPOINT, {
    signal,
    headers: { 'Upload-Length': String(size), 'Upload-Metadata': encodeMetadata(metadata) },
  });
  if (xhr.status !== 201) throw failure(xhr);
  const where = xhr.getResponseHeader('Location');
  if (!where) throw new ApiError(502, { code: 'bad_tus_answer', message: 'the service created the upload without a Location' });
  const offset = xhr.getResponseHeader('Upload-Offset') ? offsetOf(xhr) : 0;
  return { url: onOwnOrigin(where), offset, expiresAt: xhr.getResponseHeader('Upload-Expires') };
}

/** HEAD: how many bytes the service holds. Resolves with {offset, length, expiresAt}. */
export async function status(url, { signal } = {}) {
  const xhr = await send('HEAD', url, { signal });
  if (xhr.status !== 200) {
    // A HEAD answer has no body: the status says it all.
    const words = { 404: 'not_found', 410: 'gone', 422: 'rejected', 423: 'upload_locked' };
    const retryAfter = Number.parseInt(xhr.getResponseHeader('Retry-After') || '', 10);
    throw new ApiError(xhr.status, { code: words[xhr.status] || `http_${xhr.status}`, message: `the service answered ${xhr.status}` },
      Number.isFinite(retryAfter) ? retryAfter : null);
  }
  const length = Number.parseInt(xhr.getResponseHeader('Upload-Length') || '', 10);
  return { offset: offsetOf(xhr), length: Number.isFinite(length) ? length : null, expiresAt: xhr.getResponseHeader('Upload-Expires') };
}

/**
 * PATCH: `blob`, the bytes from `offset`, with their SHA-256 (`checksum`, base64) when
 * given. Calls `onProgress(loadedBytes)` as they go out. Resolves with {offset, expiresAt}.
 */
export async function append(url, offset, blob, { checksum, signal, onProgress } = {}) {
  const headers = {
    'Upload-Offset': String(offset),
    'Content-Type': 'application/offset+octet-stream',
  };
  if (checksum) headers['Upload-Checksum'] = `sha256 ${checksum}`;
  const xhr = await send('PATCH', url, { signal, headers, body: blob, onProgress });
  if (xhr.status !== 204 && xhr.status !== 200) throw failure(xhr);
  return { offset: offsetOf(xhr), expiresAt: xhr.getResponseHeader('Upload-Expires') };
}

/** DELETE: the upload is terminated and its bytes removed. */
export async function terminate(url, { signal } = {}) {
  const xhr = await send('DELETE', url, { signal });
  if (xhr.status !== 204 && xhr.status !== 404 && xhr.status !== 410) throw failure(xhr);
}

/** Whether the service speaks tus here (OPTIONS answers with our version). */
export async function served(signal) {
  const res = await probe(TUS_ENDPOINT, { method: 'OPTIONS' }, signal);
  return Boolean(res && res.ok && (res.headers.get('Tus-Version') || '').split(',').map((v) => v.trim()).includes(VERSION));
}

/**
 * Whether anything answers at `url` (storage's presigned URL): any answer, even a refusal,
 * means it can be reached. Opaque, so that another origin's CORS rules don't matter.
 */
export async function answers(url, signal) {
  return Boolean(await probe(url, { method: 'HEAD', mode: 'no-cors', credentials: 'omit' }, signal));
}

async function probe(url, init, signal) {
  if (signal?.aborted) throw abortError();
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), PROBE_MS);
  const forward = () => controller.abort();
  signal?.addEventListener('abort', forward, { once: true });
  try {
    return await fetch(url, { ...init, cache: 'no-store', signal: controller.signal });
  } catch {
    if (signal?.aborted) throw abortError();
    return null;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', forward);
  }
}
