//! Confirm: find the client's object, verify it, and record it completed, or refuse it and
//! remove it. Idempotent: a settled upload answers with what it became.

use time::OffsetDateTime;
use uuid::Uuid;

use super::transition::{Recorded, verified_object};
use super::verify::{self, SNIFF_BYTES, SNIFF_BYTES_MAX, Sample, TAIL_BYTES, VerifiedImage};
use super::{Rejection, Upload, UploadError, UploadMethod, UploadService, UploadState};
use crate::db::{Change, UploadRow};
use crate::domain::ImageFormat;
use crate::storage::{ObjectHead, StorageError};

impl UploadService {
    /// Verifies the uploaded object and marks the upload completed. Idempotent: a completed
    /// upload returns its record, however many confirms race.
    pub async fn confirm(&self, id: Uuid) -> Result<Upload, UploadError> {
        let row = self.row(id).await?;
        if row.state != UploadState::Pending {
            return self.settled(row).await;
        }
        // Concurrent confirms of one upload take turns: the first does the work, the rest
        // find it settled.
        let _turn = self.confirm_lock(id).lock().await;
        let row = self.fresh_row(id).await?;
        if row.state != UploadState::Pending {
            return self.settled(row).await;
        }
        match self.confirm_pending(&row).await {
            // Another replica's confirm moved or removed the staged object under us: the
            // row, or one more look at the store, tells what happened.
            Err(UploadError::Storage(StorageError::NoSuchKey)) => {
                let row = self.fresh_row(id).await?;
                if row.state != UploadState::Pending {
                    return self.settled(row).await;
                }
                self.confirm_pending(&row).await
            }
            answer => answer,
        }
    }

    /// Confirm's work on a pending upload: complete a multipart upload, find the object,
    /// verify it, record it.
    async fn confirm_pending(&self, row: &UploadRow) -> Result<Upload, UploadError> {
        if row.method == UploadMethod::Multipart {
            self.expire_if_past(row).await?;
            self.finish_multipart(row).await?;
        }
        let Some((landing, head)) = self.find_landed(row).await? else {
            self.expire_if_past(row).await?;
            return Err(UploadError::NotUploaded);
        };
        self.confirm_found(row, &landing, &head).await
    }

    /// Verifies the object found at `landing` and records the upload completed, or refuses
    /// it: the object is deleted, the upload failed.
    pub(super) async fn confirm_found(
        &self,
        row: &UploadRow,
        landing: &str,
        head: &ObjectHead,
    ) -> Result<Upload, UploadError> {
        let landing = landing.to_owned();
        match self.verify_stored(row, &landing, head).await? {
            Ok(image) => {
                if landing != row.object_key {
                    // Out of reach of the URL that put it there: the key it is served at is
                    // only ever written here, with exactly the bytes just verified.
                    self.storage
                        .copy(&landing, &row.object_key, head.etag.as_deref())
                        .await?;
                    self.storage.delete(&landing).await?;
                }
                let s3_url = self.storage.object_url(&row.object_key).await?;
                let object = verified_object(
                    image,
                    head.size,
                    head.etag.clone(),
                    row.checksum_sha256.clone(),
                    s3_url,
                );
                self.record_completed(Recorded::Pending(row), object)
                    .await?;
                // Whoever won a race (another replica, the sweeper), the row now says
                // what happened.
                let row = self.fresh_row(row.id).await?;
                self.settled(row).await
            }
            Err(rejection) => {
                // The object goes first: a failed upload never leaves bytes behind.
                self.storage.delete(&landing).await?;
                self.change(row, Change::Fail(rejection.code())).await?;
                Err(UploadError::Rejected(rejection))
            }
        }
    }

    /// Expires a pending upload whose time is up, answering `410 expired`.
    async fn expire_if_past(&self, row: &UploadRow) -> Result<(), UploadError> {
        if OffsetDateTime::now_utc() > row.expires_at {
            self.expire(row).await?;
            return Err(UploadError::Gone(UploadState::Expired));
        }
        Ok(())
    }

