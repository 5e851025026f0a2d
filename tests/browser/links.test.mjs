// With API_KEYS set, the page works from an upload link (`/<image_id>?token=...`) and
// explains, before any byte is sent, why it cannot upload without one.

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import {
  getJson, imageId, makePng, openPage, recordRequests, sharedSetup, storageRequests, waitForRow,
  rowInfo,
} from './support/harness.mjs';

const KEY = 'browser-suite-key';

describe('upload links', () => {
  const shared = sharedSetup('links', { API_KEYS: KEY, SECRET_KEY: 'browser-suite-link-secret' });
  after(() => shared.teardown());

  test('a page opened from an upload link uploads; without one it explains why not', async () => {
    const { service, browser, dir } = await shared.get();
    const id = imageId('link');
    const minted = await fetch(`${service.baseUrl}/api/v1/links`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ image_id: id, max_uploads: 3 }),
    });
    assert.equal(minted.status, 201);
    const link = await minted.json();

    const file = await makePng(dir, 'linked.png', 20 * 1024);
    const { context, page } = await openPage(browser);
    await page.goto(`${service.baseUrl}${link.upload_page}`);
    await page.setInputFiles('#file-input', file.path);
    assert.equal(await waitForRow(page, file.name, ['completed', 'failed', 'rejected', 'refused']), 'completed');
    const row = await rowInfo(page, file.name);
    const { body: record } = await getJson(`${service.baseUrl}/api/v1/uploads/${row.uploadId}`);
    assert.equal(record.state, 'completed');
    assert.equal(record.file_size, file.size);
    await context.close();

    // The same page without the token: refused in plain words, no byte sent to storage
    // (the earlier upload's thumbnail is still shown: lookups need no credentials).
    const bare = await openPage(browser);
    const requests = recordRequests(bare.page);
    await bare.page.goto(`${service.baseUrl}/${id}`);
    await bare.page.setInputFiles('#file-input', file.path);
    assert.equal(await waitForRow(bare.page, file.name, ['completed', 'failed', 'rejected', 'refused']), 'refused');
    const refusedRow = await rowInfo(bare.page, file.name);
    assert.equal(refusedRow.title, 'This page needs an upload link');
    const sent = storageRequests(requests, service.storePort).filter((r) => r.method !== 'GET');
    assert.deepEqual(sent, []);
    await bare.context.close();
  });
});
