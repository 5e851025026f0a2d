//! The lifecycle's side of the state-change seam: every change of state goes through
//! `change` (or `record_completed` for uploads that arrive completed), which commits it
//! through `db::transitions` and then logs one line and counts it. Nothing else moves an
//! upload from one state to another.

use time::OffsetDateTime;
use uuid::Uuid;

use super::verify::VerifiedImage;
use super::{Upload, UploadError, UploadService, UploadState, VariantsState};
use crate::db::admin::NewAudit;
use crate::db::{Change, NewEvent, UploadRow, VerifiedObject};
use crate::events::EventType;
use crate::metrics;

/// Where a completed upload's record comes from.
pub(super) enum Recorded<'a> {
    /// Its pending row moves to `completed` (confirm).
    Pending(&'a UploadRow),
    /// This row is written, completed (the legacy upload).
    New(Box<UploadRow>),
}

/// What verification and storage found, as it is recorded.
pub(super) fn verified_object(
    image: VerifiedImage,
    size: u64,
    etag: Option<String>,
    checksum_sha256: Option<String>,
    s3_url: String,
) -> VerifiedObject {
    VerifiedObject {
        file_size: super::to_i64(size),
        content_type: image.format.mime().to_owned(),
        etag,
        checksum_sha256,
        width: image.width,
        height: image.height,
        s3_url,
        uploaded_at: OffsetDateTime::now_utc(),
    }
}

/// `row` as it reads once `change` is made (`variants`: a completion records a variants
/// job).
fn changed_row(row: UploadRow, change: &Change, variants: bool) -> UploadRow {
    let mut row = match change {
        Change::Complete(object) => return completed(row, object, variants),
        Change::Fail(code) => UploadRow {
            failure_code: Some((*code).to_owned()),
            ..row
        },
        Change::Expire | Change::Abort | Change::Delete => row,
    };
    row.state = change.to();
    row.updated_at = OffsetDateTime::now_utc();
    row
}

/// The body every delivery of an event sends: its type, when it happened, and the
/// upload's record as it reads after the change (as `GET /api/v1/uploads/{id}` shows it).
#[derive(serde::Serialize)]
struct EventBody<'a> {
    #[serde(rename = "type")]
    event_type: &'a str,
    #[serde(with = "time::serde::rfc3339")]
    timestamp: OffsetDateTime,
    data: upload_broker_types::Upload,
}

/// The event `change` records, for the upload as it reads afterwards (`after`). Only a
/// completion leaves an upload completed, and it brings the URL its object was just
/// given, so no other is asked of storage.
fn event(after: UploadRow, change: &Change) -> Result<NewEvent, UploadError> {
    let s3_url = match change {
        Change::Complete(object) => Some(object.s3_url.clone()),
        Change::Fail(_) | Change::Expire | Change::Abort | Change::Delete => None,
    };
    event_of(change.event_type(), Upload::from_row(after, s3_url, None))
}

/// An event of `event_type` about `upload`, as it reads after what happened.
pub(super) fn event_of(event_type: EventType, upload: Upload) -> Result<NewEvent, UploadError> {
    let upload_id = upload.id;
    let timestamp = OffsetDateTime::now_utc();
    let body = EventBody {
        event_type: event_type.as_str(),
        timestamp,
        data: upload.into(),
    };
    let payload = serde_json::to_string(&body)
        .map_err(|e| UploadError::Corrupt(format!("event body: {e}")))?;
    Ok(NewEvent {
        id: Uuid::now_v7(),
        upload_id,
        event_type,
        payload,
        created_at: timestamp,
    })
}

/// `row` as it reads once completed with `object` (`variants`: with its variants job).
pub(super) fn completed(mut row: UploadRow, object: &VerifiedObject, variants: bool) -> UploadRow {
    row.state = UploadState::Completed;
    row.variants_state = variants.then_some(VariantsState::Pending);
    row.file_size = Some(object.file_size);
    row.content_type = object.content_type.clone();
    row.etag = object.etag.clone();
    row.checksum_sha256 = object.checksum_sha256.clone();
    row.width = Some(object.width);
    row.height = Some(object.height);
    row.s3_url = Some(object.s3_url.clone());
    row.uploaded_at = Some(object.uploaded_at);
    row.updated_at = object.uploaded_at;
    row
}

impl UploadService {
    /// Makes `change` to `row` if it is still in the state the change starts from, then logs
    /// and counts it. Returns whether this call made it.
    pub(super) async fn change(
        &self,
        row: &UploadRow,
        change: Change,
    ) -> Result<bool, UploadError> {
        Ok(self.change_with(row, change, None).await?.is_some())
    }

    /// `change`, with an operator's `audit` entry recorded in its transaction. Returns the
    /// row as the change left it, `None` when the upload had already moved.
    pub(super) async fn change_with(
        &self,
        row: &UploadRow,
        change: Change,
        audit: Option<&NewAudit>,
    ) -> Result<Option<UploadRow>, UploadError> {
        let variants = self.config.variants.enabled();
        let event = event(changed_row(row.clone(), &change, variants), &change)?;
        let after = match audit {
            None => {
                self.db
                    .change(row.id, &row.image_id, &change, &event)
                    .await?
            }
            Some(audit) => {
                self.db
                    .change_audited(row.id, &row.image_id, &change, &event, Some(audit))
                    .await?
            }
        };
        if after.is_some() {
            self.changed(row.id, &row.image_id, &change);
        }
        Ok(after)
    }

    /// Records a verified object as completed, through whichever path it came. Returns the
    /// completed row, or `None` when another confirm got there first.
    pub(super) async fn record_completed(
        &self,
        recorded: Recorded<'_>,
        object: VerifiedObject,
    ) -> Result<Option<UploadRow>, UploadError> {
        let change = Change::Complete(Box::new(object));
        let row = match recorded {
            Recorded::Pending(row) => return self.change_with(row, change, None).await,
            Recorded::New(row) => changed_row(*row, &change, self.config.variants.enabled()),
        };
        let (id, image_id) = (row.id, row.image_id.clone());
        let event = event(row.clone(), &change)?;
        self.db.insert_completed(row.clone(), &event).await?;
        self.changed(id, &image_id, &change);
        Ok(Some(row))
    }

    /// One log line and the counters for a change that committed.
    fn changed(&self, id: Uuid, image_id: &str, change: &Change) {
        let state = change.to();
        match change {
            Change::Fail(code) => {
                tracing::info!(upload_id = %id, image_id, %state, code, "upload failed verification");
                metrics::verification_failure(code);
            }
            Change::Complete(object) => {
                let size = u64::try_from(object.file_size).unwrap_or(0);
                tracing::info!(upload_id = %id, image_id, %state, size, "upload completed");
                metrics::bytes_confirmed(size);
            }
            Change::Expire | Change::Abort | Change::Delete => {
                tracing::info!(upload_id = %id, image_id, %state, "upload {state}");
            }
        }
        metrics::upload_transition(state);
    }
}
