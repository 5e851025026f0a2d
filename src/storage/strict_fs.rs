//! s3s-fs with what a presigned-upload client relies on made as S3 does it:
//! - a body whose SHA-256 differs from the declared `x-amz-checksum-sha256` never reaches
//!   its key (s3s-fs writes the object first and then answers BadDigest);
//! - ListParts reports each part's ETag and SHA-256 (s3s-fs lists sizes only), kept in a
//!   small record per part beside the store;
//! - ListMultipartUploads lists the open multipart uploads (s3s-fs has no such operation),
//!   so the sweeper can abort the ones nobody owns;
//! - an upload being completed is registered in `InternalFiles`, so removing leftovers
//!   leaves its files alone.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD};
use bytes::Bytes;
use futures_util::StreamExt as _;
use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};
use sha2::{Digest, Sha256};

use super::leftovers::InternalFiles;

pub struct StrictFs {
    fs: s3s_fs::FileSystem,
    /// Told the key of every object a PutObject wrote (`AUTO_CONFIRM`).
    landed: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    /// The store's root folder, where s3s-fs keeps its multipart bookkeeping, and the part
    /// records: one file per uploaded part, `<upload id>.<part number>`, holding the ETag
    /// and the part's SHA-256 on two lines.
    files: Arc<InternalFiles>,
}

impl StrictFs {
    pub fn new(
        fs: s3s_fs::FileSystem,
        files: Arc<InternalFiles>,
        landed: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    ) -> Self {
        Self { fs, files, landed }
    }

    fn record_path(&self, upload_id: &str, part_number: i32) -> Option<PathBuf> {
        // Upload ids come from s3s-fs (UUIDs); anything else never names a file.
        uuid::Uuid::parse_str(upload_id).ok()?;
        Some(
            self.files
                .part_records
                .join(format!("{upload_id}.{part_number}")),
        )
    }

    async fn upload_is_open(&self, upload_id: &str) -> bool {
        uuid::Uuid::parse_str(upload_id).is_ok()
            && tokio::fs::try_exists(self.files.open_marker(upload_id))
                .await
                .unwrap_or(false)
    }

