// tus 1.0.0 at /api/v1/tus through tus-js-client (the tus project's JavaScript client), in
// Node.js with its own HTTP stack: one-PATCH and chunked uploads (three 5 MiB parts in
// storage), creation-with-upload, abort() and resume (by upload URL and through the URL
// storage), a file that is no image (422 in onError), and termination with abort(true).
// The service's base URL comes from run.sh (UB_TUS_BASE_URL; PART_SIZE of 5 MiB there).

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, connect } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { crc32 } from "node:zlib";
import { FileUrlStorage, Upload } from "tus-js-client";

const MIB = 1024 * 1024;
const PART_SIZE = 5 * MIB;
// Three parts of PART_SIZE, the last one short.
const LARGE_SIZE = 12 * MIB + 12_345;
const TIMEOUT = { timeout: 60_000 };

function setting(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run this through tests/clients/run.sh`);
  return value;
}

const BASE_URL = setting("UB_TUS_BASE_URL").replace(/\/+$/, "");
const ENDPOINT = `${BASE_URL}/api/v1/tus`;
const FIXTURES = process.env.UB_FIXTURES_DIR || join(dirname(fileURLToPath(import.meta.url)), "..", "..", "fixtures");
const SAMPLE = readFileSync(join(FIXTURES, "sample.png"));
const SAMPLE_SIZE = [64, 48];

const scratch = mkdtempSync(join(tmpdir(), "tus-js-client-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

function imageId() {
  return `tusjs-${randomUUID().slice(0, 12)}`;
}

/**
 * A valid PNG of `size` bytes: the sample with a private ancillary chunk (`ubPd`) of
 * padding before IEND. The padding counts up modulo 251 from `seed`, so a misplaced part
 * changes the bytes, and files with other seeds have other fingerprints.
 */
function pngBytes(size, seed = 0) {
  const head = SAMPLE.subarray(0, SAMPLE.length - 12);
  const iend = SAMPLE.subarray(SAMPLE.length - 12);
  const dataLen = size - SAMPLE.length - 12;
  assert.ok(dataLen >= 0, "size too small for a padded PNG");
  const chunk = Buffer.alloc(4 + dataLen);
  chunk.write("ubPd", 0, "latin1");
  for (let i = 0; i < dataLen; i++) chunk[4 + i] = (seed + i) % 251;
  const out = Buffer.alloc(size);
  head.copy(out, 0);
  out.writeUInt32BE(dataLen, head.length);
  chunk.copy(out, head.length + 4);
  out.writeUInt32BE(crc32(chunk), head.length + 4 + chunk.length);
  iend.copy(out, size - 12);
  return out;
}

function notAnImage(size) {
  return Buffer.from("not an image\n".repeat(Math.ceil(size / 13))).subarray(0, size);
}

function metadata(id, filename, filetype = "image/png") {
  return filetype ? { image_id: id, filename, filetype } : { image_id: id, filename };
}

const uploadIdOf = (url) => url.replace(/\/+$/, "").split("/").pop();

/**
 * The options every upload here shares: no retries (an unexpected answer fails the test
 * rather than being retried away), and every request and answer recorded in `log`.
 */
function options(log, extra) {
  return {
    endpoint: ENDPOINT,
    retryDelays: null,
    onBeforeRequest: (req) => {
      log.push({ method: req.getMethod(), offset: req.getHeader("Upload-Offset") ?? null });
    },
    onAfterResponse: (req, res) => {
      const entry = log.findLast((e) => e.method === req.getMethod() && e.status === undefined);
      if (entry) {
        entry.status = res.getStatus();
        entry.newOffset = res.getHeader("Upload-Offset") ?? null;
      }
    },
    ...extra,
  };
}

/** Starts an upload and resolves when it succeeds (rejects with onError's error). */
function run(file, opts, prepare = async () => {}) {
  return new Promise((resolve, reject) => {
    const upload = new Upload(file, {
      ...opts,
      onSuccess: () => resolve(upload),
      onError: (err) => reject(err),
    });
    prepare(upload).then(() => upload.start(), reject);
  });
}

async function record(uploadId) {
  const res = await fetch(`${BASE_URL}/api/v1/uploads/${uploadId}`);
  assert.equal(res.status, 200, await res.clone().text());
  return res.json();
}

async function head(url) {
  return fetch(url, { method: "HEAD", headers: { "Tus-Resumable": "1.0.0" } });
}

/** The upload at `url` is completed, and `s3_url` serves exactly `data`. */
async function assertCompleted(url, data, id, filename, endpoint = ENDPOINT) {
  assert.ok(url.startsWith(`${endpoint}/`), url);
  const upload = await record(uploadIdOf(url));
  assert.equal(upload.state, "completed", JSON.stringify(upload));
  assert.equal(upload.upload_id, uploadIdOf(url));
  assert.equal(upload.image_id, id);
  assert.equal(upload.original_filename, filename);
  assert.equal(upload.content_type, "image/png");
  assert.equal(upload.file_size, data.length);
  assert.deepEqual([upload.width, upload.height], SAMPLE_SIZE);
  assert.ok(upload.key.startsWith(`uploads/${id}/`), upload.key);
  // A file over one part went to storage in PART_SIZE parts: a multipart object's ETag
  // ends with its number of parts.
  const parts = Math.ceil(data.length / PART_SIZE);
  if (parts > 1) assert.match(upload.etag, new RegExp(`-${parts}"?$`));
  else assert.doesNotMatch(upload.etag, /-/);
  assert.ok(upload.s3_url, "a completed upload has an s3_url");
  const res = await fetch(upload.s3_url);
  assert.equal(res.status, 200);
  const body = Buffer.from(await res.arrayBuffer());
  assert.equal(body.length, data.length);
  assert.ok(body.equals(data), "the stored bytes differ from the file");
  return upload;
}

