// One file's journey: check it, get a presigned PUT or a multipart plan, send the bytes
// (parts in parallel, retried, re-signed when a link expired), resume after a reload, and
// have the service verify the result. When storage can't be reached from this browser (or
// the page's address says ?transport=tus), the file goes through the service with tus
// instead, in chunks, and resumes from the service's offset. The DOM is not touched here:
// an Upload fires "change" events and app.js draws it.

import { api, ApiError, retrying } from './api.js';
import { putBlob, TransferError } from './transfer.js';
import * as tus from './tus.js';
import { canHash, inspectFile, sha256Base64 } from './filecheck.js';
import * as resume from './resume.js';
import {
  explainGone, explainMismatch, explainRefusal, explainService, explainTransfer, explainVerification,
} from './messages.js';
import { Limiter, Lock, abortError, backoffDelay, isAbort, sleep, whenOnline } from './util.js';

/** Parts of one file in flight at once. */
export const PARALLEL_PARTS = 4;
/** Transfers to storage at once over all files (a browser opens about 6 connections a host). */
export const storageSlots = new Limiter(6);
/** Hashing reads a whole part into memory: one at a time keeps memory flat. */
const hashLock = new Lock();

const MIB = 1024 * 1024;
/** Files up to this size get a whole-file SHA-256, checked by the service at confirm. */
const WHOLE_FILE_HASH_LIMIT = 64 * MIB;
/** Retries of one PUT after network errors, stalls or 5xx answers. */
const MAX_RETRIES = 5;
/** New signatures for one PUT after 403 answers (expired links). */
const MAX_RESIGNS = 3;
/** How long a remark about a retry stays up at least, in ms. */
const NOTICE_MS = 3000;
/** Verification failures that another attempt may cure. */
const RETRYABLE_REJECTIONS = new Set(['size_mismatch', 'checksum_mismatch']);
/** Bytes of one PATCH through the service (each hashed in memory first). */
export const TUS_CHUNK = 8 * MIB;
/** Answers of the service to a PATCH that another attempt may cure (besides 0, 502, 503, 504). */
const TUS_RETRYABLE = new Set([409, 423, 429, 460, 500]);

export const STATES = {
  queued: 'Waiting',
  preparing: 'Preparing',
  uploading: 'Uploading',
  verifying: 'Verifying',
  completed: 'Uploaded',
  refused: 'Not accepted',
  rejected: 'Verification failed',
  failed: 'Failed',
  cancelled: 'Cancelled',
};
const FINAL = new Set(['completed', 'refused', 'rejected', 'failed', 'cancelled']);

/** Ends an upload with a final state and words for the person. */
class Stop extends Error {
  constructor(state, words, retryable = false) {
    super(words.title);
    this.state = state;
    this.words = words;
    this.retryable = retryable;
  }
}

/** Storage gave no answer at all while the service (with tus) does: send through the service. */
class StorageUnreachable extends Error {
  constructor() {
    super('storage cannot be reached from this browser');
    this.name = 'StorageUnreachable';
  }
}

let counter = 0;

function sizeOfPart(plan, number, fileSize) {
  return number < plan.part_count ? plan.part_size : fileSize - plan.part_size * (plan.part_count - 1);
}

export class Upload extends EventTarget {
  /**
   * `transport`: "auto" (straight to storage, through the service when storage can't be
   * reached) or "tus" (always through the service).
   */
  constructor(file, imageId, { transport = 'auto' } = {}) {
    super();
    this.transport = transport === 'tus' ? 'tus' : 'auto';
    counter += 1;
    this.localId = `upload-${counter}`;
    this.file = file;
    this.imageId = imageId;
    this.key = resume.keyFor(imageId, file);
    this.contentType = file.type;
    this.reset();
  }

