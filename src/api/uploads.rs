//! `/api/v1/uploads`: issue signed URLs, confirm, look up and delete uploads.

use std::collections::BTreeMap;

use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::types::Example;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use time::OffsetDateTime;
use uuid::Uuid;

use super::text::Text;
use super::{ApiError, ApiTags, Credentials};
use crate::auth::Caller;
use crate::domain::ImageId;
use crate::uploads::{self, IssuedUpload, RawUploadRequest, Upload, UploadService};
use poem::web::Data;

pub struct UploadsApi {
    uploads: UploadService,
}

impl UploadsApi {
    pub fn new(uploads: UploadService) -> Self {
        Self { uploads }
    }
}

/// Where an upload is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum UploadState {
    Pending,
    Completed,
    Failed,
    Expired,
    Aborted,
    Deleted,
}

impl From<uploads::UploadState> for UploadState {
    fn from(state: uploads::UploadState) -> Self {
        match state {
            uploads::UploadState::Pending => UploadState::Pending,
            uploads::UploadState::Completed => UploadState::Completed,
            uploads::UploadState::Failed => UploadState::Failed,
            uploads::UploadState::Expired => UploadState::Expired,
            uploads::UploadState::Aborted => UploadState::Aborted,
            uploads::UploadState::Deleted => UploadState::Deleted,
        }
    }
}

/// How the client sends the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum UploadMethod {
    /// One presigned PUT of the whole file.
    #[oai(rename = "PUT")]
    Put,
    /// S3 multipart upload, parts signed through `/parts`.
    #[oai(rename = "MULTIPART")]
    Multipart,
}

/// A file the client wants to upload. Unknown fields are refused, so a misspelt
/// `checksum_sha256` cannot silently skip a check.
#[derive(Debug, Clone, Object)]
#[oai(example, deny_unknown_fields)]
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
    #[oai(nullable, skip_serializing_if_is_none)]
    pub checksum_sha256: Option<Text>,
    /// `SHA256`: for a multipart upload, every part URL is signed for the part's SHA-256,
    /// given in `checksums_sha256` when signing parts.
    #[oai(nullable, skip_serializing_if_is_none)]
    pub checksum_algorithm: Option<Text>,
    /// A flat string map kept with the record (at most 32 keys, 2 KiB).
    #[oai(nullable, skip_serializing_if_is_none)]
    pub metadata: Option<BTreeMap<String, Text>>,
}