    /// Where the client's object is and what the store says of it: at its landing key, or
    /// at its own key when an earlier confirm copied it there but could not record it.
    pub(super) async fn find_landed(
        &self,
        row: &UploadRow,
    ) -> Result<Option<(String, ObjectHead)>, UploadError> {
        let landing = self.landing_key(row);
        if let Some(head) = self.storage.head(&landing).await? {
            return Ok(Some((landing, head)));
        }
        if landing != row.object_key
            && let Some(head) = self.storage.head(&row.object_key).await?
        {
            return Ok(Some((row.object_key.clone(), head)));
        }
        Ok(None)
    }

    /// Reads what verification needs of the stored object and runs it, then the declared
    /// checksum. `Ok(Err(_))` is a refusal of the object; `Err(_)` means the check itself
    /// could not run.
    pub(super) async fn verify_stored(
        &self,
        row: &UploadRow,
        key: &str,
        head: &ObjectHead,
    ) -> Result<Result<VerifiedImage, Rejection>, UploadError> {
        let declared = ImageFormat::from_mime(&row.content_type)?;
        let declared_size = u64::try_from(row.declared_size).ok();
        // The size needs no bytes read: refuse before reading any.
        if declared_size != Some(head.size) {
            return Ok(Err(Rejection::SizeMismatch));
        }
        let limits = self.image_limits();
        let mut first = self.storage.read_prefix(key, SNIFF_BYTES).await?;
        let found = verify::inspect_header(&first, declared, limits);
        if verify::wants_longer_head(&found, &first, head.size) {
            first = self.storage.read_prefix(key, SNIFF_BYTES_MAX).await?;
        }
        let last = self.storage.read_suffix(key, TAIL_BYTES).await?;
        let sample = Sample {
            head: &first,
            tail: &last,
            size: head.size,
        };
        let image = match verify::verify(sample, declared, declared_size, limits) {
            Ok(image) => image,
            Err(rejection) => return Ok(Err(rejection)),
        };
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
        if self.decodes(head.size) {
            let whole = async {
                if first.len() as u64 == head.size {
                    return Ok(first);
                }
                Ok(self.storage.read_prefix(key, head.size).await?)
            };
            if let Err(rejection) = self.decode_whole(declared, whole).await? {
                return Ok(Err(rejection));
            }
        }
        Ok(Ok(image))
    }

    /// `pending` -> `expired`, then its multipart upload aborted and any object deleted.
    /// Returns whether this call made the change.
    pub(super) async fn expire(&self, row: &UploadRow) -> Result<bool, UploadError> {
        // The state changes first: a confirm that wins the race keeps its object.
        if !self.change(row, Change::Expire).await? {
            return Ok(false);
        }
        self.remove_objects(row).await?;
        Ok(true)
    }

    /// The answer for an upload that is no longer pending.
    pub(super) async fn settled(&self, row: UploadRow) -> Result<Upload, UploadError> {
        match row.state {
            UploadState::Completed => self.view(row).await,
            UploadState::Failed => {
                let code = row.failure_code.as_deref().unwrap_or_default();
                let rejection = Rejection::from_code(code).ok_or_else(|| {
                    UploadError::Corrupt(format!("upload {} failed with code {code:?}", row.id))
                })?;
                Err(UploadError::Rejected(rejection))
            }
            state @ (UploadState::Expired | UploadState::Aborted | UploadState::Deleted) => {
                Err(UploadError::Gone(state))
            }
            // Only reached when a caller hands a pending row; it has nothing settled to say.
            UploadState::Pending => Err(UploadError::NotUploaded),
        }
    }

    pub(super) fn confirm_lock(&self, id: Uuid) -> &tokio::sync::Mutex<()> {
        let stripe = (id.as_u128() % self.confirm_locks.len() as u128) as usize;
        &self.confirm_locks[stripe]
    }
}
