//! Presigned multipart uploads: the plan of parts, signing part URLs, listing what the
//! store holds, and completing from the store's own list.

use std::collections::BTreeMap;

use time::OffsetDateTime;
use uuid::Uuid;

use super::{UploadError, UploadMethod, UploadService, UploadState};
use crate::db::UploadRow;
use crate::domain::Sha256Checksum;
use crate::storage::{SignedRequest, StorageError, StoredPart};

pub use upload_broker_types::PartPlan;

/// Most part numbers one signing call accepts.
pub const MAX_PARTS_PER_CALL: usize = 100;

/// The plan a multipart upload's row records.
pub(super) trait RecordedPlan: Sized {
    fn of(row: &UploadRow) -> Option<Self>;
}

impl RecordedPlan for PartPlan {
    fn of(row: &UploadRow) -> Option<Self> {
        Some(Self {
            size: u64::try_from(row.declared_size).ok()?,
            part_size: u64::try_from(row.part_size?).ok()?,
            part_count: row.part_count?,
        })
    }
}

/// Presigned URLs for some parts of one upload.
#[derive(Debug, Clone)]
pub struct SignedParts {
    pub parts: Vec<(i32, u64, SignedRequest)>,
    pub expires_at: OffsetDateTime,
}

impl UploadService {
    /// The pending multipart upload `id`, its S3 upload id and its plan.
    async fn pending_multipart(
        &self,
        id: Uuid,
    ) -> Result<(UploadRow, String, PartPlan), UploadError> {
        let row = self.row(id).await?;
        match row.state {
            UploadState::Pending if OffsetDateTime::now_utc() > row.expires_at => {
                self.expire(&row).await?;
                return Err(UploadError::Gone(UploadState::Expired));
            }
            UploadState::Pending => {}
            UploadState::Completed => return Err(UploadError::AlreadyCompleted),
            state @ (UploadState::Expired
            | UploadState::Aborted
            | UploadState::Failed
            | UploadState::Deleted) => return Err(UploadError::Gone(state)),
        }
        // A tus upload's parts are the service's to send.
        let (Some(upload_id), Some(plan), false) = (
            row.multipart_upload_id.clone(),
            PartPlan::of(&row),
            row.method == UploadMethod::Tus,
        ) else {
            return Err(UploadError::NotMultipart);
        };
        Ok((row, upload_id, plan))
    }

    /// Signs UploadPart URLs, each for its part's exact length (and declared checksum when
    /// the upload asked for part checksums). Signing a part again gives a fresh URL.
    pub async fn sign_parts(
        &self,
        id: Uuid,
        part_numbers: &[i64],
        checksums: &BTreeMap<String, String>,
    ) -> Result<SignedParts, UploadError> {
        if part_numbers.is_empty() || part_numbers.len() > MAX_PARTS_PER_CALL {
            return Err(UploadError::InvalidParts(format!(
                "part_numbers must list 1 to {MAX_PARTS_PER_CALL} parts"
            )));
        }
        let (row, upload_id, plan) = self.pending_multipart(id).await?;
        let wants_checksums = row.checksum_algorithm.is_some();
        let mut numbers: Vec<i32> = Vec::with_capacity(part_numbers.len());
        for &n in part_numbers {
            match i32::try_from(n) {
                Ok(n) if (1..=plan.part_count).contains(&n) => numbers.push(n),
                _ => {
                    return Err(UploadError::InvalidParts(format!(
                        "part number {n} is outside the plan (1 to {})",
                        plan.part_count
                    )));
                }
            }
        }
        numbers.sort_unstable();
        numbers.dedup();

        let mut parts = Vec::with_capacity(numbers.len());
        for n in numbers {
            let checksum = match checksums.get(&n.to_string()) {
                Some(raw) => Some(Sha256Checksum::parse(raw)?),
                None if wants_checksums => {
                    return Err(UploadError::InvalidParts(format!(
                        "part {n} needs its checksum in checksums_sha256 (the upload declared SHA256)"
                    )));
                }
                None => None,
            };
            let len = plan.part_len(n);
            let signed = self
                .storage
                .presign_part(&row.object_key, &upload_id, n, len, checksum.as_ref())
                .await?;
            parts.push((n, len, signed));
        }
        Ok(SignedParts {
            parts,
            expires_at: self.url_expiry(OffsetDateTime::now_utc()),
        })
    }

    /// The parts the store holds so far, from the store itself.
    pub async fn uploaded_parts(
        &self,
        id: Uuid,
    ) -> Result<(PartPlan, Vec<StoredPart>), UploadError> {
        let (row, upload_id, plan) = self.pending_multipart(id).await?;
        match self.storage.list_parts(&row.object_key, &upload_id).await {
            Ok(parts) => Ok((plan, parts)),
            // Completed by a confirm that has not recorded it yet, or aborted in the store.
            Err(StorageError::NoSuchUpload) => Err(UploadError::NotUploaded),
            Err(err) => Err(err.into()),
        }
    }

    /// Completes the multipart upload from the store's own list of parts, after checking
    /// that every planned part is there with its planned size.
    pub(super) async fn finish_multipart(&self, row: &UploadRow) -> Result<(), UploadError> {
        let (Some(upload_id), Some(plan)) = (row.multipart_upload_id.as_deref(), PartPlan::of(row))
        else {
            return Err(UploadError::NotMultipart);
        };
        // Completed in the store by an earlier confirm that did not get to record it.
        if self
            .storage
            .head(&row.object_key)
            .await?
            .is_some_and(|head| Some(head.size) == u64::try_from(row.declared_size).ok())
        {
            return Ok(());
        }
        let parts = match self.storage.list_parts(&row.object_key, upload_id).await {
            Ok(parts) => parts,
            // Already completed (by an earlier confirm that did not get to record it); the
            // object is verified next like any other.
            Err(StorageError::NoSuchUpload) => return Ok(()),
            Err(err) => return Err(err.into()),
        };
        let by_number: BTreeMap<i32, &StoredPart> =
            parts.iter().map(|p| (p.part_number, p)).collect();
        let missing: Vec<i32> = (1..=plan.part_count)
            .filter(|n| by_number.get(n).is_none_or(|p| p.size != plan.part_len(*n)))
            .collect();
        if missing.len() == usize::try_from(plan.part_count).unwrap_or(usize::MAX) {
            return Err(UploadError::NotUploaded);
        }
        if !missing.is_empty() {
            return Err(UploadError::IncompleteUpload(missing));
        }
        let planned: Vec<StoredPart> = (1..=plan.part_count)
            .filter_map(|n| by_number.get(&n).map(|p| (*p).clone()))
            .collect();
        match self
            .storage
            .complete_multipart(&row.object_key, upload_id, &planned)
            .await
        {
            Ok(_) | Err(StorageError::NoSuchUpload) => {
                tracing::info!(upload_id = %row.id, image_id = %row.image_id, parts = plan.part_count, "multipart upload assembled");
                Ok(())
            }
            Err(err) => Err(err.into()),
        }
    }
}
