// The upload-broker JSON API, with retries for the failures that pass by themselves
// (network hiccups, 502/503/504 with Retry-After).

import { abortError, backoffDelay, isAbort, sleep, whenOnline } from './util.js';

/** An error answer of the service ({code, message}) or a failure to reach it (status 0). */
export class ApiError extends Error {
  constructor(status, body = {}, retryAfter = null) {
    super(body.message || (status ? `The service answered ${status}` : 'The service could not be reached'));
    this.name = 'ApiError';
    this.status = status;
    this.code = body.code || (status ? `http_${status}` : 'network');
    this.body = body;
    this.retryAfter = retryAfter;
  }

  get missingParts() {
    return Array.isArray(this.body.missing_parts) ? this.body.missing_parts : [];
  }

  get transient() {
    return this.status === 0 || this.status === 502 || this.status === 503 || this.status === 504;
  }
}

const DEFAULT_RETRIES = 4;

/**
 * One API call. Retries transient failures up to `retries` times, telling `onRetry`
 * ({attempt, delay, error}) before each wait.
 */
function call(method, path, { body, signal, retries = DEFAULT_RETRIES, onRetry } = {}) {
  return retrying(() => once(method, path, body, signal), { signal, retries, onRetry });
}

/**
 * Runs `operation` until it succeeds, retrying transient ApiErrors (the service can't be
 * reached, 502/503/504, or what `retryWhen(error)` also says) up to `retries` times, after
 * the wait a Retry-After asks for or a backoff. Tells `onRetry` ({attempt, delay, error})
 * before each wait.
 */
export async function retrying(operation, { signal, retries = DEFAULT_RETRIES, onRetry, retryWhen } = {}) {
  for (let attempt = 1; ; attempt += 1) {
    let error;
    try {
      return await operation();
    } catch (err) {
      if (isAbort(err) || !(err instanceof ApiError) || attempt > retries) throw err;
      if (!err.transient && !retryWhen?.(err)) throw err;
      error = err;
    }
    const delay = error.retryAfter != null
      ? Math.min(60_000, Math.max(500, error.retryAfter * 1000))
      : backoffDelay(attempt);
    onRetry?.({ attempt, delay, error });
    await sleep(delay, signal);
    await whenOnline(signal);
  }
}

// An upload link's token, when the page was opened from one (`/<image_id>?token=...`): the
// service then asks for it on every upload call.
const linkToken = new URLSearchParams(globalThis.location?.search || '').get('token');

/** The credentials every call to the service carries (tus's too): the link's token, if any. */
export function credentials() {
  return linkToken ? { Authorization: `Bearer ${linkToken}` } : {};
}

function headersFor(body) {
  const headers = { Accept: 'application/json', ...credentials() };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  return headers;
}

async function once(method, path, body, signal) {
  let response;
  try {
    response = await fetch(path, {
      method,
      signal,
      headers: headersFor(body),
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
    });
  } catch (err) {
    if (signal?.aborted) throw abortError();
    throw new ApiError(0, { message: err.message });
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (response.ok) return data;
  const retryAfter = Number.parseInt(response.headers.get('Retry-After') || '', 10);
  throw new ApiError(response.status, data && typeof data === 'object' ? data : { message: text.slice(0, 200) },
    Number.isFinite(retryAfter) ? retryAfter : null);
}

const enc = encodeURIComponent;

export const api = {
  createUpload(request, options) {
    return call('POST', '/api/v1/uploads', { ...options, body: request });
  },
  signParts(uploadId, partNumbers, checksums, options) {
    const body = { part_numbers: partNumbers };
    if (checksums) body.checksums_sha256 = checksums;
    return call('POST', `/api/v1/uploads/${enc(uploadId)}/parts`, { ...options, body });
  },
  listParts(uploadId, options) {
    return call('GET', `/api/v1/uploads/${enc(uploadId)}/parts`, options);
  },
  confirm(uploadId, options) {
    return call('POST', `/api/v1/uploads/${enc(uploadId)}/confirm`, options);
  },
  getUpload(uploadId, options) {
    return call('GET', `/api/v1/uploads/${enc(uploadId)}`, options);
  },
  abort(uploadId, options) {
    return call('DELETE', `/api/v1/uploads/${enc(uploadId)}`, { retries: 1, ...options });
  },
  listImages(imageId, { cursor, limit = 12, ...options } = {}) {
    const query = new URLSearchParams({ limit: String(limit) });
    if (cursor) query.set('cursor', cursor);
    return call('GET', `/api/v1/images/${enc(imageId)}?${query}`, options);
  },
};
