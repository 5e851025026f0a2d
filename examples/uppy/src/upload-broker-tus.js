// Wires an Uppy instance to upload-broker's tus endpoint (/api/v1/tus) with @uppy/tus (5.x).
//
// The bytes go to the service itself, which passes them on to storage: for browsers that
// can reach the service but not storage (no presigned URLs, no storage CORS). Each tus
// upload is a v1 upload whose upload_id is the last segment of its URL.
//
//   @uppy/tus creation        -> POST  /api/v1/tus           Upload-Length, Upload-Metadata:
//                                                            image_id (the file's meta), and
//                                                            filename/filetype (@uppy/tus makes
//                                                            them from the file's name and type)
//   @uppy/tus chunks          -> PATCH /api/v1/tus/{id}      Upload-Offset, `chunkSize` bytes each
//   resume (same file again)  -> HEAD  /api/v1/tus/{id}      Upload-Offset
//   postprocessor             -> GET   /api/v1/uploads/{id}  the record: the PATCH that brought
//                                                            the last byte was answered once the
//                                                            service had verified the file
//
// It emits the same events on the Uppy instance as useUploadBroker (upload-broker.js):
//   'upload-broker:created'   (file, {upload_id, method: 'TUS', url})  the upload's URL is known
//   'upload-broker:confirmed' (file, record)  verified and stored; record.s3_url is the URL
// A file the service refuses (at creation: 413, 415, ...; at its last byte: 422 with the
// code) ends with Uppy's 'upload-error', whose error is tus-js-client's: its
// `originalResponse` holds the service's JSON {code, message}.

import Tus from '@uppy/tus';
import { BrokerError } from './upload-broker.js';

const META = 'upload_broker';

/** The upload_id of a tus upload URL (its last path segment). */
export function uploadIdOf(url) {
  return decodeURIComponent(new URL(url).pathname.split('/').filter(Boolean).pop() || '');
}

/**
 * Adds @uppy/tus pointed at the service, and a postprocessor that reads each finished
 * upload's record.
 *
 * Options:
 * - `baseUrl` (required): the service, e.g. `http://127.0.0.1:5000`.
 * - `headers`: extra request headers, e.g. `{ Authorization: 'Bearer <upload link token>' }`.
 * - `chunkSize`: bytes per PATCH [8 MiB]; a broken connection costs at most one chunk.
 * - `limit`: uploads at once (@uppy/tus's `limit`); [6].
 */
export function useUploadBrokerTus(uppy, { baseUrl, headers = {}, chunkSize = 8 * 1024 * 1024, limit = 6 } = {}) {
  if (!baseUrl) throw new TypeError('useUploadBrokerTus: baseUrl is required');
  const api = `${baseUrl.replace(/\/+$/, '')}/api/v1`;

  async function getRecord(uploadId) {
    let res;
    try {
      res = await fetch(`${api}/uploads/${encodeURIComponent(uploadId)}`, { headers });
    } catch (err) {
      throw new BrokerError(0, { code: 'network_error', message: `cannot reach the upload service (${err.message})` });
    }
    const answer = await res.json().catch(() => null);
    if (!res.ok) throw new BrokerError(res.status, answer);
    return answer;
  }

  // Tells the page once which upload a file got (its URL appears with the first progress).
  const announced = new Map();
  const announce = (file) => {
    const url = uppy.getFile(file.id)?.tus?.uploadUrl;
    if (!url || announced.get(file.id) === url) return;
    announced.set(file.id, url);
    uppy.emit('upload-broker:created', uppy.getFile(file.id), { upload_id: uploadIdOf(url), method: 'TUS', url });
  };
  uppy.on('upload-progress', (file) => file && announce(file));
  uppy.on('file-removed', (file) => announced.delete(file.id));

  // After the last PATCH: the record, completed (and its s3_url).
  async function finish(fileIDs) {
    await Promise.all(fileIDs.map(async (fileID) => {
      const file = uppy.getFile(fileID);
      if (!file || file.error || !file.progress.uploadComplete || file.meta[META]?.record) return;
      const url = file.response?.uploadURL ?? file.tus?.uploadUrl;
      if (!url) return;
      announce(file);
      uppy.emit('postprocess-progress', file, { mode: 'indeterminate', message: 'Reading the record…' });
      try {
        const record = await getRecord(uploadIdOf(url));
        if (record.state !== 'completed') {
          throw new BrokerError(409, { code: record.failure_code || record.state, message: `the upload is ${record.state}` });
        }
        uppy.setFileMeta(fileID, { [META]: { record } });
        uppy.emit('upload-broker:confirmed', uppy.getFile(fileID), record);
        uppy.emit('postprocess-complete', uppy.getFile(fileID));
      } catch (err) {
        if (uppy.getFile(fileID)) uppy.emit('upload-error', uppy.getFile(fileID), err);
      }
    }));
  }
  uppy.addPostProcessor(finish);

  uppy.use(Tus, {
    id: 'UploadBrokerTus',
    endpoint: `${api}/tus`,
    headers,
    chunkSize,
    limit,
    // Only what the service reads: image_id, and `name`/`type`, which @uppy/tus also sends
    // as `filename`/`filetype` (the service ignores the first two).
    allowedMetaFields: ['image_id', 'name', 'type'],
    // A finished upload is nothing to resume: tus-js-client forgets its URL.
    removeFingerprintOnSuccess: true,
  });
}
