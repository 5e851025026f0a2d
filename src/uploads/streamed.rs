//! Server-side streamed uploads (the seed's `POST /upload/{image_id}`): the body is
//! counted, hashed and checked as it arrives, held in memory up to 256 KiB and beyond that
//! in an unnamed temporary file, and sent to storage only once it is whole and valid. It is
//! recorded only once it is stored.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sea_orm::TryIntoModel;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::OwnedSemaphorePermit;
use uuid::Uuid;

use super::transition::{Recorded, completed, verified_object};
use super::verify::{self, SNIFF_BYTES_MAX, Sample, VerifiedImage};
use super::{Upload, UploadError, UploadMethod, UploadService, object_key, to_i64};
use crate::db::{self, NewUpload};
use crate::domain::{ImageFormat, ImageId, OriginalFilename, Sha256Checksum};
use crate::shutdown::Shutdown;
use crate::storage::{Payload, StoredPart};

/// The most of one upload's body held in memory; the rest waits in a temporary file.
pub const SPOOL_IN_MEMORY: u64 = 256 * 1024;
/// Memory all streamed uploads together may hold; requests beyond it wait.
pub const STREAM_BUFFER_BUDGET: u64 = 16 * 1024 * 1024;
/// Budget accounting unit.
const KIB: u64 = 1024;
/// How much of the body one read takes once it goes to the temporary file.
const READ_CHUNK: usize = 64 * 1024;
/// Memory an upload holds beside its first bytes while it writes the temporary file: the
/// chunk being read and the one being written.
const SPOOL_BUFFERS: u64 = 2 * READ_CHUNK as u64;
/// After the limit is hit, how much more of the body is read (and dropped) so the client
/// is reading when the 413 arrives, and for how long.
const DRAIN_LIMIT: u64 = 64 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(5);
/// Temporary files kept open for the next uploads, and the most disk they may hold.
const IDLE_SPOOL_FILES: usize = 16;
const IDLE_SPOOL_BYTES: u64 = 64 * 1024 * 1024;
/// How long a streamed upload may wait for body bytes, or for room in the buffer budget.
const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// An object in the bucket that is not recorded yet.
#[derive(Debug)]
pub struct StoredObject {
    id: Uuid,
    image_id: ImageId,
    key: String,
    filename: OriginalFilename,
    image: VerifiedImage,
    size: u64,
    checksum: Sha256Checksum,
    etag: Option<String>,
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
        let keep = verify::TAIL_BYTES as usize;
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
    /// Takes in one file and stores it: refuses it from its first bytes when they already
    /// show it is not what it claims, otherwise reads it whole (stopping at `limit` + 1
    /// bytes), checks it, and only then sends it to storage: in one PutObject, or in parts
    /// when it is larger than `MULTIPART_THRESHOLD`. A refused file never reaches the
    /// bucket; on a failure while storing, nothing is left there.
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
        let in_memory = SPOOL_IN_MEMORY.min(limit + 1) as usize;
        let _budget = self
            .reserve_buffer(size_hint.map_or(SPOOL_IN_MEMORY + SPOOL_BUFFERS, |h| {
                h.min(SPOOL_IN_MEMORY + SPOOL_BUFFERS)
            }))
            .await?;

