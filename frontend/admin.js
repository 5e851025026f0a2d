// The operators' console: signs in with an admin key (kept in sessionStorage, for this tab
// only), shows the stats, searches uploads in every state, opens one with its deliveries,
// acts on it after a confirmation, and reads the audit log. Every request goes to this
// service's own /api/v1/admin and /api/v1/webhooks; nothing is fetched from elsewhere.

import { announce, badge, h, thumbnail } from './dom.js';
import { formatBytes, formatFullDate, formatWhen } from './format.js';

const KEY = 'upload-broker-admin-key';
const STATES = ['pending', 'completed', 'failed', 'expired', 'aborted', 'deleted'];

/** What a failure code means, in plain words. */
const REASONS = {
  size_mismatch: "The stored file's size differs from the size the client declared.",
  type_mismatch: 'The stored bytes are a different image type than the client declared.',
  invalid_image: 'The stored bytes are not a readable image of an allowed type.',
  checksum_mismatch: 'The stored bytes do not match the SHA-256 checksum the client declared.',
  image_too_large: "The image's pixel dimensions are over the service's limit.",
  not_uploaded: 'No object is stored for this upload.',
  variant_failed: 'Making its variants failed unexpectedly.',
  missing_object: 'Its object was missing when its variants were made.',
  storage_unavailable: 'Storage kept failing while its variants were made.',
};

const $ = (id) => document.getElementById(id);

class AdminApi {
  constructor(key) {
    this.key = key;
  }

  async call(method, path, { quiet = false } = {}) {
    const response = await fetch(path, {
      method,
      headers: { Authorization: `Bearer ${this.key}`, Accept: 'application/json' },
    });
    let body = null;
    if (response.status !== 204) {
      body = await response.json().catch(() => null);
    }
    if (!response.ok) {
      const err = new Error(body?.message || `${method} ${path} answered ${response.status}`);
      err.status = response.status;
      err.code = body?.code;
      if (!quiet && response.status === 401) signOut('Your key was refused. Sign in again.');
      throw err;
    }
    return body;
  }
}

let api = null;

// ---- signing in and out ----

async function signIn(key, { remembered = false } = {}) {
  const candidate = new AdminApi(key);
  try {
    await candidate.call('GET', '/api/v1/admin/stats', { quiet: true });
  } catch (err) {
    if (remembered) sessionStorage.removeItem(KEY);
    const message = err.code === 'admin_disabled'
      ? 'The console is off: the service has no ADMIN_KEYS.'
      : err.status === 401 ? 'That key was refused.' : `The service did not answer (${err.message}).`;
    showSignIn(message);
    return;
  }
  sessionStorage.setItem(KEY, key);
  api = candidate;
  $('signin').hidden = true;
  $('console').hidden = false;
  $('sign-out').hidden = false;
  $('signed-in-line').hidden = false;
  $('admin-key').value = '';
  announce('Signed in');
  await Promise.all([loadStats(), search(), loadAudit()]);
}

function showSignIn(message) {
  $('console').hidden = true;
  $('sign-out').hidden = true;
  $('signed-in-line').hidden = true;
  $('signin').hidden = false;
  const error = $('signin-error');
  error.textContent = message || '';
  error.hidden = !message;
  $('admin-key').focus();
}

function signOut(message) {
  sessionStorage.removeItem(KEY);
  api = null;
  for (const id of ['results-body', 'deliveries-body', 'audit-body', 'stats', 'detail-facts', 'detail-thumb', 'detail-actions']) {
    $(id).replaceChildren();
  }
  $('detail').hidden = true;
  showSignIn(message);
  announce('Signed out');
}

// ---- stats ----

async function loadStats() {
  const stats = await api.call('GET', '/api/v1/admin/stats');
  $('stats').replaceChildren(...STATES.map((state) => {
    const { count, bytes } = stats.states[state] || { count: 0, bytes: 0 };
    return h('div', { class: `stats__item stats__item--${state}` },
      h('dt', {}, label(state)),
      h('dd', {}, h('span', { class: 'stats__count' }, count.toLocaleString()), h('span', { class: 'stats__bytes' }, formatBytes(bytes))));
  }));
  const day = stats.last_24h;
  $('stats-day').textContent = `Last 24 hours: ${day.completed.toLocaleString()} completed (${formatBytes(day.bytes)}), ${day.failed.toLocaleString()} failed.`;
}

