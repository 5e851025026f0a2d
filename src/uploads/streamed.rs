//! Server-side streamed uploads (the seed's `POST /upload/{image_id}`): the body goes to
//! storage as it arrives, in bounded memory, and is recorded only once it is stored.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sea_orm::Set;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::OwnedSemaphorePermit;
use uuid::Uuid;

use super::{Rejection, UploadError, UploadService, UploadView, object_key, to_i64};
use crate::config::MIN_PART_SIZE;
use crate::db::{self, NewUpload, state};
use crate::domain::{ImageFormat, ImageId, OriginalFilename, Sha256Checksum};
use crate::shutdown::Shutdown;
use crate::storage::StoredPart;

/// Parts of a streamed upload: S3's minimum, to keep the buffer per request small.
pub const STREAM_PART_SIZE: u64 = MIN_PART_SIZE;
/// Memory all streamed uploads together may hold in part buffers; requests beyond it wait.
pub const STREAM_BUFFER_BUDGET: u64 = 16 * 1024 * 1024;
/// Budget accounting unit.
const KIB: u64 = 1024;
/// How much a buffer grows by when the body is longer than announced (chunked bodies).
const READ_CHUNK: usize = 64 * 1024;
/// After the limit is hit, how much more of the body is read (and dropped) so the client
/// is reading when the 413 arrives, and for how long.
const DRAIN_LIMIT: u64 = 64 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(5);
/// How long a streamed upload may wait for body bytes, or for room in the buffer budget.
const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// An object in the bucket that is not recorded yet.
#[derive(Debug)]
pub struct StoredObject {
    id: Uuid,
    image_id: ImageId,
    key: String,
    filename: OriginalFilename,
    format: ImageFormat,
    size: u64,
    checksum: Sha256Checksum,
    etag: Option<String>,
    width: i32,
    height: i32,
}

/// Reads from the body, counting every byte against the limit and hashing as it goes.
struct CountedBody<R> {
    reader: R,
    total: u64,
    limit: u64,
    hasher: Sha256,
    tail: Vec<u8>,
    shutdown: Shutdown,
}

enum Fill {
    /// The buffer is full; there may be more.
    Full,
    /// The body ended.
    End,
}

impl<R: AsyncRead + Unpin> CountedBody<R> {
    /// Reads until `buf` holds `want` bytes or the body ends. Reads go straight into the
    /// buffer's spare room, so a buffer sized to the body is never reallocated.
    async fn fill(&mut self, buf: &mut BytesMut, want: usize) -> Result<Fill, UploadError> {
        while buf.len() < want {
            if buf.len() == buf.capacity() {
                buf.reserve((want - buf.len()).min(READ_CHUNK));
            }
            let start = buf.len();
            // A shutdown stops the upload here; the caller aborts what it started.
            let mut limited = (&mut self.reader).take((want - start) as u64);
            let n = tokio::select! {
                read = tokio::time::timeout(STREAM_IDLE_TIMEOUT, limited.read_buf(buf)) => match read {
                    Ok(read) => read.map_err(|e| UploadError::BodyRead(e.to_string()))?,
                    // A client that stops sending does not hold a buffer forever.
                    Err(_) => return Err(UploadError::BodyRead("no data for 30 s".to_owned())),
                },
                () = self.shutdown.wait() => return Err(UploadError::ShuttingDown),
            };
            if n == 0 {
                return Ok(Fill::End);
            }
            self.hasher.update(&buf[start..start + n]);
            self.keep_tail(&buf[start..start + n]);
            self.total += n as u64;
            if self.total > self.limit {
                return Err(UploadError::TooLarge { limit: self.limit });
            }
        }
        Ok(Fill::Full)
    }

    /// Keeps the last bytes seen, to check the file's end once it has arrived.
    fn keep_tail(&mut self, new: &[u8]) {
        let keep = ImageFormat::TAIL_BYTES as usize;
        self.tail
            .extend_from_slice(&new[new.len().saturating_sub(keep)..]);
        let excess = self.tail.len().saturating_sub(keep);
        self.tail.drain(..excess);
    }