impl Example for CreateUploadRequest {
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
#[derive(Debug, Clone, Object)]
#[oai(rename = "IssuedUpload")]
pub struct IssuedUploadBody {
    pub upload_id: Uuid,
    pub image_id: String,
    /// The object key the bytes will have.
    pub key: String,
    pub state: UploadState,
    /// When the signed URL stops working (RFC 3339).
    pub expires_at: OffsetDateTime,
    pub method: UploadMethod,
    /// For `PUT`: the presigned URL.
    #[oai(skip_serializing_if_is_none)]
    pub url: Option<String>,
    /// For `PUT`: headers to send verbatim with the PUT. `Content-Length` is signed as well
    /// and must equal `size`; HTTP clients set it from the body.
    #[oai(skip_serializing_if_is_none)]
    pub headers: Option<BTreeMap<String, String>>,
    /// For `MULTIPART`: every part but the last has exactly this many bytes.
    #[oai(skip_serializing_if_is_none)]
    pub part_size: Option<i64>,
    /// For `MULTIPART`: the number of parts.
    #[oai(skip_serializing_if_is_none)]
    pub part_count: Option<i32>,
    /// For `MULTIPART`: `SHA256` when each part must be signed with its checksum.
    #[oai(skip_serializing_if_is_none)]
    pub checksum_algorithm: Option<String>,
}

/// Parts to sign.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields)]
pub struct SignPartsRequest {
    /// 1 to 100 part numbers of the plan (1 to `part_count`).
    pub part_numbers: Vec<i64>,
    /// Base64 SHA-256 of each part, keyed by part number; required for every part when
    /// the upload declared `checksum_algorithm: "SHA256"`.
    #[oai(nullable, skip_serializing_if_is_none)]
    pub checksums_sha256: Option<BTreeMap<String, Text>>,
}

/// A presigned UploadPart request.
#[derive(Debug, Clone, Object)]
pub struct SignedPart {
    pub part_number: i32,
    /// The exact length the URL accepts.
    pub size: i64,
    pub url: String,
    /// Headers to send verbatim with the PUT.
    pub headers: BTreeMap<String, String>,
}

/// Presigned part URLs.
#[derive(Debug, Clone, Object)]
pub struct SignedPartList {
    pub parts: Vec<SignedPart>,
    /// When these URLs stop working (RFC 3339).
    pub expires_at: OffsetDateTime,
}

/// A part storage holds.
#[derive(Debug, Clone, Object)]
pub struct UploadedPart {
    pub part_number: i32,
    pub etag: String,
    pub size: i64,
}

/// The parts storage holds so far, from storage itself.
#[derive(Debug, Clone, Object)]
pub struct UploadedPartList {
    pub parts: Vec<UploadedPart>,
    pub part_size: i64,
    pub part_count: i32,
}

impl From<IssuedUpload> for IssuedUploadBody {
    fn from(issued: IssuedUpload) -> Self {
        let upload = issued.upload;
        Self {
            upload_id: upload.id,
            image_id: upload.image_id,
            key: upload.key,
            state: upload.state.into(),
            expires_at: upload.expires_at,
            method: match upload.method {
                uploads::UploadMethod::Multipart => UploadMethod::Multipart,
                // A legacy upload is never issued; it is stored by the service itself.
                uploads::UploadMethod::Put | uploads::UploadMethod::Legacy => UploadMethod::Put,
            },
            url: issued.put.as_ref().map(|put| put.url.clone()),
            headers: issued.put.map(|put| put.headers),
            part_size: upload.part_size,
            part_count: upload.part_count,
            checksum_algorithm: upload.checksum_algorithm,
        }
    }
}

/// The record of one upload.
#[derive(Debug, Clone, Object)]
#[oai(rename = "Upload")]
pub struct UploadRecord {
    pub upload_id: Uuid,
    pub image_id: String,
    pub state: UploadState,
    pub key: String,
    /// A URL that returns the object's bytes to a plain GET (null until completed).
    #[oai(nullable)]
    pub s3_url: Option<String>,
    pub original_filename: String,
    /// The verified type once completed; the declared one before.
    pub content_type: String,
    /// Verified size in bytes (null until completed).
    #[oai(nullable)]
    pub file_size: Option<i64>,
    #[oai(nullable)]
    pub checksum_sha256: Option<String>,
    #[oai(nullable)]
    pub etag: Option<String>,
    #[oai(nullable)]
    pub width: Option<i32>,
    #[oai(nullable)]
    pub height: Option<i32>,
    #[oai(nullable)]
    pub metadata: Option<BTreeMap<String, String>>,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    #[oai(nullable)]
    pub uploaded_at: Option<OffsetDateTime>,
}

impl From<Upload> for UploadRecord {
    fn from(upload: Upload) -> Self {
        Self {
            upload_id: upload.id,
            state: upload.state.into(),
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
            image_id: upload.image_id,
        }
    }
}

#[derive(ApiResponse)]
enum CreateUploadResponse {
    /// The upload is recorded as pending; send the bytes as `method` says.
    #[oai(status = 201)]
    Created(Json<IssuedUploadBody>),
}

#[derive(ApiResponse)]
enum UploadResponse {
    /// The upload's record.
    #[oai(status = 200)]
    Ok(Json<UploadRecord>),
}

#[derive(ApiResponse)]
enum SignPartsResponse {
    /// Presigned UploadPart requests, one per part asked for.
    #[oai(status = 200)]
    Ok(Json<SignedPartList>),
}

#[derive(ApiResponse)]
enum ListPartsResponse {
    /// The parts storage holds so far.
    #[oai(status = 200)]
    Ok(Json<UploadedPartList>),
}

#[derive(ApiResponse)]
enum DeleteResponse {
    /// Aborted or deleted (also when it already was).
    #[oai(status = 204)]
    Deleted,
}

fn parse_upload_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| {
        crate::problem::Problem::bad_request("invalid_upload_id", "upload_id must be a UUID").into()
    })
}

