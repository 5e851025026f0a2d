// Uploads through the service with tus (/api/v1/tus) instead of straight to storage: always
// with ?transport=tus on the page's address, and by themselves when storage can't be
// reached (the page drops the presigned upload it got first); a tus upload cut off by a
// reload goes on from the service's offset; a file refused at its last byte says why. The
// service runs with MULTIPART_THRESHOLD and PART_SIZE lowered to 5 MiB, so that a 12 MiB
// file is a multipart upload either way.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import {
  MIB, download, ensureArtifacts, getJson, imageId, makePng, openPage, recordRequests, recordRowChanges,
  rowInfo, seen, sha256Base64, sharedSetup, storageRequests, throttleUploads, tusMetadata, until, waitForRow,
  writeBytes,
} from './support/harness.mjs';

const FINAL = ['completed', 'failed', 'rejected', 'refused', 'cancelled'];
/** The page's PATCH size (TUS_CHUNK in frontend/uploader.js). */
const CHUNK = 8 * MIB;
const FELL_BACK = "Storage can't be reached from here; sending the file through the service instead…";

const pathOf = (url) => new URL(url).pathname;
const isTus = (r) => pathOf(r.url) === '/api/v1/tus' || pathOf(r.url).startsWith('/api/v1/tus/');

/** The PATCHes of one tus upload, with the headers they carried and the offset answered. */
async function patchesOf(requests, uploadId) {
  const patches = requests.filter((r) => r.method === 'PATCH' && pathOf(r.url) === `/api/v1/tus/${uploadId}`);
  return Promise.all(patches.map(async (r) => {
    const headers = await r.request.allHeaders();
    const answer = await r.request.response();
    return {
      status: r.status,
      failed: r.failed,
      offset: Number(headers['upload-offset']),
      // Requests that went through page.route() list no Content-Length: their body is there.
      length: headers['content-length'] ? Number(headers['content-length']) : r.request.postDataBuffer()?.length ?? null,
      checksum: headers['upload-checksum'] ?? null,
      type: headers['content-type'],
      answered: answer ? Number(await answer.headerValue('upload-offset')) : null,
    };
  }));
}

/** The JSON answers to the page's POST /api/v1/uploads (presigned uploads it was given). */
function recordCreates(page) {
  const creates = [];
  page.on('response', async (response) => {
    const request = response.request();
    if (request.method() !== 'POST' || pathOf(request.url()) !== '/api/v1/uploads') return;
    creates.push({ request: JSON.parse(request.postData()), status: response.status(), body: await response.json().catch(() => null) });
  });
  return creates;
}

