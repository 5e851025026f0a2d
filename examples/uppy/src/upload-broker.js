// Wires an Uppy instance to upload-broker's v1 API with @uppy/aws-s3 (5.x).
//
// The service, not the browser, decides how a file goes up: POST /api/v1/uploads answers
// either a presigned PUT or a multipart plan with a fixed part size. So each file's upload
// is created in a preprocessor, before @uppy/aws-s3 chooses single PUT or multipart and
// cuts the file into parts, and the answer is kept in the file's meta (`upload_broker`).
//
//   preprocessor            -> POST   /api/v1/uploads                  (create)
//   shouldUseMultipart      <- the created upload's `method`
//   getChunkSize            <- the created upload's `part_size`
//   getUploadParameters     <- its `url` and `headers`                 (single PUT)
//   createMultipartUpload   <- its `upload_id` and `key`               (no request)
//   signPart                -> POST   /api/v1/uploads/{id}/parts       {"part_numbers":[n]}
//   listParts               -> GET    /api/v1/uploads/{id}/parts
//   completeMultipartUpload -> POST   /api/v1/uploads/{id}/confirm     (the service completes
//                                                                       the S3 upload itself)
//   abortMultipartUpload    -> DELETE /api/v1/uploads/{id}
//   postprocessor           -> POST   /api/v1/uploads/{id}/confirm     (single PUT)
//
// Besides Uppy's own events ('upload-error' carries the service's refusal as a BrokerError
// with `code` and `message`), it emits on the Uppy instance:
//   'upload-broker:created'   (file, upload)  the service accepted the file
//   'upload-broker:confirmed' (file, record)  verified and stored; record.s3_url is the URL

import AwsS3 from '@uppy/aws-s3';

/** The service's own accepted types; a browser that guesses no type gets none of these. */
export const ALLOWED_TYPES = ['image/png', 'image/jpeg', 'image/gif', 'image/webp', 'image/bmp', 'image/tiff'];

const META = 'upload_broker';

/** An error answer of the service: `status`, the stable `code`, and its human `message`. */
export class BrokerError extends Error {
  constructor(status, body) {
    super(body?.message || `the service answered ${status}`);
    this.name = 'BrokerError';
    this.status = status;
    this.code = body?.code || 'http_error';
    this.body = body;
    // @uppy/aws-s3 reads `source.status` to decide whether a retry can help.
    this.source = { status };
  }
}

