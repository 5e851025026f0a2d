// Unfinished uploads, remembered in localStorage so that a reload can pick them up.
// Keyed by image_id + file name + size + lastModified: the same file chosen again.

const PREFIX = 'upload-broker:unfinished:v1:';

function storage() {
  try {
    return window.localStorage;
  } catch {
    return null; // storage disabled: uploads still work, they just can't be resumed
  }
}

export function keyFor(imageId, file) {
  return PREFIX + JSON.stringify([imageId, file.name, file.size, file.lastModified]);
}

export function load(key) {
  const store = storage();
  if (!store) return null;
  try {
    const entry = JSON.parse(store.getItem(key) || 'null');
    if (!entry || typeof entry.upload_id !== 'string') return null;
    if (entry.expires_at && Date.parse(entry.expires_at) < Date.now()) {
      store.removeItem(key);
      return null;
    }
    return entry;
  } catch {
    store.removeItem(key);
    return null;
  }
}

export function save(key, entry) {
  try {
    storage()?.setItem(key, JSON.stringify({ ...entry, saved_at: new Date().toISOString() }));
  } catch {
    // Quota or privacy mode: the upload goes on, it just won't be resumable.
  }
}

export function remove(key) {
  try {
    storage()?.removeItem(key);
  } catch {
    // nothing to do
  }
}

/** Unfinished uploads of one image_id: [{key, entry}], oldest first. */
export function listFor(imageId) {
  const store = storage();
  if (!store) return [];
  const keys = [];
  for (let i = 0; i < store.length; i += 1) keys.push(store.key(i));
  const found = [];
  for (const key of keys) {
    if (!key || !key.startsWith(PREFIX)) continue;
    let parts;
    try {
      parts = JSON.parse(key.slice(PREFIX.length));
    } catch {
      continue;
    }
    if (!Array.isArray(parts) || parts[0] !== imageId) continue;
    const entry = load(key);
    if (entry) found.push({ key, entry });
  }
  return found.sort((a, b) => String(a.entry.saved_at).localeCompare(String(b.entry.saved_at)));
}