const label = (state) => state.charAt(0).toUpperCase() + state.slice(1);

// ---- search ----

let nextCursor = null;
let query = '';

function queryOf(form) {
  const params = new URLSearchParams();
  const data = new FormData(form);
  for (const name of ['image_id', 'state', 'sha256']) {
    const value = String(data.get(name) || '').trim();
    if (value) params.set(name, value);
  }
  for (const name of ['since', 'until']) {
    const value = String(data.get(name) || '');
    // A local date and time, as the operator reads their clock.
    if (value) params.set(name, new Date(value).toISOString());
  }
  return params;
}

async function search(more = false) {
  const params = more ? new URLSearchParams(query) : queryOf($('search-form'));
  if (!more) {
    query = params.toString();
    $('results-body').replaceChildren();
  } else if (nextCursor) {
    params.set('cursor', nextCursor);
  }
  params.set('limit', '25');
  let page;
  try {
    page = await api.call('GET', `/api/v1/admin/uploads?${params}`);
  } catch (err) {
    $('results-summary').textContent = `Search failed: ${err.message}`;
    return;
  }
  nextCursor = page.next_cursor;
  $('results-body').append(...page.uploads.map(resultRow));
  const shown = $('results-body').children.length;
  $('results').hidden = shown === 0;
  $('load-more').hidden = !nextCursor;
  $('results-summary').textContent = shown === 0 ? 'No uploads match.' : `${shown} upload${shown === 1 ? '' : 's'}${nextCursor ? ' so far' : ''}.`;
}

function resultRow(record) {
  const name = record.original_filename || record.key;
  const open = h('button', { class: 'link-button', type: 'button', 'data-upload-id': record.upload_id, onclick: () => openUpload(record.upload_id) }, name);
  return h('tr', { 'data-upload-id': record.upload_id, 'data-state': record.state },
    h('td', {}, open, h('span', { class: 'results__id' }, record.upload_id)),
    h('td', {}, h('code', {}, record.image_id)),
    h('td', {}, stateTag(record.state)),
    h('td', {}, record.file_size != null ? formatBytes(record.file_size) : '—'),
    h('td', {}, h('time', { datetime: record.created_at, title: formatFullDate(record.created_at) }, formatWhen(record.created_at))));
}

const stateTag = (state) => h('span', { class: `state state--${state}` }, label(state));

// ---- one upload ----

let current = null;

async function openUpload(id) {
  let record;
  try {
    record = await api.call('GET', `/api/v1/uploads/${encodeURIComponent(id)}`);
  } catch (err) {
    $('console-error').textContent = `Could not open ${id}: ${err.message}`;
    $('console-error').hidden = false;
    return;
  }
  $('console-error').hidden = true;
  current = record;
  showUpload(record);
  await loadDeliveries(record.upload_id);
  $('detail').hidden = false;
  $('detail').focus();
}

