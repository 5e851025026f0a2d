//! The v1 API's request and response bodies, as JSON on the wire. The doc comments are the
//! descriptions in the OpenAPI document.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Text;

/// Where an upload is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(poem_openapi::Enum),
    oai(rename_all = "lowercase")
)]
#[serde(rename_all = "lowercase")]
pub enum UploadState {
    Pending,
    Completed,
    Failed,
    Expired,
    Aborted,
    Deleted,
}

/// Where an upload's variants (thumbnails, display sizes) are: `none` when variants are
/// off or the upload has not completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(poem_openapi::Enum),
    oai(rename_all = "lowercase")
)]
#[serde(rename_all = "lowercase")]
pub enum VariantsState {
    Pending,
    Ready,
    Failed,
    #[default]
    None,
}

/// One stored variant of an upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct VariantFile {
    /// A URL that returns the variant's bytes to a plain GET.
    pub url: String,
    pub width: u32,
    pub height: u32,
    /// Its size in bytes.
    pub size: u64,
}

/// How the client sends the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
pub enum UploadMethod {
    /// One presigned PUT of the whole file.
    #[cfg_attr(feature = "openapi", oai(rename = "PUT"))]
    #[serde(rename = "PUT")]
    Put,
    /// S3 multipart upload, parts signed through `/parts`.
    #[cfg_attr(feature = "openapi", oai(rename = "MULTIPART"))]
    #[serde(rename = "MULTIPART")]
    Multipart,
    /// Resumable, through the service's tus endpoint (`/api/v1/tus`).
    #[cfg_attr(feature = "openapi", oai(rename = "TUS"))]
    #[serde(rename = "TUS")]
    Tus,
}

/// A file the client wants to upload. Unknown fields are refused, so a misspelt
/// `checksum_sha256` cannot silently skip a check.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(poem_openapi::Object),
    oai(example, deny_unknown_fields)
)]
#[serde(deny_unknown_fields)]
pub struct CreateUploadRequest {
    /// The caller's grouping key: 1-100 letters, digits, `_` or `-`.
    pub image_id: Text,
    /// The file's name; its extension must agree with `content_type`. Kept as
    /// `original_filename`, never used in the object key.
    pub filename: Text,
    /// One of image/png, image/jpeg, image/gif, image/webp, image/bmp, image/tiff.
    pub content_type: Text,
    /// Exact size in bytes; the signed URL accepts no other length.
    pub size: i64,
    /// Base64 of the raw SHA-256 digest of the whole file. For a single PUT, storage
    /// refuses other bytes; for a multipart upload, confirm checks it.
    #[cfg_attr(feature = "openapi", oai(nullable, skip_serializing_if_is_none))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum_sha256: Option<Text>,
    /// `SHA256`: for a multipart upload, every part URL is signed for the part's SHA-256,
    /// given in `checksums_sha256` when signing parts.
    #[cfg_attr(feature = "openapi", oai(nullable, skip_serializing_if_is_none))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum_algorithm: Option<Text>,
    /// A flat string map kept with the record (at most 32 keys, 2 KiB).
    #[cfg_attr(feature = "openapi", oai(nullable, skip_serializing_if_is_none))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, Text>>,
}

#[cfg(feature = "openapi")]
impl poem_openapi::types::Example for CreateUploadRequest {
    fn example() -> Self {
        Self {
            image_id: "user123".into(),
            filename: "photo.png".into(),
            content_type: "image/png".into(),
            size: 68,
            checksum_sha256: None,
            checksum_algorithm: None,
            metadata: None,
        }
    }
}

/// A pending upload and how to send its bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct IssuedUpload {
    pub upload_id: Uuid,
    pub image_id: String,
    /// The object key the bytes will have.
    pub key: String,
    pub state: UploadState,
    /// When the signed URL stops working (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    pub method: UploadMethod,
    /// For `PUT`: the presigned URL.
    #[cfg_attr(feature = "openapi", oai(skip_serializing_if_is_none))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// For `PUT`: headers to send verbatim with the PUT. `Content-Length` is signed as well
    /// and must equal `size`; HTTP clients set it from the body.
    #[cfg_attr(feature = "openapi", oai(skip_serializing_if_is_none))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// For `MULTIPART`: every part but the last has exactly this many bytes.
    #[cfg_attr(feature = "openapi", oai(skip_serializing_if_is_none))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub part_size: Option<i64>,
    /// For `MULTIPART`: the number of parts.
    #[cfg_attr(feature = "openapi", oai(skip_serializing_if_is_none))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub part_count: Option<i32>,
    /// For `MULTIPART`: `SHA256` when each part must be signed with its checksum.
    #[cfg_attr(feature = "openapi", oai(skip_serializing_if_is_none))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum_algorithm: Option<String>,
}

