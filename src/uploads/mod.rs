//! The upload lifecycle, in one place that both the v1 and the legacy handlers call:
//! issue a signed URL, confirm (verify the object, then record it), look up, delete, and
//! the server-side streamed upload of the legacy API.

mod access;
mod multipart;
mod streamed;
mod sweep;

pub use multipart::{MAX_PARTS_PER_CALL, PartPlan, SignedParts};
pub use streamed::{STREAM_BUFFER_BUDGET, StoredObject};
pub use sweep::{KEY_PREFIX, STAGING_PREFIX, SweepReport, spawn_sweeper};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::auth::{Access, AuthError};
use crate::config::Config;
use crate::db::{self, Db, DbError, NewUpload, UploadRow, VerifiedObject, state};
use crate::domain::{ImageFormat, ImageId, InputError, Metadata, OriginalFilename, Sha256Checksum};
use crate::metrics;
use crate::shutdown::Shutdown;
use crate::storage::{BucketCors, ObjectHead, SignedRequest, Storage, StorageError};

/// What the readiness check found.
#[derive(Debug, Clone, Copy)]
pub struct Readiness {
    pub database: bool,
    pub bucket: bool,
    /// `None` when the bucket could not be asked.
    pub cors: Option<BucketCors>,
}

/// How long a health check's answer is reused.
const HEALTH_TTL: Duration = Duration::from_secs(1);
/// Number of striped confirm locks.
const CONFIRM_LOCKS: usize = 64;
/// Bytes read from the start of an object to sniff its type and read its dimensions.
const SNIFF_BYTES: u64 = 64 * 1024;
/// A JPEG's frame header can sit behind large EXIF blocks; read this far before giving up.
pub(crate) const SNIFF_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// Why an uploaded object was refused at confirm; each is a stable error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    SizeMismatch,
    TypeMismatch,
    InvalidImage,
    ChecksumMismatch,
    ImageTooLarge,
}

