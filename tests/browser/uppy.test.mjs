// The Uppy example (examples/uppy): Uppy's Dashboard with @uppy/aws-s3 uploading through the
// v1 API (index.html), and with @uppy/tus through the service's tus endpoint (tus.html),
// served from its own origin. Built here with its own npm packages; the service runs with
// MULTIPART_THRESHOLD and PART_SIZE lowered to 5 MiB and allows the example's origin.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  MIB, OTHER_HOST, download, ensureArtifacts, freePort, getJson, imageId, launchBrowser, makePng, openPage,
  partNumberOf, recordRequests, sha256Base64, sleep, startService, storageRequests, tempDir, tusMetadata, writeBytes,
} from './support/harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const EXAMPLE = path.resolve(here, '..', '..', 'examples', 'uppy');
const FINAL = ['completed', 'failed'];

/** Runs a command to its end; rejects with its output when it fails. */
function run(command, args, options) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c) => { output += c; });
    child.stderr.on('data', (c) => { output += c; });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (code === 0) resolve(output);
      else reject(new Error(`${command} ${args.join(' ')} ended with ${code ?? signal}:\n${output}`));
    });
  });
}

/** Installs the example's packages when they are missing or older than its lock file, then bundles it. */
async function buildExample() {
  const installed = path.join(EXAMPLE, 'node_modules', '.package-lock.json');
  const lock = path.join(EXAMPLE, 'package-lock.json');
  if (!existsSync(installed) || statSync(lock).mtimeMs > statSync(installed).mtimeMs) {
    await run('npm', ['ci', '--no-audit', '--no-fund'], { cwd: EXAMPLE });
  }
  await run('npm', ['run', 'build', '--silent'], { cwd: EXAMPLE });
}

/** The example's static server on `port`, pointed at the service. Resolves once it serves the page. */
async function startExample(port, serviceUrl) {
  const child = spawn(process.execPath, ['server.mjs'], {
    cwd: EXAMPLE,
    env: { PATH: process.env.PATH, PORT: String(port), UPLOAD_BROKER_URL: serviceUrl },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  child.stdout.on('data', (c) => { log += c; });
  child.stderr.on('data', (c) => { log += c; });
  let exited = null;
  const exit = new Promise((resolve) => child.on('exit', (code, signal) => { exited = { code, signal }; resolve(); }));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (exited) throw new Error(`the example server exited at start (${JSON.stringify(exited)}):\n${log}`);
    const ok = await fetch(`${url}/`).then((r) => r.ok, () => false);
    if (ok) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`the example server did not serve its page within 10 s:\n${log}`);
    }
    await sleep(100);
  }
  return {
    url,
    async stop() {
      if (exited) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exit;
      clearTimeout(timer);
    },
  };
}

/** Waits until the result row of `name` reaches one of `states`; returns the state. */
async function waitForResult(page, name, states = FINAL, timeout = 60_000) {
  const handle = await page.waitForFunction(({ n, s }) => {
    const li = [...document.querySelectorAll('#results li.result')]
      .find((row) => row.querySelector('.result__name')?.textContent === n);
    return li && s.includes(li.dataset.state) ? li.dataset.state : null;
  }, { n: name, s: states }, { timeout, polling: 50 });
  return handle.jsonValue();
}

/** What the result row of `name` shows. */
function resultOf(page, name) {
  return page.evaluate((n) => {
    const li = [...document.querySelectorAll('#results li.result')]
      .find((row) => row.querySelector('.result__name')?.textContent === n);
    if (!li) return null;
    const img = li.querySelector('img.result__thumb');
    return {
      state: li.dataset.state,
      uploadId: li.dataset.uploadId || null,
      label: li.querySelector('.result__state')?.textContent ?? '',
      url: li.querySelector('.result__url input')?.value ?? null,
      link: li.querySelector('.result__url a')?.href ?? null,
      error: li.querySelector('.result__error')?.textContent ?? null,
      image: img ? { complete: img.complete, width: img.naturalWidth, height: img.naturalHeight } : null,
    };
  }, name);
}

/** The answers to the page's POST /api/v1/uploads, as the page got them. */
function recordCreates(page) {
  const creates = [];
  page.on('response', async (response) => {
    const request = response.request();
    if (request.method() !== 'POST' || !/\/api\/v1\/uploads$/.test(new URL(request.url()).pathname)) return;
    creates.push({ request: JSON.parse(request.postData()), status: response.status(), body: await response.json().catch(() => null) });
  });
  return creates;
}