  reset() {
    this.state = 'queued';
    this.title = 'Waiting for its turn…';
    this.detail = '';
    this.notice = '';
    this.noticeAt = 0;
    this.retryable = false;
    this.total = this.file.size;
    this.sent = 0;
    this.rate = 0;
    this.eta = null;
    this.samples = [];
    this.partLoads = new Map();
    this.doneBytes = 0;
    this.method = null;
    this.partCount = 0;
    this.partsDone = 0;
    this.resumedParts = 0;
    this.resumedBytes = 0;
    this.tusUrl = null;
    this.probe = null;
    this.startBytes = 0;
    this.startedAt = 0;
    this.transferEndedAt = 0;
    this.finishedAt = 0;
    this.record = null;
    this.uploadId = null;
    this.running = false;
    this.controller = null;
  }

  get finished() {
    return FINAL.has(this.state);
  }

  get active() {
    return !this.finished && this.state !== 'queued';
  }

  emit(type = 'change') {
    this.dispatchEvent(new Event(type));
  }

  setState(state, title, detail = '') {
    if (this.state === 'cancelled' && state !== 'queued') return;
    this.state = state;
    this.title = title;
    this.detail = detail;
    this.emit();
  }

  /** A passing remark (a retry, a new link); it stays up for a few seconds at least. */
  note(text) {
    this.notice = text;
    this.noticeAt = performance.now();
    this.emit();
  }

  /** Runs the whole upload; never throws (the outcome is in `state`). */
  async run() {
    if (this.running || this.finished) return;
    this.running = true;
    this.controller = new AbortController();
    const { signal } = this.controller;
    try {
      await this.process(signal);
    } catch (err) {
      if (signal.aborted || isAbort(err)) {
        // cancelled: cancel() has set the state already
      } else if (err instanceof Stop) {
        this.end(err.state, err.words, err.retryable);
      } else if (err instanceof TransferError) {
        this.end('failed', explainTransfer(err), true);
      } else if (err instanceof ApiError && err.status === 410) {
        resume.remove(this.key);
        this.end('failed', explainGone(err.code), true);
      } else if (err instanceof ApiError) {
        this.end('failed', explainService(err), true);
      } else {
        console.error(err);
        this.end('failed', { title: 'Something went wrong', detail: String(err?.message || err) }, true);
      }
    } finally {
      this.running = false;
      if (this.retryWhenStopped) {
        this.retryWhenStopped = false;
        this.reset();
      }
      this.emit();
    }
  }

  cancel() {
    if (this.finished) return;
    this.controller?.abort();
    if (this.tusUrl) tus.terminate(this.tusUrl).catch(() => {});
    else if (this.uploadId) api.abort(this.uploadId).catch(() => {});
    resume.remove(this.key);
    this.end('cancelled', { title: 'Cancelled', detail: 'Nothing was kept.' }, true);
  }

  /** Starts a failed or cancelled upload again (a multipart one resumes from its parts). */
  retry() {
    if (!this.finished || this.state === 'completed') return;
    if (this.running) {
      // The cancelled run is still unwinding; start over once it has.
      this.retryWhenStopped = true;
      return;
    }
    this.reset();
    this.emit();
  }

  end(state, words, retryable = false) {
    this.state = state;
    this.title = words.title;
    this.detail = words.detail || '';
    this.notice = '';
    this.retryable = retryable;
    this.finishedAt = performance.now();
    this.emit();
    this.emit('settled');
  }

  async process(signal) {
    this.setState('preparing', 'Checking the file…');
    const check = await inspectFile(this.file);
    this.contentType = check.contentType;
    if (check.mismatch) throw new Stop('refused', explainMismatch(check.mismatch, this.file));
    if (signal.aborted) throw abortError();

    let saved = check.concern ? null : resume.load(this.key);
    // Bytes already at the service stay there, whatever the transport.
    if (saved?.method === 'TUS') {
      if (await this.resumeTus(saved, signal)) return;
      saved = null;
    }
    if (this.transport === 'tus') {
      if (saved) {
        // An upload to storage left by an earlier visit: nothing goes to storage now.
        api.abort(saved.upload_id).catch(() => {});
        resume.remove(this.key);
      }
      await this.sendThroughService(check, signal);
      return;
    }
    try {
      if (saved && await this.resumeFrom(saved, signal)) return;
      await this.startFresh(check, signal);
    } catch (err) {
      if (!(err instanceof StorageUnreachable)) throw err;
      await this.fallBack(check, signal);
    }
  }