#[OpenApi(tag = "ApiTags::Uploads")]
impl UploadsApi {
    /// Start an upload
    ///
    /// Validates the file's type, name and size, records a pending upload and returns a
    /// presigned PUT URL that accepts exactly these bytes. Nothing is signed for invalid
    /// input.
    #[oai(
        path = "/api/v1/uploads",
        method = "post",
        operation_id = "create_upload"
    )]
    async fn create_upload(
        &self,
        _auth: Credentials,
        caller: Data<&Caller>,
        body: Json<CreateUploadRequest>,
    ) -> Result<CreateUploadResponse, ApiError> {
        let body = body.0;
        let request = self.uploads.parse_upload(RawUploadRequest {
            image_id: body.image_id.into_inner(),
            filename: body.filename.into_inner(),
            content_type: body.content_type.into_inner(),
            size: body.size,
            checksum_sha256: body.checksum_sha256.map(Text::into_inner),
            checksum_algorithm: body.checksum_algorithm.map(Text::into_inner),
            metadata: body.metadata.map(strings),
        })?;
        let link_id = self
            .uploads
            .authorize_new(&caller, &request.image_id, Some(request.size))
            .await?;
        let issued = self.uploads.issue(request, link_id).await?;
        Ok(CreateUploadResponse::Created(Json(issued.into())))
    }

    /// Confirm an upload
    ///
    /// Checks the object in storage (size, magic bytes, pixel dimensions, checksum) and marks
    /// the upload completed. Confirming again returns the same record.
    #[oai(
        path = "/api/v1/uploads/:upload_id/confirm",
        method = "post",
        operation_id = "confirm_upload"
    )]
    async fn confirm_upload(
        &self,
        _auth: Credentials,
        caller: Data<&Caller>,
        upload_id: Path<String>,
    ) -> Result<UploadResponse, ApiError> {
        let id = parse_upload_id(&upload_id)?;
        self.uploads.authorize_existing(&caller, id).await?;
        let view = self.uploads.confirm(id).await?;
        Ok(UploadResponse::Ok(Json(view.into())))
    }

    /// Sign part URLs
    ///
    /// Presigned UploadPart URLs for up to 100 parts of a multipart upload, each accepting
    /// exactly its part's bytes. Asking again for a part gives a fresh URL.
    #[oai(
        path = "/api/v1/uploads/:upload_id/parts",
        method = "post",
        operation_id = "sign_parts"
    )]
    async fn sign_parts(
        &self,
        _auth: Credentials,
        caller: Data<&Caller>,
        upload_id: Path<String>,
        body: Json<SignPartsRequest>,
    ) -> Result<SignPartsResponse, ApiError> {
        let id = parse_upload_id(&upload_id)?;
        self.uploads.authorize_existing(&caller, id).await?;
        let checksums = strings(body.0.checksums_sha256.unwrap_or_default());
        let signed = self
            .uploads
            .sign_parts(id, &body.0.part_numbers, &checksums)
            .await?;
        Ok(SignPartsResponse::Ok(Json(SignedPartList {
            parts: signed
                .parts
                .into_iter()
                .map(|(part_number, size, request)| SignedPart {
                    part_number,
                    size: i64::try_from(size).unwrap_or(i64::MAX),
                    url: request.url,
                    headers: request.headers,
                })
                .collect(),
            expires_at: signed.expires_at,
        })))
    }

    /// List uploaded parts
    ///
    /// The parts storage holds so far (all pages of ListParts), so a client can resume.
    #[oai(
        path = "/api/v1/uploads/:upload_id/parts",
        method = "get",
        operation_id = "list_parts"
    )]
    async fn list_parts(&self, upload_id: Path<String>) -> Result<ListPartsResponse, ApiError> {
        let id = parse_upload_id(&upload_id)?;
        let (plan, parts) = self.uploads.uploaded_parts(id).await?;
        Ok(ListPartsResponse::Ok(Json(UploadedPartList {
            parts: parts
                .into_iter()
                .map(|p| UploadedPart {
                    part_number: p.part_number,
                    etag: p.etag,
                    size: i64::try_from(p.size).unwrap_or(i64::MAX),
                })
                .collect(),
            part_size: i64::try_from(plan.part_size).unwrap_or(i64::MAX),
            part_count: plan.part_count,
        })))
    }

    /// Get an upload
    #[oai(
        path = "/api/v1/uploads/:upload_id",
        method = "get",
        operation_id = "get_upload"
    )]
    async fn get_upload(&self, upload_id: Path<String>) -> Result<UploadResponse, ApiError> {
        let id = parse_upload_id(&upload_id)?;
        let view = self.uploads.get(id).await?;
        Ok(UploadResponse::Ok(Json(view.into())))
    }

    /// Abort or delete an upload
    ///
    /// A pending upload is aborted; a completed one loses its object and leaves every lookup.
    /// Repeating the call is harmless.
    #[oai(
        path = "/api/v1/uploads/:upload_id",
        method = "delete",
        operation_id = "delete_upload"
    )]
    async fn delete_upload(
        &self,
        _auth: Credentials,
        caller: Data<&Caller>,
        upload_id: Path<String>,
    ) -> Result<DeleteResponse, ApiError> {
        let id = parse_upload_id(&upload_id)?;
        self.uploads.authorize_existing(&caller, id).await?;
        self.uploads.delete(id).await?;
        Ok(DeleteResponse::Deleted)
    }

    /// Make an upload link
    ///
    /// With `API_KEYS` set, for a key holder: a short-lived token a browser may use instead
    /// of a key, for uploads under one image_id only (through the v1 API, the page at
    /// `upload_page`, or the legacy upload's `?token=`), optionally at most `max_uploads`
    /// of them and `max_size` bytes each.
    #[oai(path = "/api/v1/links", method = "post", operation_id = "create_link")]
    async fn create_link(
        &self,
        _auth: Credentials,
        caller: Data<&Caller>,
        body: Json<CreateLinkRequest>,
    ) -> Result<CreateLinkResponse, ApiError> {
        let image_id = ImageId::parse(&body.image_id)?;
        let link = self.uploads.mint_link(
            &caller,
            &image_id,
            body.expires_in.unwrap_or(3600),
            body.max_uploads,
            body.max_size,
        )?;
        let claims = link.claims;
        Ok(CreateLinkResponse::Created(Json(UploadLinkBody {
            upload_page: format!("/{}?token={}", claims.image_id, link.token),
            token: link.token,
            image_id: claims.image_id,
            expires_at: OffsetDateTime::from_unix_timestamp(claims.expires_at)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
            max_uploads: claims.max_uploads,
            max_size: claims.max_size,
        })))
    }
}