        let mut body = CountedBody {
            reader,
            total: 0,
            limit,
            hasher: Sha256::new(),
            tail: Vec::new(),
            shutdown: self.shutdown.clone(),
        };
        let mut head =
            BytesMut::with_capacity(size_hint.map_or(in_memory, |h| (h as usize).min(in_memory)));
        let first = body.fill(&mut head, in_memory).await;
        let head = head.freeze();
        if let Err(UploadError::TooLarge { .. }) = first {
            body.drain().await;
        }
        if head.is_empty() && first.is_ok() {
            return Err(UploadError::EmptyFile);
        }
        let limits = self.image_limits();
        let early = verify::inspect_header(&head, claimed, limits);
        let spooled = match first? {
            Fill::End => None,
            Fill::Full => {
                // A header that does not match needs no more bytes to be refused. Only the
                // dimensions may lie further on, behind a JPEG's EXIF blocks.
                if let Err(rejection) = early
                    && !verify::wants_longer_head(&early, &head, u64::MAX)
                {
                    return Err(UploadError::Rejected(rejection));
                }
                let spooled = self.spool_files.spool(head.clone(), &mut body).await;
                if let Err(UploadError::TooLarge { .. }) = spooled {
                    body.drain().await;
                }
                Some(spooled?)
            }
        };
        let longer = match &spooled {
            Some(spooled) if verify::wants_longer_head(&early, &head, body.total) => {
                Some(read_file_prefix(&spooled.file, SNIFF_BYTES_MAX.min(body.total)).await?)
            }
            _ => None,
        };
        let sample = Sample {
            head: longer.as_deref().unwrap_or(&head),
            tail: &body.tail,
            size: body.total,
        };
        let image = verify::verify(sample, claimed, None, limits).map_err(UploadError::Rejected)?;
        let format = image.format;
        if self.decodes(body.total) {
            let whole = async {
                Ok(match &spooled {
                    None => head.clone(),
                    Some(spooled) => read_file_prefix(&spooled.file, body.total).await?.into(),
                })
            };
            self.decode_whole(format, whole)
                .await?
                .map_err(UploadError::Rejected)?;
        }

