// Files below the multipart threshold: one presigned PUT each. The happy path checked end
// to end (API record and stored bytes), progress of a large PUT, several files at once,
// refusals before any byte is sent, a failed verification, the keyboard, and screenshots at
// phone and desktop widths in both schemes.

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import {
  MIB, copyFixture, download, ensureArtifacts, getJson, imageId, makePng, openPage, recordRequests,
  recordRowChanges, rowInfo, seen, sha256Base64, sharedSetup, storageRequests, throttleUploads, unsigned,
  waitForRow, writeBytes,
} from './support/harness.mjs';

describe('single-PUT uploads', () => {
  const shared = sharedSetup('single', { MAX_UPLOAD_SIZE: String(20 * MIB) });
  let service;
  let browser;
  let dir;
  const ready = async () => ({ service, browser, dir } = await shared.get());

  after(() => shared.teardown());

  test('a PNG chosen through the file input is uploaded, verified and stored byte for byte', async () => {
    await ready();
    const id = imageId('one');
    const file = await makePng(dir, 'holiday.png', 48 * 1024);
    const { context, page, problems } = await openPage(browser, { permissions: ['clipboard-read', 'clipboard-write'] });
    const requests = recordRequests(page);
    await page.goto(`${service.baseUrl}/${id}`);
    await page.setInputFiles('#file-input', file.path);

    assert.equal(await waitForRow(page, file.name, ['completed', 'failed', 'rejected', 'refused']), 'completed');
    const row = await rowInfo(page, file.name);
    assert.ok(row.uploadId, 'the row knows its upload_id');

    // The service's record says completed, with what the page declared and the service measured.
    const { status, body: record } = await getJson(`${service.baseUrl}/api/v1/uploads/${row.uploadId}`);
    assert.equal(status, 200);
    assert.equal(record.state, 'completed');
    assert.equal(record.image_id, id);
    assert.equal(record.original_filename, 'holiday.png');
    assert.equal(record.content_type, 'image/png');
    assert.equal(record.file_size, file.size);
    assert.equal(record.width, 64);
    assert.equal(record.height, 48);
    assert.equal(record.checksum_sha256, sha256Base64(file.bytes), 'the page declared the SHA-256 of the file');

    // One PUT went to storage, and what storage holds is exactly the file.
    const puts = storageRequests(requests, service.storePort).filter((r) => r.method === 'PUT');
    assert.equal(puts.length, 1);
    assert.match(puts[0].url, /x-id=PutObject/);
    assert.deepEqual(await download(record.s3_url), file.bytes);

    // The row shows the stored image and its URL, and the copy button copies it.
    assert.equal(unsigned(row.url), unsigned(record.s3_url));
    // Its thumbnail is the thumb variant (64 x 48 is kept as it is: never enlarged), not
    // the original.
    const thumb = page.locator(`li.upload[data-upload-id="${row.uploadId}"] .upload__thumb img`);
    await thumb.waitFor();
    // The record's own variant URL once ready (a PUT can be confirmed and its variants
    // made before the page's confirm answers), else the on-demand one that makes it.
    assert.match(new URL(await thumb.getAttribute('src'), service.baseUrl).pathname, /\/variants\/(.+\/)?thumb\.jpeg$/);
    await page.waitForFunction((uploadId) => {
      const img = document.querySelector(`li.upload[data-upload-id="${uploadId}"] .upload__thumb img`);
      return img && img.complete && img.naturalWidth === 64 && /\/variants\//.test(img.currentSrc);
    }, row.uploadId);
    await page.getByRole('button', { name: 'Copy the URL of holiday.png' }).first().click();
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), row.url);
    await page.getByRole('button', { name: 'Copy the URL of holiday.png' }).first().getByText('Copied').waitFor();

    // The upload shows up in the list of earlier uploads, from GET /api/v1/images/{id}.
    const list = await getJson(`${service.baseUrl}/api/v1/images/${id}`);
    assert.deepEqual(list.body.images.map((i) => i.upload_id), [row.uploadId]);
    await page.locator(`#history-list li[data-upload-id="${row.uploadId}"]`).waitFor();

    assert.deepEqual(problems, []);
    await context.close();
  });

  test('finished uploads and the earlier uploads grid show thumb variants and never download an original', async () => {
    await ready();
    const id = imageId('tiles');
    const files = [
      await makePng(dir, 'wide-poster.png', 3 * MIB),
      await copyFixture(dir, 'photo.jpg', 'tile-photo.jpg'),
    ];
    const { context, page, problems } = await openPage(browser);
    const requests = recordRequests(page);
    await page.goto(`${service.baseUrl}/${id}`);
    await page.setInputFiles('#file-input', files.map((f) => f.path));
    for (const file of files) {
      assert.equal(await waitForRow(page, file.name, ['completed', 'failed', 'rejected', 'refused']), 'completed');
    }
    const drawn = (selector) => page.waitForFunction((sel) => {
      const imgs = [...document.querySelectorAll(sel)];
      return imgs.length >= 2 && imgs.every((img) => img.complete && img.naturalWidth > 0);
    }, selector);
    await drawn('li.upload[data-state="completed"] .upload__thumb img');
    // Opened again: the grid is drawn from the records, whose variants are ready by now.
    const list = await getJson(`${service.baseUrl}/api/v1/images/${id}`);
    for (const record of list.body.images) {
      const started = Date.now();
      while ((await getJson(`${service.baseUrl}/api/v1/uploads/${record.upload_id}`)).body.variants_state === 'pending') {
        assert.ok(Date.now() - started < 30_000, 'variants still pending');
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
    await page.reload();
    await page.waitForFunction(() => document.querySelectorAll('#history-list li').length === 2);
    await drawn('#history-list img');
    const tiles = await page.evaluate(() => [...document.querySelectorAll('#history-list picture')].map((p) => ({
      webp: p.querySelector('source[type="image/webp"]')?.getAttribute('srcset'),
      src: p.querySelector('img').currentSrc,
      width: p.querySelector('img').naturalWidth,
      height: p.querySelector('img').naturalHeight,
    })));
    assert.equal(tiles.length, 2);
    for (const tile of tiles) {
      // Chromium draws WebP, so the <source> is the one shown.
      assert.match(new URL(tile.src).pathname, /\/variants\/tiles-[^/]+\/[0-9a-f-]{36}\/thumb\.webp$/, tile.src);
      assert.equal(unsigned(tile.src), unsigned(tile.webp));
      assert.ok(Math.max(tile.width, tile.height) <= 256, `a thumb, not the original: ${tile.width}x${tile.height}`);
    }
    // Every image the page fetched over the network was a variant (or the on-demand URL
    // that makes one); the only other pictures are the chosen files' local previews.
    const images = requests.filter((r) => r.request.resourceType() === 'image' && !r.url.startsWith('blob:')
      && !new URL(r.url).pathname.startsWith('/static/') && new URL(r.url).pathname !== '/favicon.ico');
    assert.ok(images.length >= 4, `${images.length} image requests`);
    for (const r of images) {
      const { pathname } = new URL(r.url);
      assert.match(pathname, /\/variants\//, `an image request for ${r.url}`);
    }
    const originals = list.body.images.map((i) => i.key);
    assert.ok(requests.every((r) => !originals.some((key) => new URL(r.url).pathname.endsWith(key))), 'no original downloaded');
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('one large PUT shows progress as the bytes go out', async () => {
    await ready();
    const id = imageId('bigput');
    const file = await makePng(dir, 'poster.png', 15 * MIB);
    const { context, page, problems } = await openPage(browser);
    await recordRowChanges(context);
    const requests = recordRequests(page);
    await throttleUploads(page, 10 * MIB);
    await page.goto(`${service.baseUrl}/${id}`);
    await page.setInputFiles('#file-input', file.path);
    assert.equal(await waitForRow(page, file.name, ['completed', 'failed', 'rejected', 'refused'], 60_000), 'completed');

    const puts = storageRequests(requests, service.storePort).filter((r) => r.method === 'PUT');
    assert.deepEqual(puts.map((r) => new URL(r.url).searchParams.get('x-id')), ['PutObject'], 'a single PUT');
    const { progress, stats } = await seen(page);
    const between = progress.filter((v) => v > 0 && v < 100);
    assert.ok(new Set(between.map(Math.floor)).size >= 5, `intermediate progress values: ${between.join(', ')}`);
    assert.ok(stats.some((s) => /^\d+% · [\d.]+ (KB|MB)\/s · \d+ s left$/.test(s)), [...new Set(stats)].join(' | '));
    const row = await rowInfo(page, file.name);
    const { body: record } = await getJson(`${service.baseUrl}/api/v1/uploads/${row.uploadId}`);
    assert.equal(record.state, 'completed');
    assert.ok((await download(record.s3_url)).equals(file.bytes));
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('three files chosen at once are all uploaded', async () => {
    await ready();
    const id = imageId('three');
    const files = [
      await makePng(dir, 'first.png', 200 * 1024),
      await copyFixture(dir, 'photo.jpg', 'second.jpg'),
      await copyFixture(dir, 'sample.gif', 'third.gif'),
    ];
    const { context, page, problems } = await openPage(browser);
    await page.goto(`${service.baseUrl}/${id}`);
    await page.setInputFiles('#file-input', files.map((f) => f.path));
    assert.equal(await page.locator('li.upload').count(), 3, 'one row per file');

    for (const file of files) {
      assert.equal(await waitForRow(page, file.name, ['completed', 'failed', 'rejected', 'refused']), 'completed', file.name);
    }
    await page.locator('#uploads-summary').getByText('3 files · 3 uploaded').waitFor();

    const list = await getJson(`${service.baseUrl}/api/v1/images/${id}`);
    assert.equal(list.status, 200);
    assert.deepEqual(list.body.images.map((i) => i.original_filename).sort(), ['first.png', 'second.jpg', 'third.gif']);
    for (const file of files) {
      const record = list.body.images.find((i) => i.original_filename === file.name);
      assert.equal(record.state, 'completed');
      assert.deepEqual(await download(record.s3_url), file.bytes, `${file.name} is stored byte for byte`);
    }
    await page.waitForFunction(() => document.querySelectorAll('#history-list li').length === 3);
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('files the service refuses are explained before any byte is sent', async () => {
    await ready();
    const id = imageId('refused');
    const svg = await writeBytes(dir, 'logo.svg', Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'));
    const huge = await makePng(dir, 'huge.png', 21 * MIB);
    const misnamed = await copyFixture(dir, 'photo.jpg', 'photo.png');
    const { context, page, problems } = await openPage(browser);
    const requests = recordRequests(page);
    await page.goto(`${service.baseUrl}/${id}`);
    await page.setInputFiles('#file-input', [svg.path, huge.path, misnamed.path]);

    for (const file of [svg, huge, misnamed]) {
      assert.equal(await waitForRow(page, file.name, ['refused', 'completed', 'failed', 'rejected']), 'refused', file.name);
    }

    const svgRow = await rowInfo(page, 'logo.svg');
    assert.equal(svgRow.title, "SVG files can't be uploaded");
    assert.match(svgRow.detail, /Only PNG, JPEG, GIF, WebP, BMP or TIFF images are accepted/);

    const hugeRow = await rowInfo(page, 'huge.png');
    assert.equal(hugeRow.title, 'This file is too large');
    assert.match(hugeRow.detail, /It is 21\.0 MB; the largest file accepted is 20\.0 MB\./);

    // Found by the page itself from the file's first bytes: no point sending them.
    const misnamedRow = await rowInfo(page, 'photo.png');
    assert.equal(misnamedRow.title, "The file's contents don't match its name");
    assert.match(misnamedRow.detail, /holds a JPEG image\. Rename it to \.jpg/);

    // The service was asked about the SVG and the big file (its answer decides), and said no.
    const creates = requests.filter((r) => r.method === 'POST' && r.url.endsWith('/api/v1/uploads'));
    const bodies = creates.map((r) => JSON.parse(r.request.postData()));
    assert.deepEqual(bodies.map((b) => b.filename).sort(), ['huge.png', 'logo.svg']);
    assert.deepEqual(creates.map((r) => r.status).sort(), [413, 415]);

    // Nothing went to storage, not even a preflight.
    const toStore = requests.filter((r) => {
      const url = new URL(r.url);
      return url.pathname.startsWith('/upload-broker/') || url.port === String(service.storePort);
    });
    assert.deepEqual(toStore.map((r) => `${r.method} ${r.url}`), []);
    // Refused files offer no retry, only removal.
    await assertButtons(page, 'logo.svg', ['Remove']);
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('a file that is not an image is refused before any byte is sent', async () => {
    await ready();
    const id = imageId('badimage');
    const fake = await writeBytes(dir, 'notes.png', Buffer.from('These are meeting notes, not a picture.\n'.repeat(40)));
    const { context, page, problems } = await openPage(browser);
    const requests = recordRequests(page);
    await page.goto(`${service.baseUrl}/${id}`);
    await page.setInputFiles('#file-input', fake.path);

    assert.equal(await waitForRow(page, fake.name, ['rejected', 'completed', 'failed', 'refused']), 'refused');
    const row = await rowInfo(page, fake.name);
    assert.equal(row.title, "The file isn't an image");
    assert.match(row.detail, /nothing was sent/);
    assert.deepEqual(storageRequests(requests, service.storePort).map((r) => `${r.method} ${r.url}`), [], 'no byte went to storage');
    const creates = requests.filter((r) => r.method === 'POST' && r.url.endsWith('/api/v1/uploads'));
    assert.equal(creates.length, 0, 'no upload was even started');

    const list = await getJson(`${service.baseUrl}/api/v1/images/${id}`);
    assert.deepEqual(list.body.images, []);
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('the page works from the keyboard, with labelled controls and a visible focus', async () => {
    await ready();
    const id = imageId('keys');
    const file = await makePng(dir, 'keyboard.png', 4096);
    const { context, page, problems } = await openPage(browser, { permissions: ['clipboard-read', 'clipboard-write'] });
    await page.goto(`${service.baseUrl}/${id}`);
    // Listening early lets the browser hand the file dialog to the test when it opens.
    const chooserOpened = page.waitForEvent('filechooser');

    // Tab: the skip link first, then the file chooser, whose visible label shows the focus ring.
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.className), 'skip-link');
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'file-input');
    const outline = await page.evaluate(() => getComputedStyle(document.querySelector('label[for="file-input"]')).outlineStyle);
    assert.equal(outline, 'solid');

    // Enter on the focused chooser opens the file dialog.
    await page.keyboard.press('Enter');
    const chooser = await chooserOpened;
    assert.ok(chooser.isMultiple(), 'several files can be chosen at once');
    await chooser.setFiles(file.path);
    assert.equal(await waitForRow(page, file.name, ['completed', 'failed', 'rejected', 'refused']), 'completed');

    // Every control has a name a screen reader can say.
    const unnamed = await page.evaluate(() => [...document.querySelectorAll('button, input, a[href], progress')]
      .filter((el) => !el.closest('[hidden]'))
      .filter((el) => {
        const label = el.getAttribute('aria-label') || el.getAttribute('aria-labelledby') || el.textContent.trim()
          || (el.id && document.querySelector(`label[for="${el.id}"]`));
        return !label;
      })
      .map((el) => el.outerHTML.slice(0, 80)));
    assert.deepEqual(unnamed, []);

    // Tab onward to the row's copy button and press it.
    let reached = false;
    for (let i = 0; i < 15 && !reached; i += 1) {
      await page.keyboard.press('Tab');
      reached = await page.evaluate(() => document.activeElement.getAttribute('aria-label') === 'Copy the URL of keyboard.png'
        && Boolean(document.activeElement.closest('li.upload')));
    }
    assert.ok(reached, 'the copy button is reachable with Tab');
    await page.keyboard.press('Enter');
    const row = await rowInfo(page, file.name);
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), row.url);
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('screenshots at desktop and phone widths, light and dark, after uploads completed', async () => {
    await ready();
    const artifacts = ensureArtifacts();
    const files = [
      await makePng(dir, 'garden-party.png', 300 * 1024),
      await copyFixture(dir, 'photo.jpg', 'beach.jpg'),
      await copyFixture(dir, 'sample.tiff', 'scan-of-a-very-long-document-name-from-the-office-printer.tiff'),
      await writeBytes(dir, 'drawing.svg', Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><circle cx="5" cy="5" r="4" fill="#e0457b"/></svg>')),
    ];
    const variants = [
      { name: 'desktop-light', viewport: { width: 1280, height: 800 }, colorScheme: 'light' },
      { name: 'desktop-dark', viewport: { width: 1280, height: 800 }, colorScheme: 'dark' },
      { name: 'phone-light', viewport: { width: 390, height: 844 }, colorScheme: 'light' },
      { name: 'phone-dark', viewport: { width: 390, height: 844 }, colorScheme: 'dark' },
    ];
    for (const variant of variants) {
      const id = imageId(variant.name);
      const { context, page, problems } = await openPage(browser, variant);
      await page.goto(`${service.baseUrl}/${id}`);
      await page.setInputFiles('#file-input', files.map((f) => f.path));
      for (const file of files) {
        await waitForRow(page, file.name, ['completed', 'refused', 'failed', 'rejected']);
      }
      assert.equal((await rowInfo(page, 'garden-party.png')).state, 'completed');
      assert.equal((await rowInfo(page, 'drawing.svg')).state, 'refused');
      // Wait for the stored images to be drawn before taking the picture.
      await page.waitForFunction(() => [...document.querySelectorAll('li.upload[data-state="completed"] .upload__thumb img, #history-list img')]
        .every((img) => img.complete));
      await page.waitForFunction(() => document.querySelectorAll('#history-list li').length >= 3);

      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      assert.ok(overflow <= 0, `${variant.name}: no sideways scrolling (overflow ${overflow}px)`);
      const dark = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
      if (variant.colorScheme === 'dark') assert.equal(dark, 'rgb(14, 17, 22)');
      else assert.equal(dark, 'rgb(244, 246, 249)');

      await page.screenshot({ path: path.join(artifacts, `${variant.name}.png`), fullPage: true });
      assert.deepEqual(problems, []);
      await context.close();
    }
  });
});

async function assertButtons(page, fileName, expected) {
  const names = await page.evaluate((name) => {
    const row = [...document.querySelectorAll('li.upload')]
      .find((li) => li.querySelector('.upload__name')?.textContent === name);
    return [...row.querySelectorAll('.upload__actions button')].filter((b) => !b.hidden).map((b) => b.textContent);
  }, fileName);
  assert.deepEqual(names, expected);
}