  async startFresh(check, signal) {
    const request = {
      image_id: this.imageId,
      filename: this.file.name,
      content_type: check.contentType,
      size: this.file.size,
    };
    if (!check.concern && canHash()) {
      request.checksum_algorithm = 'SHA256';
      if (this.file.size <= WHOLE_FILE_HASH_LIMIT) {
        this.setState('preparing', 'Computing the checksum…');
        request.checksum_sha256 = await hashLock.run(() => sha256Base64(this.file), signal);
      }
    }
    this.setState('preparing', 'Asking for an upload link…');
    const issued = await this.create(request, check.concern, signal);
    if (issued.method === 'MULTIPART') {
      const plan = {
        upload_id: issued.upload_id,
        part_size: issued.part_size,
        part_count: issued.part_count,
        checksum_algorithm: issued.checksum_algorithm || null,
      };
      this.remember({ method: 'MULTIPART', ...plan, expires_at: issued.expires_at });
      await this.sendParts(plan, new Set(), signal);
      await this.confirm(plan, signal);
    } else {
      await this.sendSingle(issued, request, signal);
      await this.confirm(null, signal);
    }
  }

  /** POST /api/v1/uploads. A 4xx answer is a refusal explained in plain words. */
  async create(request, concern, signal) {
    try {
      const issued = await api.createUpload(request, {
        signal,
        onRetry: ({ delay }) => this.note(`The service is busy; asking again in ${Math.ceil(delay / 1000)} s…`),
      });
      this.uploadId = issued.upload_id;
      this.notice = '';
      return issued;
    } catch (err) {
      if (err instanceof ApiError && err.status >= 400 && err.status < 500) {
        throw new Stop('refused', explainRefusal(err.code, { file: this.file, contentType: request.content_type, message: err.message }));
      }
      if (err instanceof ApiError && concern) {
        // The service can't be asked; the page's own check has to do.
        throw new Stop('refused', explainRefusal(concern.code, { file: this.file, contentType: request.content_type }));
      }
      throw err;
    }
  }

  remember(entry) {
    resume.save(this.key, {
      ...entry,
      image_id: this.imageId,
      filename: this.file.name,
      size: this.file.size,
    });
  }

  /** One presigned PUT of the whole file. An expired link means a new upload (no re-sign for PUT). */
  async sendSingle(issued, request, signal) {
    let current = issued;
    let resigns = 0;
    let attempt = 0;
    this.method = 'PUT';
    this.partCount = 1;
    this.remember({ method: 'PUT', upload_id: current.upload_id, expires_at: current.expires_at });
    this.beginTransfer(0);
    this.setState('uploading', 'Uploading…');
    for (;;) {
      try {
        await storageSlots.run(() => putBlob(current.url, current.headers, this.file, {
          signal,
          onProgress: (loaded) => this.partProgress(1, loaded),
        }), signal);
        this.partDone(1, this.file.size);
        return;
      } catch (err) {
        if (!(err instanceof TransferError)) throw err;
        this.partProgress(1, 0);
        if (err.kind === 'network' && await this.storageUnreachable(current.url, signal)) throw new StorageUnreachable();
        if (err.expired) {
          resigns += 1;
          if (resigns > MAX_RESIGNS) throw err;
          this.note('The upload link expired before it was used; getting a new one…');
          const stale = current.upload_id;
          await api.abort(stale, { signal }).catch((e) => { if (isAbort(e)) throw e; });
          current = await this.create(request, null, signal);
          this.remember({ method: 'PUT', upload_id: current.upload_id, expires_at: current.expires_at });
          attempt = 0;
          continue;
        }
        attempt += 1;
        if (!err.retryable || attempt > MAX_RETRIES) throw err;
        await this.pause(attempt, err, signal, 'The upload');
      }
    }
  }

