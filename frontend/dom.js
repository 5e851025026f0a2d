// DOM helpers: building elements without innerHTML, previews, copying, announcements.

import { typeLabel } from './format.js';

/** h('p', {class: 'x'}, 'text', child, ...): an element with attributes and children. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value == null) continue;
    if (name.startsWith('on') && typeof value === 'function') el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** A type badge ("TIFF") for files the browser cannot draw. */
export function badge(contentType, name) {
  return h('span', { class: 'badge', 'aria-hidden': 'true' }, typeLabel(contentType, name));
}

/** An <img> that turns into a type badge if the browser cannot decode it. */
export function imageOrBadge(src, alt, contentType, name) {
  if (!src) return badge(contentType, name);
  const img = h('img', { src, alt, loading: 'lazy', decoding: 'async' });
  img.addEventListener('error', () => img.replaceWith(badge(contentType, name)), { once: true });
  return img;
}

/**
 * An upload's `thumb` variant, never its original: WebP in a <picture> that falls back to
 * JPEG. Once the record says the variants are ready, their own URLs; before that, the
 * service's on-demand variant URLs, which make the variant if it is missing. A type badge
 * when the variants failed, or the browser cannot draw what came back.
 */
export function thumbnail(record, name) {
  if (record.variants_state === 'failed') return badge(record.content_type, name);
  const made = record.variants_state === 'ready' ? record.variants?.thumb : null;
  const onDemand = (format) => `/api/v1/uploads/${encodeURIComponent(record.upload_id)}/variants/thumb.${format}`;
  const webp = made ? made.webp?.url : onDemand('webp');
  const jpeg = made ? made.jpeg?.url : onDemand('jpeg');
  const fallback = jpeg ?? webp;
  if (!fallback) return badge(record.content_type, name);
  const img = imageOrBadge(fallback, '', record.content_type, name);
  if (!webp || webp === fallback) return img;
  const picture = h('picture', { class: 'thumbnail' }, h('source', { type: 'image/webp', srcset: webp }), img);
  img.addEventListener('error', () => picture.replaceWith(badge(record.content_type, name)), { once: true });
  return picture;
}

let announcer = null;

/** Says `text` to screen readers through the page's polite live region. */
export function announce(text) {
  announcer ??= document.getElementById('announcer');
  if (!announcer) return;
  announcer.textContent = '';
  // A fresh node each time so that the same sentence twice is still read.
  requestAnimationFrame(() => { announcer.textContent = text; });
}

/** Copies text to the clipboard, with a fallback for pages that are not a secure context. */
export async function copyText(text) {
  if (navigator.clipboard?.writeText) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // fall through to the old way
    }
  }
  const area = h('textarea', { class: 'visually-hidden', readonly: true, 'aria-hidden': 'true' });
  area.value = text;
  document.body.append(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand('copy');
  } catch {
    ok = false;
  }
  area.remove();
  return ok;
}

/** A button that copies `text` and says so. */
export function copyButton(text, label, caption = 'Copy') {
  const button = h('button', { type: 'button', class: 'button button--small', 'aria-label': label }, caption);
  let timer = 0;
  button.addEventListener('click', async () => {
    const ok = await copyText(text);
    button.textContent = ok ? 'Copied' : 'Copy failed';
    button.classList.toggle('is-done', ok);
    announce(ok ? 'URL copied to the clipboard.' : 'Could not copy; select the URL and copy it by hand.');
    clearTimeout(timer);
    timer = setTimeout(() => {
      button.textContent = caption;
      button.classList.remove('is-done');
    }, 2000);
  });
  return button;
}
