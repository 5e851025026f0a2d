//! What operators do with uploads (the admin API): search every state, read the stats the
//! seam keeps, check a stored object again, delete, make variants again, and read the
//! audit log. Every action goes through the lifecycle as any other caller's would (the
//! same seam, so the same events), and records an audit entry in its own transaction.

use uuid::Uuid;

use super::lookup::{decode_cursor, encode_cursor, paged};
use super::verify::SNIFF_BYTES;
use super::{Rejection, Upload, UploadError, UploadService, UploadState};
use crate::auth::Operator;
use crate::db::admin::{AuditRow, NewAudit};

/// One page of a search.
#[derive(Debug, Clone)]
pub struct UploadPage {
    pub uploads: Vec<Upload>,
    pub next_cursor: Option<String>,
}

/// One operator action, as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub at: time::OffsetDateTime,
    /// The admin key's fingerprint.
    pub actor: String,
    pub action: String,
    pub target: String,
}

/// One page of the audit log.
#[derive(Debug, Clone)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub next_cursor: Option<String>,
}

/// What a search keeps, and the stats: plain values the database layer fills.
pub use crate::db::admin::{Stats, UploadFilter};

/// What checking a stored object again found: `None` when it passes, else the code confirm
/// would have refused it with (or `not_uploaded` when there is no object).
pub type Reverified = Option<&'static str>;

impl UploadService {
    /// Uploads in every state that `filter` keeps, newest first, `limit` a page.
    pub async fn search(
        &self,
        filter: &UploadFilter,
        limit: u64,
        cursor: Option<&str>,
    ) -> Result<UploadPage, UploadError> {
        let after = cursor.map(decode_cursor).transpose()?;
        let rows = self.db.search_uploads(filter, after, limit + 1).await?;
        let (rows, next_cursor) = paged(rows, limit, |r| encode_cursor(r.created_at, r.id));
        let mut uploads = Vec::with_capacity(rows.len());
        for row in rows {
            uploads.push(self.view(row).await?);
        }
        Ok(UploadPage {
            uploads,
            next_cursor,
        })
    }

    pub async fn stats(&self) -> Result<Stats, UploadError> {
        Ok(self.db.stats().await?)
    }

    /// Checks upload `id`'s stored object again as confirm does, changing nothing; a
    /// mismatch is logged, and the check is audited either way.
    pub async fn reverify(
        &self,
        operator: &Operator,
        id: Uuid,
    ) -> Result<(Upload, Reverified), UploadError> {
        let row = self.fresh_row(id).await?;
        let found = match row.state {
            UploadState::Pending => self.find_landed(&row).await?,
            UploadState::Completed => self
                .storage
                .read_start(&row.object_key, SNIFF_BYTES)
                .await?
                .map(|start| (row.object_key.clone(), start)),
            UploadState::Failed
            | UploadState::Expired
            | UploadState::Aborted
            | UploadState::Deleted => None,
        };
        let result: Reverified = match found {
            None => Some("not_uploaded"),
            Some((key, start)) => self
                .verify_stored(&row, &key, start)
                .await?
                .err()
                .map(Rejection::code),
        };
        if let Some(code) = result {
            tracing::warn!(upload_id = %id, image_id = %row.image_id, code, "re-verification found a problem");
        }
        let mut audit = NewAudit::new(&operator.fingerprint, "reverify", id);
        audit.detail =
            Some(serde_json::json!({ "ok": result.is_none(), "code": result }).to_string());
        self.db.audit(&audit).await?;
        Ok((self.view(row).await?, result))
    }

    /// Deletes (or aborts) upload `id` as the v1 delete does, audited with the change.
    pub async fn delete_as(&self, operator: &Operator, id: Uuid) -> Result<(), UploadError> {
        let audit = NewAudit::new(&operator.fingerprint, "delete", id);
        self.delete_audited(id, Some(&audit)).await
    }

    /// Makes upload `id`'s variants again: its job is due now and its `variants_state`
    /// pending, audited in the same transaction.
    pub async fn regenerate_variants(
        &self,
        operator: &Operator,
        id: Uuid,
    ) -> Result<(), UploadError> {
        if !self.config.variants.enabled() {
            return Err(UploadError::VariantsOff);
        }
        let row = self.fresh_row(id).await?;
        if row.state != UploadState::Completed {
            return Err(UploadError::NotCompleted(row.state));
        }
        let audit = NewAudit::new(&operator.fingerprint, "regenerate_variants", id);
        self.db.request_variants(id, &row.image_id, &audit).await?;
        Ok(())
    }

    /// The audit log, newest first.
    pub async fn audit_log(
        &self,
        limit: u64,
        cursor: Option<&str>,
    ) -> Result<AuditPage, UploadError> {
        let after = cursor.map(decode_cursor).transpose()?;
        let entries = self.db.audit_page(after, limit + 1).await?;
        let (entries, next_cursor) = paged(entries, limit, |e| encode_cursor(e.at, e.id));
        Ok(AuditPage {
            entries: entries.into_iter().map(audit_entry).collect(),
            next_cursor,
        })
    }
}

fn audit_entry(row: AuditRow) -> AuditEntry {
    AuditEntry {
        at: row.at,
        actor: row.actor,
        action: row.action,
        target: row.target,
    }
}