  /** Sends every part not in `held`, PARALLEL_PARTS at a time; the first hard failure stops the rest. */
  async sendParts(plan, held, signal) {
    this.method = 'MULTIPART';
    this.partCount = plan.part_count;
    this.partLoads.clear();
    this.partsDone = held.size;
    this.doneBytes = 0;
    for (const n of held) this.doneBytes += sizeOfPart(plan, n, this.file.size);
    this.beginTransfer(this.doneBytes);
    const queue = [];
    for (let n = 1; n <= plan.part_count; n += 1) if (!held.has(n)) queue.push(n);
    this.setState('uploading', 'Uploading…');

    const inner = new AbortController();
    const forward = () => inner.abort();
    signal.addEventListener('abort', forward, { once: true });
    let failure = null;
    const worker = async () => {
      while (queue.length && !failure) {
        const n = queue.shift();
        try {
          await this.sendPart(plan, n, inner.signal);
        } catch (err) {
          if (!failure) {
            failure = err;
            inner.abort();
          }
          return;
        }
      }
    };
    try {
      await Promise.all(Array.from({ length: Math.min(PARALLEL_PARTS, queue.length) }, worker));
    } finally {
      signal.removeEventListener('abort', forward);
    }
    if (signal.aborted) throw abortError();
    if (failure) throw failure;
  }

  async sendPart(plan, n, signal) {
    const size = sizeOfPart(plan, n, this.file.size);
    const start = (n - 1) * plan.part_size;
    const blob = this.file.slice(start, start + size);
    let checksums;
    if (plan.checksum_algorithm === 'SHA256') {
      checksums = { [n]: await hashLock.run(() => sha256Base64(blob), signal) };
    }
    let signed = null;
    let resigns = 0;
    let attempt = 0;
    for (;;) {
      if (!signed) {
        const answer = await api.signParts(plan.upload_id, [n], checksums, {
          signal,
          onRetry: ({ delay, error }) => this.note(error.status
            ? `The service is busy; asking again in ${Math.ceil(delay / 1000)} s…`
            : `Couldn't reach the service; trying again in ${Math.ceil(delay / 1000)} s…`),
        });
        signed = answer.parts.find((p) => p.part_number === n);
        if (!signed) throw new ApiError(500, { message: `the service did not sign part ${n}` });
      }
      try {
        await storageSlots.run(() => putBlob(signed.url, signed.headers, blob, {
          signal,
          onProgress: (loaded) => this.partProgress(n, loaded),
        }), signal);
        this.partDone(n, size);
        return;
      } catch (err) {
        if (!(err instanceof TransferError)) throw err;
        this.partProgress(n, 0);
        if (err.kind === 'network' && await this.storageUnreachable(signed.url, signal)) throw new StorageUnreachable();
        if (err.expired) {
          resigns += 1;
          if (resigns > MAX_RESIGNS) throw err;
          this.note(`The link for part ${n} expired; signing it again…`);
          signed = null;
          continue;
        }
        attempt += 1;
        if (!err.retryable || attempt > MAX_RETRIES) throw err;
        await this.pause(attempt, err, signal, `Part ${n}`);
      }
    }
  }

  async pause(attempt, err, signal, what) {
    const delay = err.retryAfter != null ? Math.min(60_000, Math.max(500, err.retryAfter * 1000)) : backoffDelay(attempt);
    let why;
    if (err instanceof ApiError) {
      why = err.code === 'stalled' ? 'stalled' : !err.status ? 'lost its connection'
        : err.status === 460 ? 'arrived damaged' : `got ${err.status} from the service`;
    } else {
      why = err.kind === 'stalled' ? 'stalled' : err.kind === 'network' ? 'lost its connection' : `got ${err.status} from storage`;
    }
    this.note(`${what} ${why}; trying again in ${Math.max(1, Math.round(delay / 1000))} s (retry ${attempt} of ${MAX_RETRIES})…`);
    await sleep(delay, signal);
    if (navigator.onLine === false) {
      this.note('Offline: waiting for the network to come back…');
      await whenOnline(signal);
    }
  }

