//! What the lifecycle hands back to its callers: its own types, never database rows.

use std::collections::BTreeMap;

use time::OffsetDateTime;
use uuid::Uuid;

pub use entity::{UploadMethod, UploadState, VariantsState};

use upload_broker_types as types;

use crate::db::UploadRow;
/// Plain values the storage layer makes that callers of the lifecycle read as they are.
pub use crate::storage::{BucketCors, SignedRequest, StoredPart};

/// One upload as its record reads, with a URL that currently serves its object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub id: Uuid,
    pub image_id: String,
    pub state: UploadState,
    pub method: UploadMethod,
    /// The object key the bytes have (or will have).
    pub key: String,
    /// A URL that returns the object's bytes, while the upload is completed.
    pub s3_url: Option<String>,
    pub original_filename: String,
    /// The verified type once completed; the declared one before.
    pub content_type: String,
    pub declared_size: i64,
    /// The verified size, once completed.
    pub file_size: Option<i64>,
    pub checksum_sha256: Option<String>,
    pub etag: Option<String>,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub metadata: Option<BTreeMap<String, String>>,
    /// For multipart uploads: every part but the last has this many bytes.
    pub part_size: Option<i64>,
    pub part_count: Option<i32>,
    /// `SHA256` when every part must be signed with its checksum.
    pub checksum_algorithm: Option<String>,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub uploaded_at: Option<OffsetDateTime>,
    /// Why verification refused it.
    pub failure_code: Option<String>,
    /// `None` when variants are off or it has not completed.
    pub variants_state: Option<VariantsState>,
    /// Once ready: each preset's files by format, with URLs made fresh.
    pub variants: Option<VariantFiles>,
    pub variants_failure_code: Option<String>,
}

/// Each preset's variant files by format.
pub type VariantFiles = BTreeMap<String, BTreeMap<String, types::VariantFile>>;

/// One stored variant, as the upload's row keeps it (`uploads.variants`, JSON).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct StoredVariant {
    pub key: String,
    pub width: u32,
    pub height: u32,
    pub size: u64,
}

/// Each preset's stored variants by format.
pub(super) type StoredVariants = BTreeMap<String, BTreeMap<String, StoredVariant>>;

impl Upload {
    /// The record of `row`, with `s3_url` and the variants' URLs as made fresh for it.
    pub(super) fn from_row(
        row: UploadRow,
        s3_url: Option<String>,
        variants: Option<VariantFiles>,
    ) -> Self {
        Self {
            id: row.id,
            state: row.state,
            method: row.method,
            key: row.object_key,
            s3_url,
            original_filename: row.original_filename,
            content_type: row.content_type,
            declared_size: row.declared_size,
            file_size: row.file_size,
            checksum_sha256: row.checksum_sha256,
            etag: row.etag,
            width: row.width,
            height: row.height,
            metadata: row
                .metadata
                .as_deref()
                .and_then(|m| serde_json::from_str(m).ok()),
            part_size: row.part_size,
            part_count: row.part_count,
            checksum_algorithm: row.checksum_algorithm,
            created_at: row.created_at,
            expires_at: row.expires_at,
            uploaded_at: row.uploaded_at,
            failure_code: row.failure_code,
            variants_state: row.variants_state,
            variants,
            variants_failure_code: row.variants_failure_code,
            image_id: row.image_id,
        }
    }
}

/// An upload's state as the API names it.
pub fn wire_state(state: UploadState) -> types::UploadState {
    match state {
        UploadState::Pending => types::UploadState::Pending,
        UploadState::Completed => types::UploadState::Completed,
        UploadState::Failed => types::UploadState::Failed,
        UploadState::Expired => types::UploadState::Expired,
        UploadState::Aborted => types::UploadState::Aborted,
        UploadState::Deleted => types::UploadState::Deleted,
    }
}

/// The record as the API (and every event's `data`) shows it.
impl From<Upload> for types::Upload {
    fn from(upload: Upload) -> Self {
        Self {
            upload_id: upload.id,
            state: wire_state(upload.state),
            key: upload.key,
            s3_url: upload.s3_url,
            original_filename: upload.original_filename,
            content_type: upload.content_type,
            file_size: upload.file_size,
            checksum_sha256: upload.checksum_sha256,
            etag: upload.etag,
            width: upload.width,
            height: upload.height,
            metadata: upload.metadata,
            created_at: upload.created_at,
            expires_at: upload.expires_at,
            uploaded_at: upload.uploaded_at,
            failure_code: upload.failure_code,
            variants_state: match upload.variants_state {
                None => types::VariantsState::None,
                Some(VariantsState::Pending) => types::VariantsState::Pending,
                Some(VariantsState::Ready) => types::VariantsState::Ready,
                Some(VariantsState::Failed) => types::VariantsState::Failed,
            },
            variants: upload.variants,
            variants_failure_code: upload.variants_failure_code,
            image_id: upload.image_id,
        }
    }
}

/// A pending upload and how to send its bytes.
#[derive(Debug, Clone)]
pub struct IssuedUpload {
    pub upload: Upload,
    /// The presigned PUT of a single-PUT upload; multipart parts are signed on request.
    pub put: Option<SignedRequest>,
}

/// One page of completed uploads.
#[derive(Debug, Clone)]
pub struct ImagePage {
    pub images: Vec<Upload>,
    pub next_cursor: Option<String>,
}