impl Rejection {
    pub fn code(self) -> &'static str {
        match self {
            Rejection::SizeMismatch => "size_mismatch",
            Rejection::TypeMismatch => "type_mismatch",
            Rejection::InvalidImage => "invalid_image",
            Rejection::ChecksumMismatch => "checksum_mismatch",
            Rejection::ImageTooLarge => "image_too_large",
        }
    }

    pub fn from_code(code: &str) -> Self {
        match code {
            "size_mismatch" => Rejection::SizeMismatch,
            "type_mismatch" => Rejection::TypeMismatch,
            "checksum_mismatch" => Rejection::ChecksumMismatch,
            "image_too_large" => Rejection::ImageTooLarge,
            _ => Rejection::InvalidImage,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Rejection::SizeMismatch => "the uploaded object's size differs from the declared size",
            Rejection::TypeMismatch => {
                "the uploaded bytes are a different image type than declared"
            }
            Rejection::InvalidImage => {
                "the uploaded bytes are not a readable image of an allowed type"
            }
            Rejection::ChecksumMismatch => {
                "the uploaded bytes do not match the declared SHA-256 checksum"
            }
            Rejection::ImageTooLarge => "the image's pixel dimensions exceed the service's limit",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("size must be at least 1 byte")]
    EmptyFile,
    #[error("the file is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("invalid pagination cursor")]
    InvalidCursor,
    #[error("upload not found")]
    NotFound,
    #[error("no image found")]
    NoImage,
    #[error("the request body could not be read: {0}")]
    BodyRead(String),
    #[error("the service is shutting down")]
    ShuttingDown,
    #[error("too many uploads at once; try again shortly")]
    Busy,
    /// The temporary file a large streamed upload waits in could not be written or read.
    #[error("the upload could not be held on local disk: {0}")]
    Spool(String),
    #[error("the object has not been uploaded yet")]
    NotUploaded,
    #[error("the upload is {0}")]
    Gone(&'static str),
    #[error("the upload is already completed")]
    AlreadyCompleted,
    #[error("the upload is not a multipart upload")]
    NotMultipart,
    #[error("{0}")]
    InvalidParts(String),
    #[error("parts {} are not uploaded", list_numbers(.0))]
    IncompleteUpload(Vec<i32>),
    #[error("{}", .0.message())]
    Rejected(Rejection),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{0}")]
    InvalidLink(String),
    /// The image_id has too many pending uploads (`too_many_pending`) or pending bytes
    /// (`pending_bytes_exceeded`); confirm or delete some first.
    #[error("this image_id has {what} pending, the most allowed; confirm or delete some first")]
    PendingCap { code: &'static str, what: String },
}

/// What a client asks for to upload one file directly.
#[derive(Debug, Clone)]
pub struct UploadRequest {
    pub image_id: String,
    pub filename: String,
    pub content_type: String,
    pub size: i64,
    pub checksum_sha256: Option<String>,
    /// `SHA256`: every part of a multipart upload carries its own checksum.
    pub checksum_algorithm: Option<String>,
    pub metadata: Option<BTreeMap<String, String>>,
    /// The upload link it is made with (from `authorize_new`).
    pub link_id: Option<Uuid>,
}

/// A pending upload and how to send its bytes.
#[derive(Debug, Clone)]
pub struct IssuedUpload {
    pub upload: UploadRow,
    /// The presigned PUT of a single-PUT upload; multipart parts are signed on request.
    pub put: Option<SignedRequest>,
}

/// An upload row with a URL that currently serves its object.
#[derive(Debug, Clone)]
pub struct UploadView {
    pub row: UploadRow,
    pub s3_url: Option<String>,
}

/// One page of completed uploads.
#[derive(Debug, Clone)]
pub struct ImagePage {
    pub images: Vec<UploadView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone)]
pub struct UploadService {
    db: Db,
    storage: Storage,
    config: Arc<Config>,
    /// Memory of streamed uploads, in KiB.
    stream_budget: Arc<Semaphore>,
    /// Temporary files of streamed uploads, kept for the next ones.
    spool_files: Arc<streamed::SpoolFiles>,
    /// Striped locks that serialize confirms of the same upload within this process.
    confirm_locks: Arc<[tokio::sync::Mutex<()>]>,
    /// Streamed uploads stop (and clean up) when the service shuts down.
    shutdown: Shutdown,
    /// The last health check: when, and its answer.
    health: Arc<tokio::sync::Mutex<Option<(std::time::Instant, bool)>>>,
    access: Arc<Access>,
}

impl UploadService {
    pub fn new(db: Db, storage: Storage, config: Arc<Config>, shutdown: Shutdown) -> Self {
        let budget_kib = usize::try_from(STREAM_BUFFER_BUDGET / 1024).unwrap_or(usize::MAX);
        Self {
            db,
            storage,
            stream_budget: Arc::new(Semaphore::new(budget_kib)),
            spool_files: Arc::default(),
            confirm_locks: (0..CONFIRM_LOCKS)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            shutdown,
            health: Arc::default(),
            access: Arc::new(Access::new(
                config.api_keys.clone(),
                config.secret_key.clone(),
            )),
            config,
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Validates the request, signs a PUT for exactly these bytes and records the upload as
    /// pending. Returning means the pending row is committed.
    pub async fn issue(&self, request: UploadRequest) -> Result<IssuedUpload, UploadError> {
        let image_id = ImageId::parse(&request.image_id)?;
        let format = ImageFormat::from_mime(&request.content_type)?;
        let filename = OriginalFilename::clean(&request.filename)?;
        check_extension(&filename, format)?;
        let size = u64::try_from(request.size)
            .ok()
            .filter(|s| *s >= 1)
            .ok_or(UploadError::EmptyFile)?;
        if size > self.config.max_upload_size {
            return Err(UploadError::TooLarge {
                limit: self.config.max_upload_size,
            });
        }
        let multipart = size > self.config.multipart_threshold;
        let part_checksums = match request.checksum_algorithm.as_deref() {
            None => false,
            Some(alg) if alg.eq_ignore_ascii_case("SHA256") => true,
            Some(_) => {
                return Err(UploadError::InvalidParts(
                    "checksum_algorithm must be SHA256".to_owned(),
                ));
            }
        };
        let checksum = request
            .checksum_sha256
            .as_deref()
            .map(Sha256Checksum::parse)
            .transpose()?;
        let metadata = request
            .metadata
            .map(Metadata::parse)
            .transpose()?
            .filter(|m| !m.is_empty());

        self.check_pending_caps(image_id.as_str(), size).await?;

        let id = Uuid::now_v7();
        let key = object_key(&image_id, id, format);
        let now = OffsetDateTime::now_utc();
        let mut fields = NewUpload {
            id,
            image_id: image_id.to_string(),
            method: "PUT",
            object_key: key.clone(),
            original_filename: filename.as_str().to_owned(),
            content_type: format.mime().to_owned(),
            declared_size: request.size,
            checksum_sha256: checksum.as_ref().map(|c| c.as_str().to_owned()),
            metadata: metadata.map(|m| m.to_json()),
            multipart_upload_id: None,
            part_size: None,
            part_count: None,
            checksum_algorithm: None,
            expires_at: self.url_expiry(now),
            link_id: request.link_id,
        };
        let put = if multipart {
            let plan = PartPlan::new(size, self.config.part_size, self.config.max_parts);
            let upload_id = self
                .storage
                .create_multipart(&key, format.mime(), part_checksums)
                .await?;
            fields.method = "MULTIPART";
            fields.multipart_upload_id = Some(upload_id);
            fields.part_size = Some(to_i64(plan.part_size));
            fields.part_count = Some(plan.part_count);
            fields.checksum_algorithm = part_checksums.then(|| "SHA256".to_owned());
            fields.expires_at = now + self.config.multipart_expires;
            None
        } else {
            let target = if self.config.conditional_writes {
                key.clone()
            } else {
                staging_key(&key)
            };
            Some(
                self.storage
                    .presign_put(&target, format.mime(), size, checksum.as_ref())
                    .await?,
            )
        };
        let s3_upload = fields.multipart_upload_id.clone();
        let row = match self.db.insert(db::new_pending(fields)).await {
            Ok(row) => row,
            Err(err) => {
                // No row, so no multipart upload either.
                if let Some(upload_id) = s3_upload {
                    let _ = self.storage.abort_multipart(&key, &upload_id).await;
                }
                return Err(err.into());
            }
        };
        tracing::info!(upload_id = %id, image_id = %image_id, state = state::PENDING, method = row.method, size, "upload issued");
        metrics::upload_transition(state::PENDING);
        Ok(IssuedUpload { upload: row, put })
    }

    /// Verifies the uploaded object and marks the upload completed. Idempotent: a completed
    /// upload returns its record, however many confirms race.
    pub async fn confirm(&self, id: Uuid) -> Result<UploadView, UploadError> {
        let row = self.db.find(id).await?.ok_or(UploadError::NotFound)?;
        if row.state != state::PENDING {
            return self.settled(row).await;
        }
        // Concurrent confirms of one upload take turns: the first does the work, the rest
        // find it settled.
        let _turn = self.confirm_lock(id).lock().await;
        let row = self.db.find_fresh(id).await?.ok_or(UploadError::NotFound)?;
        if row.state != state::PENDING {
            return self.settled(row).await;
        }
        match self.confirm_pending(&row).await {
            // Another replica's confirm moved or removed the staged object under us: the
            // row, or one more look at the store, tells what happened.
            Err(UploadError::Storage(StorageError::NoSuchKey)) => {
                let row = self.db.find_fresh(id).await?.ok_or(UploadError::NotFound)?;
                if row.state != state::PENDING {
                    return self.settled(row).await;
                }
                self.confirm_pending(&row).await
            }
            answer => answer,
        }
    }

    /// Confirm's work on a pending upload: complete a multipart upload, find the object,
    /// verify it, record it.
    async fn confirm_pending(&self, row: &UploadRow) -> Result<UploadView, UploadError> {
        let id = row.id;
        if row.method == "MULTIPART" {
            if OffsetDateTime::now_utc() > row.expires_at {
                self.expire(row).await?;
                return Err(UploadError::Gone(state::EXPIRED));
            }
            self.finish_multipart(row).await?;
        }

        let mut landing = self.landing_key(row);
        let mut found = self.storage.head(&landing).await?;
        if found.is_none() && landing != row.object_key {
            // Copied from its staging key by an earlier confirm that could not record it.
            landing = row.object_key.clone();
            found = self.storage.head(&landing).await?;
        }
        let Some(head) = found else {
            if OffsetDateTime::now_utc() > row.expires_at {
                self.expire(row).await?;
                return Err(UploadError::Gone(state::EXPIRED));
            }
            return Err(UploadError::NotUploaded);
        };

        match self.verify(row, &landing, &head).await? {
            Ok(verified) => {
                if landing != row.object_key {
                    // Out of reach of the URL that put it there, so it cannot be replaced.
                    self.storage.copy(&landing, &row.object_key).await?;
                    self.storage.delete(&landing).await?;
                }
                let s3_url = self.storage.object_url(&row.object_key).await?;
                let object = VerifiedObject {
                    file_size: to_i64(head.size),
                    content_type: verified.format.mime().to_owned(),
                    etag: head.etag.clone(),
                    checksum_sha256: row.checksum_sha256.clone(),
                    width: verified.width,
                    height: verified.height,
                    s3_url,
                    uploaded_at: OffsetDateTime::now_utc(),
                };
                if self.db.complete(id, &row.image_id, &object).await? {
                    tracing::info!(upload_id = %id, image_id = %row.image_id, state = state::COMPLETED, size = head.size, "upload completed");
                    metrics::upload_transition(state::COMPLETED);
                    metrics::bytes_confirmed(head.size);
                }
                // Whoever won a race (another replica, the sweeper), the row now says
                // what happened.
                let row = self.db.find_fresh(id).await?.ok_or(UploadError::NotFound)?;
                self.settled(row).await
            }
            Err(rejection) => {
                // The object goes first: a failed upload never leaves bytes behind.
                self.storage.delete(&landing).await?;
                if self
                    .db
                    .transition(
                        id,
                        &row.image_id,
                        state::PENDING,
                        state::FAILED,
                        Some(rejection.code()),
                    )
                    .await?
                {
                    tracing::info!(upload_id = %id, image_id = %row.image_id, state = state::FAILED, code = rejection.code(), "upload failed verification");
                    metrics::upload_transition(state::FAILED);
                    metrics::verification_failure(rejection.code());
                }
                Err(UploadError::Rejected(rejection))
            }
        }
    }

    /// `pending` -> `expired`, then its multipart upload aborted and any object deleted.
    /// Returns whether this call made the change.
    pub(super) async fn expire(&self, row: &UploadRow) -> Result<bool, UploadError> {
        // The state changes first: a confirm that wins the race keeps its object.
        if !self
            .db
            .transition(row.id, &row.image_id, state::PENDING, state::EXPIRED, None)
            .await?
        {
            return Ok(false);
        }
        tracing::info!(upload_id = %row.id, image_id = %row.image_id, state = state::EXPIRED, "upload expired");
        metrics::upload_transition(state::EXPIRED);
        self.remove_objects(row).await?;
        Ok(true)
    }

    /// The answer for an upload that is no longer pending.
    async fn settled(&self, row: UploadRow) -> Result<UploadView, UploadError> {
        match row.state.as_str() {
            state::COMPLETED => self.view(row).await,
            state::FAILED => {
                let code = row.failure_code.as_deref().unwrap_or("invalid_image");
                Err(UploadError::Rejected(Rejection::from_code(code)))
            }
            state::EXPIRED => Err(UploadError::Gone(state::EXPIRED)),
            state::ABORTED => Err(UploadError::Gone(state::ABORTED)),
            _ => Err(UploadError::Gone(state::DELETED)),
        }
    }

    /// Checks size, magic bytes, dimensions and checksum. `Ok(Err(_))` is a refusal of the
    /// object; `Err(_)` means the check itself could not run.
    async fn verify(
        &self,
        row: &UploadRow,
        key: &str,
        head: &ObjectHead,
    ) -> Result<Result<Verified, Rejection>, UploadError> {
        if head.size != u64::try_from(row.declared_size).unwrap_or(0) {
            return Ok(Err(Rejection::SizeMismatch));
        }
        let declared = ImageFormat::from_mime(&row.content_type).map_err(UploadError::Input)?;
        let prefix = self.storage.read_prefix(key, SNIFF_BYTES).await?;
        let mut inspected = self.inspect_image(&prefix, declared);
        if inspected == Err(Rejection::InvalidImage) && head.size > SNIFF_BYTES {
            // A JPEG's frame header can sit behind large EXIF blocks.
            let longer = self.storage.read_prefix(key, SNIFF_BYTES_MAX).await?;
            inspected = self.inspect_image(&longer, declared);
        }
        let (format, width, height) = match inspected {
            Ok(found) => found,
            Err(rejection) => return Ok(Err(rejection)),
        };
        let tail = self
            .storage
            .read_suffix(key, ImageFormat::TAIL_BYTES)
            .await?;
        if !format.is_whole(&prefix, &tail, head.size) {
            return Ok(Err(Rejection::InvalidImage));
        }
        if let Some(declared) = &row.checksum_sha256 {
            // Trust the store's own full-object checksum when it keeps one.
            let actual = match head.checksum_sha256.as_deref() {
                Some(stored) if !stored.contains('-') => stored.to_owned(),
                _ => self.storage.sha256(key).await?.as_str().to_owned(),
            };
            if &actual != declared {
                return Ok(Err(Rejection::ChecksumMismatch));
            }
        }
        Ok(Ok(Verified {
            format,
            width,
            height,
        }))
    }

    /// What an image's first bytes say: an allowed format, the one `expected`, with pixel
    /// dimensions within the limits (read from the header, never decoded).
    pub(crate) fn inspect_image(
        &self,
        head: &[u8],
        expected: ImageFormat,
    ) -> Result<(ImageFormat, i32, i32), Rejection> {
        let format = ImageFormat::sniff(head).ok_or(Rejection::InvalidImage)?;
        if format != expected {
            return Err(Rejection::TypeMismatch);
        }
        let size = imagesize::blob_size(head).map_err(|_| Rejection::InvalidImage)?;
        let (width, height) = (size.width as u64, size.height as u64);
        if width == 0 || height == 0 {
            return Err(Rejection::InvalidImage);
        }
        let max_side = u64::from(self.config.max_image_dimension);
        if width > max_side || height > max_side || width * height > self.config.max_image_pixels {
            return Err(Rejection::ImageTooLarge);
        }
        Ok((
            format,
            i32::try_from(width).unwrap_or(i32::MAX),
            i32::try_from(height).unwrap_or(i32::MAX),
        ))
    }

    pub async fn get(&self, id: Uuid) -> Result<UploadView, UploadError> {
        let row = self.db.find(id).await?.ok_or(UploadError::NotFound)?;
        self.view(row).await
    }

    /// Aborts a pending upload or deletes a completed one; repeating it is harmless.
    pub async fn delete(&self, id: Uuid) -> Result<(), UploadError> {
        let mut row = self.db.find(id).await?.ok_or(UploadError::NotFound)?;
        // Move the state first, then clean storage, and only for the state this call (or an
        // earlier one) set: a confirm that completes meanwhile keeps its object.
        for _ in 0..3 {
            let (from, to) = match row.state.as_str() {
                state::PENDING => (state::PENDING, state::ABORTED),
                state::COMPLETED => (state::COMPLETED, state::DELETED),
                _ => break,
            };
            if self
                .db
                .transition(id, &row.image_id, from, to, None)
                .await?
            {
                tracing::info!(upload_id = %id, image_id = %row.image_id, state = to, "upload {to}");
                metrics::upload_transition(to);
            }
            row = self.db.find_fresh(id).await?.ok_or(UploadError::NotFound)?;
        }
        match row.state.as_str() {
            // Cleanup is idempotent and redone on every DELETE, so a failed one is retried
            // by the next call (and by the sweeper).
            state::ABORTED | state::DELETED => self.remove_objects(&row).await,
            _ => Ok(()),
        }
    }

    /// Completed uploads of one image_id, newest first.
    pub async fn list(
        &self,
        image_id: &str,
        limit: u64,
        cursor: Option<&str>,
    ) -> Result<ImagePage, UploadError> {
        let image_id = ImageId::parse(image_id)?;
        let after = cursor.map(decode_cursor).transpose()?;
        let mut rows = self
            .db
            .completed_for_image(image_id.as_str(), after, limit + 1)
            .await?;
        let next_cursor = if rows.len() as u64 > limit {
            rows.truncate(limit as usize);
            rows.last().map(encode_cursor)
        } else {
            None
        };
        let mut images = Vec::with_capacity(rows.len());
        for row in rows {
            images.push(self.view(row).await?);
        }
        Ok(ImagePage {
            images,
            next_cursor,
        })
    }

    /// The newest completed upload of one image_id.
    pub async fn latest(&self, image_id: &str) -> Result<UploadView, UploadError> {
        let image_id = ImageId::parse(image_id)?;
        let row = self
            .db
            .latest_completed(image_id.as_str())
            .await?
            .ok_or(UploadError::NoImage)?;
        self.view(row).await
    }

    /// A completed upload's URL is made fresh, so presigned GETs never go stale.
    async fn view(&self, row: UploadRow) -> Result<UploadView, UploadError> {
        let s3_url = if row.state == state::COMPLETED {
            Some(self.storage.object_url(&row.object_key).await?)
        } else {
            None
        };
        Ok(UploadView { row, s3_url })
    }

    /// When a URL signed now stops working. Signatures carry whole seconds, so the expiry
    /// counts from the start of this second: never later than the store's.
    pub(crate) fn url_expiry(&self, now: OffsetDateTime) -> OffsetDateTime {
        // A microsecond short of the whole second: SQLite keeps timestamps as text with
        // trailing zeros trimmed, and a bare `...:05Z` would sort after `...:05.3Z`.
        now.replace_nanosecond(0).unwrap_or(now) + self.config.presign_expires
            - Duration::from_micros(1)
    }

    /// Where a client's bytes land: the object key, or its staging key when the store
    /// cannot refuse an overwrite (`S3_CONDITIONAL_WRITES=false`) and the upload is a PUT.
    fn landing_key(&self, row: &UploadRow) -> String {
        if row.method == "PUT" && !self.config.conditional_writes {
            staging_key(&row.object_key)
        } else {
            row.object_key.clone()
        }
    }

    /// Removes whatever an unfinished or deleted upload may have left in storage.
    async fn remove_objects(&self, row: &UploadRow) -> Result<(), UploadError> {
        if let Some(upload_id) = &row.multipart_upload_id {
            self.storage
                .abort_multipart(&row.object_key, upload_id)
                .await?;
        }
        let landing = self.landing_key(row);
        if landing != row.object_key {
            self.storage.delete(&landing).await?;
        }
        self.storage.delete(&row.object_key).await?;
        Ok(())
    }

    fn confirm_lock(&self, id: Uuid) -> &tokio::sync::Mutex<()> {
        let stripe = (id.as_u128() % CONFIRM_LOCKS as u128) as usize;
        &self.confirm_locks[stripe]
    }

    /// `MAX_PENDING_PER_IMAGE` and `MAX_PENDING_BYTES_PER_IMAGE`: a new upload of `size`
    /// bytes must fit beside the image_id's pending ones.
    async fn check_pending_caps(&self, image_id: &str, size: u64) -> Result<(), UploadError> {
        let (max_uploads, max_bytes) = (
            self.config.max_pending_per_image,
            self.config.max_pending_bytes_per_image,
        );
        if max_uploads == 0 && max_bytes == 0 {
            return Ok(());
        }
        let (uploads, bytes) = self.db.pending_usage(image_id).await?;
        if max_uploads > 0 && uploads >= max_uploads {
            return Err(UploadError::PendingCap {
                code: "too_many_pending",
                what: format!("{uploads} uploads"),
            });
        }
        if max_bytes > 0 && bytes.saturating_add(size) > max_bytes {
            return Err(UploadError::PendingCap {
                code: "pending_bytes_exceeded",
                what: format!("{bytes} bytes"),
            });
        }
        Ok(())
    }

    /// Readiness: the database and the bucket answer within `limit`, and what the bucket's
    /// CORS rules let a browser do (a warning in the log when uploads from a page cannot
    /// work).
    pub async fn readiness(&self, limit: Duration) -> Readiness {
        // Each check has the whole limit, so a hanging bucket does not fail the database.
        let database = async {
            matches!(
                tokio::time::timeout(limit, self.db.check()).await,
                Ok(Ok(()))
            )
        };
        let bucket_and_cors = async {
            match tokio::time::timeout(limit, self.storage.check()).await {
                Ok(Ok(())) => {
                    let cors = tokio::time::timeout(limit, self.storage.browser_cors()).await;
                    (true, cors.ok().and_then(Result::ok))
                }
                _ => (false, None),
            }
        };
        let (database, (bucket, cors)) = tokio::join!(database, bucket_and_cors);
        if let Some(cors @ (BucketCors::EtagNotExposed | BucketCors::NoRules)) = cors {
            tracing::warn!(
                cors = cors.as_str(),
                "the bucket's CORS rules do not let a browser PUT and read ETag; \
                 uploads from the page will fail (see the README's bucket CORS section)"
            );
        }
        Readiness {
            database,
            bucket,
            cors,
        }
    }

    /// Database and bucket both answer within `limit`. Checked at most once a second:
    /// requests meanwhile share the last answer, so `/health` stays cheap under load and an
    /// outage still shows within a second.
    pub async fn healthy(&self, limit: Duration) -> bool {
        let mut last = self.health.lock().await;
        if let Some((at, healthy)) = *last
            && at.elapsed() < HEALTH_TTL
        {
            return healthy;
        }
        let checks = async { self.db.check().await.is_ok() && self.storage.check().await.is_ok() };
        let healthy = tokio::time::timeout(limit, checks).await.unwrap_or(false);
        *last = Some((std::time::Instant::now(), healthy));
        healthy
    }
}

struct Verified {
    format: ImageFormat,
    width: i32,
    height: i32,
}

/// The extension must be an allowed one and name the same format as the content type.
fn check_extension(filename: &OriginalFilename, format: ImageFormat) -> Result<(), InputError> {
    match filename.format() {
        Ok(claimed) if claimed == format => Ok(()),
        Ok(_) => Err(InputError::ExtensionMismatch),
        Err(err) => Err(err),
    }
}

/// Where a PUT lands before confirm copies it to its key, when the store cannot refuse
/// overwrites: `staging/<image_id>/<uuid>.<ext>`.
pub fn staging_key(object_key: &str) -> String {
    format!(
        "{STAGING_PREFIX}{}",
        object_key.strip_prefix(KEY_PREFIX).unwrap_or(object_key)
    )
}

/// Keys are the server's own: never derived from the client's file name.
pub fn object_key(image_id: &ImageId, id: Uuid, format: ImageFormat) -> String {
    format!("{KEY_PREFIX}{image_id}/{id}.{}", format.extension())
}

fn list_numbers(numbers: &[i32]) -> String {
    numbers
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn encode_cursor(row: &UploadRow) -> String {
    let at = row
        .uploaded_at
        .map_or(0, OffsetDateTime::unix_timestamp_nanos);
    URL_SAFE_NO_PAD.encode(format!("{at}:{}", row.id))
}

fn decode_cursor(raw: &str) -> Result<(OffsetDateTime, Uuid), UploadError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(raw)
        .map_err(|_| UploadError::InvalidCursor)?;
    let text = String::from_utf8(bytes).map_err(|_| UploadError::InvalidCursor)?;
    let (at, id) = text.split_once(':').ok_or(UploadError::InvalidCursor)?;
    let at = at
        .parse::<i128>()
        .ok()
        .and_then(|n| OffsetDateTime::from_unix_timestamp_nanos(n).ok())
        .ok_or(UploadError::InvalidCursor)?;
    let id = Uuid::parse_str(id).map_err(|_| UploadError::InvalidCursor)?;
    Ok((at, id))
}
