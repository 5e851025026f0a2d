// The upload page: choosing and dropping files, one row per file, the unfinished uploads
// that can be resumed, and the earlier uploads of this image_id.

import { api } from './api.js';
import { badge, copyButton, h, imageOrBadge, announce, thumbnail } from './dom.js';
import { canPreview } from './filecheck.js';
import { formatBytes, formatDuration, formatPercent, formatRate, formatTimeLeft, formatWhen, typeLabel } from './format.js';
import { History } from './history.js';
import * as resume from './resume.js';
import * as tus from './tus.js';
import { Upload } from './uploader.js';

/** Files uploading at once; the rest wait their turn. */
const FILES_AT_ONCE = 3;
const IMAGE_ID = /^[A-Za-z0-9_-]{1,100}$/;
/**
 * `?transport=tus` on the page's address: every file goes through the service (tus), none
 * straight to storage. Otherwise files go to storage and through the service only when
 * storage can't be reached.
 */
const TRANSPORT = new URLSearchParams(location.search).get('transport') === 'tus' ? 'tus' : 'auto';

const $ = (id) => document.getElementById(id);
const els = {
  input: $('file-input'),
  dropzone: $('dropzone'),
  pageError: $('page-error'),
  uploads: $('uploads'),
  uploadsEmpty: $('uploads-empty'),
  summary: $('uploads-summary'),
  clearFinished: $('clear-finished'),
  heading: $('uploads-heading'),
  resumePanel: $('resume-panel'),
  resumeList: $('resume-list'),
};

const imageId = (() => {
  const first = location.pathname.split('/').filter(Boolean)[0] || '';
  try {
    return decodeURIComponent(first);
  } catch {
    return first;
  }
})();

/** @type {Upload[]} every file of this visit, in the order chosen */
const visit = [];
const rows = new Map();
const baseTitle = document.title;

function start() {
  if (!IMAGE_ID.test(imageId)) {
    showPageError('This address has no valid image ID, so nothing can be uploaded here. Open the page as /your-id, where the ID is 1 to 100 letters, digits, "_" or "-".');
    els.input.disabled = true;
    return;
  }
  $('image-id-label').textContent = imageId;
  $('image-id-line').hidden = false;
  $('transport-note').hidden = TRANSPORT !== 'tus';
  document.title = `Upload images for ${imageId}`;

  els.input.addEventListener('change', () => {
    addFiles(els.input.files);
    els.input.value = '';
  });
  els.clearFinished.addEventListener('click', clearFinished);
  setUpDragAndDrop();
  setUpPaste();
  const offline = $('offline-banner');
  const showOnline = () => { offline.hidden = navigator.onLine !== false; };
  window.addEventListener('online', showOnline);
  window.addEventListener('offline', showOnline);
  showOnline();
  // Keeps speeds and times honest when bytes stop moving.
  setInterval(() => {
    for (const upload of visit) upload.tick();
  }, 1000);
  window.addEventListener('beforeunload', (event) => {
    if (visit.some((u) => u.active)) {
      event.preventDefault();
      event.returnValue = '';
    }
  });

  gallery = new History({
    panel: $('history-panel'),
    list: $('history-list'),
    status: $('history-status'),
    more: $('history-more'),
    refresh: $('history-refresh'),
  }, imageId);
  gallery.load();
  renderResumePanel();
  renderSummary();
}

let gallery = null;

function showPageError(text) {
  els.pageError.textContent = text;
  els.pageError.hidden = false;
}

// ---- adding files --------------------------------------------------------------------

