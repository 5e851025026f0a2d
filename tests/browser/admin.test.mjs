// The operators' console at /admin: signing in with an admin key, finding an upload and
// reading why it failed, deleting one, replaying a failed webhook delivery against a
// receiver on loopback, signing out, and screenshots in both schemes at two widths.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  FIXTURES, ensureArtifacts, freePort, getJson, imageId, openPage, recordRequests, sharedSetup, until,
} from './support/harness.mjs';

const ADMIN = 'browser-suite-admin-key';
const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';

/** A webhook receiver on loopback that answers 500 until told otherwise. */
const receiver = {
  answer: 500,
  got: [],
  server: null,
  async start(port) {
    this.server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (chunk) => { body += chunk; });
      req.on('end', () => {
        this.got.push({ id: req.headers['webhook-id'], body: JSON.parse(body || '{}'), answered: this.answer });
        res.writeHead(this.answer).end();
      });
    });
    await new Promise((resolve) => this.server.listen(port, '127.0.0.1', resolve));
  },
};

const receiverPort = await freePort();

describe('operators console', () => {
  const shared = sharedSetup('admin', {
    ADMIN_KEYS: ADMIN,
    WEBHOOK_URL: `http://127.0.0.1:${receiverPort}/hook`,
    WEBHOOK_SECRET: SECRET,
    // One retry at once: a refused delivery fails within a second, for the replay.
    WEBHOOK_RETRY_SCHEDULE: '0',
    WEBHOOK_TIMEOUT: '2',
  });
  before(() => receiver.start(receiverPort));
  after(async () => {
    await shared.teardown();
    receiver.server?.close();
  });

  /** A completed upload and one refused by verification, under one image_id. */
  async function seed(service, id) {
    const png = await readFile(path.join(FIXTURES, 'sample.png'));
    const made = {};
    for (const [name, bytes] of [['good.png', png], ['broken.png', Buffer.concat([png.subarray(0, 1), Buffer.from('X'), png.subarray(2)])]]) {
      const issued = await (await fetch(`${service.baseUrl}/api/v1/uploads`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ image_id: id, filename: name, content_type: 'image/png', size: bytes.length }),
      })).json();
      const put = await fetch(issued.url, { method: 'PUT', headers: issued.headers, body: bytes });
      assert.equal(put.status, 200);
      const confirmed = await fetch(`${service.baseUrl}/api/v1/uploads/${issued.upload_id}/confirm`, { method: 'POST' });
      assert.equal(confirmed.status, name === 'good.png' ? 200 : 422);
      made[name] = issued.upload_id;
    }
    return made;
  }

  async function signIn(page, service) {
    await page.goto(`${service.baseUrl}/admin`);
    await page.locator('#admin-key').waitFor();
    // From the keyboard: the key field has the focus, Enter signs in.
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'admin-key');
    await page.keyboard.type(ADMIN);
    await page.keyboard.press('Enter');
    await page.locator('#console:not([hidden])').waitFor();
  }

  async function find(page, id) {
    await page.getByLabel('Image ID').fill(id);
    await page.getByRole('button', { name: 'Search' }).click();
    await page.waitForFunction(() => document.querySelectorAll('#results-body tr').length > 0);
  }

  test('sign in, find an upload by image_id, open it and read why it failed; nothing from other sites', async () => {
    const { service, browser } = await shared.get();
    const id = imageId('ops');
    const made = await seed(service, id);
    const { context, page, problems } = await openPage(browser);
    const requests = recordRequests(page);
    await signIn(page, service);
    // The stats count what was just made.
    await page.waitForFunction(() => Number(document.querySelector('.stats__item--failed .stats__count')?.textContent) >= 1);
    await find(page, id);
    const rows = await page.locator('#results-body tr').evaluateAll((trs) => trs.map((tr) => [tr.dataset.uploadId, tr.dataset.state]));
    assert.deepEqual(new Map(rows), new Map([[made['good.png'], 'completed'], [made['broken.png'], 'failed']]));
    await page.getByRole('button', { name: 'broken.png' }).click();
    await page.locator('#detail:not([hidden])').waitFor();
    assert.equal(await page.locator('#detail-heading').textContent(), 'broken.png');
    assert.equal(await page.locator('#detail-reason').textContent(), 'Why it failed: The stored bytes are not a readable image of an allowed type.');
    assert.match(await page.locator('#detail-facts').textContent(), /invalid_image/);
    // Escape closes the panel and gives the focus back to the row that opened it.
    await page.keyboard.press('Escape');
    assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'broken.png');

    const origins = new Set(requests.map((r) => new URL(r.url).origin));
    for (const origin of origins) assert.match(origin, /^http:\/\/127\.0\.0\.1:\d+$/, `fetched from ${origin}`);
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('delete an upload: the page and the record agree', async () => {
    const { service, browser } = await shared.get();
    const id = imageId('opsdel');
    const made = await seed(service, id);
    const { context, page, problems } = await openPage(browser);
    await signIn(page, service);
    await find(page, id);
    await page.getByRole('button', { name: 'good.png' }).click();
    await page.locator('#detail:not([hidden])').waitFor();
    // The thumbnail is the variant, drawn.
    await page.waitForFunction(() => {
      const img = document.querySelector('#detail-thumb img');
      return img && img.complete && img.naturalWidth > 0 && /\/variants\//.test(img.currentSrc);
    });
    await page.getByRole('button', { name: 'Delete', exact: true }).click();
    // Nothing happens before the second step.
    assert.equal((await getJson(`${service.baseUrl}/api/v1/uploads/${made['good.png']}`)).body.state, 'completed');
    await page.getByRole('button', { name: 'Yes, delete' }).click();
    await page.locator('#detail-result', { hasText: 'Deleted. The upload is now deleted.' }).waitFor();
    const { body: record } = await getJson(`${service.baseUrl}/api/v1/uploads/${made['good.png']}`);
    assert.equal(record.state, 'deleted');
    assert.equal(await page.locator('#detail').getAttribute('data-state'), 'deleted');
    assert.equal(await page.locator(`#results-body tr[data-upload-id="${made['good.png']}"]`).getAttribute('data-state'), 'deleted');
    await page.locator('#audit-body tr', { hasText: 'delete' }).first().waitFor();
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('replay a failed delivery against a loopback receiver, then sign out', async () => {
    const { service, browser } = await shared.get();
    const id = imageId('opsreplay');
    receiver.answer = 500;
    const made = await seed(service, id);
    const upload = made['good.png'];
    const completedEvent = () => receiver.got.filter((g) => g.body?.data?.upload_id === upload && g.body.type === 'upload.completed');
    await until(async () => completedEvent().length === 2, 'the attempt and its retry');
    const { context, page, problems } = await openPage(browser);
    await signIn(page, service);
    await find(page, id);
    await page.getByRole('button', { name: 'good.png' }).click();
    const failedRow = page.locator('#deliveries-body tr[data-state="failed"]', { hasText: 'upload.completed' });
    await until(async () => {
      if (await failedRow.count()) return true;
      await page.getByRole('button', { name: 'good.png' }).click();
      return false;
    }, 'the failed delivery shown');
    assert.match(await failedRow.textContent(), /500/);
    receiver.answer = 204;
    await failedRow.getByRole('button', { name: 'Replay' }).click();
    await page.getByRole('button', { name: 'Yes, replay' }).click();
    await page.locator('#detail-result', { hasText: 'Replayed' }).waitFor();
    await until(async () => completedEvent().length === 3, 'the replayed attempt');
    const [first, , replayed] = completedEvent();
    assert.equal(first.id, replayed.id, 'the same webhook-id');
    assert.equal(replayed.answered, 204);
    await until(async () => {
      const res = await fetch(`${service.baseUrl}/api/v1/webhooks/deliveries?upload_id=${upload}`, { headers: { Authorization: `Bearer ${ADMIN}` } });
      const log = await res.json();
      return log.deliveries.some((d) => d.event_type === 'upload.completed' && d.state === 'succeeded');
    }, 'the delivery succeeded');

    // Signing out forgets the key.
    assert.equal(await page.evaluate(() => sessionStorage.getItem('upload-broker-admin-key')), ADMIN);
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.locator('#signin:not([hidden])').waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
    assert.equal(await page.locator('#results-body tr').count(), 0, 'nothing left on the page');
    await page.reload();
    await page.locator('#signin:not([hidden])').waitFor();
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('screenshots at desktop and phone widths, light and dark', async () => {
    const { service, browser } = await shared.get();
    const artifacts = ensureArtifacts();
    const id = imageId('opsshot');
    await seed(service, id);
    for (const variant of [
      { name: 'desktop-light', viewport: { width: 1280, height: 900 }, colorScheme: 'light' },
      { name: 'desktop-dark', viewport: { width: 1280, height: 900 }, colorScheme: 'dark' },
      { name: 'phone-light', viewport: { width: 390, height: 844 }, colorScheme: 'light' },
      { name: 'phone-dark', viewport: { width: 390, height: 844 }, colorScheme: 'dark' },
    ]) {
      const { context, page, problems } = await openPage(browser, variant);
      await signIn(page, service);
      await find(page, id);
      await page.getByRole('button', { name: 'broken.png' }).click();
      await page.locator('#detail:not([hidden])').waitFor();
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      assert.ok(overflow <= 0, `${variant.name}: no sideways scrolling (${overflow}px)`);
      await page.screenshot({ path: path.join(artifacts, `admin-${variant.name}.png`), fullPage: true });
      assert.deepEqual(problems, []);
      await context.close();
    }
  });
});
