// The API documentation: Swagger UI at /docs renders, and "Try it out" on
// POST /api/v1/uploads really creates an upload.

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { ensureArtifacts, getJson, openPage, recordRequests, sharedSetup } from './support/harness.mjs';

describe('API documentation', () => {
  const shared = sharedSetup('docs', {});
  let service;
  let browser;
  const ready = async () => ({ service, browser } = await shared.get());

  after(() => shared.teardown());

  test('Swagger UI renders and "Try it out" on POST /api/v1/uploads answers 201', async () => {
    await ready();
    const { context, page } = await openPage(browser, { viewport: { width: 1280, height: 900 } });
    const requests = recordRequests(page);
    await page.goto(`${service.baseUrl}/docs`);
    await page.locator('.swagger-ui .info .title').getByText('upload-broker').waitFor();

    // Nothing is fetched from other sites.
    const foreign = requests.filter((r) => !r.url.startsWith(service.baseUrl) && !r.url.startsWith('data:'));
    assert.deepEqual(foreign.map((r) => r.url), []);

    const operation = page.locator('.opblock-post').filter({
      has: page.locator('.opblock-summary-path[data-path="/api/v1/uploads"]'),
    });
    assert.equal(await operation.count(), 1);
    await operation.locator('.opblock-summary').first().click();
    await operation.getByRole('button', { name: 'Try it out' }).click();

    // The documented example, sent as it stands, is a valid request.
    const editor = operation.locator('textarea.body-param__text');
    const example = JSON.parse(await editor.inputValue());
    assert.equal(example.image_id, 'user123');
    await operation.getByRole('button', { name: 'Execute' }).click();

    const status = operation.locator('.live-responses-table .response .response-col_status').first();
    await status.waitFor();
    assert.equal((await status.innerText()).trim(), '201');
    const shown = await operation.locator('.live-responses-table .response-col_description pre').first().innerText();
    const answer = JSON.parse(shown);
    assert.equal(answer.method, 'PUT');
    assert.equal(answer.state, 'pending');
    assert.equal(answer.image_id, example.image_id);
    await status.scrollIntoViewIfNeeded();
    await page.screenshot({ path: path.join(ensureArtifacts(), 'swagger-try-it-out.png') });

    // The service recorded it.
    const record = await getJson(`${service.baseUrl}/api/v1/uploads/${answer.upload_id}`);
    assert.equal(record.status, 200);
    assert.equal(record.body.state, 'pending');
    assert.equal(record.body.original_filename, example.filename);
    await context.close();
  });
});