function addFiles(fileList) {
  const files = [...(fileList || [])];
  if (!files.length) return;
  let added = 0;
  for (const file of files) {
    const key = resume.keyFor(imageId, file);
    const twin = visit.find((u) => u.key === key && !u.finished);
    if (twin) {
      announce(`${file.name} is already in the list.`);
      rows.get(twin)?.li.classList.add('is-flashing');
      setTimeout(() => rows.get(twin)?.li.classList.remove('is-flashing'), 1200);
      continue;
    }
    const upload = new Upload(file, imageId, { transport: TRANSPORT });
    visit.push(upload);
    const row = buildRow(upload);
    rows.set(upload, row);
    els.uploads.append(row.li);
    upload.addEventListener('change', () => scheduleRender(upload));
    upload.addEventListener('settled', () => settled(upload));
    upload.addEventListener('resumed', () => announce(`Resuming ${file.name}: ${resumedWords(upload)} already uploaded.`));
    upload.addEventListener('completed', () => gallery?.load());
    added += 1;
  }
  if (added) announce(added === 1 ? `${files[files.length - 1].name} added.` : `${added} files added.`);
  renderResumePanel();
  renderSummary();
  pump();
}

function pump() {
  let running = visit.filter((u) => u.running).length;
  for (const upload of visit) {
    if (running >= FILES_AT_ONCE) break;
    if (upload.state === 'queued' && !upload.running) {
      running += 1;
      upload.run().finally(pump);
    }
  }
}

function settled(upload) {
  const { file } = upload;
  const words = upload.state === 'completed'
    ? `${file.name} uploaded.`
    : `${file.name}: ${upload.title}. ${upload.detail}`;
  announce(words);
  renderResumePanel();
  renderSummary();
  pump();
}

// ---- a row per file ------------------------------------------------------------------

function buildRow(upload) {
  const { file } = upload;
  const id = upload.localId;
  const type = typeLabel(upload.contentType, file.name);
  let preview = null;
  if (canPreview(file)) {
    preview = URL.createObjectURL(file);
  }
  const thumb = h('div', { class: 'upload__thumb' },
    preview ? imageOrBadge(preview, '', upload.contentType, file.name) : badge(upload.contentType, file.name));
  const name = h('p', { class: 'upload__name', id: `${id}-name`, title: file.name }, file.name);
  const meta = h('p', { class: 'upload__meta' }, `${formatBytes(file.size)} · ${type}`);
  const state = h('p', { class: 'upload__state', id: `${id}-state` });
  const detail = h('p', { class: 'upload__detail', id: `${id}-detail` });
  const bar = h('progress', { class: 'upload__bar', max: '100', value: '0', 'aria-label': `Upload progress of ${file.name}` });
  const stats = h('p', { class: 'upload__stats' });
  const meter = h('div', { class: 'upload__meter' }, bar);
  const result = h('div', { class: 'upload__result', hidden: true });

  const cancel = h('button', { type: 'button', class: 'button button--small', 'aria-label': `Cancel the upload of ${file.name}` }, 'Cancel');
  const retry = h('button', { type: 'button', class: 'button button--small button--primary', 'aria-label': `Retry the upload of ${file.name}`, hidden: true }, 'Retry');
  const remove = h('button', { type: 'button', class: 'button button--small button--quiet', 'aria-label': `Remove ${file.name} from the list`, hidden: true }, 'Remove');
  cancel.addEventListener('click', () => upload.cancel());
  retry.addEventListener('click', () => {
    upload.retry();
    pump();
  });
  remove.addEventListener('click', () => removeRow(upload, true));

  const li = h('li', {
    class: 'upload',
    id,
    'data-state': upload.state,
    'aria-labelledby': `${id}-name`,
    'aria-describedby': `${id}-state ${id}-detail`,
  },
  thumb,
  h('div', { class: 'upload__body' },
    h('div', { class: 'upload__head' }, name, meta),
    h('div', { class: 'upload__status' }, state, detail),
    meter,
    stats,
    result),
  h('div', { class: 'upload__actions' }, cancel, retry, remove));

  const row = { li, thumb, state, detail, bar, stats, meter, result, cancel, retry, remove, preview, pending: false, shownResult: false };
  render(upload, row);
  return row;
}

