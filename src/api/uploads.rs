//! `/api/v1/uploads`: issue signed URLs, confirm, look up and delete uploads.

use std::collections::BTreeMap;

use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{ApiError, ApiTags, Credentials, StorageToken};
use crate::auth::Caller;
use crate::domain::ImageId;
use crate::uploads::{self, Action, IssuedUpload, UploadService};
use poem::web::Data;

pub use upload_broker_types::{
    CreateLinkRequest, CreateUploadRequest, IssuedUpload as IssuedUploadBody, SignPartsRequest,
    SignedPart, SignedPartList, StorageEventsResult, Text, Upload as UploadRecord,
    UploadLink as UploadLinkBody, UploadMethod, UploadedPart, UploadedPartList,
};

pub struct UploadsApi {
    uploads: UploadService,
}

impl UploadsApi {
    pub fn new(uploads: UploadService) -> Self {
        Self { uploads }
    }
}

impl From<IssuedUpload> for IssuedUploadBody {
    fn from(issued: IssuedUpload) -> Self {
        let upload = issued.upload;
        Self {
            upload_id: upload.id,
            image_id: upload.image_id,
            key: upload.key,
            state: uploads::wire_state(upload.state),
            expires_at: upload.expires_at,
            method: match upload.method {
                uploads::UploadMethod::Multipart => UploadMethod::Multipart,
                uploads::UploadMethod::Tus => UploadMethod::Tus,
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

/// How long a browser may keep an upload's variant redirect: well within the life of the
/// URL it points at.
const VARIANT_REDIRECT_CACHE: &str = "private, max-age=300";

#[derive(ApiResponse)]
pub(super) enum VariantRedirect {
    /// The variant's URL.
    #[oai(status = 302)]
    Found(
        #[oai(header = "Location")] String,
        #[oai(header = "Cache-Control")] String,
    ),
}

impl VariantRedirect {
    pub(super) fn found(url: String, cache: &str) -> Self {
        VariantRedirect::Found(url, cache.to_owned())
    }
}

#[derive(ApiResponse)]
enum StorageEventsResponse {
    /// What the notification did.
    #[oai(status = 200)]
    Ok(Json<StorageEventsResult>),
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

/// An `{upload_id}` path segment, or 400 `invalid_upload_id` in the caller's error shape.
pub(super) fn parse_upload_id<E: From<crate::problem::Problem>>(raw: &str) -> Result<Uuid, E> {
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
        let request = self.uploads.parse_upload(&body.0)?;
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
        let id = parse_upload_id::<ApiError>(&upload_id)?;
        self.uploads
            .authorize_existing(&caller, id, Action::Finish)
            .await?;
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
        let id = parse_upload_id::<ApiError>(&upload_id)?;
        self.uploads
            .authorize_existing(&caller, id, Action::Finish)
            .await?;
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
        let id = parse_upload_id::<ApiError>(&upload_id)?;
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
        let id = parse_upload_id::<ApiError>(&upload_id)?;
        let view = self.uploads.get(id).await?;
        Ok(UploadResponse::Ok(Json(view.into())))
    }

    /// Get one of an upload's variants
    ///
    /// Redirects to the variant `<preset>.<format>` (such as `thumb.webp`) of a completed
    /// upload, making it first if it is missing; requests that ask at the same time wait
    /// for the same one. The presets are `IMAGE_VARIANTS`, the formats `VARIANT_FORMATS`.
    #[oai(
        path = "/api/v1/uploads/:upload_id/variants/:variant",
        method = "get",
        operation_id = "get_upload_variant"
    )]
    async fn get_upload_variant(
        &self,
        upload_id: Path<String>,
        /// `<preset>.<format>`, such as `thumb.webp`.
        variant: Path<String>,
    ) -> Result<VariantRedirect, ApiError> {
        let id = parse_upload_id::<ApiError>(&upload_id)?;
        let name = self.uploads.variant_name(&variant)?;
        let url = self.uploads.variant_url(id, &name).await?;
        Ok(VariantRedirect::found(url, VARIANT_REDIRECT_CACHE))
    }

    /// Take an S3 event notification
    ///
    /// For stores that send event notifications as webhooks (MinIO, Ceph RGW) or relays:
    /// the same JSON S3 puts on a queue. Each `s3:ObjectCreated:*` record's key is
    /// URL-decoded and the pending upload it names is confirmed, as its client would have;
    /// repeats, unknown keys and other events change nothing. Needs `STORAGE_EVENTS_TOKEN`
    /// as a bearer token (403 `storage_events_disabled` when it is not set).
    #[oai(
        path = "/api/v1/storage-events",
        method = "post",
        operation_id = "storage_events"
    )]
    async fn storage_events(
        &self,
        _auth: StorageToken,
        body: Json<serde_json::Value>,
    ) -> Result<StorageEventsResponse, ApiError> {
        let report = self.uploads.storage_events(&body.0).await?;
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        Ok(StorageEventsResponse::Ok(Json(StorageEventsResult {
            received: count(report.received),
            completed: count(report.completed),
            failed: count(report.failed),
            ignored: count(report.ignored),
        })))
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
        let id = parse_upload_id::<ApiError>(&upload_id)?;
        self.uploads
            .authorize_existing(&caller, id, Action::Remove)
            .await?;
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
        let image_id = ImageId::parse_new(&body.image_id)?;
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