/** Adds files through the Dashboard's file input and presses its Upload button. */
async function uploadThroughDashboard(page, files) {
  await page.locator('.uppy-Dashboard-input').first().setInputFiles(files.map((f) => f.path));
  await page.locator('.uppy-StatusBar-actionBtn--upload').click();
}

/**
 * Starts, before a describe block's tests, the service (with `env`, allowing the example's
 * origin), the example pointed at it (at OTHER_HOST with `otherHost`), a browser and a
 * folder, and stops them after. Returns them, filled in once started.
 */
function uppySetup(name, env, { otherHost = false } = {}) {
  const parts = {};
  before(async () => {
    await buildExample();
    const port = await freePort();
    parts.service = await startService(name, { ...env, CORS_ORIGINS: `http://127.0.0.1:${port}` });
    const serviceUrl = otherHost ? `http://${OTHER_HOST}:${parts.service.port}` : parts.service.baseUrl;
    parts.example = await startExample(port, serviceUrl);
    parts.browser = await launchBrowser({ otherHost });
    parts.dir = await tempDir(name);
  }, { timeout: 240_000 });
  after(async () => {
    await parts.browser?.close();
    await parts.example?.stop();
    await parts.service?.stop();
    if (parts.dir) await rm(parts.dir, { recursive: true, force: true });
  });
  return parts;
}

const apiCalls = (requests, serviceUrl, method, pattern) => requests.filter((r) => r.method === method
  && r.url.startsWith(serviceUrl) && pattern.test(new URL(r.url).pathname));