function scheduleRender(upload) {
  const row = rows.get(upload);
  if (!row || row.pending) return;
  row.pending = true;
  requestAnimationFrame(() => {
    row.pending = false;
    render(upload, row);
    renderSummary();
  });
}

function render(upload, row) {
  const { state } = upload;
  row.li.dataset.state = state;
  if (upload.uploadId) row.li.dataset.uploadId = upload.uploadId;
  row.state.textContent = upload.title;

  let detail = upload.notice || upload.detail;
  if (!detail && (upload.resumedParts || upload.resumedBytes) && !upload.finished) {
    detail = `Resumed: ${resumedWords(upload)} already uploaded; sending the rest.`;
  }
  row.detail.textContent = detail;
  row.detail.hidden = !detail;
  row.detail.classList.toggle('is-notice', Boolean(upload.notice));

  // Progress bar: indeterminate while preparing, hidden when nothing was ever sent.
  const fraction = upload.total ? upload.sent / upload.total : 0;
  const stopped = state === 'cancelled' || state === 'failed';
  row.meter.hidden = state === 'refused' || state === 'completed' || state === 'queued' || (stopped && !upload.sent);
  if (state === 'preparing') {
    row.bar.removeAttribute('value');
  } else {
    row.bar.value = state === 'completed' ? 100 : Math.round(fraction * 10000) / 100;
  }
  row.stats.textContent = statsLine(upload, fraction);
  row.stats.hidden = !row.stats.textContent;

  row.cancel.hidden = upload.finished;
  row.retry.hidden = !(upload.finished && upload.retryable && state !== 'completed');
  row.retry.textContent = state === 'cancelled' ? 'Start again' : 'Retry';
  row.remove.hidden = !upload.finished;

  if (state === 'completed' && upload.record && !row.shownResult) {
    row.shownResult = true;
    showResult(upload, row);
  }
}

/** "3 of 6 parts were" (multipart) or "16 MB of 30 MB were" (through the service). */
function resumedWords(upload) {
  return upload.method === 'TUS'
    ? `${formatBytes(upload.resumedBytes)} of ${formatBytes(upload.total)} were`
    : `${upload.resumedParts} of ${upload.partCount} parts were`;
}

function statsLine(upload, fraction) {
  const parts = upload.method === 'MULTIPART' && upload.partCount > 1
    ? `${upload.partsDone} of ${upload.partCount} parts`
    : '';
  switch (upload.state) {
    case 'uploading': {
      const bits = [formatPercent(fraction)];
      if (upload.rate > 0) bits.push(formatRate(upload.rate));
      if (upload.eta != null && upload.rate > 0) bits.push(formatTimeLeft(upload.eta));
      if (parts) bits.push(parts);
      if (upload.method === 'TUS') bits.push('through the service');
      return bits.join(' · ');
    }
    case 'verifying':
      return '100% sent · the service is checking the image';
    case 'completed': {
      const bits = [];
      const sent = upload.total - upload.startBytes;
      if (upload.startedAt && sent > 0) {
        const seconds = ((upload.transferEndedAt || upload.finishedAt) - upload.startedAt) / 1000;
        bits.push(`Sent ${formatBytes(sent)} in ${formatDuration(seconds)}`);
        if (upload.averageRate && seconds >= 0.5) bits.push(formatRate(upload.averageRate));
      } else {
        bits.push('Found already in storage');
      }
      if (upload.resumedParts) bits.push(`${upload.resumedParts} of ${upload.partCount} parts resumed`);
      if (upload.method === 'TUS') bits.push(upload.resumedBytes ? `through the service, resumed at ${formatBytes(upload.resumedBytes)}` : 'through the service');
      const record = upload.record || {};
      if (record.width && record.height) bits.push(`${record.width} × ${record.height} px`);
      if (record.checksum_sha256) bits.push('checksum verified');
      return bits.join(' · ');
    }
    case 'failed':
    case 'cancelled':
      return upload.sent ? `${formatPercent(fraction)} was sent` : '';
    default:
      return '';
  }
}

