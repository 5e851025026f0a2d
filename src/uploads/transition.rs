//! The lifecycle's side of the state-change seam: every change of state goes through
//! `change` (or `record_completed` for uploads that arrive completed), which commits it
//! through `db::transitions` and then logs one line and counts it. Nothing else moves an
//! upload from one state to another.

use time::OffsetDateTime;
use uuid::Uuid;

use super::verify::VerifiedImage;
use super::{UploadError, UploadService, UploadState};
use crate::db::{Change, UploadRow, VerifiedObject};
use crate::metrics;

/// A verified object about to be counted, and how it is recorded.
pub(super) struct Completion {
    pub id: Uuid,
    pub image_id: String,
    pub size: u64,
    pub image: VerifiedImage,
    pub etag: Option<String>,
    pub checksum_sha256: Option<String>,
    pub s3_url: String,
    pub recorded: Recorded,
}

/// Where a completed upload's record comes from.
pub(super) enum Recorded {
    /// Its pending row moves to `completed` (confirm).
    Pending,
    /// A row is written completed (the legacy upload), from this pending-shaped one.
    New(Box<entity::upload::ActiveModel>),
}

impl UploadService {
    /// Makes `change` to `row` if it is still in the state the change starts from, then logs
    /// and counts it. Returns whether this call made it.
    pub(super) async fn change(
        &self,
        row: &UploadRow,
        change: Change,
    ) -> Result<bool, UploadError> {
        let changed = self.db.change(row.id, &row.image_id, &change).await?;
        if changed {
            self.changed(row.id, &row.image_id, &change, None);
        }
        Ok(changed)
    }

    /// Records a verified object as completed, through whichever path it came. Returns what
    /// was recorded, or `None` when another call got there first (a race of confirms).
    pub(super) async fn record_completed(
        &self,
        done: Completion,
    ) -> Result<Option<VerifiedObject>, UploadError> {
        let uploaded_at = OffsetDateTime::now_utc();
        let object = VerifiedObject {
            file_size: super::to_i64(done.size),
            content_type: done.image.format.mime().to_owned(),
            etag: done.etag,
            checksum_sha256: done.checksum_sha256,
            width: done.image.width,
            height: done.image.height,
            s3_url: done.s3_url,
            uploaded_at,
        };
        let recorded = match done.recorded {
            Recorded::Pending => {
                let change = Change::Complete(Box::new(object.clone()));
                self.db.change(done.id, &done.image_id, &change).await?
            }
            Recorded::New(row) => {
                self.db
                    .insert_completed(completed_row(*row, &object))
                    .await?;
                true
            }
        };
        if !recorded {
            return Ok(None);
        }
        let change = Change::Complete(Box::new(object));
        self.changed(done.id, &done.image_id, &change, Some(done.size));
        let Change::Complete(object) = change else {
            return Ok(None);
        };
        Ok(Some(*object))
    }

    /// One log line and the counters for a change that committed.
    fn changed(&self, id: Uuid, image_id: &str, change: &Change, size: Option<u64>) {
        let state = change.to();
        match change {
            Change::Fail(code) => {
                tracing::info!(upload_id = %id, image_id, %state, code, "upload failed verification");
                metrics::verification_failure(code);
            }
            Change::Complete(_) => {
                tracing::info!(upload_id = %id, image_id, %state, size, "upload completed");
                metrics::bytes_confirmed(size.unwrap_or(0));
            }
            Change::Expire | Change::Abort | Change::Delete => {
                tracing::info!(upload_id = %id, image_id, %state, "upload {state}");
            }
        }
        metrics::upload_transition(state);
    }
}

/// A legacy upload's row, completed with what verification found.
pub(super) fn completed_row(
    mut row: entity::upload::ActiveModel,
    object: &VerifiedObject,
) -> entity::upload::ActiveModel {
    use sea_orm::Set;
    row.state = Set(UploadState::Completed);
    row.file_size = Set(Some(object.file_size));
    row.content_type = Set(object.content_type.clone());
    row.etag = Set(object.etag.clone());
    row.checksum_sha256 = Set(object.checksum_sha256.clone());
    row.width = Set(Some(object.width));
    row.height = Set(Some(object.height));
    row.s3_url = Set(Some(object.s3_url.clone()));
    row.uploaded_at = Set(Some(object.uploaded_at));
    row.updated_at = Set(object.uploaded_at);
    row
}