async function base64Sha256(blob) {
  const digest = await crypto.subtle.digest('SHA-256', await blob.arrayBuffer());
  let binary = '';
  for (const byte of new Uint8Array(digest)) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/**
 * Adds the AwsS3 uploader and the processors that talk to the service.
 *
 * Options:
 * - `baseUrl` (required): the service, e.g. `http://127.0.0.1:5000`.
 * - `imageId`: the image_id for files whose meta has no `image_id` (a string or a function).
 * - `headers`: extra request headers for the API, e.g. `{ Authorization: 'Bearer ...' }`.
 * - `checksumMaxSize`: files up to this size declare their SHA-256 (read whole in memory
 *   to compute it); [64 MiB]. Multipart parts are always signed with their own SHA-256.
 * - `limit`: requests in flight at once (@uppy/aws-s3's `limit`); [6].
 */
export function useUploadBroker(uppy, { baseUrl, imageId, headers = {}, checksumMaxSize = 64 * 1024 * 1024, limit = 6 } = {}) {
  if (!baseUrl) throw new TypeError('useUploadBroker: baseUrl is required');
  const api = `${baseUrl.replace(/\/+$/, '')}/api/v1`;

  async function call(method, path, body, signal) {
    let res;
    try {
      res = await fetch(`${api}${path}`, {
        method,
        headers: { ...(body ? { 'Content-Type': 'application/json' } : {}), ...headers },
        body: body ? JSON.stringify(body) : undefined,
        signal,
      });
    } catch (err) {
      if (err?.name === 'AbortError') throw err;
      throw new BrokerError(0, { code: 'network_error', message: `cannot reach the upload service (${err.message})` });
    }
    if (res.status === 204) return null;
    const answer = await res.json().catch(() => null);
    if (!res.ok) throw new BrokerError(res.status, answer);
    return answer;
  }

  const uploadOf = (file) => uppy.getFile(file.id)?.meta?.[META] ?? file.meta?.[META] ?? null;
  const remember = (file, patch) => {
    const current = uppy.getFile(file.id);
    if (!current) return null;
    const next = { ...current.meta[META], ...patch };
    uppy.setFileMeta(file.id, { [META]: next });
    return next;
  };
  // An upload the service has finished with, one way or another (nothing left to abort).
  const closeOn = (err) => err instanceof BrokerError && [404, 410, 422].includes(err.status);

  async function create(file) {
    const id = file.meta.image_id ?? (typeof imageId === 'function' ? imageId(file) : imageId);
    const request = {
      image_id: id,
      filename: file.name,
      content_type: file.type,
      size: file.size,
      // Every part of a multipart upload is signed for its own SHA-256 (ignored for a PUT).
      checksum_algorithm: 'SHA256',
    };
    if (file.size <= checksumMaxSize) request.checksum_sha256 = await base64Sha256(file.data);
    const upload = await call('POST', '/uploads', request);
    if (upload.method === 'MULTIPART' && Math.ceil(file.size / upload.part_size) !== upload.part_count) {
      throw new BrokerError(0, { code: 'bad_plan', message: `unexpected multipart plan: ${upload.part_count} parts of ${upload.part_size} bytes` });
    }
    return upload;
  }

  // Before any byte is sent: create (or keep) the file's upload.
  async function prepare(fileIDs) {
    await Promise.all(fileIDs.map(async (fileID) => {
      const file = uppy.getFile(fileID);
      if (!file) return;
      const kept = uploadOf(file);
      // Kept when still usable: its bytes are in storage and only the confirm is missing, or
      // its URLs are still valid for a while.
      const usable = kept && !kept.closed && !kept.record
        && (file.progress.uploadComplete || Date.parse(kept.expires_at) - Date.now() > 30_000);
      if (usable) return;
      uppy.emit('preprocess-progress', file, { mode: 'indeterminate', message: 'Preparing upload…' });
      try {
        const upload = await create(file);
        uppy.setFileMeta(fileID, { [META]: { ...upload, closed: false, record: null } });
        uppy.emit('upload-broker:created', uppy.getFile(fileID), upload);
      } catch (err) {
        uppy.setFileMeta(fileID, { [META]: null });
        // The file is not uploaded; the others go on.
        uppy.emit('upload-error', uppy.getFile(fileID), err);
      } finally {
        uppy.emit('preprocess-complete', uppy.getFile(fileID));
      }
    }));
  }

  async function confirm(file, signal) {
    const upload = uploadOf(file);
    try {
      const record = await call('POST', `/uploads/${upload.upload_id}/confirm`, null, signal);
      remember(file, { record, closed: true });
      uppy.emit('upload-broker:confirmed', uppy.getFile(file.id) ?? file, record);
      return record;
    } catch (err) {
      if (closeOn(err)) remember(file, { closed: true });
      throw err;
    }
  }

  async function abort(file) {
    const upload = uploadOf(file);
    if (!upload || upload.closed) return;
    remember(file, { closed: true });
    await call('DELETE', `/uploads/${upload.upload_id}`);
  }

  // After the bytes of single PUTs are in storage: confirm each (multipart ones already are).
  async function finish(fileIDs) {
    await Promise.all(fileIDs.map(async (fileID) => {
      const file = uppy.getFile(fileID);
      const upload = file && uploadOf(file);
      if (!upload || upload.method !== 'PUT' || upload.record || upload.closed) return;
      if (file.error || !file.progress.uploadComplete) return;
      uppy.emit('postprocess-progress', file, { mode: 'indeterminate', message: 'Verifying…' });
      try {
        await confirm(file);
        uppy.emit('postprocess-complete', uppy.getFile(fileID));
      } catch (err) {
        const current = uppy.getFile(fileID);
        if (!current) return;
        const { postprocess: _done, ...progress } = current.progress;
        // Refused for good (422, 410): not uploaded after all, so a retry sends the bytes
        // again, to a new upload. Otherwise (503, network) a retry only confirms again.
        uppy.setFileState(fileID, {
          progress: closeOn(err)
            ? { ...progress, uploadComplete: false, complete: false, percentage: 0, bytesUploaded: 0 }
            : progress,
        });
        uppy.emit('upload-error', uppy.getFile(fileID), err);
      }
    }));
  }

  uppy.addPreProcessor(prepare);
  uppy.addPostProcessor(finish);

  // A file taken out of Uppy before it was confirmed: give the service its upload back.
  uppy.on('file-removed', (file) => {
    const upload = file?.meta?.[META];
    if (upload && !upload.closed && !upload.record) {
      call('DELETE', `/uploads/${upload.upload_id}`).catch(() => {});
    }
  });
  // A single PUT that storage refused: that upload is dead, a retry creates another.
  // (@uppy/aws-s3 aborts a failed multipart upload itself.)
  uppy.on('upload-error', (file, err) => {
    const upload = file && uploadOf(file);
    if (!upload || upload.closed || upload.record || upload.method !== 'PUT') return;
    if (err instanceof BrokerError) return;
    abort(file).catch(() => {});
  });

  uppy.use(AwsS3, {
    id: 'UploadBrokerS3',
    limit,
    shouldUseMultipart: (file) => uploadOf(file)?.method === 'MULTIPART',
    // Called with the file's data (a Blob); the service fixed the part size.
    getChunkSize: (data) => {
      const file = uppy.getFiles().find((f) => f.data === data);
      return uploadOf(file ?? {})?.part_size ?? data.size;
    },

    getUploadParameters(file) {
      const upload = uploadOf(file);
      if (!upload?.url) throw new BrokerError(0, { code: 'not_created', message: 'the upload was not created' });
      return { method: 'PUT', url: upload.url, headers: upload.headers };
    },

    createMultipartUpload(file) {
      const upload = uploadOf(file);
      if (!upload?.upload_id) throw new BrokerError(0, { code: 'not_created', message: 'the upload was not created' });
      return { uploadId: upload.upload_id, key: upload.key };
    },

    async signPart(file, { uploadId, partNumber, body, signal }) {
      const request = { part_numbers: [partNumber] };
      if (uploadOf(file)?.checksum_algorithm === 'SHA256') {
        request.checksums_sha256 = { [partNumber]: await base64Sha256(body) };
      }
      const { parts } = await call('POST', `/uploads/${uploadId}/parts`, request, signal);
      const part = parts.find((p) => p.part_number === partNumber);
      return { method: 'PUT', url: part.url, headers: part.headers };
    },

    async listParts(file, { uploadId, signal }) {
      const { parts } = await call('GET', `/uploads/${uploadId}/parts`, null, signal);
      return parts.map((p) => ({ PartNumber: p.part_number, Size: p.size, ETag: p.etag }));
    },

    async completeMultipartUpload(file, { signal }) {
      const record = await confirm(file, signal);
      return { location: record.s3_url, ...record };
    },

    abortMultipartUpload(file) {
      return abort(file);
    },
  });

  return uppy;
}
