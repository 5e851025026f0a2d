//! One file's journey from a signed URL to a verified object.

use std::fmt;

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "uploads")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub image_id: String,
    pub state: UploadState,
    pub method: UploadMethod,
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
    /// None when variants are off, or it has not completed.
    pub variants_state: Option<VariantsState>,
    /// JSON: each preset's formats, with their key, width, height and size, once made.
    pub variants: Option<String>,
    /// Why its variants cannot be made (`image_too_large`, `invalid_image`, ...).
    pub variants_failure_code: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// Where an upload is in its life, stored in `uploads.state` as the lowercase name. A
/// stored value that is none of these is an error when the row is read, never a guess.
#[derive(
    Copy, Clone, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "Text")]
#[serde(rename_all = "lowercase")]
pub enum UploadState {
    /// Signed and recorded; the bytes may or may not have arrived.
    #[sea_orm(string_value = "pending")]
    Pending,
    /// Verified and counted.
    #[sea_orm(string_value = "completed")]
    Completed,
    /// Refused by verification; its object was deleted.
    #[sea_orm(string_value = "failed")]
    Failed,
    /// Never confirmed before its URLs ran out.
    #[sea_orm(string_value = "expired")]
    Expired,
    /// Given up by its client while pending.
    #[sea_orm(string_value = "aborted")]
    Aborted,
    /// Removed after it completed.
    #[sea_orm(string_value = "deleted")]
    Deleted,
}

impl UploadState {
    /// The name stored in the database and shown in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            UploadState::Pending => "pending",
            UploadState::Completed => "completed",
            UploadState::Failed => "failed",
            UploadState::Expired => "expired",
            UploadState::Aborted => "aborted",
            UploadState::Deleted => "deleted",
        }
    }

    /// The state of a stored name; `None` for anything else.
    pub fn parse(name: &str) -> Option<Self> {
        <Self as sea_orm::Iterable>::iter().find(|state| state.as_str() == name)
    }
}

impl fmt::Display for UploadState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an upload's bytes travel, stored in `uploads.method`.
#[derive(
    Copy, Clone, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum UploadMethod {
    /// One presigned PUT of the whole file.
    #[sea_orm(string_value = "PUT")]
    #[serde(rename = "PUT")]
    Put,
    /// An S3 multipart upload whose parts the client PUTs.
    #[sea_orm(string_value = "MULTIPART")]
    #[serde(rename = "MULTIPART")]
    Multipart,
    /// The legacy upload: the service streamed the bytes to storage itself.
    #[sea_orm(string_value = "LEGACY")]
    #[serde(rename = "LEGACY")]
    Legacy,
    /// tus: the client sent the bytes to the service, which passed them on as they came.
    #[sea_orm(string_value = "TUS")]
    #[serde(rename = "TUS")]
    Tus,
}

impl UploadMethod {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            UploadMethod::Put => "PUT",
            UploadMethod::Multipart => "MULTIPART",
            UploadMethod::Legacy => "LEGACY",
            UploadMethod::Tus => "TUS",
        }
    }

    /// The method of a stored name; `None` for anything else.
    pub fn parse(name: &str) -> Option<Self> {
        <Self as sea_orm::Iterable>::iter().find(|method| method.as_str() == name)
    }
}

impl fmt::Display for UploadMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::{ActiveEnum, Iterable};

    #[test]
    fn stored_names_are_todays_strings_and_unknown_ones_are_errors() {
        let names: Vec<String> = UploadState::iter().map(|s| s.to_value()).collect();
        assert_eq!(
            names,
            [
                "pending",
                "completed",
                "failed",
                "expired",
                "aborted",
                "deleted"
            ]
        );
        for state in UploadState::iter() {
            assert_eq!(
                UploadState::try_from_value(&state.to_string()).ok(),
                Some(state)
            );
            assert_eq!(UploadState::parse(state.as_str()), Some(state));
        }
        assert!(UploadState::try_from_value(&"Pending".to_owned()).is_err());
        assert_eq!(UploadState::parse("gone"), None);

        let methods: Vec<String> = UploadMethod::iter().map(|m| m.to_value()).collect();
        assert_eq!(methods, ["PUT", "MULTIPART", "LEGACY", "TUS"]);
        assert!(UploadMethod::try_from_value(&"put".to_owned()).is_err());
        assert_eq!(UploadMethod::parse("LEGACY"), Some(UploadMethod::Legacy));
    }
}

/// Where a completed upload's variants are, stored in `uploads.variants_state`.
#[derive(
    Copy, Clone, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "Text")]
#[serde(rename_all = "lowercase")]
pub enum VariantsState {
    /// Its job is recorded and not yet done.
    #[sea_orm(string_value = "pending")]
    Pending,
    /// Every preset is stored in every format.
    #[sea_orm(string_value = "ready")]
    Ready,
    /// They can never be made (`variants_failure_code` says why).
    #[sea_orm(string_value = "failed")]
    Failed,
}

impl VariantsState {
    /// The state of a stored name; `None` for anything else.
    pub fn parse(name: &str) -> Option<Self> {
        <Self as sea_orm::Iterable>::iter().find(|state| state.to_value() == name)
    }
}