    /// Reads and drops what is left, within bounds, so the client sees the answer.
    async fn drain(&mut self) {
        let mut sink = tokio::io::sink();
        let mut rest = (&mut self.reader).take(DRAIN_LIMIT);
        let _ = tokio::time::timeout(DRAIN_TIME, tokio::io::copy(&mut rest, &mut sink)).await;
    }
}

impl UploadService {
    /// Streams one file to storage: sniffs its first bytes before anything is sent, then a
    /// single PutObject if it fits one part, or a multipart upload in 5 MiB parts. Stops at
    /// `MAX_FILE_SIZE` + 1 bytes. On any failure nothing is left in the bucket.
    pub async fn store_streamed<R: AsyncRead + Unpin + Send>(
        &self,
        image_id: &ImageId,
        filename: &str,
        reader: R,
        size_hint: Option<u64>,
        limit: u64,
    ) -> Result<StoredObject, UploadError> {
        let filename = OriginalFilename::clean(filename)?;
        let claimed = filename.format()?;
        let part = STREAM_PART_SIZE.min(limit + 1) as usize;
        let _budget = self
            .reserve_buffer(size_hint.map_or(part as u64, |h| h.min(part as u64)))
            .await?;

        let mut body = CountedBody {
            reader,
            total: 0,
            limit,
            hasher: Sha256::new(),
            tail: Vec::new(),
            shutdown: self.shutdown.clone(),
        };
        let mut buf = BytesMut::with_capacity(size_hint.map_or(part, |h| (h as usize).min(part)));
        let first = match body.fill(&mut buf, part).await {
            Ok(fill) => fill,
            Err(err) => {
                if matches!(err, UploadError::TooLarge { .. }) {
                    body.drain().await;
                }
                return Err(err);
            }
        };
        if buf.is_empty() {
            return Err(UploadError::EmptyFile);
        }
        let (format, width, height) = self
            .inspect_image(&buf, claimed)
            .map_err(UploadError::Rejected)?;

        let id = Uuid::now_v7();
        let key = object_key(image_id, id, format);
        let etag = match first {
            Fill::End => {
                if !format.is_whole(&buf, &body.tail, body.total) {
                    return Err(UploadError::Rejected(Rejection::InvalidImage));
                }
                self.storage.put(&key, format.mime(), buf.freeze()).await?
            }
            Fill::Full => {
                let result = self
                    .stream_parts(&key, format, buf.freeze(), &mut body, part)
                    .await;
                if let Err(UploadError::TooLarge { .. }) = result {
                    body.drain().await;
                }
                result?
            }
        };
        Ok(StoredObject {
            id,
            image_id: image_id.clone(),
            key,
            filename,
            format,
            size: body.total,
            checksum: Sha256Checksum::from_digest(&body.hasher.finalize()),
            etag,
            width,
            height,
        })
    }

