// "Earlier uploads": the completed uploads of this image_id, newest first, a page at a time.

import { api } from './api.js';
import { formatBytes, formatFullDate, formatWhen, typeLabel } from './format.js';
import { copyButton, h, thumbnail } from './dom.js';

const PAGE = 12;

export class History {
  constructor({ panel, list, status, more, refresh }, imageId) {
    this.panel = panel;
    this.list = list;
    this.status = status;
    this.moreButton = more;
    this.imageId = imageId;
    this.cursor = null;
    this.loading = null;
    this.shown = new Set();
    more.addEventListener('click', () => this.load(true));
    refresh.addEventListener('click', () => this.load(false));
  }

  /** Reloads the first page (or, with `append`, the next one). */
  async load(append = false) {
    if (this.loading) {
      // Something changed while a page was on its way: fetch the first page again after it.
      if (!append) this.stale = true;
      return this.loading;
    }
    this.loading = this.fetch(append).finally(() => {
      this.loading = null;
      if (this.stale) {
        this.stale = false;
        this.load(false);
      }
    });
    return this.loading;
  }

  async fetch(append) {
    this.panel.setAttribute('aria-busy', 'true');
    if (!append && !this.list.children.length) this.status.textContent = 'Loading…';
    try {
      const page = await api.listImages(this.imageId, { cursor: append ? this.cursor : undefined, limit: PAGE });
      if (!append) {
        this.list.replaceChildren();
        this.shown.clear();
      }
      for (const record of page.images || []) {
        if (this.shown.has(record.upload_id)) continue;
        this.shown.add(record.upload_id);
        this.list.append(card(record));
      }
      this.cursor = page.next_cursor || null;
      this.moreButton.hidden = !this.cursor;
      this.status.textContent = this.list.children.length ? '' : 'Nothing has been uploaded for this ID yet.';
      this.status.hidden = !this.status.textContent;
    } catch (err) {
      this.status.hidden = false;
      this.status.textContent = `Couldn't load earlier uploads (${err.message}). Choose Refresh to try again.`;
    } finally {
      this.panel.setAttribute('aria-busy', 'false');
    }
  }
}

function card(record) {
  const name = record.original_filename || record.key;
  const facts = [];
  if (record.width && record.height) facts.push(`${record.width} × ${record.height}`);
  facts.push(typeLabel(record.content_type, name));
  if (record.file_size != null) facts.push(formatBytes(record.file_size));
  const when = record.uploaded_at || record.created_at;
  return h('li', { class: 'card', 'data-upload-id': record.upload_id },
    h('a', { class: 'card__image', href: record.s3_url, target: '_blank', rel: 'noopener', 'aria-label': `Open ${name}` },
      thumbnail(record, name)),
    h('div', { class: 'card__body' },
      h('p', { class: 'card__name', title: name }, name),
      h('p', { class: 'card__meta' },
        facts.join(' · '),
        h('br'),
        h('time', { datetime: when, title: formatFullDate(when) }, formatWhen(when))),
      copyButton(record.s3_url, `Copy the URL of ${name}`, 'Copy URL')));
}
