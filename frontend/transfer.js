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
 * PUTs `body` to `url` with `headers` (verbatim, as the service gave them). Calls
 * `onProgress(loadedBytes)` as the bytes go out. Resolves with {status, etag}.
 */
export function putBlob(url, headers, body, { signal, onProgress } = {}) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) { reject(abortError()); return; }
    const xhr = new XMLHttpRequest();
    let watchdog = 0;
    let settled = false;

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
        finish(reject, new TransferError('stalled'));
      }, STALL_MS);
    };
    const onAbort = () => {
      xhr.abort();
      finish(reject, abortError());
    };

    xhr.open('PUT', url, true);
    for (const [name, value] of Object.entries(headers || {})) {
      if (!FORBIDDEN.has(name.toLowerCase())) xhr.setRequestHeader(name, value);
    }
    xhr.upload.addEventListener('progress', (event) => {
      alive();
      onProgress?.(event.loaded);
    });
    xhr.upload.addEventListener('load', () => {
      alive();
      onProgress?.(body.size);
    });
    xhr.addEventListener('readystatechange', alive);
    xhr.addEventListener('load', () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        finish(resolve, { status: xhr.status, etag: xhr.getResponseHeader('ETag') });
      } else {
        finish(reject, new TransferError('http', xhr.status, xhr.responseText));
      }
    });
    xhr.addEventListener('error', () => finish(reject, new TransferError('network')));
    xhr.addEventListener('timeout', () => finish(reject, new TransferError('stalled')));
    signal?.addEventListener('abort', onAbort, { once: true });
    alive();
    xhr.send(body);
  });
}
