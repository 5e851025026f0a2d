//! One file's journey from a signed URL to a verified object.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "uploads")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub image_id: String,
    /// `pending`, `completed`, `failed`, `expired`, `aborted` or `deleted`.
    pub state: String,
    /// `PUT`, `MULTIPART` or `LEGACY` (server-side streamed).
    pub method: String,
    #[sea_orm(unique)]
    pub object_key: String,
    pub original_filename: String,
    pub content_type: String,
    pub declared_size: i64,
    pub file_size: Option<i64>,
    pub checksum_sha256: Option<String>,
    pub etag: Option<String>,
    pub width: Option<i32>,
    pub height: Option<i32>,
    /// JSON object of string values, as the client declared it.
    pub metadata: Option<String>,
    /// The object URL at completion time (what the seed's `images.s3_url` held).
    pub s3_url: Option<String>,
    pub multipart_upload_id: Option<String>,
    pub part_size: Option<i64>,
    pub part_count: Option<i32>,
    /// `SHA256` when every part of a multipart upload must carry its checksum.
    pub checksum_algorithm: Option<String>,
    pub failure_code: Option<String>,
    /// The upload link it was made with, when access control is on.
    pub link_id: Option<Uuid>,
    pub created_at: TimeDateTimeWithTimeZone,
    pub expires_at: TimeDateTimeWithTimeZone,
    pub uploaded_at: Option<TimeDateTimeWithTimeZone>,
    pub updated_at: TimeDateTimeWithTimeZone,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