function showUpload(record) {
  const name = record.original_filename || record.key;
  $('detail-heading').textContent = name;
  $('detail').dataset.uploadId = record.upload_id;
  $('detail').dataset.state = record.state;
  const showsImage = record.state === 'completed';
  $('detail-thumb').replaceChildren(showsImage ? thumbnail(record, name) : badge(record.content_type, name));
  const reason = record.failure_code ? REASONS[record.failure_code] || record.failure_code : null;
  $('detail-reason').hidden = !reason;
  $('detail-reason').textContent = reason ? `Why it failed: ${reason}` : '';
  const facts = [
    ['State', stateTag(record.state)],
    ['Failure code', record.failure_code && h('code', {}, record.failure_code)],
    ['Upload ID', h('code', {}, record.upload_id)],
    ['Image ID', h('code', {}, record.image_id)],
    ['Key', h('code', {}, record.key)],
    ['Type', record.content_type],
    ['Size', record.file_size != null ? formatBytes(record.file_size) : null],
    ['Dimensions', record.width && record.height ? `${record.width} × ${record.height}` : null],
    ['SHA-256', record.checksum_sha256 && h('code', {}, record.checksum_sha256)],
    ['Created', formatFullDate(record.created_at)],
    ['Completed', record.uploaded_at && formatFullDate(record.uploaded_at)],
    ['Variants', variantsText(record)],
    ['Metadata', record.metadata && Object.keys(record.metadata).length
      ? h('ul', { class: 'facts__meta' }, ...Object.entries(record.metadata).map(([k, v]) => h('li', {}, h('code', {}, k), ` ${v}`)))
      : null],
  ];
  $('detail-facts').replaceChildren(...facts.filter(([, value]) => value).flatMap(([term, value]) => [h('dt', {}, term), h('dd', {}, value)]));
  $('detail-result').textContent = '';
  showActions(record);
}

function variantsText(record) {
  switch (record.variants_state) {
    case 'ready': return `Ready: ${Object.keys(record.variants || {}).join(', ')}`;
    case 'failed': return `Failed: ${REASONS[record.variants_failure_code] || record.variants_failure_code}`;
    case 'pending': return 'Being made';
    default: return null;
  }
}

/** An action's button; choosing it asks once more before anything happens. */
function confirmed(text, question, run, { danger = false } = {}) {
  const wrap = h('span', { class: 'confirm' });
  const start = h('button', { class: `button button--small${danger ? ' button--danger' : ''}`, type: 'button' }, text);
  const ask = () => {
    const yes = h('button', { class: `button button--small button--primary${danger ? ' button--danger' : ''}`, type: 'button' }, `Yes, ${text.toLowerCase()}`);
    const no = h('button', { class: 'button button--small button--quiet', type: 'button' }, 'Cancel');
    const prompt = h('span', { class: 'confirm__question', role: 'group', 'aria-label': question }, h('span', {}, question), yes, no);
    no.addEventListener('click', () => { prompt.replaceWith(start); start.focus(); });
    yes.addEventListener('click', async () => {
      yes.disabled = true;
      no.disabled = true;
      try {
        await run();
      } finally {
        if (prompt.isConnected) prompt.replaceWith(start);
      }
    });
    start.replaceWith(prompt);
    yes.focus();
  };
  start.addEventListener('click', ask);
  wrap.append(start);
  return wrap;
}

function showActions(record) {
  const id = encodeURIComponent(record.upload_id);
  const result = $('detail-result');
  const actions = [
    confirmed('Re-verify', 'Check the stored object again? Nothing is changed.', async () => {
      try {
        const body = await api.call('POST', `/api/v1/admin/uploads/${id}/reverify`);
        result.textContent = body.reverify.ok
          ? 'Re-verified: the stored object passes every check.'
          : `Re-verified: it would be refused now. ${REASONS[body.reverify.code] || body.reverify.code}`;
      } catch (err) {
        result.textContent = `Re-verification failed: ${err.message}`;
      }
      announce(result.textContent);
      await loadAudit();
    }),
  ];
  if (record.state === 'completed') {
    actions.push(confirmed('Make variants again', 'Make its variants again?', async () => {
      try {
        await api.call('POST', `/api/v1/admin/uploads/${id}/variants`);
        result.textContent = 'Its variants are being made again.';
      } catch (err) {
        result.textContent = `Could not ask for variants: ${err.message}`;
      }
      announce(result.textContent);
      await loadAudit();
    }));
  }
  if (record.state === 'completed' || record.state === 'pending') {
    actions.push(confirmed('Delete', 'Delete this upload and its files? This cannot be undone.', async () => {
      try {
        await api.call('DELETE', `/api/v1/admin/uploads/${id}`);
        const fresh = await api.call('GET', `/api/v1/uploads/${id}`);
        current = fresh;
        showUpload(fresh);
        updateRow(fresh);
        result.textContent = `Deleted. The upload is now ${fresh.state}.`;
      } catch (err) {
        result.textContent = `Could not delete: ${err.message}`;
      }
      announce(result.textContent);
      await Promise.all([loadStats(), loadAudit(), loadDeliveries(record.upload_id)]);
    }, { danger: true }));
  }
  $('detail-actions').replaceChildren(...actions);
}