describe('Uppy with @uppy/aws-s3 through the v1 API (examples/uppy)', () => {
  let service;
  let example;
  let browser;
  let dir;

  const setup = uppySetup('uppy', { MULTIPART_THRESHOLD: String(5 * MIB), PART_SIZE: String(5 * MIB) });
  before(() => ({ service, example, browser, dir } = setup));

  test('a small PNG goes up with one presigned PUT, is confirmed, and its URL is shown', { timeout: 60_000 }, async () => {
    const id = imageId('uppy-small');
    const file = await makePng(dir, 'sunrise.png', 40 * 1024);
    const { context, page, problems } = await openPage(browser);
    const requests = recordRequests(page);
    const creates = recordCreates(page);
    await page.goto(`${example.url}/?image_id=${id}`);
    assert.equal(await page.locator('#service-url').textContent(), service.baseUrl, 'the page names the service it was given');

    await uploadThroughDashboard(page, [file]);
    assert.equal(await waitForResult(page, file.name), 'completed');
    await page.locator('.uppy-StatusBar').getByText('Complete', { exact: true }).waitFor();

    // One create with the file's type, size and SHA-256, answered with a single PUT.
    assert.equal(creates.length, 1);
    const { checksum_algorithm: algorithm, ...declared } = creates[0].request;
    assert.deepEqual(declared, { image_id: id, filename: file.name, content_type: 'image/png', size: file.size, checksum_sha256: sha256Base64(file.bytes) });
    assert.equal(algorithm, 'SHA256', 'parts would be signed with their SHA-256');
    assert.equal(creates[0].status, 201);
    assert.equal(creates[0].body.method, 'PUT');

    // The bytes went to storage in one PUT, then the page confirmed; nothing was signed per part.
    const puts = storageRequests(requests, service.storePort).filter((r) => r.method === 'PUT');
    assert.equal(puts.length, 1);
    assert.equal(partNumberOf(puts[0].url), null);
    assert.equal(puts[0].status, 200);
    const uploadId = creates[0].body.upload_id;
    assert.equal(apiCalls(requests, service.baseUrl, 'POST', /\/parts$/).length, 0);
    const confirms = apiCalls(requests, service.baseUrl, 'POST', /\/confirm$/);
    assert.deepEqual(confirms.map((r) => [new URL(r.url).pathname, r.status]), [[`/api/v1/uploads/${uploadId}/confirm`, 200]]);

    // The record, the URL on the page, and the bytes behind it.
    const shown = await resultOf(page, file.name);
    assert.equal(shown.uploadId, uploadId);
    assert.equal(shown.label, 'Uploaded');
    const { status, body: record } = await getJson(`${service.baseUrl}/api/v1/uploads/${uploadId}`);
    assert.equal(status, 200);
    assert.equal(record.state, 'completed');
    assert.equal(record.image_id, id);
    assert.equal(record.file_size, file.size);
    assert.equal(record.content_type, 'image/png');
    assert.equal(record.checksum_sha256, sha256Base64(file.bytes));
    assert.equal(shown.url.split('?')[0], record.s3_url.split('?')[0], 'the page shows the object URL');
    assert.equal(shown.link, shown.url);
    assert.ok((await download(shown.url)).equals(file.bytes), 'the URL on the page returns exactly the file');
    assert.ok((await download(record.s3_url)).equals(file.bytes), 'the record\'s s3_url returns exactly the file');
    await page.waitForFunction((n) => [...document.querySelectorAll('#results li.result')]
      .find((li) => li.querySelector('.result__name')?.textContent === n)?.querySelector('img')?.naturalWidth > 0, file.name);
    assert.deepEqual((await resultOf(page, file.name)).image, { complete: true, width: 64, height: 48 }, 'the stored image shows');

    await page.screenshot({ path: path.join(ensureArtifacts(), 'uppy-single.png'), fullPage: true });
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('a 12 MiB PNG goes up in 3 parts signed one by one, and confirm completes it', { timeout: 90_000 }, async () => {
    const id = imageId('uppy-big');
    const file = await makePng(dir, 'panorama.png', 12 * MIB);
    const { context, page, problems } = await openPage(browser);
    const requests = recordRequests(page);
    const creates = recordCreates(page);
    await page.goto(`${example.url}/?image_id=${id}`);

    await uploadThroughDashboard(page, [file]);
    assert.equal(await waitForResult(page, file.name), 'completed');
    await page.locator('.uppy-StatusBar').getByText('Complete', { exact: true }).waitFor();

    // The service chose multipart with 5 MiB parts; Uppy cut the file the same way.
    assert.equal(creates.length, 1);
    const plan = creates[0].body;
    assert.equal(plan.method, 'MULTIPART');
    assert.equal(plan.part_size, 5 * MIB);
    assert.equal(plan.part_count, 3);
    assert.equal(creates[0].request.size, file.size);
    const uploadId = plan.upload_id;

    // Each part signed (with its SHA-256) and sent once; the sizes are the plan's.
    const signs = apiCalls(requests, service.baseUrl, 'POST', /\/parts$/);
    const signed = signs.map((r) => JSON.parse(r.request.postData()));
    assert.deepEqual(signed.map((b) => b.part_numbers).flat().sort(), [1, 2, 3]);
    for (const body of signed) {
      const [n] = body.part_numbers;
      const part = file.bytes.subarray((n - 1) * 5 * MIB, n * 5 * MIB);
      assert.equal(body.checksums_sha256?.[n], sha256Base64(part), `part ${n} signed for its SHA-256`);
    }
    const puts = storageRequests(requests, service.storePort).filter((r) => r.method === 'PUT');
    assert.deepEqual(puts.map((r) => partNumberOf(r.url)).sort(), [1, 2, 3]);
    assert.ok(puts.every((r) => r.status === 200));
    const lengths = await Promise.all(puts.map(async (r) => Number((await r.request.allHeaders())['content-length'])));
    assert.deepEqual(lengths.sort((a, b) => a - b), [2 * MIB, 5 * MIB, 5 * MIB], 'parts of the planned sizes');
    // The page never completed the upload with storage itself: the service's confirm did.
    assert.equal(storageRequests(requests, service.storePort).filter((r) => r.method === 'POST').length, 0);
    const confirms = apiCalls(requests, service.baseUrl, 'POST', /\/confirm$/);
    assert.deepEqual(confirms.map((r) => [new URL(r.url).pathname, r.status]), [[`/api/v1/uploads/${uploadId}/confirm`, 200]]);

    const shown = await resultOf(page, file.name);
    assert.equal(shown.uploadId, uploadId);
    const { body: record } = await getJson(`${service.baseUrl}/api/v1/uploads/${uploadId}`);
    assert.equal(record.state, 'completed');
    assert.equal(record.file_size, 12 * MIB);
    assert.equal(record.content_type, 'image/png');
    assert.match(record.etag, /-3"$/, 'a multipart object of 3 parts');
    assert.equal(shown.url.split('?')[0], record.s3_url.split('?')[0], 'the page shows the object URL');
    assert.ok((await download(shown.url)).equals(file.bytes), 'the URL on the page returns exactly the file');
    assert.ok((await download(record.s3_url)).equals(file.bytes), 'the record\'s s3_url returns exactly the file');

    await page.screenshot({ path: path.join(ensureArtifacts(), 'uppy-multipart.png'), fullPage: true });
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('files whose bytes are not a PNG fail verification: the page says why, the records are failed', { timeout: 90_000 }, async () => {
    const id = imageId('uppy-fake');
    // A text file and 6 MiB of noise, both named .png: one single PUT, one multipart upload.
    const text = await writeBytes(dir, 'notes.png', Buffer.from('These are meeting notes, not a picture.\n'.repeat(50)));
    const noise = await writeBytes(dir, 'noise.png', randomBytes(6 * MIB));
    const { context, page, problems } = await openPage(browser);
    const requests = recordRequests(page);
    const creates = recordCreates(page);
    await page.goto(`${example.url}/?image_id=${id}`);

    await uploadThroughDashboard(page, [text, noise]);
    assert.equal(await waitForResult(page, text.name), 'failed');
    assert.equal(await waitForResult(page, noise.name), 'failed');

    assert.deepEqual(creates.map((c) => [c.request.filename, c.body.method]).sort(), [['noise.png', 'MULTIPART'], ['notes.png', 'PUT']]);
    for (const f of [text, noise]) {
      const shown = await resultOf(page, f.name);
      assert.equal(shown.label, 'Failed');
      assert.equal(shown.url, null, `no URL is shown for ${f.name}`);
      assert.match(shown.error, /not a readable image of an allowed type \(invalid_image\)/, `the confirm's message is shown for ${f.name}`);
      const confirm = apiCalls(requests, service.baseUrl, 'POST', /\/confirm$/)
        .filter((r) => r.url.includes(shown.uploadId));
      assert.deepEqual(confirm.map((r) => r.status), [422], `${f.name} was confirmed once and refused`);
      const { body: record } = await getJson(`${service.baseUrl}/api/v1/uploads/${shown.uploadId}`);
      assert.equal(record.state, 'failed', `${f.name}'s record`);
      assert.equal(record.s3_url, null);
    }
    // Nothing aborted what the service already judged.
    assert.equal(requests.filter((r) => r.method === 'DELETE').length, 0);
    // Uppy's Dashboard marks both files as failed too.
    await page.locator('.uppy-Dashboard-Item.is-error').nth(1).waitFor();
    assert.equal(await page.locator('.uppy-Dashboard-Item.is-error').count(), 2);

    await page.screenshot({ path: path.join(ensureArtifacts(), 'uppy-failed.png'), fullPage: true });
    // Uppy logs each failed upload to the console; nothing else went wrong.
    assert.deepEqual(problems.filter((p) => !/not a readable image/.test(p)), []);
    await context.close();
  });
});

describe('Uppy through the service reached under another host name', () => {
  let service;
  let example;
  let browser;
  let dir;

  const setup = uppySetup('uppy-reach', {}, { otherHost: true });
  before(() => ({ service, example, browser, dir } = setup));

  test('the bytes go to the name the page was given for the service, and the upload completes', { timeout: 60_000 }, async () => {
    const serviceUrl = `http://${OTHER_HOST}:${service.port}`;
    const id = imageId('uppy-reach');
    const file = await makePng(dir, 'harbour.png', 40 * 1024);
    const { context, page, problems } = await openPage(browser);
    const requests = recordRequests(page);
    await page.goto(`${example.url}/?image_id=${id}`);
    await uploadThroughDashboard(page, [file]);
    assert.equal(await waitForResult(page, file.name), 'completed');

    const puts = storageRequests(requests, service.storePort).filter((r) => r.method === 'PUT');
    assert.deepEqual(puts.map((r) => [new URL(r.url).origin, r.status]), [[serviceUrl, 200]]);
    const toService = requests.filter((r) => /^https?:/.test(r.url) && !r.url.startsWith(example.url));
    assert.ok(toService.every((r) => r.url.startsWith(`${serviceUrl}/`)), JSON.stringify(toService.map((r) => r.url)));
    const shown = await resultOf(page, file.name);
    assert.equal(new URL(shown.url).origin, serviceUrl);
    const bytes = await page.evaluate(async (url) => Array.from(new Uint8Array(await (await fetch(url)).arrayBuffer())), shown.url);
    assert.ok(Buffer.from(bytes).equals(file.bytes), 'the URL on the page returns exactly the file');
    assert.deepEqual(problems, []);
    await context.close();
  });
});

describe('Uppy with @uppy/tus through the service (examples/uppy/tus.html)', () => {
  let service;
  let example;
  let browser;
  let dir;

  const setup = uppySetup('uppy-tus', { MULTIPART_THRESHOLD: String(5 * MIB), PART_SIZE: String(5 * MIB) });
  before(() => ({ service, example, browser, dir } = setup));

  test('two PNGs go up through tus, none of their bytes to storage, and both records are completed', { timeout: 90_000 }, async () => {
    const id = imageId('uppy-tus');
    const small = await makePng(dir, 'meadow.png', 40 * 1024);
    const big = await makePng(dir, 'skyline.png', 12 * MIB);
    const { context, page, problems } = await openPage(browser);
    const requests = recordRequests(page);
    await page.goto(`${example.url}/tus.html?image_id=${id}`);
    assert.equal(await page.locator('#service-url').textContent(), service.baseUrl, 'the page names the service it was given');

    await uploadThroughDashboard(page, [small, big]);
    for (const file of [small, big]) assert.equal(await waitForResult(page, file.name), 'completed');
    await page.locator('.uppy-StatusBar').getByText('Complete', { exact: true }).waitFor();

    // No presigned upload and nothing sent to storage (the stored images are shown with GETs).
    assert.equal(apiCalls(requests, service.baseUrl, 'POST', /^\/api\/v1\/uploads$/).length, 0);
    const toStorage = storageRequests(requests, service.storePort).filter((r) => r.method !== 'GET');
    assert.deepEqual(toStorage.map((r) => `${r.method} ${r.url}`), []);

    // One tus creation per file, with the metadata the service reads.
    const creations = apiCalls(requests, service.baseUrl, 'POST', /^\/api\/v1\/tus$/);
    assert.equal(creations.length, 2);
    const declared = await Promise.all(creations.map(async (r) => {
      const headers = await r.request.allHeaders();
      const { image_id: imageIdSent, filename, filetype } = tusMetadata(headers['upload-metadata']);
      return { status: r.status, resumable: headers['tus-resumable'], length: Number(headers['upload-length']), imageIdSent, filename, filetype };
    }));
    assert.deepEqual(declared.sort((a, b) => a.length - b.length), [small, big].map((f) => ({
      status: 201, resumable: '1.0.0', length: f.size, imageIdSent: id, filename: f.name, filetype: 'image/png',
    })));

    for (const file of [small, big]) {
      const shown = await resultOf(page, file.name);
      assert.equal(shown.label, 'Uploaded');
      assert.ok(shown.uploadId, `${file.name}: the page shows its upload_id`);
      // The bytes in PATCHes of at most 8 MiB, each taken (204), adding up to the file.
      const patches = apiCalls(requests, service.baseUrl, 'PATCH', new RegExp(`^/api/v1/tus/${shown.uploadId}$`));
      const lengths = await Promise.all(patches.map(async (r) => Number((await r.request.allHeaders())['content-length'])));
      assert.deepEqual(lengths, file.size > 8 * MIB ? [8 * MIB, file.size - 8 * MIB] : [file.size]);
      assert.ok(patches.every((r) => r.status === 204));

      const { status, body: record } = await getJson(`${service.baseUrl}/api/v1/uploads/${shown.uploadId}`);
      assert.equal(status, 200);
      assert.equal(record.state, 'completed');
      assert.equal(record.image_id, id);
      assert.equal(record.original_filename, file.name);
      assert.equal(record.content_type, 'image/png');
      assert.equal(record.file_size, file.size);
      assert.equal(shown.url.split('?')[0], record.s3_url.split('?')[0], 'the page shows the object URL');
      assert.ok((await download(shown.url)).equals(file.bytes), `${file.name}: the URL on the page returns exactly the file`);
      assert.ok((await download(record.s3_url)).equals(file.bytes), `${file.name}: the record's s3_url returns exactly the file`);
    }

    // tus-js-client forgot the finished uploads: nothing is left to resume.
    const remembered = await page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('tus::')));
    assert.deepEqual(remembered, []);
    await page.screenshot({ path: path.join(ensureArtifacts(), 'uppy-tus.png'), fullPage: true });
    assert.deepEqual(problems, []);
    await context.close();
  });
});