/// Parts to sign.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(poem_openapi::Object),
    oai(deny_unknown_fields)
)]
#[serde(deny_unknown_fields)]
pub struct SignPartsRequest {
    /// 1 to 100 part numbers of the plan (1 to `part_count`).
    pub part_numbers: Vec<i64>,
    /// Base64 SHA-256 of each part, keyed by part number; required for every part when
    /// the upload declared `checksum_algorithm: "SHA256"`.
    #[cfg_attr(feature = "openapi", oai(nullable, skip_serializing_if_is_none))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksums_sha256: Option<BTreeMap<String, Text>>,
}

/// A presigned UploadPart request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct SignedPart {
    pub part_number: i32,
    /// The exact length the URL accepts.
    pub size: i64,
    pub url: String,
    /// Headers to send verbatim with the PUT.
    pub headers: BTreeMap<String, String>,
}

/// Presigned part URLs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct SignedPartList {
    pub parts: Vec<SignedPart>,
    /// When these URLs stop working (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// A part storage holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct UploadedPart {
    pub part_number: i32,
    pub etag: String,
    pub size: i64,
}

/// The parts storage holds so far, from storage itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct UploadedPartList {
    pub parts: Vec<UploadedPart>,
    pub part_size: i64,
    pub part_count: i32,
}

/// The record of one upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct Upload {
    pub upload_id: Uuid,
    pub image_id: String,
    pub state: UploadState,
    pub key: String,
    /// A URL that returns the object's bytes to a plain GET (null until completed).
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub s3_url: Option<String>,
    pub original_filename: String,
    /// The verified type once completed; the declared one before.
    pub content_type: String,
    /// Verified size in bytes (null until completed).
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub file_size: Option<i64>,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub checksum_sha256: Option<String>,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub etag: Option<String>,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub width: Option<i32>,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub height: Option<i32>,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub uploaded_at: Option<OffsetDateTime>,
    /// Why verification refused it (`failed` only): the same code confirm answered with.
    #[cfg_attr(feature = "openapi", oai(nullable))]
    #[serde(default)]
    pub failure_code: Option<String>,
    #[serde(default)]
    pub variants_state: VariantsState,
    /// Once `ready`: each preset's files by format, such as `variants.thumb.webp.url`.
    #[cfg_attr(feature = "openapi", oai(nullable))]
    #[serde(default)]
    pub variants: Option<BTreeMap<String, BTreeMap<String, VariantFile>>>,
    /// Why the variants cannot be made (`failed` only): `image_too_large`, `invalid_image`,
    /// `variant_failed` or `missing_object`.
    #[cfg_attr(feature = "openapi", oai(nullable))]
    #[serde(default)]
    pub variants_failure_code: Option<String>,
}

/// One page of an image_id's completed uploads, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct ImageList {
    pub image_id: String,
    pub images: Vec<Upload>,
    /// Pass as `cursor` for the next page; null on the last page.
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub next_cursor: Option<String>,
}

/// An upload link to make.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(poem_openapi::Object),
    oai(deny_unknown_fields)
)]
#[serde(deny_unknown_fields)]
pub struct CreateLinkRequest {
    /// The only image_id the link may upload under.
    pub image_id: Text,
    /// Seconds the link lives, 1 to 604800 (7 days); 3600 when not given.
    #[cfg_attr(feature = "openapi", oai(nullable, skip_serializing_if_is_none))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<i64>,
    /// At most this many uploads (pending or completed) with the link.
    #[cfg_attr(feature = "openapi", oai(nullable, skip_serializing_if_is_none))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_uploads: Option<u32>,
    /// At most this many bytes per upload.
    #[cfg_attr(feature = "openapi", oai(nullable, skip_serializing_if_is_none))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_size: Option<u64>,
}

/// An upload link: give `token` (or `upload_page`) to a browser.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct UploadLink {
    /// Send as `Authorization: Bearer <token>`, or as `?token=` to the page and the legacy
    /// upload.
    pub token: String,
    pub image_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[cfg_attr(feature = "openapi", oai(skip_serializing_if_is_none))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_uploads: Option<u32>,
    #[cfg_attr(feature = "openapi", oai(skip_serializing_if_is_none))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_size: Option<u64>,
    /// The upload page's path with the token in it.
    pub upload_page: String,
}

