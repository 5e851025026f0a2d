// The embedded store reached under another host name: a browser that opens the page as
// http://photos.test:<port>/<image_id> (a name that resolves to the service's machine, as
// a laptop on the network would use) uploads through that same origin. Nothing goes to
// 127.0.0.1 or to the store's own loopback port.

import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import {
  MIB, OTHER_HOST, getJson, imageId, launchBrowser, makePng, openPage, recordRequests, rowInfo,
  startService, storageRequests, tempDir, waitForRow,
} from './support/harness.mjs';

describe('the page under another host name', () => {
  let service;
  let browser;
  let dir;

  before(async () => {
    service = await startService('reach', {
      MULTIPART_THRESHOLD: String(5 * MIB),
      PART_SIZE: String(5 * MIB),
      MAX_UPLOAD_SIZE: String(20 * MIB),
    });
    browser = await launchBrowser({ otherHost: true });
    dir = await tempDir('reach');
  });

  after(async () => {
    await browser?.close();
    await service?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('a single PUT and a multipart upload go through the origin the page was opened at', { timeout: 90_000 }, async () => {
    const origin = `http://${OTHER_HOST}:${service.port}`;
    const id = imageId('reach');
    const small = await makePng(dir, 'small.png', 48 * 1024);
    const large = await makePng(dir, 'large.png', 12 * MIB);
    const { context, page, problems } = await openPage(browser);
    const requests = recordRequests(page);
    await page.goto(`${origin}/${id}`);
    await page.setInputFiles('#file-input', [small.path, large.path]);
    for (const file of [small, large]) {
      assert.equal(await waitForRow(page, file.name, ['completed', 'failed', 'rejected', 'refused'], 60_000), 'completed', file.name);
    }

    // Every request the page made went to the origin it was opened at, the bytes included.
    const elsewhere = requests.filter((r) => new URL(r.url).origin !== origin);
    assert.deepEqual(elsewhere.map((r) => `${r.method} ${r.url}`), []);
    const sent = storageRequests(requests, service.storePort).filter((r) => r.method === 'PUT');
    assert.equal(sent.length, 1 + 3, 'one PUT and three parts');
    assert.ok(sent.every((r) => r.status === 200 && new URL(r.url).pathname.startsWith('/upload-broker/')), JSON.stringify(sent.map((r) => [r.url, r.status])));

    for (const file of [small, large]) {
      const row = await rowInfo(page, file.name);
      // The record, read under the same name: completed, its URL on this origin, and the
      // bytes behind that URL are the file's.
      const record = await page.evaluate(async (uploadId) => {
        const res = await fetch(`/api/v1/uploads/${uploadId}`);
        return res.json();
      }, row.uploadId);
      assert.equal(record.state, 'completed', file.name);
      assert.equal(new URL(record.s3_url).origin, origin, record.s3_url);
      // As base64 (a data: URL): an array of 12 million numbers takes a minute to cross
      // over from the page.
      const dataUrl = await page.evaluate(async (url) => {
        const blob = await (await fetch(url)).blob();
        return new Promise((resolve, reject) => {
          const reader = new FileReader();
          reader.onload = () => resolve(reader.result);
          reader.onerror = () => reject(reader.error);
          reader.readAsDataURL(blob);
        });
      }, record.s3_url);
      const bytes = Buffer.from(dataUrl.slice(dataUrl.indexOf(',') + 1), 'base64');
      assert.ok(bytes.equals(file.bytes), `${file.name}: the stored bytes are the file`);
    }
    // The service on its loopback address knows the same uploads.
    const list = await getJson(`${service.baseUrl}/api/v1/images/${id}`);
    assert.equal(list.body.images.length, 2);
    assert.deepEqual(problems, []);
    await context.close();
  });
});