function showResult(upload, row) {
  const record = upload.record;
  const name = record.original_filename || upload.file.name;
  // The thumbnail now shows the stored image's thumb variant; the link opens the original.
  const link = h('a', { class: 'upload__open-image', href: record.s3_url, target: '_blank', rel: 'noopener', 'aria-label': `Open ${name} as stored` },
    thumbnail(record, name));
  row.thumb.replaceChildren(link);
  if (row.preview) {
    URL.revokeObjectURL(row.preview);
    row.preview = null;
  }

  const urlId = `${upload.localId}-url`;
  const field = h('input', { id: urlId, class: 'url-field__input', type: 'text', readonly: true, value: record.s3_url, spellcheck: 'false' });
  field.addEventListener('focus', () => field.select());
  row.result.replaceChildren(
    h('label', { class: 'url-field__label', for: urlId }, 'Image URL'),
    h('div', { class: 'url-field' },
      field,
      copyButton(record.s3_url, `Copy the URL of ${name}`),
      h('a', { class: 'button button--small button--quiet', href: record.s3_url, target: '_blank', rel: 'noopener', 'aria-label': `Open ${name} in a new tab` }, 'Open')),
  );
  row.result.hidden = false;
}

function removeRow(upload, moveFocus) {
  const row = rows.get(upload);
  if (!row) return;
  if (!upload.finished) upload.cancel();
  const index = visit.indexOf(upload);
  if (moveFocus) {
    const next = visit[index + 1] || visit[index - 1];
    const target = next ? [rows.get(next).cancel, rows.get(next).retry, rows.get(next).remove].find((b) => !b.hidden) : null;
    (target || els.heading).focus();
  }
  if (row.preview) URL.revokeObjectURL(row.preview);
  row.li.remove();
  rows.delete(upload);
  visit.splice(index, 1);
  renderSummary();
}

function clearFinished() {
  for (const upload of visit.filter((u) => u.finished)) removeRow(upload, false);
  els.heading.focus();
  announce('Finished uploads cleared from the list.');
}

function renderSummary() {
  const count = (state) => visit.filter((u) => u.state === state).length;
  const done = count('completed');
  const working = visit.filter((u) => u.active).length;
  const waiting = count('queued');
  const trouble = count('failed') + count('rejected') + count('refused');
  els.uploadsEmpty.hidden = visit.length > 0;
  els.clearFinished.hidden = !visit.some((u) => u.finished);
  if (!visit.length) {
    els.summary.textContent = '';
  } else {
    const bits = [`${visit.length} ${visit.length === 1 ? 'file' : 'files'}`];
    if (done) bits.push(`${done} uploaded`);
    if (working) bits.push(`${working} in progress`);
    if (waiting) bits.push(`${waiting} waiting`);
    if (trouble) bits.push(`${trouble} with problems`);
    els.summary.textContent = bits.join(' · ');
  }
  // The tab title shows overall progress, handy when the page is in the background.
  const active = visit.filter((u) => u.active);
  if (active.length) {
    const total = active.reduce((sum, u) => sum + u.total, 0);
    const sent = active.reduce((sum, u) => sum + u.sent, 0);
    document.title = `${formatPercent(total ? sent / total : 0)} · Uploading · ${imageId}`;
  } else {
    document.title = imageId ? `Upload images for ${imageId}` : baseTitle;
  }
}

// ---- unfinished uploads from an earlier visit ----------------------------------------

const partCounts = new Map();

function renderResumePanel() {
  const inVisit = new Set(visit.filter((u) => !u.finished || u.state === 'completed').map((u) => u.key));
  const entries = resume.listFor(imageId)
    .filter(({ key, entry }) => (entry.method === 'MULTIPART' || entry.method === 'TUS') && !inVisit.has(key));
  els.resumePanel.hidden = entries.length === 0;
  els.resumeList.replaceChildren(...entries.map(({ key, entry }) => resumeItem(key, entry)));
}