/// An upload link to make.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields)]
pub struct CreateLinkRequest {
    /// The only image_id the link may upload under.
    pub image_id: Text,
    /// Seconds the link lives, 1 to 604800 (7 days); 3600 when not given.
    #[oai(nullable, skip_serializing_if_is_none)]
    pub expires_in: Option<i64>,
    /// At most this many uploads (pending or completed) with the link.
    #[oai(nullable, skip_serializing_if_is_none)]
    pub max_uploads: Option<u32>,
    /// At most this many bytes per upload.
    #[oai(nullable, skip_serializing_if_is_none)]
    pub max_size: Option<u64>,
}

/// An upload link: give `token` (or `upload_page`) to a browser.
#[derive(Debug, Clone, Object)]
#[oai(rename = "UploadLink")]
pub struct UploadLinkBody {
    /// Send as `Authorization: Bearer <token>`, or as `?token=` to the page and the legacy
    /// upload.
    pub token: String,
    pub image_id: String,
    pub expires_at: OffsetDateTime,
    #[oai(skip_serializing_if_is_none)]
    pub max_uploads: Option<u32>,
    #[oai(skip_serializing_if_is_none)]
    pub max_size: Option<u64>,
    /// The upload page's path with the token in it.
    pub upload_page: String,
}

#[derive(ApiResponse)]
enum CreateLinkResponse {
    /// The link.
    #[oai(status = 201)]
    Created(Json<UploadLinkBody>),
}

/// A map of `Text` values as plain strings.
fn strings(map: BTreeMap<String, Text>) -> BTreeMap<String, String> {
    map.into_iter().map(|(k, v)| (k, v.into_inner())).collect()
}
