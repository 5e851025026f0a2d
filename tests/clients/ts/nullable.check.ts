// What the generated types should say about values the service sends as JSON null
// (a pending upload has no s3_url, size or upload time; the last page has no cursor).
// A type that leaves out `null` lets `record.s3_url !== undefined` pass for a null.

import type { components } from "../generated/ts/api.js";

type Upload = components["schemas"]["Upload"];
type ImageList = components["schemas"]["ImageList"];

type AdmitsNull<T> = null extends T ? true : "the generated type leaves out null";

export const uploadFieldsAdmitNull: {
  s3_url: AdmitsNull<Upload["s3_url"]>;
  file_size: AdmitsNull<Upload["file_size"]>;
  uploaded_at: AdmitsNull<Upload["uploaded_at"]>;
  checksum_sha256: AdmitsNull<Upload["checksum_sha256"]>;
  etag: AdmitsNull<Upload["etag"]>;
  width: AdmitsNull<Upload["width"]>;
  height: AdmitsNull<Upload["height"]>;
  metadata: AdmitsNull<Upload["metadata"]>;
} = {
  s3_url: true,
  file_size: true,
  uploaded_at: true,
  checksum_sha256: true,
  etag: true,
  width: true,
  height: true,
  metadata: true,
};

export const nextCursorAdmitsNull: AdmitsNull<ImageList["next_cursor"]> = true;
