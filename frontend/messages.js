// Plain words for what went wrong. Each function returns {title, detail}: a short verdict
// for the row and one sentence of explanation or advice.

import { formatBytes, extensionOf, typeLabel } from './format.js';

const ALLOWED_WORDS = 'PNG, JPEG, GIF, WebP, BMP or TIFF';

/** The limit out of a message like "file is larger than the limit of 5368709120 bytes". */
function limitFrom(message) {
  const match = /(\d{2,})\s*bytes/.exec(message || '');
  return match ? Number(match[1]) : null;
}

/**
 * Why the service (or, when it cannot be asked, the page) refuses a file before any byte
 * is sent. `code` is the service's error code; `context` has the file and declared type.
 */
export function explainRefusal(code, { file, contentType, message } = {}) {
  const ext = extensionOf(file?.name || '');
  const kind = typeLabel(file?.type || contentType || '', file?.name || '');
  switch (code) {
    case 'unsupported_type':
      return {
        title: `${kind === 'file' ? 'This kind of file' : `${kind} files`} can't be uploaded`,
        detail: `Only ${ALLOWED_WORDS} images are accepted. Convert the file to one of those and choose it again.`,
      };
    case 'extension_mismatch':
      return {
        title: "The file name doesn't match its type",
        detail: ext
          ? `The name ends in .${ext} but the file is ${withArticle(kind)} image. Rename it with the right extension and choose it again.`
          : `The file name has no extension. Rename it to end in .${suggestExtension(contentType)} and choose it again.`,
      };
    case 'invalid_filename':
      return {
        title: "The file name isn't accepted",
        detail: 'Rename the file (letters, digits and simple punctuation work best) and choose it again.',
      };
    case 'invalid_size':
      return file && file.size === 0
        ? { title: 'This file is empty', detail: 'It has no bytes to upload. Check that it was saved completely.' }
        : { title: "The file's size isn't accepted", detail: message || '' };
    case 'too_large': {
      const limit = limitFrom(message);
      return {
        title: 'This file is too large',
        detail: limit
          ? `It is ${formatBytes(file?.size)}; the largest file accepted is ${formatBytes(limit)}.`
          : `It is ${formatBytes(file?.size)}, more than the service accepts.`,
      };
    }
    case 'invalid_image_id':
      return {
        title: "This page's address can't take uploads",
        detail: 'The part after the last slash must be 1 to 100 letters, digits, "_" or "-".',
      };
    case 'unauthorized':
    case 'invalid_token':
      return {
        title: 'This page needs an upload link',
        detail: 'Uploads here need a link from whoever runs the service. Open the link you were given, or ask for one.',
      };
    case 'token_expired':
      return {
        title: 'Your upload link has expired',
        detail: 'Ask whoever sent it for a new link, then open it and choose the file again.',
      };
    case 'forbidden_image_id':
      return {
        title: 'Your upload link is for another page',
        detail: 'Open the exact link you were given; it only uploads to its own image.',
      };
    case 'link_exhausted':
      return {
        title: 'Your upload link is used up',
        detail: 'It allows no more uploads. Ask for a new link to upload more files.',
      };
    case 'link_size_exceeded':
      return {
        title: 'This file is larger than your upload link allows',
        detail: `It is ${formatBytes(file?.size)}. Ask for a link that allows bigger files, or choose a smaller one.`,
      };
    case 'invalid_metadata':
    case 'invalid_request':
      return { title: "The service couldn't accept this request", detail: message || '' };
    default:
      return { title: "The service didn't accept this file", detail: message || `(${code || 'unknown reason'})` };
  }
}

/** The file's bytes are a different image format than its name says (found by the page). */
export function explainMismatch({ declared, actual }, file) {
  if (!actual) {
    return {
      title: "The file isn't an image",
      detail: `${file.name} is named as ${withArticle(typeLabel(declared))} but its contents are not an image of any type this service takes, so nothing was sent.`,
    };
  }
  return {
    title: "The file's contents don't match its name",
    detail: `${file.name} is named as ${withArticle(typeLabel(declared))} but holds ${withArticle(typeLabel(actual))} image. Rename it to .${suggestExtension(actual)} and choose it again.`,
  };
}

