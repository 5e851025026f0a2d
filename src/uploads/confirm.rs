//! Confirm: find the client's object, verify it, and record it completed, or refuse it and
//! remove it. Idempotent: a settled upload answers with what it became.

use bytes::Bytes;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use super::transition::{Recorded, verified_object};
use super::verify::{self, SNIFF_BYTES, SNIFF_BYTES_MAX, Sample, TAIL_BYTES, VerifiedImage};
use super::{Rejection, Upload, UploadError, UploadService, UploadState};
use crate::db::{Change, UploadRow};
use crate::domain::{ImageFormat, Sha256Checksum};
use crate::storage::{ObjectStart, StorageError};

impl UploadService {
    /// Verifies the uploaded object and marks the upload completed. Idempotent: a completed
    /// upload returns its record, however many confirms race.
    pub async fn confirm(&self, id: Uuid) -> Result<Upload, UploadError> {
        let row = self.row(id).await?;
        if row.state != UploadState::Pending {
            return self.settled(row).await;
        }
        // Concurrent confirms of one upload take turns: the first does the work, the rest
        // find it settled. One that had to wait reads the row again; one that did not may
        // still hold a row another confirm settled just before, and then finds that out
        // when its change finds the upload already moved.
        let lock = self.confirm_lock(id);
        let (_turn, row) = match lock.try_lock() {
            Ok(turn) => (turn, row),
            Err(_) => {
                let turn = lock.lock().await;
                let row = self.fresh_row(id).await?;
                if row.state != UploadState::Pending {
                    return self.settled(row).await;
                }
                (turn, row)
            }
        };
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
        // A multipart upload, or a tus upload larger than one part.
        if row.multipart_upload_id.is_some() {
            self.expire_if_past(row).await?;
            self.finish_multipart(row).await?;
        }
        let Some((landing, start)) = self.find_landed(row).await? else {
            self.expire_if_past(row).await?;
            return Err(UploadError::NotUploaded);
        };
        self.confirm_found(row, &landing, start).await
    }

    /// Verifies the object found at `landing` and records the upload completed, or refuses
    /// it: the object is deleted, the upload failed. A single PUT's confirm makes two
    /// storage requests (the ranged read `find_landed` made, and the copy), one more for a
    /// format whose last bytes are checked, one more for a header past the first read.
    pub(super) async fn confirm_found(
        &self,
        row: &UploadRow,
        landing: &str,
        start: ObjectStart,
    ) -> Result<Upload, UploadError> {
        let (size, etag) = (start.head.size, start.head.etag.clone());
        match self.verify_stored(row, landing, start).await? {
            Ok(image) => {
                if landing != row.object_key {
                    // Out of reach of the URL that put it there: the key it is served at is
                    // only ever written here, with exactly the bytes just verified. The
                    // staged copy is no longer needed, and goes in a batch with others.
                    self.storage
                        .copy(landing, &row.object_key, etag.as_deref())
                        .await?;
                    self.storage.discard(landing.to_owned());
                }
                // The event's URL is the service's own, never one a request's Host chose.
                let s3_url = self.storage.shared_object_url(&row.object_key).await?;
                let object =
                    verified_object(image, size, etag, row.checksum_sha256.clone(), s3_url);
                match self
                    .record_completed(Recorded::Pending(row), object)
                    .await?
                {
                    Some(after) => self.view(after).await,
                    // Another replica, or the sweeper, got there first: the row says what
                    // happened.
                    None => self.settled(self.fresh_row(row.id).await?).await,
                }
            }
            Err(rejection) => {
                // The object goes first: a failed upload never leaves bytes behind.
                self.storage.delete(landing).await?;
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

    /// Where the client's object is, with its first bytes and what the store says of it:
    /// at its landing key, or at its own key when an earlier confirm copied it there but
    /// could not record it. One ranged read per key looked at.
    pub(super) async fn find_landed(
        &self,
        row: &UploadRow,
    ) -> Result<Option<(String, ObjectStart)>, UploadError> {
        let landing = self.landing_key(row);
        if let Some(start) = self.storage.read_start(&landing, SNIFF_BYTES).await? {
            return Ok(Some((landing, start)));
        }
        if landing != row.object_key
            && let Some(start) = self
                .storage
                .read_start(&row.object_key, SNIFF_BYTES)
                .await?
        {
            return Ok(Some((row.object_key.clone(), start)));
        }
        Ok(None)
    }

    /// Runs verification on the stored object from its first bytes (`start`), reading more
    /// only when it must: the rest of a header that lies past them, the last bytes of a
    /// format that ends with a marker, the whole object for a declared checksum the store
    /// keeps no full-object value of, or for `VERIFY_DECODE`. `Ok(Err(_))` is a refusal of
    /// the object; `Err(_)` means the check itself could not run.
    pub(super) async fn verify_stored(
        &self,
        row: &UploadRow,
        key: &str,
        start: ObjectStart,
    ) -> Result<Result<VerifiedImage, Rejection>, UploadError> {
        let ObjectStart {
            head,
            bytes: mut first,
        } = start;
        let declared = ImageFormat::from_mime(&row.content_type)?;
        let declared_size = u64::try_from(row.declared_size).ok();
        // The size needs no bytes: refuse before looking at any.
        if declared_size != Some(head.size) {
            return Ok(Err(Rejection::SizeMismatch));
        }
        let limits = self.image_limits();
        let found = verify::inspect_header(&first, declared, limits);
        if verify::wants_longer_head(&found, &first, head.size) {
            let more = self
                .storage
                .read_between(key, first.len() as u64, SNIFF_BYTES_MAX)
                .await?;
            first = [first, more].concat().into();
        }
        let whole = first.len() as u64 >= head.size;
        let last = if whole {
            first.slice(first.len().saturating_sub(TAIL_BYTES as usize)..)
        } else if declared.needs_tail() {
            self.storage.read_suffix(key, TAIL_BYTES).await?
        } else {
            // Not looked at for this format (nor for any other, when the sniffed format
            // differs from the declared one: that is refused first).
            Bytes::new()
        };
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
            let actual = if whole {
                Sha256Checksum::from_digest(&Sha256::digest(&first))
                    .as_str()
                    .to_owned()
            } else {
                self.stored_sha256(key).await?
            };
            if &actual != declared {
                return Ok(Err(Rejection::ChecksumMismatch));
            }
        }
        if self.decodes(head.size) {
            let whole = async {
                if whole {
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

    /// An object's SHA-256: the store's own full-object checksum when it keeps one (a
    /// ranged read does not carry it), else the object read through.
    async fn stored_sha256(&self, key: &str) -> Result<String, UploadError> {
        let stored = self
            .storage
            .head(key)
            .await?
            .and_then(|h| h.checksum_sha256);
        Ok(match stored {
            Some(stored) if !stored.contains('-') => stored,
            _ => self.storage.sha256(key).await?.as_str().to_owned(),
        })
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
