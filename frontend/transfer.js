// Sends bytes to a presigned storage URL with XMLHttpRequest, whose upload progress events
// let the page show real progress even for one large PUT.

import { abortError } from './util.js';

/** How long a transfer may go without any sign of life before it is abandoned and retried. */
export const STALL_MS = 60_000;

// The browser sets these itself and refuses to let a page set them.
const FORBIDDEN = new Set(['content-length', 'host', 'connection', 'expect', 'transfer-encoding']);

/** Why a PUT to storage did not succeed. */
export class TransferError extends Error {
  /**
   * kind: "network" (no answer), "stalled" (no progress for STALL_MS), "http" (an answer
   * with an error status).
   */
  constructor(kind, status = 0, responseText = '') {
    super(kind === 'http' ? `storage answered ${status}` : `transfer ${kind}`);
    this.name = 'TransferError';
    this.kind = kind;
    this.status = status;
    this.storageCode = xmlField(responseText, 'Code');
    this.storageMessage = xmlField(responseText, 'Message');
  }

  /** A signature that is no longer valid: sign again and resend. */
  get expired() {
    return this.kind === 'http' && this.status === 403;
  }

  /** Worth sending again as it is (after a pause). */
  get retryable() {
    if (this.kind !== 'http') return true;
    return this.status >= 500 || this.status === 408 || this.status === 429;
  }
}

function xmlField(text, field) {
  const match = new RegExp(`<${field}>([^<]*)</${field}>`).exec(text || '');
  return match ? match[1] : '';
}

/**
 * One request with XMLHttpRequest, watched for stalls: resolves with the finished `xhr`
 * whatever its status; rejects with `failure('network')` when there is no answer, with
 * `failure('stalled')` when nothing moved for STALL_MS (or, once the body is all sent, for
 * `answerMs`: an answer that waits for the server's own work), or with an AbortError.
 * Calls `onProgress(loadedBytes)` as the body goes out.
 */
export function request(method, url, { headers = {}, body = null, signal, onProgress, answerMs = STALL_MS, failure }) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) { reject(abortError()); return; }
    const xhr = new XMLHttpRequest();
    let watchdog = 0;
    let settled = false;
    let patience = STALL_MS;

    const finish = (fn, value) => {
      if (settled) return;
      settled = true;
      clearTimeout(watchdog);
      signal?.removeEventListener('abort', onAbort);
      fn(value);
    };
    const alive = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => {
        xhr.abort();
        finish(reject, failure('stalled'));
      }, patience);
    };
    const onAbort = () => {
      xhr.abort();
      finish(reject, abortError());
    };

    xhr.open(method, url, true);
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
    if (body) {
      xhr.upload.addEventListener('progress', (event) => {
        alive();
        onProgress?.(event.loaded);
      });
      xhr.upload.addEventListener('load', () => {
        patience = answerMs;
        alive();
        onProgress?.(body.size);
      });
    }
    xhr.addEventListener('readystatechange', alive);
    xhr.addEventListener('load', () => finish(resolve, xhr));
    xhr.addEventListener('error', () => finish(reject, failure('network')));
    xhr.addEventListener('timeout', () => finish(reject, failure('stalled')));
    signal?.addEventListener('abort', onAbort, { once: true });
    alive();
    xhr.send(body);
  });
}

/**
 * PUTs `body` to `url` with `headers` (verbatim, as the service gave them). Calls
 * `onProgress(loadedBytes)` as the bytes go out. Resolves with {status, etag}.
 */
export async function putBlob(url, headers, body, { signal, onProgress } = {}) {
  const allowed = Object.fromEntries(Object.entries(headers || {}).filter(([name]) => !FORBIDDEN.has(name.toLowerCase())));
  const xhr = await request('PUT', url, {
    headers: allowed, body, signal, onProgress, failure: (kind) => new TransferError(kind),
  });
  if (xhr.status >= 200 && xhr.status < 300) return { status: xhr.status, etag: xhr.getResponseHeader('ETag') };
  throw new TransferError('http', xhr.status, xhr.responseText);
}