/** The service checked the stored object at confirm and refused it (422). */
export function explainVerification(code, { message } = {}) {
  switch (code) {
    case 'size_mismatch':
      return {
        title: 'Verification failed: the size is wrong',
        detail: 'Storage received a different number of bytes than the file has. Try again; if it repeats, the file may be changing on disk.',
      };
    case 'type_mismatch':
      return {
        title: "Verification failed: the type doesn't match",
        detail: "The file's contents are a different image format than its name says. Rename it with the right extension.",
      };
    case 'invalid_image':
      return {
        title: "Verification failed: not a readable image",
        detail: 'The file could not be read as an image. It may be damaged, or not an image at all.',
      };
    case 'checksum_mismatch':
      return {
        title: "Verification failed: the bytes don't match",
        detail: 'What storage holds differs from the file (checksum mismatch). Try again.',
      };
    case 'image_too_large':
      return {
        title: 'Verification failed: the picture is too big',
        detail: `Its width or height (in pixels) is above what the service accepts. Scale it down and try again.${message ? ` (${message})` : ''}`,
      };
    default:
      return { title: 'Verification failed', detail: message || code || '' };
  }
}

/** An upload the service no longer takes bytes for. */
export function explainGone(code) {
  if (code === 'aborted') {
    return { title: 'This upload was cancelled', detail: 'It was stopped elsewhere. Choose the file again to start over.' };
  }
  if (code === 'expired') {
    return { title: 'This upload expired', detail: 'It took too long to finish. Choose Retry to start over.' };
  }
  return { title: 'This upload is gone', detail: 'The service no longer has it. Choose Retry to start over.' };
}

/** A transfer to storage that could not be completed (after retries). */
export function explainTransfer(err) {
  if (err.kind === 'network') {
    return { title: "Couldn't reach storage", detail: 'The connection failed several times. Check your network and choose Retry; parts already sent are kept.' };
  }
  if (err.kind === 'stalled') {
    return { title: 'The upload stalled', detail: 'No progress for a long time. Choose Retry to continue.' };
  }
  if (err.status === 403) {
    return { title: 'Storage refused the upload link', detail: 'Signing it again did not help. Choose Retry to start over.' };
  }
  if (err.storageCode === 'BadDigest') {
    return { title: 'The file changed while it was being sent', detail: "What was sent doesn't match the checksum taken before sending. Choose it again." };
  }
  if (err.storageCode === 'EntityTooLarge' || err.storageCode === 'EntityTooSmall') {
    return { title: 'Storage refused the size of a piece', detail: 'Choose Retry; if it repeats, choose the file again.' };
  }
  return {
    title: 'Storage refused the upload',
    detail: `It answered ${err.status || 'with an error'}${err.storageMessage ? `: ${err.storageMessage}` : ''}. Choose Retry to try again.`,
  };
}

/** The service could not be reached or kept failing. */
export function explainService(err) {
  if (err.status === 503 || err.code === 'storage_unavailable') {
    return { title: 'The service is busy', detail: 'Storage is unavailable right now. Choose Retry in a moment.' };
  }
  if (!err.status) {
    return { title: "Couldn't reach the service", detail: 'Check your connection and choose Retry.' };
  }
  return { title: 'Something went wrong', detail: err.message || `The service answered ${err.status}.` };
}

function withArticle(word) {
  return /^[AEFHILMNORSX]/.test(word) && word.toUpperCase() === word ? `an ${word}` : `a ${word}`;
}

function suggestExtension(type) {
  const map = {
    'image/png': 'png',
    'image/jpeg': 'jpg',
    'image/gif': 'gif',
    'image/webp': 'webp',
    'image/bmp': 'bmp',
    'image/tiff': 'tiff',
  };
  return map[type] || 'png';
}