        let id = Uuid::now_v7();
        let key = object_key(image_id, id, format);
        let etag = match spooled {
            None => self.storage.put(&key, format.mime(), head.into()).await?,
            Some(spooled) => {
                let stored = self
                    .store_spooled(&key, format, spooled.file.clone(), body.total)
                    .await;
                self.spool_files.give_back(spooled);
                stored?
            }
        };
        Ok(StoredObject {
            id,
            image_id: image_id.clone(),
            key,
            filename,
            image,
            size: body.total,
            checksum: Sha256Checksum::from_digest(&body.hasher.finalize()),
            etag,
        })
    }

    /// Sends a file from its temporary file: one PutObject, or parts when it is large; a
    /// multipart upload that fails is aborted.
    async fn store_spooled(
        &self,
        key: &str,
        format: ImageFormat,
        file: Arc<File>,
        size: u64,
    ) -> Result<Option<String>, UploadError> {
        let Some(plan) = self.part_plan(size) else {
            let body = Payload::file_range(file, 0, size);
            return Ok(self.storage.put(key, format.mime(), body).await?);
        };
        let upload_id = self
            .storage
            .create_multipart(key, format.mime(), false)
            .await?;
        let result = async {
            let mut parts = Vec::with_capacity(usize::try_from(plan.part_count).unwrap_or(0));
            for part_number in 1..=plan.part_count {
                let offset = plan.part_offset(part_number);
                let len = plan.part_len(part_number);
                let body = Payload::file_range(file.clone(), offset, len);
                let etag = self
                    .storage
                    .upload_part(key, &upload_id, part_number, body)
                    .await?;
                parts.push(StoredPart {
                    part_number,
                    etag,
                    size: len,
                    checksum_sha256: None,
                });
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

    /// Waits until `bytes` of buffer fit in the shared budget; a bounded wait, then
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
    ) -> Result<Upload, UploadError> {
        // The event's URL is the service's own, never one a request's Host chose.
        let s3_url = match self.storage.shared_object_url(&stored.key).await {
            Ok(url) => url,
            Err(err) => {
                self.discard(stored).await;
                return Err(err.into());
            }
        };
        let row = db::new_pending(NewUpload {
            id: stored.id,
            image_id: stored.image_id.to_string(),
            method: UploadMethod::Legacy,
            object_key: stored.key.clone(),
            original_filename: stored.filename.as_str().to_owned(),
            content_type: stored.image.format.mime().to_owned(),
            declared_size: to_i64(stored.size),
            checksum_sha256: Some(stored.checksum.as_str().to_owned()),
            metadata: None,
            multipart_upload_id: None,
            part_size: None,
            part_count: None,
            checksum_algorithm: None,
            expires_at: OffsetDateTime::now_utc(),
            link_id,
        });
        let object = verified_object(
            stored.image,
            stored.size,
            stored.etag.clone(),
            Some(stored.checksum.as_str().to_owned()),
            s3_url,
        );
        let row = match row.try_into_model() {
            Ok(row) => row,
            Err(err) => {
                self.discard(stored).await;
                return Err(UploadError::Db(err.into()));
            }
        };
        match self
            .record_completed(Recorded::New(Box::new(row.clone())), object.clone())
            .await
        {
            Ok(_) => {
                let row = completed(row, &object, self.config.variants.enabled());
                let s3_url = self.storage.object_url(&stored.key).await?;
                Ok(Upload::from_row(row, Some(s3_url), None))
            }
            Err(err) => {
                self.discard(stored).await;
                Err(err)
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

/// Unnamed temporary files (in `TMPDIR`) that hold streamed uploads; the system removes
/// one once it is closed, even after a crash. A few are kept open and written again, since
/// making a file costs more than rewriting one on a filesystem with much churn. A kept file
/// may still hold an earlier upload's bytes past the end of the next one; only this process
/// can read it, and only the range written is ever read.
#[derive(Debug, Default)]
pub(crate) struct SpoolFiles {
    /// Each kept file with its size on disk.
    idle: std::sync::Mutex<Vec<(File, u64)>>,
}

/// A temporary file holding an upload, and its size on disk (at least the upload's).
struct Spooled {
    file: Arc<File>,
    size: u64,
}

impl SpoolFiles {
    /// Writes the first bytes and the rest of the body to a temporary file.
    async fn spool<R: AsyncRead + Unpin>(
        &self,
        head: Bytes,
        body: &mut CountedBody<R>,
    ) -> Result<Spooled, UploadError> {
        let kept = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let (file, size) = match kept {
            Some(kept) => kept,
            None => (blocking(tempfile::tempfile).await?, 0),
        };
        let file = Arc::new(file);
        let mut offset = head.len() as u64;
        write_at(&file, head, 0).await?;
        loop {
            let mut chunk = BytesMut::with_capacity(READ_CHUNK);
            let fill = body.fill(&mut chunk, READ_CHUNK).await?;
            let len = chunk.len() as u64;
            write_at(&file, chunk.freeze(), offset).await?;
            offset += len;
            if let Fill::End = fill {
                let size = size.max(offset);
                return Ok(Spooled { file, size });
            }
        }
    }

    /// Keeps a file for the next upload while the kept files stay within their bounds and
    /// nothing else still reads it; otherwise closes it.
    fn give_back(&self, spooled: Spooled) {
        let Ok(file) = Arc::try_unwrap(spooled.file) else {
            return;
        };
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let kept: u64 = idle.iter().map(|(_, size)| size).sum();
        if idle.len() < IDLE_SPOOL_FILES && kept + spooled.size <= IDLE_SPOOL_BYTES {
            idle.push((file, spooled.size));
        }
    }
}

/// Writes `bytes` at `offset` of a spool file (the legacy upload's or tus's).
pub(super) async fn write_at(
    file: &Arc<File>,
    bytes: Bytes,
    offset: u64,
) -> Result<(), UploadError> {
    let file = file.clone();
    blocking(move || file.write_all_at(&bytes, offset)).await
}

/// The first `len` bytes of a spool file.
pub(super) async fn read_file_prefix(file: &Arc<File>, len: u64) -> Result<Vec<u8>, UploadError> {
    let file = file.clone();
    blocking(move || {
        let mut buf = vec![0; len as usize];
        file.read_exact_at(&mut buf, 0).map(|()| buf)
    })
    .await
}

/// File work on the blocking pool; its failure is a `Spool` error.
pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T, UploadError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(io::Error::other)
        .flatten()
        .map_err(|err| UploadError::Spool(err.to_string()))
}
