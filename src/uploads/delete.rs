//! Delete: abort a pending upload or delete a completed one, then clean storage.

use uuid::Uuid;

use super::{UploadError, UploadMethod, UploadService, UploadState};
use crate::db::admin::NewAudit;
use crate::db::{Change, UploadRow};

impl UploadService {
    /// Aborts a pending upload or deletes a completed one; repeating it is harmless.
    pub async fn delete(&self, id: Uuid) -> Result<(), UploadError> {
        self.delete_audited(id, None).await
    }

    /// `delete`, by an operator: `audit` is recorded with the change, or alone when there
    /// was none left to make.
    pub(super) async fn delete_audited(
        &self,
        id: Uuid,
        mut audit: Option<&NewAudit>,
    ) -> Result<(), UploadError> {
        let mut row = self.row(id).await?;
        // Move the state first, then clean storage, and only for the state this call (or an
        // earlier one) set: a confirm that completes meanwhile keeps its object.
        for _ in 0..3 {
            let change = match row.state {
                UploadState::Pending => Change::Abort,
                UploadState::Completed => Change::Delete,
                UploadState::Failed
                | UploadState::Expired
                | UploadState::Aborted
                | UploadState::Deleted => break,
            };
            self.change_with(&row, change, audit.take()).await?;
            row = self.fresh_row(id).await?;
        }
        if let Some(entry) = audit {
            self.db.audit(entry).await?;
        }
        match row.state {
            // Cleanup is idempotent and redone on every DELETE, so a failed one is retried
            // by the next call (and by the sweeper).
            UploadState::Aborted => self.remove_objects(&row).await,
            UploadState::Deleted => {
                self.remove_objects(&row).await?;
                self.remove_variants(&row).await
            }
            UploadState::Pending
            | UploadState::Completed
            | UploadState::Failed
            | UploadState::Expired => Ok(()),
        }
    }

    /// Removes whatever an unfinished or deleted upload may have left in storage.
    pub(super) async fn remove_objects(&self, row: &UploadRow) -> Result<(), UploadError> {
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
        if row.method == UploadMethod::Tus {
            self.remove_spool(row.id).await?;
        }
        Ok(())
    }
}