function updateRow(record) {
  const row = $('results-body').querySelector(`tr[data-upload-id="${CSS.escape(record.upload_id)}"]`);
  if (row) row.replaceWith(resultRow(record));
}

async function loadDeliveries(uploadId) {
  let page;
  try {
    page = await api.call('GET', `/api/v1/webhooks/deliveries?upload_id=${encodeURIComponent(uploadId)}&limit=50`);
  } catch {
    page = { deliveries: [] };
  }
  const rows = page.deliveries.map((d) => h('tr', { 'data-delivery-id': d.id, 'data-state': d.state },
    h('td', {}, h('code', {}, d.event_type), h('span', { class: 'results__id' }, d.endpoint)),
    h('td', {}, h('span', { class: `state state--${d.state === 'succeeded' ? 'completed' : d.state}` }, label(d.state))),
    h('td', {}, String(d.attempts)),
    h('td', {}, [d.last_status, d.last_error].filter((v) => v != null && v !== '').join(' · ') || '—'),
    h('td', {}, confirmed('Replay', 'Send this event again now?', async () => {
      try {
        await api.call('POST', `/api/v1/webhooks/deliveries/${encodeURIComponent(d.id)}/retry`);
        $('detail-result').textContent = 'Replayed: the delivery is due now.';
      } catch (err) {
        $('detail-result').textContent = `Could not replay: ${err.message}`;
      }
      announce($('detail-result').textContent);
      await Promise.all([loadAudit(), loadDeliveries(uploadId)]);
    }))));
  $('deliveries-body').replaceChildren(...rows);
  $('deliveries').hidden = rows.length === 0;
  $('deliveries-empty').hidden = rows.length !== 0;
}

// ---- audit ----

let auditCursor = null;

async function loadAudit(more = false) {
  const params = new URLSearchParams({ limit: '20' });
  if (more && auditCursor) params.set('cursor', auditCursor);
  let page;
  try {
    page = await api.call('GET', `/api/v1/admin/audit?${params}`);
  } catch {
    return;
  }
  auditCursor = page.next_cursor;
  const rows = page.entries.map((e) => h('tr', {},
    h('td', {}, h('time', { datetime: e.at, title: formatFullDate(e.at) }, formatWhen(e.at))),
    h('td', {}, h('code', {}, e.actor)),
    h('td', {}, e.action.replaceAll('_', ' ')),
    h('td', {}, h('code', {}, e.target))));
  if (more) $('audit-body').append(...rows);
  else $('audit-body').replaceChildren(...rows);
  $('audit-more').hidden = !auditCursor;
}

// ---- wiring ----

function start() {
  $('signin-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const key = $('admin-key').value.trim();
    if (key) signIn(key);
  });
  $('sign-out').addEventListener('click', () => signOut());
  $('search-form').addEventListener('submit', (event) => {
    event.preventDefault();
    search();
  });
  $('load-more').addEventListener('click', () => search(true));
  $('audit-more').addEventListener('click', () => loadAudit(true));
  $('refresh-stats').addEventListener('click', () => loadStats());
  $('refresh-audit').addEventListener('click', () => loadAudit());
  $('close-detail').addEventListener('click', () => {
    $('detail').hidden = true;
    const opener = current && $('results-body').querySelector(`button[data-upload-id="${CSS.escape(current.upload_id)}"]`);
    current = null;
    opener?.focus();
  });
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && !$('detail').hidden) $('close-detail').click();
  });
  const remembered = sessionStorage.getItem(KEY);
  if (remembered) signIn(remembered, { remembered: true });
  else showSignIn();
}

start();
