// Links that expired before they were used. The service signs for 3 seconds
// (PRESIGN_EXPIRES=3) and the test holds the first PUT back for longer, so storage
// refuses it with 403 as it would after a long pause; the page must get a new link.

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import {
  MIB, download, getJson, imageId, makePng, openPage, partNumberOf, recordRequests, recordRowChanges,
  rowInfo, seen, sharedSetup, sleep, waitForRow,
} from './support/harness.mjs';

const FINAL = ['completed', 'failed', 'rejected', 'refused', 'cancelled'];
const HOLD_MS = 4500;

describe('expired links', () => {
  const shared = sharedSetup('expiry', {
    PRESIGN_EXPIRES: '3',
    MULTIPART_THRESHOLD: String(5 * MIB),
    PART_SIZE: String(5 * MIB),
  });
  let service;
  let browser;
  let dir;
  const ready = async () => ({ service, browser, dir } = await shared.get());

  after(() => shared.teardown());

  test('a PUT link that expired is replaced: the stale upload is deleted and a new one sent', async () => {
    await ready();
    const id = imageId('late');
    const file = await makePng(dir, 'sunset.png', 64 * 1024);
    const { context, page, problems } = await openPage(browser);
    await recordRowChanges(context);
    const requests = recordRequests(page);
    let held = 0;
    await page.route((url) => url.searchParams.get('x-id') === 'PutObject', async (route) => {
      if (route.request().method() === 'PUT' && held === 0) {
        held += 1;
        await sleep(HOLD_MS);
      }
      await route.continue();
    });

    await page.goto(`${service.baseUrl}/${id}`);
    await page.setInputFiles('#file-input', file.path);
    assert.equal(await waitForRow(page, file.name, FINAL, 30_000), 'completed');

    const puts = requests.filter((r) => r.method === 'PUT');
    assert.deepEqual(puts.map((r) => r.status), [403, 200], 'refused as expired, then accepted');
    const creates = requests.filter((r) => r.method === 'POST' && r.url.endsWith('/api/v1/uploads'));
    assert.deepEqual(creates.map((r) => r.status), [201, 201]);
    const oldId = new URL(puts[0].url).pathname.split('/').pop().replace(/\.png$/, '');
    const newId = new URL(puts[1].url).pathname.split('/').pop().replace(/\.png$/, '');
    assert.notEqual(oldId, newId);
    const deletes = requests.filter((r) => r.method === 'DELETE');
    assert.deepEqual(deletes.map((r) => [new URL(r.url).pathname, r.status]), [[`/api/v1/uploads/${oldId}`, 204]]);

    const { details } = await seen(page);
    assert.ok(details.includes('The upload link expired before it was used; getting a new one…'), details.join(' | '));

    const stale = await getJson(`${service.baseUrl}/api/v1/uploads/${oldId}`);
    assert.equal(stale.body.state, 'aborted');
    const row = await rowInfo(page, file.name);
    assert.equal(row.uploadId, newId);
    const { body: record } = await getJson(`${service.baseUrl}/api/v1/uploads/${newId}`);
    assert.equal(record.state, 'completed');
    assert.deepEqual(await download(record.s3_url), file.bytes);
    const list = await getJson(`${service.baseUrl}/api/v1/images/${id}`);
    assert.deepEqual(list.body.images.map((i) => i.upload_id), [newId], 'only the new upload counts');
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('an expired part link is signed again through POST /parts and the part resent', async () => {
    await ready();
    const id = imageId('latepart');
    const file = await makePng(dir, 'mountain.png', 12 * MIB);
    const { context, page, problems } = await openPage(browser);
    await recordRowChanges(context);
    const requests = recordRequests(page);
    let held = 0;
    await page.route((url) => partNumberOf(url.href) === 1, async (route) => {
      if (route.request().method() === 'PUT' && held === 0) {
        held += 1;
        await sleep(HOLD_MS);
      }
      await route.continue();
    });

    await page.goto(`${service.baseUrl}/${id}`);
    await page.setInputFiles('#file-input', file.path);
    assert.equal(await waitForRow(page, file.name, FINAL, 30_000), 'completed');

    const part1 = requests.filter((r) => r.method === 'PUT' && partNumberOf(r.url) === 1);
    assert.deepEqual(part1.map((r) => r.status), [403, 200]);
    const signedFor1 = requests
      .filter((r) => r.method === 'POST' && r.url.endsWith('/parts'))
      .filter((r) => JSON.parse(r.request.postData()).part_numbers.includes(1));
    assert.equal(signedFor1.length, 2, 'part 1 was signed twice');
    assert.equal(requests.filter((r) => r.method === 'POST' && r.url.endsWith('/api/v1/uploads')).length, 1, 'one upload');
    const { details } = await seen(page);
    assert.ok(details.includes('The link for part 1 expired; signing it again…'), details.join(' | '));

    const row = await rowInfo(page, file.name);
    const { body: record } = await getJson(`${service.baseUrl}/api/v1/uploads/${row.uploadId}`);
    assert.equal(record.state, 'completed');
    assert.match(record.etag, /-3"$/);
    assert.ok((await download(record.s3_url)).equals(file.bytes));
    assert.deepEqual(problems, []);
    await context.close();
  });
});