  /** POST /confirm: the service checks the object. Missing parts are sent again first. */
  async confirm(plan, signal) {
    this.setState('verifying', 'Verifying…');
    for (let round = 1; ; round += 1) {
      try {
        const record = await api.confirm(this.uploadId, {
          signal,
          onRetry: ({ delay }) => this.note(`The service is busy; verifying again in ${Math.ceil(delay / 1000)} s…`),
        });
        this.complete(record);
        return;
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        if (err.code === 'incomplete_upload' && plan && round <= 2) {
          const missing = new Set(err.missingParts);
          const held = new Set();
          for (let n = 1; n <= plan.part_count; n += 1) if (!missing.has(n)) held.add(n);
          this.note(`Storage is missing ${missing.size === 1 ? 'a part' : `${missing.size} parts`}; sending ${missing.size === 1 ? 'it' : 'them'} again…`);
          await this.sendParts(plan, held, signal);
          this.setState('verifying', 'Verifying…');
          continue;
        }
        if (err.code === 'not_uploaded' && round <= 3) {
          await sleep(1000 * round, signal);
          continue;
        }
        if (err.status === 422) {
          resume.remove(this.key);
          throw new Stop('rejected', explainVerification(err.code, { message: err.message }), RETRYABLE_REJECTIONS.has(err.code));
        }
        throw err;
      }
    }
  }

  complete(record) {
    resume.remove(this.key);
    if (this.state === 'cancelled') return;
    this.record = record;
    this.uploadId = record.upload_id;
    this.sent = this.total;
    this.end('completed', { title: 'Uploaded', detail: '' });
    this.emit('completed');
  }

  /**
   * Picks up an upload remembered from an earlier visit. Returns false when there is
   * nothing to pick up (the caller then starts afresh).
   */
  async resumeFrom(saved, signal) {
    this.uploadId = saved.upload_id;
    if (saved.method === 'MULTIPART') {
      this.setState('preparing', 'Looking for the unfinished upload…');
      let listing;
      try {
        listing = await api.listParts(saved.upload_id, { signal });
      } catch (err) {
        if (!(err instanceof ApiError) || err.transient) throw err;
        if (err.code === 'already_completed') {
          this.complete(await api.getUpload(saved.upload_id, { signal }));
          return true;
        }
        resume.remove(this.key);
        this.uploadId = null;
        return false;
      }
      const plan = {
        upload_id: saved.upload_id,
        part_size: listing.part_size,
        part_count: listing.part_count,
        checksum_algorithm: saved.checksum_algorithm || null,
      };
      const fits = plan.part_size * (plan.part_count - 1) < this.file.size && this.file.size <= plan.part_size * plan.part_count;
      if (!fits) {
        api.abort(saved.upload_id).catch(() => {});
        resume.remove(this.key);
        this.uploadId = null;
        return false;
      }
      const held = new Set(listing.parts
        .filter((p) => p.size === sizeOfPart(plan, p.part_number, this.file.size))
        .map((p) => p.part_number));
      this.resumedParts = held.size;
      this.partCount = plan.part_count;
      this.emit('resumed');
      await this.sendParts(plan, held, signal);
      await this.confirm(plan, signal);
      return true;
    }

    // A single PUT left behind by a reload: it may have finished before the page went away.
    this.setState('verifying', 'Checking the earlier attempt…');
    try {
      this.complete(await api.confirm(saved.upload_id, { signal }));
      return true;
    } catch (err) {
      if (!(err instanceof ApiError) || err.transient) throw err;
      if (err.code === 'not_uploaded') api.abort(saved.upload_id).catch(() => {});
      resume.remove(this.key);
      this.uploadId = null;
      return false;
    }
  }

  // Through the service with tus: when storage can't be reached, or ?transport=tus.

  /**
   * After a network error from storage: whether storage gives no answer at all while the
   * service answers and speaks tus (offline, or the service unreachable too, is not
   * storage's fault: the usual retries handle that). Parts failing together share one look.
   */
  storageUnreachable(url, signal) {
    if (navigator.onLine === false) return Promise.resolve(false);
    this.probe ??= Promise.all([tus.answers(url, signal), tus.served(signal)])
      .then(([storage, service]) => !storage && service)
      .finally(() => { this.probe = null; });
    return this.probe;
  }

