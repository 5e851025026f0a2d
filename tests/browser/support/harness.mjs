// What every browser test needs: the real service on free loopback ports with its own data
// directory, headless Chromium, test images, and a few ways to watch the page.

import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { accessSync, constants, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const ARTIFACTS = path.resolve(here, '..', 'artifacts');
export const FIXTURES = path.resolve(here, '..', '..', 'fixtures');
export const MIB = 1024 * 1024;

/** A port nobody listens on right now (bind port 0, read it, let it go). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function serviceBinary() {
  const bin = process.env.UPLOAD_BROKER_BIN;
  if (!bin) {
    throw new Error('UPLOAD_BROKER_BIN is not set: point it at the upload-broker binary, e.g. UPLOAD_BROKER_BIN=target/release/upload-broker npm test');
  }
  try {
    accessSync(bin, constants.X_OK);
  } catch {
    throw new Error(`UPLOAD_BROKER_BIN=${bin} is not an executable file`);
  }
  return bin;
}

/**
 * Starts the service with the embedded store, a fresh data directory and free ports.
 * `env` adds or overrides settings (thresholds, expiry). Resolves once GET /health is 200.
 */
export async function startService(name, env = {}) {
  const bin = serviceBinary();
  const dataDir = await mkdtemp(path.join(tmpdir(), `upload-broker-${name}-`));
  const port = await freePort();
  let storePort = await freePort();
  while (storePort === port) storePort = await freePort();

  // A clean environment, so that no bucket or database of the machine is picked up.
  const childEnv = {
    PATH: process.env.PATH || '/usr/bin:/bin',
    HOME: dataDir,
    PORT: String(port),
    EMBEDDED_S3_PORT: String(storePort),
    BIND_ADDR: '127.0.0.1',
    DATA_DIR: path.join(dataDir, 'data'),
    LOG_LEVEL: 'WARNING',
    SHUTDOWN_GRACE: '1',
    ...(process.env.FRONTEND_DIR ? { FRONTEND_DIR: path.resolve(process.env.FRONTEND_DIR) } : {}),
    ...env,
  };
  const child = spawn(bin, [], { cwd: dataDir, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const keep = (chunk) => {
    log += chunk.toString();
    if (log.length > 200_000) log = log.slice(-100_000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  let exited = null;
  const exit = new Promise((resolve) => child.on('exit', (code, signal) => {
    exited = { code, signal };
    resolve(exited);
  }));

  const baseUrl = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (exited) throw new Error(`upload-broker exited at start (${JSON.stringify(exited)}):\n${log}`);
    try {
      const res = await fetch(`${baseUrl}/health`);
      if (res.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`upload-broker did not answer GET /health with 200 within 20 s:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }

  return {
    baseUrl,
    port,
    storePort,
    dataDir,
    log: () => log,
    async stop() {
      if (!exited) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exit;
        clearTimeout(timer);
      }
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** The name the "another host" tests reach the service by: Chromium resolves it to loopback. */
export const OTHER_HOST = 'photos.test';

/**
 * Headless Chromium (Debian's). Fails, never skips, when it is missing. With `otherHost`, the
 * browser resolves OTHER_HOST to 127.0.0.1, as a laptop on the network resolves the name of
 * the machine the service runs on.
 */
export async function launchBrowser({ otherHost = false } = {}) {
  const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
  if (!existsSync(executablePath)) {
    throw new Error(`Chromium is missing at ${executablePath}: install it (apt-get install -y chromium) or set CHROMIUM_PATH`);
  }
  return chromium.launch({
    executablePath,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      ...(otherHost ? [`--host-resolver-rules=MAP ${OTHER_HOST} 127.0.0.1`] : []),
    ],
  });
}

/** A fresh context (empty localStorage) and page; records errors the page runs into. */
export async function openPage(browser, { viewport = { width: 1280, height: 800 }, colorScheme = 'light', permissions = [] } = {}) {
  const context = await browser.newContext({ viewport, colorScheme, reducedMotion: 'reduce' });
  if (permissions.length) await context.grantPermissions(permissions);
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const text = msg.text();
    // Refused requests are logged by the browser itself; the tests check those answers.
    if (text.startsWith('Failed to load resource')) return;
    problems.push(`console error: ${text}`);
  });
  // Leaving the page while an upload runs asks for confirmation; the tests mean it.
  page.on('dialog', (dialog) => dialog.accept());
  return { context, page, problems };
}

/** A unique image_id for one test. */
export function imageId(prefix) {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

/**
 * Writes a valid PNG (the 64x48 fixture) of exactly `size` bytes: random padding goes in an
 * ancillary chunk before the fixture's IEND chunk (the service refuses anything after
 * IEND), and makes every file (and every part of it) distinct.
 */
export async function makePng(dir, name, size = 0) {
  const png = readFileSync(path.join(FIXTURES, 'sample.png'));
  let body = png;
  if (size > png.length) {
    const padding = size - png.length - 12;
    const head = png.subarray(0, png.length - 12);
    const iend = png.subarray(png.length - 12);
    const length = Buffer.alloc(4);
    length.writeUInt32BE(padding);
    const chunk = Buffer.concat([Buffer.from('ubPd'), randomBytes(padding)]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(chunk));
    body = Buffer.concat([head, length, chunk, crc, iend]);
  }
  const file = path.join(dir, name);
  await writeFile(file, body);
  return { path: file, name, bytes: body, size: body.length };
}

/** Copies a repository fixture under another name. */
export async function copyFixture(dir, fixture, name) {
  const bytes = readFileSync(path.join(FIXTURES, fixture));
  const file = path.join(dir, name);
  await writeFile(file, bytes);
  return { path: file, name, bytes, size: bytes.length };
}

export async function writeBytes(dir, name, bytes) {
  const file = path.join(dir, name);
  await writeFile(file, bytes);
  return { path: file, name, bytes: Buffer.from(bytes), size: bytes.length };
}

export async function tempDir(prefix) {
  return mkdtemp(path.join(tmpdir(), `upload-page-${prefix}-`));
}

export function sha256Base64(bytes) {
  return createHash('sha256').update(bytes).digest('base64');
}

/** GET a JSON document from the service. */
export async function getJson(url) {
  const res = await fetch(url);
  const body = await res.json().catch(() => null);
  return { status: res.status, body };
}

/** The bytes at `url` (an s3_url). */
export async function download(url) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`GET ${url} answered ${res.status}`);
  return Buffer.from(await res.arrayBuffer());
}

/** Every request the page sends, with its status once answered. */
export function recordRequests(page) {
  const log = [];
  page.on('request', (request) => {
    log.push({ method: request.method(), url: request.url(), status: null, failed: null, request, at: Date.now() });
  });
  page.on('response', (response) => {
    const entry = log.find((e) => e.request === response.request());
    if (entry) entry.status = response.status();
  });
  page.on('requestfinished', (request) => {
    const entry = log.find((e) => e.request === request);
    if (entry) entry.finishedAt = Date.now();
  });
  page.on('requestfailed', (request) => {
    const entry = log.find((e) => e.request === request);
    if (entry) entry.failed = request.failure()?.errorText || 'failed';
  });
  return log;
}

/** Requests to the embedded store (its port), preflights left out. */
/**
 * The requests that went to the embedded store: on the page's own origin under the bucket's
 * path (`/upload-broker/...`), or on the store's loopback port. Preflights left out.
 */
export function storageRequests(log, storePort) {
  return log.filter((e) => {
    const url = new URL(e.url);
    const toStore = url.pathname.startsWith('/upload-broker/') || url.port === String(storePort);
    return toStore && e.method !== 'OPTIONS';
  });
}

/** A tus `Upload-Metadata` header decoded: {key: value}. */
export function tusMetadata(header) {
  return Object.fromEntries((header || '').split(',').filter((pair) => pair.trim()).map((pair) => {
    const [key, value = ''] = pair.trim().split(' ');
    return [key, Buffer.from(value, 'base64').toString('utf8')];
  }));
}

/** Part number of an UploadPart request URL, or null. */
export function partNumberOf(url) {
  const u = new URL(url);
  return u.searchParams.get('x-id') === 'UploadPart' ? Number(u.searchParams.get('partNumber')) : null;
}

/** Slows the page's uploads down (bytes per second), so that progress can be watched. */
export async function throttleUploads(page, bytesPerSecond) {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false,
    latency: 0,
    downloadThroughput: -1,
    uploadThroughput: bytesPerSecond,
  });
  return cdp;
}

/** Waits until the row of `fileName` reaches one of `states`; returns its final state. */
export async function waitForRow(page, fileName, states, timeout = 30_000) {
  const wanted = Array.isArray(states) ? states : [states];
  const handle = await page.waitForFunction(({ name, wanted: w }) => {
    const row = [...document.querySelectorAll('li.upload')]
      .find((li) => li.querySelector('.upload__name')?.textContent === name);
    return row && w.includes(row.dataset.state) ? row.dataset.state : null;
  }, { name: fileName, wanted }, { timeout, polling: 50 });
  return handle.jsonValue();
}

/** The row of `fileName` as data: state, upload id, texts. */
export async function rowInfo(page, fileName) {
  return page.evaluate((name) => {
    const row = [...document.querySelectorAll('li.upload')]
      .find((li) => li.querySelector('.upload__name')?.textContent === name);
    if (!row) return null;
    const text = (sel) => row.querySelector(sel)?.textContent ?? '';
    return {
      state: row.dataset.state,
      uploadId: row.dataset.uploadId || null,
      title: text('.upload__state'),
      detail: text('.upload__detail'),
      stats: text('.upload__stats'),
      url: row.querySelector('.url-field__input')?.value ?? null,
      text: row.innerText,
    };
  }, fileName);
}

export function ensureArtifacts() {
  mkdirSync(ARTIFACTS, { recursive: true });
  return ARTIFACTS;
}

/** Strips the signature of a presigned URL (each lookup signs afresh). */
export function unsigned(url) {
  return url.split('?')[0];
}

/**
 * Records, from the first moment of every page of `context`, each value the progress bars
 * take and each text the rows' stats and notices show (window.__seen).
 */
export async function recordRowChanges(context) {
  await context.addInitScript(() => {
    const seen = { progress: [], stats: [], details: [] };
    window.__seen = seen;
    const observer = new MutationObserver((records) => {
      for (const record of records) {
        const node = record.target;
        const el = node.nodeType === Node.ELEMENT_NODE ? node : node.parentElement;
        if (!el) continue;
        if (record.type === 'attributes' && el.matches('progress.upload__bar') && el.hasAttribute('value')) {
          seen.progress.push(el.value);
        } else if (el.closest('.upload__stats')) {
          seen.stats.push(el.closest('.upload__stats').textContent);
        } else if (el.closest('.upload__detail')) {
          seen.details.push(el.closest('.upload__detail').textContent);
        }
      }
    });
    observer.observe(document, { subtree: true, childList: true, characterData: true, attributes: true, attributeFilter: ['value'] });
  });
}

/** What the page recorded through recordRowChanges. */
export function seen(page) {
  return page.evaluate(() => window.__seen);
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until `check()` is truthy (polling), or fails with `what`. */
export async function until(check, what, timeout = 30_000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/**
 * The service, browser and scratch folder that the tests of one file share, started by
 * the first test that asks. A failure to start (no Chromium, no binary) then fails every
 * test with its message, rather than leaving them cancelled or skipped.
 */
export function sharedSetup(name, env = {}) {
  let ready = null;
  let parts = {};
  return {
    get() {
      ready ??= (async () => {
        parts.browser = await launchBrowser();
        parts.service = await startService(name, env);
        parts.dir = await tempDir(name);
        return parts;
      })();
      return ready;
    },
    async teardown() {
      await ready?.catch(() => {});
      await parts.browser?.close();
      await parts.service?.stop();
      if (parts.dir) await rm(parts.dir, { recursive: true, force: true });
      parts = {};
    },
  };
}
