// Large files: multipart uploads with parts in parallel, progress from the transfer itself,
// resuming after a reload with only the missing parts, and a failed part retried.
// The service runs with MULTIPART_THRESHOLD and PART_SIZE lowered to 5 MiB.

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import {
  MIB, download, ensureArtifacts, getJson, imageId, makePng, openPage, partNumberOf, recordRequests,
  recordRowChanges, rowInfo, seen, sharedSetup, sleep, storageRequests, throttleUploads, until, waitForRow,
} from './support/harness.mjs';

const FINAL = ['completed', 'failed', 'rejected', 'refused', 'cancelled'];

describe('multipart uploads', () => {
  const shared = sharedSetup('multipart', {
    MULTIPART_THRESHOLD: String(5 * MIB),
    PART_SIZE: String(5 * MIB),
  });
  let service;
  let browser;
  let dir;
  const ready = async () => ({ service, browser, dir } = await shared.get());

  after(() => shared.teardown());

  test('a 30 MiB file goes up in 6 parts, 4 to 6 at a time, with live progress', async () => {
    await ready();
    const id = imageId('big');
    const file = await makePng(dir, 'panorama.png', 30 * MIB);
    const { context, page, problems } = await openPage(browser);
    await recordRowChanges(context);
    const requests = recordRequests(page);
    let inFlight = 0;
    let maxInFlight = 0;
    const isPart = (r) => r.method() === 'PUT' && partNumberOf(r.url()) !== null;
    page.on('request', (r) => { if (isPart(r)) maxInFlight = Math.max(maxInFlight, ++inFlight); });
    page.on('requestfinished', (r) => { if (isPart(r)) inFlight -= 1; });
    page.on('requestfailed', (r) => { if (isPart(r)) inFlight -= 1; });
    // About 2 s for the whole file: slow enough to watch the bar move.
    await throttleUploads(page, 15 * MIB);

    await page.goto(`${service.baseUrl}/${id}`);
    await page.setInputFiles('#file-input', file.path);
    await page.waitForFunction(() => document.querySelector('li.upload progress')?.value > 40);
    await page.screenshot({ path: path.join(ensureArtifacts(), 'multipart-progress.png') });
    assert.equal(await waitForRow(page, file.name, FINAL, 60_000), 'completed');

    // The bar went through many values on the way, never backwards (no retries here).
    const { progress, stats } = await seen(page);
    const between = progress.filter((v) => v > 0 && v < 100);
    assert.ok(new Set(between.map(Math.floor)).size >= 5, `intermediate progress values: ${between.join(', ')}`);
    for (let i = 1; i < progress.length; i += 1) {
      assert.ok(progress[i] >= progress[i - 1], `progress went back from ${progress[i - 1]} to ${progress[i]}`);
    }
    assert.ok(stats.some((s) => /^\d+% · [\d.]+ (KB|MB)\/s · \d+ s left · \d of 6 parts$/.test(s)),
      `percent, speed and time left were shown; saw: ${[...new Set(stats)].slice(0, 8).join(' | ')}`);

    // Six parts, each sent once, several in flight together; no single PUT.
    const puts = storageRequests(requests, service.storePort).filter((r) => r.method === 'PUT');
    assert.deepEqual(puts.map((r) => partNumberOf(r.url)).sort((a, b) => a - b), [1, 2, 3, 4, 5, 6]);
    assert.ok(maxInFlight >= 4 && maxInFlight <= 6, `parts in flight at once: ${maxInFlight}`);

    // Each part was signed with its SHA-256.
    const signs = requests.filter((r) => r.method === 'POST' && /\/parts$/.test(r.url));
    for (const sign of signs) {
      const body = JSON.parse(sign.request.postData());
      for (const n of body.part_numbers) assert.ok(body.checksums_sha256?.[n], `part ${n} signed with its checksum`);
    }

    const row = await rowInfo(page, file.name);
    const { body: record } = await getJson(`${service.baseUrl}/api/v1/uploads/${row.uploadId}`);
    assert.equal(record.state, 'completed');
    assert.equal(record.file_size, 30 * MIB);
    assert.match(record.etag, /-6"$/, 'a multipart object of 6 parts');
    assert.ok((await download(record.s3_url)).equals(file.bytes), 'stored bytes equal the file');
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('after a reload mid-upload, choosing the file again sends only the missing parts', async () => {
    await ready();
    const id = imageId('resume');
    const file = await makePng(dir, 'long-exposure.png', 30 * MIB);
    const { context, page, problems } = await openPage(browser);
    await recordRowChanges(context);
    const requests = recordRequests(page);
    await throttleUploads(page, 10 * MIB);

    await page.goto(`${service.baseUrl}/${id}`);
    await page.setInputFiles('#file-input', file.path);
    // Reload as soon as storage holds a part or two (parts 1-4 go first, together).
    await until(() => requests.some((r) => r.method === 'PUT' && partNumberOf(r.url) && r.status === 200), 'a stored part');
    const before = await rowInfo(page, file.name);
    assert.equal(before.state, 'uploading');
    const uploadId = before.uploadId;
    await page.reload();

    // What storage holds once the interrupted transfers have settled.
    const held = await stableParts(service.baseUrl, uploadId);
    assert.ok(held.length >= 1 && held.length < 6, `parts held after the reload: ${held}`);
    const missing = [1, 2, 3, 4, 5, 6].filter((n) => !held.includes(n));

    // The page remembers the unfinished upload and says how far it got.
    const panel = page.locator('#resume-panel');
    await panel.waitFor({ state: 'visible' });
    await panel.getByText(/\d of 6 parts uploaded/).waitFor();
    assert.match(await panel.innerText(), /long-exposure\.png/);
    await page.screenshot({ path: path.join(ensureArtifacts(), 'resume-panel.png') });

    const mark = requests.length;
    await page.setInputFiles('#file-input', file.path);
    assert.equal(await waitForRow(page, file.name, FINAL, 60_000), 'completed');
    const afterReload = requests.slice(mark);

    // It asked storage what is there, created nothing new, and sent exactly the rest.
    assert.ok(afterReload.some((r) => r.method === 'GET' && r.url.endsWith(`/api/v1/uploads/${uploadId}/parts`)));
    assert.equal(afterReload.filter((r) => r.method === 'POST' && r.url.endsWith('/api/v1/uploads')).length, 0);
    const sent = afterReload.filter((r) => r.method === 'PUT' && partNumberOf(r.url)).map((r) => partNumberOf(r.url));
    assert.deepEqual(sent.sort((a, b) => a - b), missing);

    const row = await rowInfo(page, file.name);
    assert.equal(row.uploadId, uploadId, 'the same upload was finished');
    assert.match(row.stats, new RegExp(`${held.length} of 6 parts resumed`));
    await page.locator('#resume-panel').waitFor({ state: 'hidden' });
    const remembered = await page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('upload-broker:')));
    assert.deepEqual(remembered, [], 'nothing left to resume');

    const { body: record } = await getJson(`${service.baseUrl}/api/v1/uploads/${uploadId}`);
    assert.equal(record.state, 'completed');
    assert.ok((await download(record.s3_url)).equals(file.bytes), 'stored bytes equal the file');
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('a part whose connection breaks is sent again after a pause', async () => {
    await ready();
    const id = imageId('retry');
    const file = await makePng(dir, 'storm.png', 12 * MIB);
    const { context, page, problems } = await openPage(browser);
    await recordRowChanges(context);
    const requests = recordRequests(page);
    let broken = 0;
    await page.route((url) => partNumberOf(url.href) === 2, async (route) => {
      if (route.request().method() === 'PUT' && broken === 0) {
        broken += 1;
        await route.abort('connectionreset');
        return;
      }
      await route.continue();
    });

    await page.goto(`${service.baseUrl}/${id}`);
    await page.setInputFiles('#file-input', file.path);
    assert.equal(await waitForRow(page, file.name, FINAL, 60_000), 'completed');

    const part2 = requests.filter((r) => r.method === 'PUT' && partNumberOf(r.url) === 2);
    assert.equal(part2.length, 2, 'part 2 was sent twice');
    assert.ok(part2[0].failed, 'the first attempt failed');
    assert.equal(part2[1].status, 200);
    assert.ok(part2[1].at - part2[0].at >= 400, `waited ${part2[1].at - part2[0].at} ms before retrying`);
    const { details } = await seen(page);
    assert.ok(details.some((d) => /^Part 2 lost its connection; trying again in \d+ s \(retry 1 of 5\)/.test(d)),
      `the row said it would retry; saw: ${[...new Set(details)].join(' | ')}`);

    const row = await rowInfo(page, file.name);
    const { body: record } = await getJson(`${service.baseUrl}/api/v1/uploads/${row.uploadId}`);
    assert.equal(record.state, 'completed');
    assert.ok((await download(record.s3_url)).equals(file.bytes), 'stored bytes equal the file');
    assert.deepEqual(problems, []);
    await context.close();
  });
});

/** The part numbers storage holds, once two listings a moment apart agree. */
async function stableParts(baseUrl, uploadId) {
  let last = null;
  for (let i = 0; i < 40; i += 1) {
    const { status, body } = await getJson(`${baseUrl}/api/v1/uploads/${uploadId}/parts`);
    assert.equal(status, 200);
    const now = body.parts.map((p) => p.part_number).sort((a, b) => a - b);
    if (last && JSON.stringify(last) === JSON.stringify(now)) return now;
    last = now;
    await sleep(300);
  }
  return last;
}
