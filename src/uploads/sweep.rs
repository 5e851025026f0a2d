//! The sweeper: pending uploads whose URLs ran out are settled: completed when their bytes
//! are all stored and pass confirm's checks, failed (object deleted) when they are stored
//! and do not, `expired` otherwise (their multipart upload aborted, any object deleted);
//! objects and multipart uploads no upload owns are removed,
//! and so are the embedded store's own files that no open upload or object uses.
//! Every state change is conditional, so several replicas can sweep at once.

use std::time::{Duration, SystemTime};

use time::OffsetDateTime;
use uuid::Uuid;

use super::variants::{VARIANT_PREFIX, variant_owner};
use super::{UploadError, UploadService, UploadState};
use crate::db::UploadRow;
use crate::metrics;
use crate::shutdown::Shutdown;
use crate::storage::StorageError;

/// Pending uploads expired per database round.
const EXPIRE_BATCH: u64 = 200;
/// Every key the service makes starts with this.
pub const KEY_PREFIX: &str = "uploads/";
/// Staged PUTs (stores without conditional writes) wait here until confirm.
pub const STAGING_PREFIX: &str = "staging/";

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Pending uploads whose URLs ran out with all their bytes stored, verified and
    /// completed (no client confirmed them).
    pub completed: usize,
    /// The same, refused by verification: their objects deleted.
    pub failed: usize,
    pub expired: usize,
    pub orphan_objects_deleted: usize,
    pub multipart_aborted: usize,
    /// Files the embedded store kept for uploads and objects that are gone.
    pub internal_leftovers_removed: usize,
    /// tus spool folders of uploads that are no longer pending.
    pub tus_spools_removed: usize,
}

impl UploadService {
    /// One sweep. `margin` allows for clocks that disagree between the service, its
    /// clients and the store.
    pub async fn sweep(&self, margin: Duration) -> Result<SweepReport, UploadError> {
        let result = self.sweep_once(margin).await;
        match &result {
            Ok(report) => {
                metrics::sweep("ok");
                metrics::swept("expired_uploads", report.expired as u64);
                metrics::swept("completed_uploads", report.completed as u64);
                metrics::swept("failed_uploads", report.failed as u64);
                metrics::swept("orphan_objects", report.orphan_objects_deleted as u64);
                metrics::swept("orphan_multipart_uploads", report.multipart_aborted as u64);
                metrics::swept(
                    "internal_leftovers",
                    report.internal_leftovers_removed as u64,
                );
                metrics::swept("tus_spools", report.tus_spools_removed as u64);
            }
            Err(_) => metrics::sweep("error"),
        }
        result
    }

    async fn sweep_once(&self, margin: Duration) -> Result<SweepReport, UploadError> {
        let mut report = SweepReport::default();
        self.expire_pending(margin, &mut report).await?;
        // Objects and multipart uploads younger than a URL's lifetime may still be on
        // their way to being recorded (a PUT before its confirm, a streamed upload).
        let grace = self.config.limits.presign_expires + margin;
        let cutoff = SystemTime::now()
            .checked_sub(grace)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        self.remove_orphan_objects(cutoff, &mut report).await?;
        self.remove_orphan_variants(&mut report).await?;
        self.abort_orphan_multipart(cutoff, &mut report).await?;
        report.tus_spools_removed = self.remove_orphan_spools().await?;
        // Last, so it also takes what the steps above left (s3s-fs keeps a deleted
        // object's attributes).
        report.internal_leftovers_removed = self.storage.remove_internal_leftovers(cutoff).await?;
        Ok(report)
    }

