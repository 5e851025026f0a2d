// What both example pages share: the service's URL, the image_id field, Uppy with its
// Dashboard, and a list of what each file became, drawn from Uppy's events and the ones the
// wiring adds ('upload-broker:created', 'upload-broker:confirmed'). `startPage(wire)` builds
// it all and calls `wire(uppy, { baseUrl })` to add the uploader: main.js wires @uppy/aws-s3
// (index.html), main-tus.js wires @uppy/tus (tus.html).

import Uppy from '@uppy/core';
import Dashboard from '@uppy/dashboard';
import '@uppy/core/css/style.min.css';
import '@uppy/dashboard/css/style.min.css';
import './style.css';
import { ALLOWED_TYPES, BrokerError } from './upload-broker.js';

const IMAGE_ID = /^[A-Za-z0-9_-]{1,100}$/;

function serviceUrl() {
  const injected = document.querySelector('meta[name="upload-broker-url"]')?.content ?? '';
  const fromQuery = new URLSearchParams(location.search).get('service');
  const url = fromQuery || (injected.startsWith('__') ? '' : injected) || 'http://127.0.0.1:5000';
  return url.replace(/\/+$/, '');
}

export function startPage(wire) {
  const baseUrl = serviceUrl();
  document.getElementById('service-url').textContent = baseUrl;

  const imageIdInput = document.getElementById('image-id');
  imageIdInput.value = new URLSearchParams(location.search).get('image_id') || 'demo';

  const uppy = new Uppy({
    restrictions: { allowedFileTypes: ALLOWED_TYPES },
    meta: { image_id: imageIdInput.value },
    onBeforeUpload: () => {
      if (IMAGE_ID.test(imageIdInput.value)) return true;
      uppy.info('Set a valid image_id first (letters, digits, _ or -).', 'error', 5000);
      imageIdInput.focus();
      return false;
    },
  });

  imageIdInput.addEventListener('input', () => {
    uppy.setMeta({ image_id: imageIdInput.value });
  });

  uppy.use(Dashboard, {
    inline: true,
    target: '#uploader',
    height: 360,
    width: '100%',
    note: 'PNG, JPEG, GIF, WebP, BMP or TIFF',
    showProgressDetails: true,
    proudlyDisplayPoweredByUppy: false,
  });

  wire(uppy, { baseUrl });
  showResults(uppy);
  return uppy;
}

// ---- results list ----------------------------------------------------------------------

const list = document.getElementById('results');
const empty = document.getElementById('results-empty');

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text != null) node.textContent = text;
  return node;
}

function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** The row of one Uppy file, made on first use. */
function row(file) {
  let li = list.querySelector(`li[data-file-id="${CSS.escape(file.id)}"]`);
  if (!li) {
    li = el('li', { class: 'result', 'data-file-id': file.id, 'data-state': 'waiting' });
    const head = el('div', { class: 'result__head' });
    head.append(el('span', { class: 'result__name' }, file.name), el('span', { class: 'result__state' }, 'Waiting'));
    li.append(head, el('div', { class: 'result__detail' }, formatBytes(file.size ?? 0)));
    list.prepend(li);
    empty.hidden = true;
  }
  return li;
}

function setState(file, state, label) {
  const li = row(file);
  li.dataset.state = state;
  li.querySelector('.result__state').textContent = label;
  return li;
}

/** The service's JSON answer in an error of @uppy/tus (tus-js-client keeps the response). */
function tusAnswer(error) {
  const response = error?.originalResponse;
  if (!response?.getStatus?.()) return null;
  try {
    const body = JSON.parse(response.getBody() || 'null');
    return body?.code ? body : { message: `the service answered ${response.getStatus()}`, code: `http_${response.getStatus()}` };
  } catch {
    return { message: `the service answered ${response.getStatus()}`, code: `http_${response.getStatus()}` };
  }
}

function describe(error) {
  if (error instanceof BrokerError) return `${error.message} (${error.code})`;
  const answer = tusAnswer(error);
  if (answer) return `${answer.message} (${answer.code})`;
  const status = error?.source?.status;
  if (status) return `storage refused the upload (HTTP ${status})`;
  return error?.message || 'the upload failed';
}

function showResults(uppy) {
  uppy.on('upload', (_id, files) => {
    for (const file of files) {
      const li = setState(file, 'uploading', 'Uploading');
      li.querySelector('.result__error')?.remove();
      li.querySelector('.result__url')?.remove();
      li.querySelector('.result__thumb')?.remove();
    }
  });

  uppy.on('upload-broker:created', (file, upload) => {
    const li = row(file);
    li.dataset.uploadId = upload.upload_id;
    const how = {
      MULTIPART: () => `multipart, ${upload.part_count} part${upload.part_count === 1 ? '' : 's'} of ${formatBytes(upload.part_size)}`,
      TUS: () => 'tus, through the service',
    }[upload.method]?.() ?? 'single PUT';
    li.querySelector('.result__detail').textContent = `${formatBytes(file.size)} · ${how} · upload ${upload.upload_id}`;
  });

  uppy.on('upload-progress', (file, progress) => {
    const li = list.querySelector(`li[data-file-id="${CSS.escape(file.id)}"]`);
    if (!li || li.dataset.state !== 'uploading' || !progress.bytesTotal) return;
    const percent = Math.floor((progress.bytesUploaded / progress.bytesTotal) * 100);
    li.querySelector('.result__state').textContent = `Uploading ${percent}%`;
  });

  uppy.on('upload-success', (file) => {
    const li = list.querySelector(`li[data-file-id="${CSS.escape(file.id)}"]`);
    if (li && li.dataset.state === 'uploading') setState(file, 'verifying', 'Verifying');
  });

  uppy.on('upload-broker:confirmed', (file, record) => {
    const li = setState(file, 'completed', 'Uploaded');
    li.dataset.uploadId = record.upload_id;
    li.querySelector('.result__error')?.remove();
    const dims = record.width && record.height ? ` · ${record.width}×${record.height}` : '';
    li.querySelector('.result__detail').textContent = `${formatBytes(record.file_size)}${dims} · ${record.content_type} · upload ${record.upload_id}`;
    const url = el('div', { class: 'result__url' });
    const field = el('input', { type: 'text', readonly: '', 'aria-label': `URL of ${file.name}` });
    field.value = record.s3_url;
    const open = el('a', { href: record.s3_url, target: '_blank', rel: 'noopener' }, 'Open');
    url.append(field, open);
    const thumb = el('img', { class: 'result__thumb', src: record.s3_url, alt: file.name });
    li.append(url, thumb);
  });

  uppy.on('upload-error', (file, error) => {
    if (!file) return;
    const li = setState(file, 'failed', 'Failed');
    li.querySelector('.result__error')?.remove();
    li.append(el('p', { class: 'result__error', role: 'alert' }, describe(error)));
  });

  uppy.on('file-removed', (file) => {
    const li = list.querySelector(`li[data-file-id="${CSS.escape(file.id)}"]`);
    if (li && li.dataset.state !== 'completed') li.remove();
    empty.hidden = list.children.length > 0;
  });
}