describe('uploads through the service with tus', () => {
  const shared = sharedSetup('tus', {
    MULTIPART_THRESHOLD: String(5 * MIB),
    PART_SIZE: String(5 * MIB),
  });
  let service;
  let browser;
  let dir;
  const ready = async () => ({ service, browser, dir } = await shared.get());

  after(() => shared.teardown());

  /** The record of `uploadId`, completed, and the bytes at its s3_url equal to `file`'s. */
  async function assertStored(uploadId, file, id) {
    const { status, body: record } = await getJson(`${service.baseUrl}/api/v1/uploads/${uploadId}`);
    assert.equal(status, 200);
    assert.equal(record.state, 'completed', `${file.name}: ${JSON.stringify(record)}`);
    assert.equal(record.image_id, id);
    assert.equal(record.original_filename, file.name);
    assert.equal(record.content_type, 'image/png');
    assert.equal(record.file_size, file.size);
    assert.ok((await download(record.s3_url)).equals(file.bytes), `${file.name}: stored bytes equal the file`);
    return record;
  }

  test('with ?transport=tus, a small PNG and a 12 MiB one go through the service in 8 MiB PATCHes, none of it to storage', async () => {
    await ready();
    const id = imageId('tus');
    const small = await makePng(dir, 'postcard.png', 40 * 1024);
    const big = await makePng(dir, 'mural.png', 12 * MIB);
    const { context, page, problems } = await openPage(browser);
    await recordRowChanges(context);
    const requests = recordRequests(page);
    await page.goto(`${service.baseUrl}/${id}?transport=tus`);
    assert.match(await page.locator('#transport-note').innerText(), /through this service \(tus\)/, 'the page says where the files go');

    await page.setInputFiles('#file-input', [small.path, big.path]);
    for (const file of [small, big]) assert.equal(await waitForRow(page, file.name, FINAL, 60_000), 'completed');

    // Nothing went to storage (the stored image shown afterwards is read with a GET), and
    // no presigned upload was asked for.
    const toStorage = storageRequests(requests, service.storePort).filter((r) => r.method !== 'GET');
    assert.deepEqual(toStorage.map((r) => `${r.method} ${r.url}`), []);
    assert.equal(requests.filter((r) => r.method === 'POST' && pathOf(r.url) === '/api/v1/uploads').length, 0);

    // Every tus request says its version; one creation per file, with its metadata.
    const tusCalls = requests.filter(isTus);
    for (const call of tusCalls) {
      assert.equal((await call.request.allHeaders())['tus-resumable'], '1.0.0', `${call.method} ${call.url}`);
    }
    const creations = tusCalls.filter((r) => r.method === 'POST');
    assert.equal(creations.length, 2);
    const declared = await Promise.all(creations.map(async (r) => {
      const headers = await r.request.allHeaders();
      return { length: Number(headers['upload-length']), metadata: tusMetadata(headers['upload-metadata']), status: r.status };
    }));
    assert.deepEqual(declared.sort((a, b) => a.length - b.length), [
      { length: small.size, metadata: { image_id: id, filename: small.name, filetype: 'image/png' }, status: 201 },
      { length: big.size, metadata: { image_id: id, filename: big.name, filetype: 'image/png' }, status: 201 },
    ]);

    for (const file of [small, big]) {
      const row = await rowInfo(page, file.name);
      assert.ok(row.uploadId, `${file.name}: the row knows its upload_id`);
      // The file in 8 MiB PATCHes from offset 0, each with the SHA-256 of its bytes.
      const patches = await patchesOf(requests, row.uploadId);
      const expected = [];
      for (let at = 0; at < file.size; at += CHUNK) {
        const bytes = file.bytes.subarray(at, Math.min(file.size, at + CHUNK));
        expected.push({
          status: 204,
          failed: null,
          offset: at,
          length: bytes.length,
          checksum: `sha256 ${sha256Base64(bytes)}`,
          type: 'application/offset+octet-stream',
          answered: at + bytes.length,
        });
      }
      assert.deepEqual(patches, expected, `${file.name}: its PATCHes`);
      assert.match(row.stats, /through the service/);
      await assertStored(row.uploadId, file, id);
    }
    const { progress } = await seen(page);
    assert.ok(progress.some((v) => v > 0 && v < 100), 'the bar moved on the way');
    const remembered = await page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('upload-broker:')));
    assert.deepEqual(remembered, [], 'nothing left to resume');
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('when storage cannot be reached, the presigned uploads are aborted and the files go through the service', async () => {
    await ready();
    const id = imageId('fallback');
    const small = await makePng(dir, 'lighthouse.png', 64 * 1024);
    const big = await makePng(dir, 'coastline.png', 12 * MIB);
    const { context, page, problems } = await openPage(browser);
    await recordRowChanges(context);
    const requests = recordRequests(page);
    const creates = recordCreates(page);
    // Storage does not answer at all: on the page's origin under the bucket's path, or on
    // the store's own port.
    await page.route((url) => url.pathname.startsWith('/upload-broker/') || url.port === String(service.storePort),
      (route) => route.abort('connectionrefused'));

    await page.goto(`${service.baseUrl}/${id}`);
    assert.equal(await page.locator('#transport-note').isHidden(), true);
    await page.setInputFiles('#file-input', [small.path, big.path]);
    for (const file of [small, big]) assert.equal(await waitForRow(page, file.name, FINAL, 60_000), 'completed');

    // Each file got a presigned upload first (a single PUT, and 3 parts), whose transfer
    // found nobody; the page then dropped it.
    await until(() => creates.length === 2, 'the answers to both creations');
    const presigned = Object.fromEntries(creates.map((c) => [c.request.filename, c.body]));
    assert.equal(presigned[small.name].method, 'PUT');
    assert.equal(presigned[big.name].method, 'MULTIPART');
    const puts = storageRequests(requests, service.storePort).filter((r) => r.method === 'PUT');
    assert.ok(puts.length >= 2, `PUTs tried: ${puts.length}`);
    assert.ok(puts.every((r) => r.failed && r.status === null), 'no PUT got an answer');
    for (const file of [small, big]) {
      const stale = presigned[file.name].upload_id;
      const deletes = requests.filter((r) => r.method === 'DELETE' && pathOf(r.url) === `/api/v1/uploads/${stale}`);
      assert.equal(deletes.length, 1, `${file.name}: its presigned upload was deleted once`);
      await until(() => deletes[0].status, 'the answer to the DELETE');
      assert.ok(deletes[0].status >= 200 && deletes[0].status < 300, `DELETE answered ${deletes[0].status}`);
      const { body: abandoned } = await getJson(`${service.baseUrl}/api/v1/uploads/${stale}`);
      assert.equal(abandoned.state, 'aborted', `${file.name}: the presigned upload is aborted`);

      // The bytes went through tus to a new upload, which is completed with the right bytes.
      const row = await rowInfo(page, file.name);
      assert.notEqual(row.uploadId, stale);
      const patches = await patchesOf(requests, row.uploadId);
      assert.equal(patches.reduce((sum, p) => sum + p.length, 0), file.size, `${file.name}: every byte PATCHed once`);
      assert.ok(patches.every((p) => p.status === 204));
      await assertStored(row.uploadId, file, id);
    }
    assert.equal(requests.filter((r) => r.method === 'POST' && pathOf(r.url) === '/api/v1/tus').length, 2);

    // The row said what happened.
    await page.screenshot({ path: path.join(ensureArtifacts(), 'tus-fallback.png'), fullPage: true });
    const { details } = await seen(page);
    assert.ok(details.includes(FELL_BACK), `the row said why; saw: ${[...new Set(details)].join(' | ')}`);
    const remembered = await page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('upload-broker:')));
    assert.deepEqual(remembered, [], 'nothing left to resume');
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('after a reload mid-upload, choosing the file again goes on from the service\'s offset', async () => {
    await ready();
    const id = imageId('tus-resume');
    const file = await makePng(dir, 'glacier.png', 40 * MIB);
    const { context, page, problems } = await openPage(browser);
    await recordRowChanges(context);
    const requests = recordRequests(page);
    // About 1.5 s per 8 MiB PATCH.
    await throttleUploads(page, 6 * MIB);

    await page.goto(`${service.baseUrl}/${id}?transport=tus`);
    await page.setInputFiles('#file-input', file.path);
    // Reload once the service has taken a PATCH or two.
    await until(() => requests.some((r) => r.method === 'PATCH' && r.status === 204), 'a PATCH taken');
    const before = await rowInfo(page, file.name);
    assert.equal(before.state, 'uploading');
    const uploadId = before.uploadId;
    const saved = await page.evaluate(() => Object.entries(localStorage)
      .filter(([k]) => k.startsWith('upload-broker:unfinished:')).map(([, v]) => JSON.parse(v)));
    assert.equal(saved.length, 1);
    assert.equal(saved[0].method, 'TUS');
    assert.equal(saved[0].upload_id, uploadId);
    assert.equal(new URL(saved[0].url).pathname, `/api/v1/tus/${uploadId}`, 'the tus URL is remembered');
    await page.reload();

    // The page remembers the unfinished upload and asks the service how far it got.
    const panel = page.locator('#resume-panel');
    await panel.waitFor({ state: 'visible' });
    await panel.getByText(/[\d.]+ MB of 40\.0 MB uploaded/).waitFor();
    assert.match(await panel.innerText(), /glacier\.png/);
    await page.screenshot({ path: path.join(ensureArtifacts(), 'tus-resume-panel.png') });

    const mark = requests.length;
    await page.setInputFiles('#file-input', file.path);
    assert.equal(await waitForRow(page, file.name, FINAL, 90_000), 'completed');
    const afterReload = requests.slice(mark);

    // No new upload: a HEAD, then PATCHes from the offset it answered, to the end.
    assert.equal(afterReload.filter((r) => r.method === 'POST').length, 0, 'nothing was created again');
    const heads = afterReload.filter((r) => r.method === 'HEAD' && pathOf(r.url) === `/api/v1/tus/${uploadId}`);
    assert.ok(heads.length >= 1, 'the page asked for the offset');
    const offset = Number(await (await heads[0].request.response()).headerValue('upload-offset'));
    assert.ok(offset > 0 && offset < file.size, `the service held ${offset} bytes`);
    const patches = (await patchesOf(requests, uploadId)).slice(-afterReload.filter((r) => r.method === 'PATCH').length);
    assert.equal(patches[0].offset, offset, 'the first PATCH after the reload starts at the service\'s offset');
    assert.equal(patches.reduce((sum, p) => sum + p.length, 0), file.size - offset, 'only the rest was sent');
    assert.ok(patches.every((p) => p.status === 204));

    const row = await rowInfo(page, file.name);
    assert.equal(row.uploadId, uploadId, 'the same upload was finished');
    assert.match(row.stats, /through the service, resumed at [\d.]+ MB/);
    const { details } = await seen(page);
    assert.ok(details.some((d) => /^Resumed: [\d.]+ MB of 40\.0 MB were already uploaded; sending the rest\.$/.test(d)),
      `the row said it resumed; saw: ${[...new Set(details)].join(' | ')}`);
    await panel.waitFor({ state: 'hidden' });
    const remembered = await page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('upload-broker:')));
    assert.deepEqual(remembered, [], 'nothing left to resume');
    await assertStored(uploadId, file, id);
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('a PNG whose bytes are broken is refused at its last PATCH: the row says why, the record is failed', async () => {
    await ready();
    const id = imageId('tus-broken');
    // A PNG's signature (the page's own look finds nothing wrong), then noise.
    const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    const file = await writeBytes(dir, 'scratched.png', Buffer.concat([signature, randomBytes(96 * 1024)]));
    const { context, page, problems } = await openPage(browser);
    const requests = recordRequests(page);
    await page.goto(`${service.baseUrl}/${id}?transport=tus`);
    await page.setInputFiles('#file-input', file.path);
    assert.equal(await waitForRow(page, file.name, FINAL), 'rejected');

    const row = await rowInfo(page, file.name);
    assert.equal(row.title, 'Verification failed: not a readable image');
    assert.match(row.detail, /could not be read as an image/);
    const [patch] = await patchesOf(requests, row.uploadId);
    assert.equal(patch.status, 422);
    const answer = await requests.find((r) => r.method === 'PATCH').request.response();
    assert.equal((await answer.json()).code, 'invalid_image');
    const { body: record } = await getJson(`${service.baseUrl}/api/v1/uploads/${row.uploadId}`);
    assert.equal(record.state, 'failed');
    assert.equal(record.failure_code, 'invalid_image');
    const remembered = await page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('upload-broker:')));
    assert.deepEqual(remembered, [], 'nothing left to resume');
    assert.deepEqual(problems, []);
    await context.close();
  });
});