  /** Drops the presigned upload (storage can't be reached) and sends the file through the service. */
  async fallBack(check, signal) {
    const stale = this.uploadId;
    this.uploadId = null;
    resume.remove(this.key);
    this.note("Storage can't be reached from here; sending the file through the service instead…");
    if (stale) await api.abort(stale, { signal }).catch((e) => { if (isAbort(e)) throw e; });
    await this.sendThroughService(check, signal);
  }

  async sendThroughService(check, signal) {
    const created = await this.createTus(check, signal);
    await this.appendChunks(created.url, created.offset, signal);
    await this.finishTus(signal);
  }

  /** POST /api/v1/tus. A 4xx answer is a refusal explained in plain words, as at create. */
  async createTus(check, signal) {
    this.method = 'TUS';
    this.resumedParts = 0;
    this.setState('preparing', 'Starting the upload through the service…');
    let busy = false;
    let created;
    try {
      created = await retrying(() => tus.create({
        size: this.file.size,
        metadata: { image_id: this.imageId, filename: this.file.name, filetype: check.contentType },
        signal,
      }), {
        signal,
        onRetry: ({ delay }) => {
          busy = true;
          this.note(`The service is busy; asking again in ${Math.ceil(delay / 1000)} s…`);
        },
      });
    } catch (err) {
      if (err instanceof ApiError && err.status >= 400 && err.status < 500) {
        throw new Stop('refused', explainRefusal(err.code, { file: this.file, contentType: check.contentType, message: err.message }));
      }
      if (err instanceof ApiError && check.concern) {
        throw new Stop('refused', explainRefusal(check.concern.code, { file: this.file, contentType: check.contentType }));
      }
      throw err;
    }
    if (busy) this.notice = '';
    this.uploadId = tus.uploadIdOf(created.url);
    this.tusUrl = created.url;
    const expires = Date.parse(created.expiresAt || '');
    this.remember({
      method: 'TUS',
      upload_id: this.uploadId,
      url: created.url,
      expires_at: Number.isFinite(expires) ? new Date(expires).toISOString() : null,
    });
    return created;
  }

  /**
   * Picks up a tus upload remembered from an earlier visit, from the service's offset.
   * Returns false when there is nothing to pick up (the caller then starts afresh).
   */
  async resumeTus(saved, signal) {
    this.method = 'TUS';
    this.setState('preparing', 'Looking for the unfinished upload…');
    let found = null;
    try {
      // 423: the request cut off by the reload still holds the upload for a moment.
      found = await retrying(() => tus.status(saved.url, { signal }), {
        signal,
        retryWhen: (err) => err.status === 423 || err.status === 429,
      });
    } catch (err) {
      // Gone, unknown, or refused at its last byte: start afresh.
      if (!(err instanceof ApiError) || ![404, 410, 422].includes(err.status)) throw err;
    }
    if (!found || found.length !== this.file.size) {
      if (found) tus.terminate(saved.url).catch(() => {});
      resume.remove(this.key);
      return false;
    }
    this.uploadId = saved.upload_id;
    this.tusUrl = saved.url;
    if (found.offset > 0) {
      this.resumedBytes = found.offset;
      this.emit('resumed');
    }
    await this.appendChunks(saved.url, found.offset, signal);
    await this.finishTus(signal);
    return true;
  }