    /// Sends the first buffer and every further one as a part; aborts on any failure.
    async fn stream_parts<R: AsyncRead + Unpin>(
        &self,
        key: &str,
        format: ImageFormat,
        first: Bytes,
        body: &mut CountedBody<R>,
        part: usize,
    ) -> Result<Option<String>, UploadError> {
        let upload_id = self
            .storage
            .create_multipart(key, format.mime(), false)
            .await?;
        // The first bytes, for checking the file's end against its header.
        // (A copy: a slice would keep the whole first part buffer alive.)
        let head = Bytes::copy_from_slice(&first[..first.len().min(64)]);
        let result = async {
            let mut parts = Vec::new();
            let mut chunk = first;
            loop {
                let part_number = i32::try_from(parts.len() + 1).unwrap_or(i32::MAX);
                let size = chunk.len() as u64;
                let etag = self
                    .storage
                    .upload_part(key, &upload_id, part_number, chunk)
                    .await?;
                parts.push(StoredPart {
                    part_number,
                    etag,
                    size,
                    checksum_sha256: None,
                });
                let mut buf = BytesMut::with_capacity(part);
                body.fill(&mut buf, part).await?;
                if buf.is_empty() {
                    break;
                }
                chunk = buf.freeze();
            }
            if !format.is_whole(&head, &body.tail, body.total) {
                return Err(UploadError::Rejected(Rejection::InvalidImage));
            }
            Ok::<_, UploadError>(
                self.storage
                    .complete_multipart(key, &upload_id, &parts)
                    .await?,
            )
        }
        .await;
        if result.is_err()
            && let Err(err) = self.storage.abort_multipart(key, &upload_id).await
        {
            // The sweeper aborts multipart uploads nobody owns.
            tracing::warn!(key, error = %err, "could not abort a failed streamed upload");
        }
        result
    }

    /// Waits until `bytes` of part buffer fit in the shared budget; a bounded wait, then
    /// the upload is turned away with a 503 to retry.
    async fn reserve_buffer(&self, bytes: u64) -> Result<OwnedSemaphorePermit, UploadError> {
        let permits = u32::try_from(bytes.div_ceil(KIB))
            .unwrap_or(u32::MAX)
            .max(1);
        let wait = self.stream_budget.clone().acquire_many_owned(permits);
        match tokio::time::timeout(STREAM_IDLE_TIMEOUT, wait).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(UploadError::Busy),
        }
    }

    /// Records a stored object as a completed upload. The object is already in the bucket;
    /// if the row cannot be written the object is removed, so neither exists alone.
    pub async fn record_streamed(
        &self,
        stored: StoredObject,
        link_id: Option<Uuid>,
    ) -> Result<UploadView, UploadError> {
        let s3_url = match self.storage.object_url(&stored.key).await {
            Ok(url) => url,
            Err(err) => {
                self.discard(stored).await;
                return Err(err.into());
            }
        };
        let now = OffsetDateTime::now_utc();
        let mut row = db::new_pending(NewUpload {
            id: stored.id,
            image_id: stored.image_id.to_string(),
            method: "LEGACY",
            object_key: stored.key.clone(),
            original_filename: stored.filename.as_str().to_owned(),
            content_type: stored.format.mime().to_owned(),
            declared_size: to_i64(stored.size),
            checksum_sha256: Some(stored.checksum.as_str().to_owned()),
            metadata: None,
            multipart_upload_id: None,
            part_size: None,
            part_count: None,
            checksum_algorithm: None,
            expires_at: now,
            link_id,
        });
        row.state = Set(state::COMPLETED.to_owned());
        row.file_size = Set(Some(to_i64(stored.size)));
        row.etag = Set(stored.etag.clone());
        row.width = Set(Some(stored.width));
        row.height = Set(Some(stored.height));
        row.s3_url = Set(Some(s3_url.clone()));
        row.uploaded_at = Set(Some(now));
        match self.db.insert(row).await {
            Ok(row) => {
                tracing::info!(upload_id = %row.id, image_id = %row.image_id, state = state::COMPLETED, size = stored.size, "streamed upload completed");
                crate::metrics::upload_transition(state::COMPLETED);
                crate::metrics::bytes_confirmed(stored.size);
                Ok(UploadView {
                    row,
                    s3_url: Some(s3_url),
                })
            }
            Err(err) => {
                self.discard(stored).await;
                Err(err.into())
            }
        }
    }

    /// Removes a stored object that will not be recorded.
    pub async fn discard(&self, stored: StoredObject) {
        if let Err(err) = self.storage.delete(&stored.key).await {
            // Left for the sweeper, which removes objects no completed upload owns.
            tracing::warn!(key = %stored.key, error = %err, "could not remove an unrecorded object");
        }
    }
}
