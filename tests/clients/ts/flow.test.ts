// The v1 calls through openapi-fetch, typed by the types generated from the OpenAPI
// document. Type-checked with tsc, then run against the service (base URLs from run.sh).

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { crc32 } from "node:zlib";
import createClient from "openapi-fetch";

import type { components, paths } from "../generated/ts/api.js";

type IssuedUpload = components["schemas"]["IssuedUpload"];
type Upload = components["schemas"]["Upload"];
type ApiError = components["schemas"]["Error"];
type SignedPart = components["schemas"]["SignedPart"];

const MIB = 1024 * 1024;

function setting(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run this through tests/clients/run.sh`);
  return value;
}

const baseUrl = setting;
const SAMPLE = new Uint8Array(readFileSync(join(setting("UB_FIXTURES_DIR"), "sample.png")));

function imageId(): string {
  return `ts-${randomUUID().slice(0, 12)}`;
}

/** A valid PNG of `size` bytes: the sample with an ancillary padding chunk before IEND. */
function pngBytes(size: number): Uint8Array {
  const head = SAMPLE.subarray(0, SAMPLE.length - 12);
  const iend = SAMPLE.subarray(SAMPLE.length - 12);
  const dataLen = size - SAMPLE.length - 12;
  const chunk = new Uint8Array(4 + dataLen);
  chunk.set(new TextEncoder().encode("clPd"));
  for (let i = 0; i < dataLen; i++) chunk[4 + i] = i % 251;
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  out.set(head, 0);
  view.setUint32(head.length, dataLen);
  out.set(chunk, head.length + 4);
  view.setUint32(head.length + 4 + chunk.length, crc32(chunk));
  out.set(iend, size - 12);
  return out;
}

async function putBytes(url: string, headers: Record<string, string>, body: Uint8Array): Promise<Response> {
  return fetch(url, { method: "PUT", headers, body });
}

async function served(url: string): Promise<Uint8Array> {
  const res = await fetch(url);
  assert.equal(res.status, 200);
  return new Uint8Array(await res.arrayBuffer());
}

test("single PUT: create, PUT, confirm, read back", async () => {
  const api = createClient<paths>({ baseUrl: baseUrl("UB_BASE_URL") });
  const id = imageId();

  const created = await api.POST("/api/v1/uploads", {
    body: { image_id: id, filename: "photo.png", content_type: "image/png", size: SAMPLE.length },
  });
  assert.equal(created.response.status, 201);
  const issued: IssuedUpload | undefined = created.data;
  assert.ok(issued);
  assert.equal(issued.method, "PUT");
  assert.equal(issued.state, "pending");
  assert.equal(issued.key, `uploads/${id}/${issued.upload_id}.png`);
  assert.ok(issued.url && issued.headers);
  assert.equal(issued.headers["Content-Type"], "image/png");

  const put = await putBytes(issued.url, issued.headers, SAMPLE);
  assert.equal(put.status, 200);

  const params = { path: { upload_id: issued.upload_id } };
  const confirmed = await api.POST("/api/v1/uploads/{upload_id}/confirm", { params });
  assert.equal(confirmed.response.status, 200);
  const record: Upload | undefined = confirmed.data;
  assert.ok(record);
  assert.equal(record.state, "completed");
  assert.equal(record.file_size, SAMPLE.length);
  assert.deepEqual([record.width, record.height], [64, 48]);
  assert.ok(record.s3_url);
  assert.deepEqual(await served(record.s3_url), SAMPLE);

  const got = await api.GET("/api/v1/uploads/{upload_id}", { params });
  assert.equal(got.response.status, 200);
  // The same record, but for its variants, which are made meanwhile.
  const settled = (upload: typeof record) => {
    const { variants_state, variants, ...rest } = upload;
    assert.ok(variants_state === "pending" || variants_state === "ready", variants_state);
    assert.ok(variants === null || typeof variants === "object");
    return rest;
  };
  assert.ok(got.data);
  assert.deepEqual(settled(got.data), settled(record));

  const latest = await api.GET("/api/v1/images/{image_id}/latest", { params: { path: { image_id: id } } });
  assert.equal(latest.response.status, 200);
  assert.equal(latest.data?.upload_id, issued.upload_id);

  const listed = await api.GET("/api/v1/images/{image_id}", {
    params: { path: { image_id: id }, query: { limit: 10 } },
  });
  assert.equal(listed.response.status, 200);
  assert.deepEqual(listed.data?.images.map((u) => u.upload_id), [issued.upload_id]);
});

test("refusals come back as the Error schema", async () => {
  const api = createClient<paths>({ baseUrl: baseUrl("UB_BASE_URL") });
  const refused = await api.POST("/api/v1/uploads", {
    body: { image_id: imageId(), filename: "notes.txt", content_type: "text/plain", size: 5 },
  });
  assert.equal(refused.response.status, 415);
  assert.equal(refused.data, undefined);
  const error: ApiError | undefined = refused.error;
  assert.equal(error?.code, "unsupported_type");
  assert.ok(error?.message);

  const missing = await api.GET("/api/v1/images/{image_id}/latest", { params: { path: { image_id: imageId() } } });
  assert.equal(missing.response.status, 404);
  assert.equal(missing.error?.code, "not_found");
});

test("multipart: create, sign parts, PUT parts, list parts, confirm", async () => {
  const api = createClient<paths>({ baseUrl: baseUrl("UB_MULTIPART_BASE_URL") });
  const body = pngBytes(11 * MIB);
  const part = 5 * MIB;

  const created = await api.POST("/api/v1/uploads", {
    body: { image_id: imageId(), filename: "big.png", content_type: "image/png", size: body.length },
  });
  assert.equal(created.response.status, 201);
  const issued = created.data;
  assert.ok(issued);
  assert.equal(issued.method, "MULTIPART");
  assert.equal(issued.part_size, part);
  assert.equal(issued.part_count, 3);
  const params = { path: { upload_id: issued.upload_id } };

  const signed = await api.POST("/api/v1/uploads/{upload_id}/parts", { params, body: { part_numbers: [1, 2, 3] } });
  assert.equal(signed.response.status, 200);
  const parts: SignedPart[] = signed.data?.parts ?? [];
  assert.deepEqual(parts.map((p) => p.part_number), [1, 2, 3]);
  for (const p of parts) {
    const chunk = body.subarray((p.part_number - 1) * part, p.part_number * part);
    assert.equal(p.size, chunk.length);
    const put = await putBytes(p.url, p.headers, chunk);
    assert.equal(put.status, 200);
  }

  const listed = await api.GET("/api/v1/uploads/{upload_id}/parts", { params });
  assert.equal(listed.response.status, 200);
  assert.deepEqual(listed.data?.parts.map((p) => [p.part_number, p.size]), [[1, part], [2, part], [3, body.length - 2 * part]]);

  const confirmed = await api.POST("/api/v1/uploads/{upload_id}/confirm", { params });
  assert.equal(confirmed.response.status, 200);
  assert.equal(confirmed.data?.state, "completed");
  assert.equal(confirmed.data?.file_size, body.length);
  assert.ok(confirmed.data?.s3_url);
  assert.deepEqual(await served(confirmed.data.s3_url), body);
});