const patches = (log) => log.filter((e) => e.method === "PATCH");
const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A TCP relay to the service, playing the network between client and server: it passes
 * bytes both ways. `arm(limit, mode)` lets `limit` more of the client's bytes through,
 * then either stalls (the client's further bytes are lost, as on a link that hangs, until
 * `heal()`) or cuts (the server's side is closed after those bytes, the client's reset,
 * as on a link that drops). The promise it returns resolves when the limit is reached.
 * The service names the relay in Location, since it follows the Host header.
 */
async function relay() {
  const target = new URL(BASE_URL);
  const sockets = new Set();
  let plan = null;
  let stalled = false;
  const server = createServer((client) => {
    const upstream = connect(Number(target.port), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("error", () => {});
      s.on("close", () => sockets.delete(s));
    }
    client.on("data", (chunk) => {
      if (stalled) return;
      if (plan === null || chunk.length < plan.left) {
        if (plan) plan.left -= chunk.length;
        upstream.write(chunk);
        return;
      }
      const { left, mode, reached } = plan;
      plan = null;
      upstream.write(chunk.subarray(0, left));
      if (mode === "cut") {
        upstream.end();
        client.resetAndDestroy();
      } else {
        stalled = true;
      }
      reached();
    });
    upstream.on("data", (chunk) => client.write(chunk));
    client.on("close", () => upstream.end());
    upstream.on("close", () => client.destroy());
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    arm(limit, mode) {
      return new Promise((reached) => {
        plan = { left: limit, mode, reached };
      });
    },
    heal() {
      stalled = false;
    },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

test("a small PNG in one PATCH", TIMEOUT, async () => {
  const id = imageId();
  const log = [];
  const upload = await run(SAMPLE, options(log, { metadata: metadata(id, "sample.png") }));
  assert.deepEqual(
    log.map((e) => [e.method, e.status]),
    [
      ["POST", 201],
      ["PATCH", 204],
    ],
  );
  assert.equal(patches(log)[0].newOffset, String(SAMPLE.length));
  await assertCompleted(upload.url, SAMPLE, id, "sample.png");
});

test("a small PNG whose type comes from its name", TIMEOUT, async () => {
  const id = imageId();
  const upload = await run(SAMPLE, options([], { metadata: metadata(id, "sample.png", null) }));
  await assertCompleted(upload.url, SAMPLE, id, "sample.png");
});

test("a small PNG sent with the creation request (creation-with-upload)", TIMEOUT, async () => {
  const id = imageId();
  const log = [];
  const upload = await run(
    SAMPLE,
    options(log, { metadata: metadata(id, "created.png"), uploadDataDuringCreation: true }),
  );
  assert.deepEqual(
    log.map((e) => [e.method, e.status, e.newOffset]),
    [["POST", 201, String(SAMPLE.length)]],
  );
  await assertCompleted(upload.url, SAMPLE, id, "created.png");
});

test("a ~12 MiB PNG in 5 MiB chunks: three PATCHes, three parts", TIMEOUT, async () => {
  const id = imageId();
  const data = pngBytes(LARGE_SIZE, 1);
  const log = [];
  const upload = await run(data, options(log, { metadata: metadata(id, "large.png"), chunkSize: PART_SIZE }));
  assert.deepEqual(
    patches(log).map((e) => [e.offset, e.status, e.newOffset]),
    [
      ["0", 204, String(PART_SIZE)],
      [String(PART_SIZE), 204, String(2 * PART_SIZE)],
      [String(2 * PART_SIZE), 204, String(LARGE_SIZE)],
    ],
  );
  await assertCompleted(upload.url, data, id, "large.png");
});

test("a ~12 MiB PNG in one PATCH (the default chunk size)", TIMEOUT, async () => {
  const id = imageId();
  const data = pngBytes(LARGE_SIZE, 2);
  const log = [];
  const upload = await run(data, options(log, { metadata: metadata(id, "one-patch.png") }));
  assert.deepEqual(
    patches(log).map((e) => [e.offset, e.status, e.newOffset]),
    [["0", 204, String(LARGE_SIZE)]],
  );
  await assertCompleted(upload.url, data, id, "one-patch.png");
});

test("abort() after the first chunk, resumed by a new Upload with uploadUrl", TIMEOUT, async () => {
  const id = imageId();
  const data = pngBytes(LARGE_SIZE, 3);
  const meta = metadata(id, "resumed.png");

  const first = [];
  const url = await new Promise((resolve, reject) => {
    const upload = new Upload(data, {
      ...options(first, { metadata: meta, chunkSize: PART_SIZE }),
      onChunkComplete: () => {
        upload.abort().then(() => resolve(upload.url), reject);
      },
      onSuccess: () => reject(new Error("the upload finished before abort()")),
      onError: reject,
    });
    upload.start();
  });
  assert.deepEqual(
    first.map((e) => [e.method, e.status]),
    [
      ["POST", 201],
      ["PATCH", 204],
    ],
  );
  const status = await head(url);
  assert.equal(status.status, 200);
  assert.equal(status.headers.get("upload-offset"), String(PART_SIZE));
  assert.equal(status.headers.get("upload-length"), String(LARGE_SIZE));
  assert.equal((await record(uploadIdOf(url))).state, "pending");

  const second = [];
  const upload = await run(data, options(second, { uploadUrl: url, metadata: meta, chunkSize: PART_SIZE }));
  assert.equal(upload.url, url);
  assert.deepEqual(
    second.map((e) => [e.method, e.offset, e.status]),
    [
      ["HEAD", null, 200],
      ["PATCH", String(PART_SIZE), 204],
      ["PATCH", String(2 * PART_SIZE), 204],
    ],
  );
  await assertCompleted(url, data, id, "resumed.png");
});

test("abort() in the middle of a PATCH, resumed through findPreviousUploads", TIMEOUT, async (t) => {
  const id = imageId();
  const data = pngBytes(LARGE_SIZE, 4);
  const meta = metadata(id, "interrupted.png");
  const urlStorage = new FileUrlStorage(join(scratch, `urls-${id}.json`));
  const link = await relay();
  t.after(() => link.close());
  const endpoint = `${link.url}/api/v1/tus`;

  // The link stalls a MiB into the second PATCH's body; the user aborts there.
  const stalled = link.arm(PART_SIZE + MIB, "stall");
  const first = [];
  const url = await new Promise((resolve, reject) => {
    const upload = new Upload(data, {
      ...options(first, { endpoint, metadata: meta, chunkSize: PART_SIZE, urlStorage }),
      onSuccess: () => reject(new Error("the upload finished through a stalled link")),
      onError: reject,
    });
    stalled.then(() => upload.abort()).then(() => resolve(upload.url), reject);
    upload.start();
  });
  assert.deepEqual(
    first.map((e) => [e.method, e.offset, e.status]),
    [
      ["POST", null, 201],
      ["PATCH", "0", 204],
      ["PATCH", String(PART_SIZE), undefined],
    ],
  );
  // Later, over a good link: the server has what came before the stall.
  await delay(300);
  link.heal();

  const second = [];
  const upload = await run(
    data,
    options(second, { endpoint, metadata: meta, chunkSize: PART_SIZE, urlStorage }),
    async (u) => {
      const previous = await u.findPreviousUploads();
      assert.equal(previous.length, 1, "the URL storage holds the first upload");
      assert.equal(previous[0].uploadUrl, url);
      u.resumeFromPreviousUpload(previous[0]);
    },
  );
  assert.equal(upload.url, url);
  assert.deepEqual(
    second.map((e) => [e.method, e.status]),
    [
      ["HEAD", 200],
      ["PATCH", 204],
      ["PATCH", 204],
    ],
  );
  // The first chunk, and the second's bytes up to the stall (less its headers).
  const resumedAt = Number(second[1].offset);
  assert.ok(resumedAt > PART_SIZE + MIB - 4096 && resumedAt <= PART_SIZE + MIB, `resumed at ${resumedAt}`);
  t.diagnostic(`resumed at ${resumedAt}: ${resumedAt - PART_SIZE} bytes into the second chunk`);
  assert.equal(second.at(-1).newOffset, String(LARGE_SIZE));
  await assertCompleted(url, data, id, "interrupted.png", endpoint);
});

test("the connection drops in the middle of a PATCH: the client's retry resumes", TIMEOUT, async (t) => {
  const id = imageId();
  const data = pngBytes(LARGE_SIZE, 6);
  const link = await relay();
  t.after(() => link.close());
  const endpoint = `${link.url}/api/v1/tus`;

  // One PATCH for the whole file; the link drops 7 MiB into it.
  const dropped = link.arm(7 * MIB, "cut");
  const log = [];
  const upload = await run(
    data,
    options(log, { endpoint, metadata: metadata(id, "dropped.png"), retryDelays: [500] }),
  );
  await dropped;
  assert.deepEqual(
    log.map((e) => [e.method, e.status]),
    [
      ["POST", 201],
      ["PATCH", undefined],
      ["HEAD", 200],
      ["PATCH", 204],
    ],
  );
  const resumedAt = Number(log[3].offset);
  assert.ok(resumedAt > 7 * MIB - 4096 && resumedAt <= 7 * MIB, `resumed at ${resumedAt}`);
  t.diagnostic(`resumed at ${resumedAt}`);
  await assertCompleted(upload.url, data, id, "dropped.png", endpoint);
});

test("a file that is no image: onError with the 422, and the upload failed", TIMEOUT, async () => {
  const id = imageId();
  const data = notAnImage(1000);
  const log = [];
  // The library's own retry settings: a 4xx other than 409 and 423 is not retried.
  const { retryDelays: _none, ...opts } = options(log, { metadata: metadata(id, "x.png") });
  let url;
  const err = await new Promise((resolve, reject) => {
    const upload = new Upload(data, {
      ...opts,
      onUploadUrlAvailable: () => {
        url = upload.url;
      },
      onSuccess: () => reject(new Error("a file that is no image completed")),
      onError: resolve,
    });
    upload.start();
  });
  assert.ok(err.originalResponse, `an HTTP error, not ${err}`);
  assert.equal(err.originalResponse.getStatus(), 422);
  const body = JSON.parse(err.originalResponse.getBody());
  assert.equal(body.code, "invalid_image");
  assert.equal(typeof body.message, "string");
  assert.deepEqual(
    log.map((e) => [e.method, e.status]),
    [
      ["POST", 201],
      ["PATCH", 422],
    ],
  );
  const upload = await record(uploadIdOf(url));
  assert.equal(upload.state, "failed");
  assert.equal(upload.failure_code, "invalid_image");
  assert.equal(upload.s3_url, null);
});

test("abort(true) terminates: HEAD is then 404 or 410 and the upload aborted", TIMEOUT, async () => {
  const id = imageId();
  const data = pngBytes(LARGE_SIZE, 5);
  const log = [];
  const url = await new Promise((resolve, reject) => {
    const upload = new Upload(data, {
      ...options(log, { metadata: metadata(id, "terminated.png"), chunkSize: PART_SIZE }),
      onChunkComplete: () => {
        upload.abort(true).then(() => resolve(upload.url), reject);
      },
      onSuccess: () => reject(new Error("the upload finished before abort(true)")),
      onError: reject,
    });
    upload.start();
  });
  assert.deepEqual(
    log.map((e) => [e.method, e.status]),
    [
      ["POST", 201],
      ["PATCH", 204],
      ["DELETE", 204],
    ],
  );
  const status = await head(url);
  assert.ok([404, 410].includes(status.status), `HEAD after termination: ${status.status}`);
  assert.equal(status.headers.get("upload-offset"), null);
  const upload = await record(uploadIdOf(url));
  assert.equal(upload.state, "aborted");
  assert.equal(upload.s3_url, null);
});