function resumeItem(key, entry) {
  const progress = h('span', { class: 'resume__parts' }, partCounts.get(entry.upload_id) || 'checking what is there…');
  const discard = h('button', { type: 'button', class: 'button button--small button--quiet', 'aria-label': `Discard the unfinished upload of ${entry.filename}` }, 'Discard');
  const throughService = entry.method === 'TUS';
  discard.addEventListener('click', () => {
    if (throughService) tus.terminate(entry.url).catch(() => {});
    else api.abort(entry.upload_id).catch(() => {});
    resume.remove(key);
    announce(`The unfinished upload of ${entry.filename} was discarded.`);
    renderResumePanel();
    (els.resumePanel.hidden ? els.input : els.resumeList.querySelector('button'))?.focus();
  });
  if (!partCounts.has(entry.upload_id)) {
    const looked = throughService
      ? tus.status(entry.url).then(({ offset, length }) => `${formatBytes(offset)} of ${formatBytes(length ?? entry.size)} uploaded`)
      : api.listParts(entry.upload_id, { retries: 0 }).then((listing) => `${listing.parts.length} of ${listing.part_count} parts uploaded`);
    looked.then((text) => {
      partCounts.set(entry.upload_id, text);
      progress.textContent = text;
    }).catch((err) => {
      if (err.status === 404 || err.status === 410 || err.status === 409 || (throughService && err.status === 422)) {
        resume.remove(key);
        renderResumePanel();
      } else {
        progress.textContent = 'progress unknown';
      }
    });
  }
  const choose = h('button', { type: 'button', class: 'button button--small', 'aria-label': `Choose ${entry.filename} again to resume it` }, 'Choose file…');
  choose.addEventListener('click', () => els.input.click());
  return h('li', { class: 'resume__item' },
    h('div', { class: 'resume__text' },
      h('p', { class: 'resume__name', title: entry.filename }, entry.filename),
      h('p', { class: 'resume__meta' },
        `${formatBytes(entry.size)} · started ${formatWhen(entry.saved_at)} · `, progress)),
    h('div', { class: 'resume__actions' }, choose, discard));
}

// ---- drag and drop, paste ------------------------------------------------------------

function setUpDragAndDrop() {
  let depth = 0;
  const hasFiles = (event) => [...(event.dataTransfer?.types || [])].includes('Files');
  const setDragging = (on) => {
    document.body.classList.toggle('is-dragging', on);
    els.dropzone.classList.toggle('is-active', on);
  };
  window.addEventListener('dragenter', (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    depth += 1;
    setDragging(true);
  });
  window.addEventListener('dragover', (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = 'copy';
  });
  window.addEventListener('dragleave', (event) => {
    if (!hasFiles(event)) return;
    depth = Math.max(0, depth - 1);
    if (depth === 0) setDragging(false);
  });
  window.addEventListener('drop', (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    depth = 0;
    setDragging(false);
    addFiles(event.dataTransfer.files);
  });
}

function setUpPaste() {
  window.addEventListener('paste', (event) => {
    const files = [...(event.clipboardData?.files || [])];
    if (!files.length) return;
    event.preventDefault();
    const stamp = new Date().toISOString().slice(0, 19).replace(/[-:]/g, '').replace('T', '-');
    addFiles(files.map((file, i) => {
      if (file.name && file.name !== 'image.png') return file;
      const ext = (file.type.split('/')[1] || 'png').replace('jpeg', 'jpg');
      return new File([file], `pasted-${stamp}${files.length > 1 ? `-${i + 1}` : ''}.${ext}`, { type: file.type, lastModified: file.lastModified });
    }));
  });
}

start();