    async fn forget_parts(&self, upload_id: &str) {
        if uuid::Uuid::parse_str(upload_id).is_err() {
            return;
        }
        let prefix = format!("{upload_id}.");
        let Ok(mut entries) = tokio::fs::read_dir(&self.files.part_records).await else {
            return;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = tokio::fs::remove_file(entry.path()).await;
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BodyError(String);

/// Hashes the body as it streams and fails its end when the digest differs, so the
/// store's temporary file is dropped instead of renamed into place.
fn checked_body(
    body: StreamingBlob,
    expected: Vec<u8>,
    mismatch: Arc<AtomicBool>,
) -> StreamingBlob {
    let hasher = Arc::new(Mutex::new(Sha256::new()));
    let feed = hasher.clone();
    let data = body.map(move |chunk| {
        let chunk = chunk.map_err(|e| BodyError(e.to_string()))?;
        if let Ok(mut h) = feed.lock() {
            h.update(&chunk);
        }
        Ok::<Bytes, BodyError>(chunk)
    });
    let verdict = futures_util::stream::once(async move {
        let digest = hasher
            .lock()
            .map(|h| h.clone().finalize().to_vec())
            .unwrap_or_default();
        if digest == expected {
            None
        } else {
            mismatch.store(true, Ordering::SeqCst);
            Some(Err(BodyError("checksum mismatch".to_owned())))
        }
    })
    .filter_map(|item| async move { item });
    StreamingBlob::wrap(data.chain(verdict))
}

/// Wraps the body when a SHA-256 is declared; returns the flag that tells of a mismatch.
fn guard_body(checksum: Option<&str>, body: &mut Option<StreamingBlob>) -> Arc<AtomicBool> {
    let mismatch = Arc::new(AtomicBool::new(false));
    if let Some(expected) = checksum.and_then(|c| BASE64.decode(c).ok())
        && let Some(blob) = body.take()
    {
        *body = Some(checked_body(blob, expected, mismatch.clone()));
    }
    mismatch
}

fn bad_digest<T>(mismatch: &AtomicBool, result: S3Result<T>) -> S3Result<T> {
    if mismatch.load(Ordering::SeqCst) {
        return Err(s3_error!(
            BadDigest,
            "The SHA256 you specified did not match the calculated checksum."
        ));
    }
    result
}

#[async_trait::async_trait]
impl S3 for StrictFs {
    async fn put_object(
        &self,
        mut req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let mismatch = guard_body(req.input.checksum_sha256.as_deref(), &mut req.input.body);
        let key = req.input.key.clone();
        let result = bad_digest(&mismatch, self.fs.put_object(req).await);
        if let (Ok(_), Some(landed)) = (&result, &self.landed) {
            // Written whole: whoever listens confirms it (a closed listener misses nothing
            // the sweeper will not find).
            let _ = landed.send(key);
        }
        result
    }

    async fn upload_part(
        &self,
        mut req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let mismatch = guard_body(req.input.checksum_sha256.as_deref(), &mut req.input.body);
        let path = self.record_path(&req.input.upload_id, req.input.part_number);
        let checksum = req.input.checksum_sha256.clone().unwrap_or_default();
        let mut resp = bad_digest(&mismatch, self.fs.upload_part(req).await)?;
        let etag = resp
            .output
            .e_tag
            .as_ref()
            .map(|e| e.value().to_owned())
            .unwrap_or_default();
        if let Some(path) = path {
            tokio::fs::create_dir_all(&self.files.part_records)
                .await
                .map_err(|e| s3_error!(e, InternalError))?;
            tokio::fs::write(&path, format!("{etag}\n{checksum}\n"))
                .await
                .map_err(|e| s3_error!(e, InternalError))?;
        }
        if !checksum.is_empty() {
            resp.output.checksum_sha256 = Some(checksum);
        }
        Ok(resp)
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let upload_id = req.input.upload_id.clone();
        // s3s-fs lists nothing (rather than NoSuchUpload) for an unknown or finished upload.
        if !self.upload_is_open(&upload_id).await {
            return Err(s3_error!(NoSuchUpload));
        }
        let mut resp = self.fs.list_parts(req).await?;
        for part in resp.output.parts.iter_mut().flatten() {
            let Some(path) = part
                .part_number
                .and_then(|n| self.record_path(&upload_id, n))
            else {
                continue;
            };
            let Ok(record) = tokio::fs::read_to_string(&path).await else {
                continue;
            };
            let mut lines = record.lines();
            part.e_tag = lines
                .next()
                .filter(|l| !l.is_empty())
                .map(|e| ETag::Strong(e.to_owned()));
            part.checksum_sha256 = lines.next().filter(|l| !l.is_empty()).map(str::to_owned);
        }
        if let Some(parts) = resp.output.parts.as_mut() {
            parts.sort_by_key(|p| p.part_number);
        }
        Ok(resp)
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        // s3s-fs keeps `.upload-<id>.json` while an upload is open and the object's
        // attributes in `.bucket-<b64>.object-<b64>.upload-<id>.metadata.json`.
        let wanted_bucket = URL_SAFE_NO_PAD.encode(&input.bucket);
        let mut uploads = Vec::new();
        let mut entries = tokio::fs::read_dir(&self.files.root)
            .await
            .map_err(|e| s3_error!(e, InternalError))?;
        while let Ok(Some(entry)) = entries.next_entry().await {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(".bucket-") else {
                continue;
            };
            let Some(rest) = rest.strip_suffix(".metadata.json") else {
                continue;
            };
            let Some((bucket, rest)) = rest.split_once(".object-") else {
                continue;
            };
            let Some((key, upload_id)) = rest.split_once(".upload-") else {
                continue;
            };
            if bucket != wanted_bucket {
                continue;
            }
            let Some(key) = URL_SAFE_NO_PAD
                .decode(key)
                .ok()
                .and_then(|k| String::from_utf8(k).ok())
            else {
                continue;
            };
            if !key.starts_with(&prefix) {
                continue;
            }
            let info = self.files.open_marker(upload_id);
            let Ok(meta) = tokio::fs::metadata(&info).await else {
                continue;
            };
            uploads.push(MultipartUpload {
                key: Some(key),
                upload_id: Some(upload_id.to_owned()),
                initiated: meta.modified().ok().map(Timestamp::from),
                ..Default::default()
            });
        }
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: input.prefix,
            uploads: Some(uploads),
            is_truncated: Some(false),
            ..Default::default()
        }))
    }

    // Everything else is s3s-fs as it is.

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        self.fs.create_bucket(req).await
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        self.fs.copy_object(req).await
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.fs.delete_bucket(req).await
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.fs.delete_object(req).await
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        self.fs.delete_objects(req).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.fs.get_bucket_location(req).await
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        self.fs.get_object(req).await
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.fs.head_bucket(req).await
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        self.fs.head_object(req).await
    }

    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        self.fs.list_buckets(req).await
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        self.fs.list_objects(req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.fs.list_objects_v2(req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.fs.create_multipart_upload(req).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        self.fs.upload_part_copy(req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let upload_id = req.input.upload_id.clone();
        let _completing = self
            .files
            .completing(&upload_id, &req.input.bucket, &req.input.key);
        let resp = self.fs.complete_multipart_upload(req).await?;
        self.forget_parts(&upload_id).await;
        Ok(resp)
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let upload_id = req.input.upload_id.clone();
        // s3s-fs answers AccessDenied for an upload that is already gone.
        if !self.upload_is_open(&upload_id).await {
            return Err(s3_error!(NoSuchUpload));
        }
        let resp = self.fs.abort_multipart_upload(req).await?;
        self.forget_parts(&upload_id).await;
        Ok(resp)
    }
}