/// An error: a stable machine `code` and a human `message`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object), oai(example))]
pub struct Error {
    /// Stable, machine-readable: `invalid_image_id`, `unsupported_type`, `too_large`,
    /// `not_found`, `not_uploaded`, `size_mismatch`, `type_mismatch`, `checksum_mismatch`,
    /// `image_too_large`, `expired`, `storage_unavailable`, ...
    pub code: String,
    /// For people; never contains internals.
    pub message: String,
    /// For `incomplete_upload`: the part numbers still missing (or of the wrong size).
    #[cfg_attr(feature = "openapi", oai(skip_serializing_if_is_none))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing_parts: Option<Vec<i32>>,
    /// For `too_large`: the largest size accepted, in bytes.
    #[cfg_attr(feature = "openapi", oai(skip_serializing_if_is_none))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

impl Error {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
            missing_parts: None,
            limit: None,
        }
    }
}

#[cfg(feature = "openapi")]
impl poem_openapi::types::Example for Error {
    fn example() -> Self {
        Error::new(
            "unsupported_type",
            "unsupported file type; allowed: png, jpg, jpeg, gif, webp, bmp, tiff",
        )
    }
}

#[cfg(all(test, feature = "openapi"))]
mod tests {
    use poem_openapi::types::ToJSON;
    use serde::de::DeserializeOwned;

    use super::*;

    /// serde writes what the service sends, and reads it back.
    fn agrees<T: Serialize + DeserializeOwned + ToJSON>(value: &T) {
        let sent = value.to_json().expect("json");
        assert_eq!(serde_json::to_value(value).ok(), Some(sent.clone()));
        let read: T = serde_json::from_value(sent.clone()).expect("read back");
        assert_eq!(read.to_json(), Some(sent));
    }

    #[test]
    fn serde_and_the_openapi_document_agree() {
        let at =
            OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789).expect("a time");
        let upload = Upload {
            upload_id: Uuid::nil(),
            image_id: "user123".to_owned(),
            state: UploadState::Completed,
            key: "uploads/user123/a.png".to_owned(),
            s3_url: Some("http://store/a.png".to_owned()),
            original_filename: "a.png".to_owned(),
            content_type: "image/png".to_owned(),
            file_size: Some(68),
            checksum_sha256: None,
            etag: None,
            width: Some(1),
            height: Some(1),
            metadata: None,
            created_at: at,
            expires_at: at,
            uploaded_at: Some(at),
            failure_code: None,
            variants_state: VariantsState::Ready,
            variants: Some(BTreeMap::from([(
                "thumb".to_owned(),
                BTreeMap::from([(
                    "webp".to_owned(),
                    VariantFile {
                        url: "http://store/v.webp".to_owned(),
                        width: 1,
                        height: 1,
                        size: 40,
                    },
                )]),
            )])),
            variants_failure_code: None,
        };
        agrees(&upload);
        agrees(&Upload {
            state: UploadState::Pending,
            uploaded_at: None,
            ..upload.clone()
        });
        agrees(&Upload {
            state: UploadState::Failed,
            uploaded_at: None,
            failure_code: Some("checksum_mismatch".to_owned()),
            variants_state: VariantsState::None,
            variants: None,
            ..upload.clone()
        });
        agrees(&Upload {
            variants_state: VariantsState::Failed,
            variants: None,
            variants_failure_code: Some("image_too_large".to_owned()),
            ..upload
        });
        agrees(&IssuedUpload {
            upload_id: Uuid::nil(),
            image_id: "user123".to_owned(),
            key: "uploads/user123/a.png".to_owned(),
            state: UploadState::Pending,
            expires_at: at,
            method: UploadMethod::Multipart,
            url: None,
            headers: None,
            part_size: Some(5 << 20),
            part_count: Some(3),
            checksum_algorithm: Some("SHA256".to_owned()),
        });
        agrees(&Error::new("too_large", "too large"));
        agrees(&SignPartsRequest {
            part_numbers: vec![1, 2],
            checksums_sha256: None,
        });
    }
}

/// What one storage event notification did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct StorageEventsResult {
    /// Records in the notification.
    pub received: u64,
    /// Uploads it completed.
    pub completed: u64,
    /// Uploads verification refused (their objects deleted).
    pub failed: u64,
    /// Records that named no pending upload (repeats included), or no object creation.
    pub ignored: u64,
}
