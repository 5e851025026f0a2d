// Turning numbers into words people read: sizes, speeds, durations, dates.

const UNITS = ['bytes', 'KB', 'MB', 'GB', 'TB'];

/** 1536 -> "1.5 KB" (binary multiples, the way most file managers count). */
export function formatBytes(bytes) {
  if (!Number.isFinite(bytes) || bytes < 0) return '';
  if (bytes < 1024) return bytes === 1 ? '1 byte' : `${bytes} bytes`;
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const digits = value >= 100 ? 0 : 1;
  return `${value.toFixed(digits)} ${UNITS[unit]}`;
}

/** Bytes per second -> "3.2 MB/s". */
export function formatRate(bytesPerSecond) {
  if (!Number.isFinite(bytesPerSecond) || bytesPerSecond <= 0) return '';
  return `${formatBytes(Math.round(bytesPerSecond))}/s`;
}

/** Seconds -> "12 s", "3 min 5 s", "1 h 20 min". */
export function formatDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return '';
  if (seconds < 9.95) return `${Math.max(seconds, 0.1).toFixed(1)} s`;
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const minutes = Math.floor(s / 60);
  if (minutes < 60) {
    const rest = s % 60;
    return rest ? `${minutes} min ${rest} s` : `${minutes} min`;
  }
  const hours = Math.floor(minutes / 60);
  const rest = minutes % 60;
  return rest ? `${hours} h ${rest} min` : `${hours} h`;
}

/** 0.4237 -> "42%" (never "100%" before it is really done). */
export function formatPercent(fraction) {
  const pct = Math.max(0, Math.min(1, fraction)) * 100;
  if (pct >= 100) return '100%';
  return `${Math.min(99, Math.floor(pct))}%`;
}

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
const absolute = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

/** An RFC 3339 time -> "5 minutes ago" (recent) or a short date. */
export function formatWhen(iso, now = Date.now()) {
  const time = Date.parse(iso);
  if (Number.isNaN(time)) return '';
  const seconds = Math.round((time - now) / 1000);
  const abs = Math.abs(seconds);
  if (abs < 45) return 'just now';
  if (abs < 45 * 60) return relative.format(Math.round(seconds / 60), 'minute');
  if (abs < 20 * 3600) return relative.format(Math.round(seconds / 3600), 'hour');
  if (abs < 6 * 86400) return relative.format(Math.round(seconds / 86400), 'day');
  return absolute.format(new Date(time));
}

/** The full date and time, for a tooltip or a <time> element. */
export function formatFullDate(iso) {
  const time = Date.parse(iso);
  return Number.isNaN(time) ? '' : absolute.format(new Date(time));
}

/** "image/jpeg" -> "JPEG". */
export function typeLabel(contentType, filename = '') {
  const known = {
    'image/png': 'PNG',
    'image/jpeg': 'JPEG',
    'image/gif': 'GIF',
    'image/webp': 'WebP',
    'image/bmp': 'BMP',
    'image/tiff': 'TIFF',
    'image/svg+xml': 'SVG',
    'image/heic': 'HEIC',
    'image/avif': 'AVIF',
  };
  if (known[contentType]) return known[contentType];
  const ext = extensionOf(filename);
  return ext ? ext.toUpperCase() : 'file';
}

/** "Photo.JPG" -> "jpg"; "" when there is none. */
export function extensionOf(name) {
  const dot = name.lastIndexOf('.');
  if (dot <= 0 || dot === name.length - 1) return '';
  return name.slice(dot + 1).toLowerCase();
}

/** Seconds still to go -> "about 12 s left" style text, without false precision. */
export function formatTimeLeft(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return '';
  if (seconds < 60) return `${Math.max(1, Math.ceil(seconds))} s left`;
  return `${formatDuration(seconds)} left`;
}