    async fn expire_pending(
        &self,
        margin: Duration,
        report: &mut SweepReport,
    ) -> Result<(), UploadError> {
        let cutoff = OffsetDateTime::now_utc() - margin;
        loop {
            let rows = self.db.pending_expired_before(cutoff, EXPIRE_BATCH).await?;
            let full = rows.len() as u64 == EXPIRE_BATCH;
            for row in rows {
                match self.settle_stale(&row).await? {
                    Stale::Completed => report.completed += 1,
                    Stale::Failed => report.failed += 1,
                    Stale::Expired => report.expired += 1,
                    Stale::Moved => {}
                }
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// A pending upload whose URLs ran out, so no more bytes can come: completed when its
    /// bytes are all stored (a multipart upload's planned parts) and pass confirm's checks,
    /// failed (its object deleted) when they are stored and do not, expired otherwise. The
    /// client's own confirm, if one comes at the same time, takes turns with this one.
    async fn settle_stale(&self, row: &UploadRow) -> Result<Stale, UploadError> {
        let _turn = self.confirm_lock(row.id).lock().await;
        let row = self.fresh_row(row.id).await?;
        if row.state != UploadState::Pending {
            return Ok(Stale::Moved);
        }
        let expired = |made: bool| if made { Stale::Expired } else { Stale::Moved };
        if row.multipart_upload_id.is_some() {
            match self.finish_multipart(&row).await {
                Ok(()) => {}
                Err(UploadError::NotUploaded | UploadError::IncompleteUpload(_)) => {
                    return Ok(expired(self.expire(&row).await?));
                }
                Err(err) => return Err(err),
            }
        }
        let Some((landing, start)) = self.find_landed(&row).await? else {
            return Ok(expired(self.expire(&row).await?));
        };
        match self.confirm_found(&row, &landing, start).await {
            Ok(upload) if upload.state == UploadState::Completed => {
                tracing::info!(upload_id = %row.id, image_id = %row.image_id, "sweeper completed an unconfirmed upload");
                Ok(Stale::Completed)
            }
            Ok(_) => Ok(Stale::Moved),
            Err(UploadError::Rejected(_)) => Ok(Stale::Failed),
            Err(err) => Err(err),
        }
    }

    async fn remove_orphan_objects(
        &self,
        cutoff: SystemTime,
        report: &mut SweepReport,
    ) -> Result<(), UploadError> {
        let mut objects = self.storage.list_objects(KEY_PREFIX).await?;
        objects.extend(self.storage.list_objects(STAGING_PREFIX).await?);
        for (key, modified) in objects {
            // Only keys of the service's own shape; anything else in the bucket is not ours.
            let (object_key, staged) = match key.strip_prefix(STAGING_PREFIX) {
                Some(rest) => (format!("{KEY_PREFIX}{rest}"), true),
                None => (key.clone(), false),
            };
            if modified > cutoff || !is_service_key(&object_key) {
                continue;
            }
            // A staged copy belongs to its upload only while that is pending.
            let owned = match self.db.find_by_key(&object_key).await? {
                Some(row) => match row.state {
                    UploadState::Pending => true,
                    UploadState::Completed => !staged,
                    UploadState::Failed
                    | UploadState::Expired
                    | UploadState::Aborted
                    | UploadState::Deleted => false,
                },
                None => false,
            };
            if !owned {
                self.storage.delete(&key).await?;
                report.orphan_objects_deleted += 1;
                tracing::info!(key, "orphan object deleted");
            }
        }
        Ok(())
    }

    /// Variants whose upload is no longer completed: a job that was making them when the
    /// upload was deleted stores them after the delete removed the others. No grace is
    /// needed: a job only stores variants of an upload whose completion it has read.
    async fn remove_orphan_variants(&self, report: &mut SweepReport) -> Result<(), UploadError> {
        let mut owners = std::collections::HashMap::new();
        for (key, _) in self.storage.list_objects(VARIANT_PREFIX).await? {
            let Some(upload_id) = variant_owner(&key) else {
                continue;
            };
            let owned = match owners.get(&upload_id) {
                Some(owned) => *owned,
                None => {
                    let owned = self
                        .db
                        .find_fresh(upload_id)
                        .await?
                        .is_some_and(|row| row.state == UploadState::Completed);
                    *owners.entry(upload_id).or_insert(owned)
                }
            };
            if !owned {
                self.storage.delete(&key).await?;
                report.orphan_objects_deleted += 1;
                tracing::info!(key, "orphan variant deleted");
            }
        }
        Ok(())
    }

    async fn abort_orphan_multipart(
        &self,
        cutoff: SystemTime,
        report: &mut SweepReport,
    ) -> Result<(), UploadError> {
        let uploads = match self.storage.list_multipart_uploads(KEY_PREFIX).await {
            Ok(uploads) => uploads,
            // Some S3-compatible stores cannot list multipart uploads; the rest still runs.
            Err(StorageError::Refused(detail)) => {
                tracing::debug!(error = %detail, "store cannot list multipart uploads");
                return Ok(());
            }
            Err(err) => return Err(err.into()),
        };
        for (key, upload_id, initiated) in uploads {
            if initiated > cutoff {
                continue;
            }
            let owned = self
                .db
                .find_by_multipart_id(&upload_id)
                .await?
                .is_some_and(|row| row.state == UploadState::Pending);
            if !owned {
                self.storage.abort_multipart(&key, &upload_id).await?;
                report.multipart_aborted += 1;
                tracing::info!(key, "orphan multipart upload aborted");
            }
        }
        Ok(())
    }
}

/// What the sweep did with one stale pending upload.
enum Stale {
    Completed,
    Failed,
    Expired,
    /// Someone else settled it first.
    Moved,
}

/// `uploads/<image_id>/<uuid>.<ext>`, as `object_key` makes them.
fn is_service_key(key: &str) -> bool {
    let Some(rest) = key.strip_prefix(KEY_PREFIX) else {
        return false;
    };
    let Some((image_id, file)) = rest.split_once('/') else {
        return false;
    };
    let Some((id, _ext)) = file.split_once('.') else {
        return false;
    };
    crate::domain::ImageId::parse(image_id).is_ok() && Uuid::parse_str(id).is_ok()
}

/// Sweeps every `interval` until shutdown.
pub fn spawn_sweeper(
    uploads: UploadService,
    interval: Duration,
    margin: Duration,
    mut shutdown: Shutdown,
) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = shutdown.wait() => return,
            }
            match uploads.sweep(margin).await {
                Ok(report) if report != SweepReport::default() => {
                    tracing::info!(
                        completed = report.completed,
                        failed = report.failed,
                        expired = report.expired,
                        orphan_objects_deleted = report.orphan_objects_deleted,
                        multipart_aborted = report.multipart_aborted,
                        internal_leftovers_removed = report.internal_leftovers_removed,
                        "sweep"
                    );
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "sweep failed; retrying next interval"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_service_key_shape_is_swept() {
        assert!(is_service_key(
            "uploads/user_1/01a221a9-423f-7342-83e6-50dbb1b82320.png"
        ));
        assert!(!is_service_key("uploads/user123/abc123.jpg"));
        assert!(!is_service_key(
            "other/user/01a221a9-423f-7342-83e6-50dbb1b82320.png"
        ));
        assert!(!is_service_key(
            "uploads/01a221a9-423f-7342-83e6-50dbb1b82320.png"
        ));
    }
}