  /**
   * PATCHes the file from `offset` in TUS_CHUNK pieces, each with its SHA-256 when the
   * browser can hash. After a failure it asks the service (HEAD) where to go on from.
   */
  async appendChunks(url, offset, signal) {
    const size = this.file.size;
    this.partCount = 0;
    this.partsDone = 0;
    this.partLoads.clear();
    this.doneBytes = offset;
    this.beginTransfer(offset);
    this.setState('uploading', 'Uploading…');
    let at = offset;
    let attempt = 0;
    let unsure = false;
    for (;;) {
      try {
        if (unsure) {
          at = (await tus.status(url, { signal })).offset;
          unsure = false;
          this.doneBytes = at;
          this.recompute();
          if (this.state === 'verifying') this.setState('uploading', 'Uploading…');
        }
        if (at >= size) return;
        const end = Math.min(size, at + TUS_CHUNK);
        const chunk = this.file.slice(at, end);
        const checksum = canHash() ? await hashLock.run(() => sha256Base64(chunk), signal) : null;
        const answer = await tus.append(url, at, chunk, {
          checksum,
          signal,
          onProgress: (loaded) => {
            this.partProgress(0, loaded);
            // The last PATCH is answered once the service has verified the whole file.
            if (end === size && loaded >= chunk.size && this.state === 'uploading') this.setState('verifying', 'Verifying…');
          },
        });
        this.partLoads.delete(0);
        at = answer.offset;
        this.doneBytes = at;
        this.recompute();
        attempt = 0;
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        this.partProgress(0, 0);
        if (err.status === 422) await this.rejectedTus(err, signal);
        if (err.status === 404 || err.status === 410) {
          resume.remove(this.key);
          throw new ApiError(410, { ...err.body, code: err.status === 404 ? 'gone' : err.code });
        }
        attempt += 1;
        if (!(err.transient || TUS_RETRYABLE.has(err.status)) || attempt > MAX_RETRIES) throw err;
        unsure = true;
        // Another offset than ours (409): asking for the service's one is enough.
        if (err.status !== 409) await this.pause(attempt, err, signal, 'The upload');
      }
    }
  }

  /** The service refused the file at its last byte (422): says why, from the record when a HEAD found it. */
  async rejectedTus(err, signal) {
    resume.remove(this.key);
    let { code, message } = err;
    if (code === 'rejected') {
      const record = await api.getUpload(this.uploadId, { signal }).catch(() => null);
      code = record?.failure_code || code;
      message = '';
    }
    throw new Stop('rejected', explainVerification(code, { message }), RETRYABLE_REJECTIONS.has(code));
  }

  /** Every byte is at the service, which verified the file before its last answer. */
  async finishTus(signal) {
    this.setState('verifying', 'Verifying…');
    const record = await api.getUpload(this.uploadId, { signal });
    if (record.state !== 'completed') {
      resume.remove(this.key);
      throw new ApiError(410, { code: record.state, message: `the upload is ${record.state}` });
    }
    this.tusUrl = null;
    this.complete(record);
  }

  /** Called every second or so, so that the speed falls when the bytes stop moving. */
  tick() {
    if (this.state === 'uploading') this.recompute();
  }

  // Progress: bytes of finished parts plus what is in flight; speed over the last seconds.

  beginTransfer(alreadyThere) {
    this.startBytes = alreadyThere;
    this.startedAt = performance.now();
    this.transferEndedAt = 0;
    this.sent = alreadyThere;
    this.samples = [[this.startedAt, alreadyThere]];
    this.rate = 0;
    this.eta = null;
  }

  partProgress(n, loaded) {
    this.partLoads.set(n, loaded);
    this.recompute();
  }

  partDone(n, size) {
    this.partLoads.delete(n);
    this.doneBytes += size;
    this.partsDone += 1;
    this.recompute();
  }

  recompute() {
    let inFlight = 0;
    for (const loaded of this.partLoads.values()) inFlight += loaded;
    const sent = Math.min(this.total, this.doneBytes + inFlight);
    const now = performance.now();
    if (sent < this.sent) this.samples = [];
    // Bytes moving again make a remark stale, once it has been readable for a while.
    if (sent > this.sent && this.notice && now - this.noticeAt > NOTICE_MS) this.notice = '';
    if (sent === this.total && !this.transferEndedAt) this.transferEndedAt = now;
    this.sent = sent;
    this.samples.push([now, sent]);
    while (this.samples.length > 2 && now - this.samples[0][0] > 4000) this.samples.shift();
    const [t0, s0] = this.samples[0];
    const seconds = (now - t0) / 1000;
    if (seconds >= 0.25) {
      this.rate = (sent - s0) / seconds;
      this.eta = this.rate > 0 ? (this.total - sent) / this.rate : null;
    }
    this.emit();
  }

  /** Average speed of this visit's transfer, for the summary once done. */
  get averageRate() {
    const seconds = ((this.transferEndedAt || this.finishedAt || performance.now()) - this.startedAt) / 1000;
    const bytes = this.total - this.startBytes;
    return seconds > 0 && bytes > 0 ? bytes / seconds : 0;
  }
}
