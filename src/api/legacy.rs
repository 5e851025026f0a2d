//! The seed's API, byte-for-byte: `POST /upload/{image_id}`, `GET /api/url/{image_id}`,
//! `GET /api/images/{image_id}`.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::{Stream, TryStreamExt};
use poem::Request;
use poem::error::ParseMultipartError;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::registry::{MetaMediaType, MetaRequest, MetaSchema, MetaSchemaRef};
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ApiResponse, ExtractParamOptions, Object, OpenApi,
};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::io::{ReaderStream, StreamReader};

use super::ApiTags;
use crate::db::DbError;
use crate::domain::{ImageId, InputError, seed_timestamp};
use crate::storage::StorageError;
use crate::uploads::{Rejection, StoredObject, UploadError, UploadService, UploadView};

/// Seconds a client should wait after a 503.
const RETRY_AFTER_SECS: u32 = 5;
/// Form fields other than `file` are read and dropped, up to this size each.
const MAX_OTHER_FIELD: u64 = 64 * 1024;
/// The seed returned every upload of an image_id; this bounds one answer.
const MAX_LEGACY_LIST: u64 = 10_000;
/// The most of the request body one read of the form parser takes.
const FORM_CHUNK: usize = 64 * 1024;

pub struct LegacyApi {
    uploads: UploadService,
}

impl LegacyApi {
    pub fn new(uploads: UploadService) -> Self {
        Self { uploads }
    }
}

/// The seed's error shape.
#[derive(Debug, Clone, Object)]
pub struct LegacyError {
    /// Always false.
    pub success: bool,
    pub error: String,
}

impl LegacyError {
    pub fn new(error: impl Into<String>) -> Json<Self> {
        Json(Self {
            success: false,
            error: error.into(),
        })
    }
}

/// `POST /upload/{image_id}` succeeded.
#[derive(Debug, Clone, Object)]
pub struct LegacyUploaded {
    /// Always true.
    pub success: bool,
    /// `Image uploaded successfully`.
    pub message: String,
    pub image_id: String,
    pub s3_url: String,
    /// UTC, `2025-10-26T10:30:00.000000`.
    pub uploaded_at: String,
}

/// The newest upload of an image_id.
#[derive(Debug, Clone, Object)]
pub struct LegacyLatest {
    /// Always true.
    pub success: bool,
    pub image_id: String,
    pub s3_url: String,
    pub original_filename: String,
    pub file_size: i64,
    pub content_type: String,
    /// UTC, `2025-10-26T10:30:00.000000`.
    pub uploaded_at: String,
}

/// One upload in `GET /api/images/{image_id}`.
#[derive(Debug, Clone, Object)]
pub struct LegacyImage {
    pub s3_url: String,
    pub original_filename: String,
    pub file_size: i64,
    pub content_type: String,
    /// UTC, `2025-10-26T10:30:00.000000`.
    pub uploaded_at: String,
}

impl From<UploadView> for LegacyImage {
    fn from(view: UploadView) -> Self {
        let row = view.row;
        Self {
            s3_url: view.s3_url.unwrap_or_default(),
            original_filename: row.original_filename,
            file_size: row.file_size.unwrap_or(row.declared_size),
            content_type: row.content_type,
            uploaded_at: row.uploaded_at.map(seed_timestamp).unwrap_or_default(),
        }
    }
}

/// Every upload of an image_id, newest first.
#[derive(Debug, Clone, Object)]
pub struct LegacyImageList {
    /// Always true.
    pub success: bool,
    pub image_id: String,
    pub count: u64,
    pub images: Vec<LegacyImage>,
}

/// A `multipart/form-data` body with a `file` field, read as a stream (never buffered
/// whole). `None` when the request is not multipart at all.
pub struct LegacyUploadForm(Option<multer::Multipart<'static>>);

/// Hands the form parser one chunk of the body per poll. The parser copies every chunk
/// that is ready into its own buffer before it gives any of the field to its reader; on a
/// fast connection that buffer grew to most of a megabyte per upload.
struct OneChunkAtATime<S> {
    inner: S,
    just_gave: bool,
}

impl<S: Stream + Unpin> Stream for OneChunkAtATime<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        if std::mem::take(&mut self.just_gave) {
            // Asked again at once: the parser is still filling; let it use what it has.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let next = Pin::new(&mut self.inner).poll_next(cx);
        self.just_gave = matches!(next, Poll::Ready(Some(_)));
        next
    }
}

impl<'a> ApiExtractor<'a> for LegacyUploadForm {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn request_meta() -> Option<MetaRequest> {
        let binary = MetaSchemaRef::Inline(Box::new(MetaSchema {
            format: Some("binary"),
            description: Some("The image: png, jpg, jpeg, gif, webp, bmp or tiff (any case)"),
            ..MetaSchema::new("string")
        }));
        Some(MetaRequest {
            description: Some("The image as the `file` field of a form"),
            content: vec![MetaMediaType {
                content_type: "multipart/form-data",
                schema: MetaSchemaRef::Inline(Box::new(MetaSchema {
                    required: vec!["file"],
                    properties: vec![("file", binary)],
                    ..MetaSchema::new("object")
                })),
            }],
            required: true,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut poem::RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        let multipart = request
            .content_type()
            .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("multipart/form-data"));
        if !multipart {
            return Ok(Self(None));
        }
        let content_type = request.content_type().unwrap_or_default();
        let boundary =
            multer::parse_boundary(content_type).map_err(ParseMultipartError::Multipart)?;
        let chunks = ReaderStream::with_capacity(body.take()?.into_async_read(), FORM_CHUNK);
        let paced = OneChunkAtATime {
            inner: chunks,
            just_gave: false,
        };
        Ok(Self(Some(multer::Multipart::new(paced, boundary))))
    }
}

#[derive(ApiResponse)]
enum LegacyUploadResponse {
    /// Stored and recorded.
    #[oai(status = 200)]
    Ok(Json<LegacyUploaded>),
    /// No file, a bad image_id, a type that is not allowed or bytes that are not that type.
    #[oai(status = 400)]
    BadRequest(Json<LegacyError>),
    /// With `API_KEYS` set: no valid API key or upload link (`Authorization: Bearer` or
    /// `?token=`).
    #[oai(status = 401)]
    Unauthorized(
        Json<LegacyError>,
        #[oai(header = "WWW-Authenticate")] String,
    ),
    /// The upload link is for another image_id, or used up.
    #[oai(status = 403)]
    Forbidden(Json<LegacyError>),
    /// Larger than `MAX_FILE_SIZE` (or the upload link's size limit).
    #[oai(status = 413)]
    TooLarge(Json<LegacyError>),
    #[oai(status = 500)]
    Internal(Json<LegacyError>),
    /// Storage or database unavailable.
    #[oai(status = 503)]
    Unavailable(Json<LegacyError>, #[oai(header = "Retry-After")] u32),
}

#[derive(ApiResponse)]
enum LegacyUrlResponse {
    /// The newest completed upload's URL and details.
    #[oai(status = 200)]
    Ok(Json<LegacyLatest>),
    /// The image_id is invalid.
    #[oai(status = 400)]
    BadRequest(Json<LegacyError>),
    /// No upload for this image_id.
    #[oai(status = 404)]
    NotFound(Json<LegacyError>),
    #[oai(status = 500)]
    Internal(Json<LegacyError>),
    #[oai(status = 503)]
    Unavailable(Json<LegacyError>, #[oai(header = "Retry-After")] u32),
}

#[derive(ApiResponse)]
enum LegacyListResponse {
    /// Every completed upload of the image_id, newest first.
    #[oai(status = 200)]
    Ok(Json<LegacyImageList>),
    /// The image_id is invalid.
    #[oai(status = 400)]
    BadRequest(Json<LegacyError>),
    #[oai(status = 500)]
    Internal(Json<LegacyError>),
    #[oai(status = 503)]
    Unavailable(Json<LegacyError>, #[oai(header = "Retry-After")] u32),
}

/// A legacy error: status and the seed's message.
enum Failure {
    /// No credentials, or bad ones, while access control is on.
    Unauthorized(String),
    /// Credentials that do not cover this upload.
    Forbidden(String),
    BadRequest(String),
    TooLarge(String),
    NotFound(String),
    Internal,
    Unavailable,
}

impl From<UploadError> for Failure {
    fn from(err: UploadError) -> Self {
        match err {
            UploadError::Input(InputError::InvalidImageId) => {
                Failure::BadRequest("Invalid image ID".into())
            }
            UploadError::Input(InputError::MissingFilename) => {
                Failure::BadRequest("No file selected".into())
            }
            UploadError::Input(InputError::UnsupportedType) => Failure::BadRequest(
                "File type not allowed. Allowed types: png, jpg, jpeg, gif, webp, bmp, tiff".into(),
            ),
            UploadError::Input(other) => Failure::BadRequest(capitalize(&other.to_string())),
            UploadError::EmptyFile => Failure::BadRequest("The file is empty".into()),
            UploadError::TooLarge { limit } => {
                Failure::TooLarge(format!("File too large. Maximum size is {limit} bytes"))
            }
            UploadError::Rejected(Rejection::TypeMismatch) => {
                Failure::BadRequest("File content does not match its extension".into())
            }
            UploadError::Rejected(Rejection::ImageTooLarge) => {
                Failure::BadRequest("Image dimensions exceed the limit".into())
            }
            UploadError::Rejected(_) => Failure::BadRequest("File is not a valid image".into()),
            UploadError::BodyRead(_) => {
                Failure::BadRequest("The upload body could not be read".into())
            }
            UploadError::NotFound | UploadError::NoImage => {
                Failure::NotFound("No image found for this ID".into())
            }
            UploadError::Storage(StorageError::Unavailable(detail)) => {
                tracing::warn!(error = %detail, "object storage unavailable");
                Failure::Unavailable
            }
            UploadError::Auth(auth) if auth.is_unauthenticated() => {
                Failure::Unauthorized(auth.to_string())
            }
            UploadError::Auth(auth) => Failure::Forbidden(auth.to_string()),
            UploadError::ShuttingDown | UploadError::Busy => Failure::Unavailable,
            UploadError::Spool(detail) => {
                tracing::error!(error = %detail, "temporary file for an upload failed");
                Failure::Unavailable
            }
            UploadError::Db(DbError::Unavailable(detail)) => {
                tracing::warn!(error = %detail, "database unavailable");
                Failure::Unavailable
            }
            other => {
                tracing::error!(error = %other, "legacy request failed");
                Failure::Internal
            }
        }
    }
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

const UNAVAILABLE: &str = "Service temporarily unavailable, try again shortly";
const INTERNAL: &str = "Internal server error";

impl From<Failure> for LegacyUploadResponse {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Unauthorized(m) => {
                Self::Unauthorized(LegacyError::new(m), "Bearer".to_owned())
            }
            Failure::Forbidden(m) => Self::Forbidden(LegacyError::new(m)),
            Failure::BadRequest(m) | Failure::NotFound(m) => Self::BadRequest(LegacyError::new(m)),
            Failure::TooLarge(m) => Self::TooLarge(LegacyError::new(m)),
            Failure::Internal => Self::Internal(LegacyError::new(INTERNAL)),
            Failure::Unavailable => {
                Self::Unavailable(LegacyError::new(UNAVAILABLE), RETRY_AFTER_SECS)
            }
        }
    }
}

impl From<Failure> for LegacyUrlResponse {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::BadRequest(m)
            | Failure::TooLarge(m)
            | Failure::Unauthorized(m)
            | Failure::Forbidden(m) => Self::BadRequest(LegacyError::new(m)),
            Failure::NotFound(m) => Self::NotFound(LegacyError::new(m)),
            Failure::Internal => Self::Internal(LegacyError::new(INTERNAL)),
            Failure::Unavailable => {
                Self::Unavailable(LegacyError::new(UNAVAILABLE), RETRY_AFTER_SECS)
            }
        }
    }
}

impl From<Failure> for LegacyListResponse {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::BadRequest(m)
            | Failure::TooLarge(m)
            | Failure::NotFound(m)
            | Failure::Unauthorized(m)
            | Failure::Forbidden(m) => Self::BadRequest(LegacyError::new(m)),
            Failure::Internal => Self::Internal(LegacyError::new(INTERNAL)),
            Failure::Unavailable => {
                Self::Unavailable(LegacyError::new(UNAVAILABLE), RETRY_AFTER_SECS)
            }
        }
    }
}

impl LegacyApi {
    /// Reads the form: streams the one `file` field to storage, drops other fields, and
    /// refuses a second file. Returns the stored (not yet recorded) object.
    async fn read_form(
        &self,
        image_id: &ImageId,
        mut form: multer::Multipart<'static>,
        size_hint: Option<u64>,
        limit: u64,
    ) -> Result<StoredObject, Failure> {
        let mut stored: Option<StoredObject> = None;
        let outcome = loop {
            let field = match form.next_field().await {
                Ok(Some(field)) => field,
                Ok(None) => break Ok(()),
                Err(err) => break Err(UploadError::BodyRead(err.to_string()).into()),
            };
            if field.name() != Some("file") {
                let mut rest = field_reader(field).take(MAX_OTHER_FIELD + 1);
                match tokio::io::copy(&mut rest, &mut tokio::io::sink()).await {
                    Ok(n) if n <= MAX_OTHER_FIELD => continue,
                    Ok(_) => break Err(Failure::BadRequest("Form field too large".into())),
                    Err(err) => break Err(UploadError::BodyRead(err.to_string()).into()),
                }
            }
            if stored.is_some() {
                break Err(Failure::BadRequest(
                    "Only one file can be uploaded per request".into(),
                ));
            }
            let filename = field.file_name().unwrap_or_default().to_owned();
            match self
                .uploads
                .store_streamed(image_id, &filename, field_reader(field), size_hint, limit)
                .await
            {
                Ok(object) => stored = Some(object),
                Err(err) => break Err(err.into()),
            }
        };
        match (outcome, stored) {
            (Ok(()), Some(object)) => Ok(object),
            (Ok(()), None) => Err(Failure::BadRequest("No file provided".into())),
            (Err(failure), stored) => {
                if let Some(object) = stored {
                    self.uploads.discard(object).await;
                }
                Err(failure)
            }
        }
    }
}

/// A form field's bytes as a reader.
fn field_reader(field: multer::Field<'static>) -> impl AsyncRead + Send + Unpin {
    StreamReader::new(field.map_err(std::io::Error::other))
}

#[OpenApi(tag = "ApiTags::Legacy")]
impl LegacyApi {
    /// Upload an image (server-side)
    ///
    /// The seed's upload: a `multipart/form-data` body with a `file` field, checked against
    /// `MAX_FILE_SIZE` by counting bytes as it arrives, and stored once it is whole and valid.
    #[oai(
        path = "/upload/:image_id",
        method = "post",
        operation_id = "legacy_upload"
    )]
    async fn legacy_upload(
        &self,
        image_id: Path<String>,
        /// With `API_KEYS` set: an upload link's token (or send `Authorization: Bearer`).
        token: Query<Option<String>>,
        request: &Request,
        form: LegacyUploadForm,
    ) -> LegacyUploadResponse {
        let Ok(image_id) = ImageId::parse(&image_id) else {
            return Failure::from(UploadError::Input(InputError::InvalidImageId)).into();
        };
        let bearer = super::bearer_token(request).or(token.0);
        let allowed = async {
            let caller = self.uploads.caller(bearer.as_deref())?;
            let link = self
                .uploads
                .authorize_new(&caller, image_id.as_str(), None)
                .await?;
            Ok::<_, UploadError>((self.uploads.streamed_limit(&caller), link))
        };
        let (limit, link) = match allowed.await {
            Ok(allowed) => allowed,
            Err(err) => return Failure::from(err).into(),
        };
        let Some(form) = form.0 else {
            return Failure::BadRequest("No file provided".into()).into();
        };
        let size_hint = request
            .headers()
            .get(poem::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let stored = match self.read_form(&image_id, form, size_hint, limit).await {
            Ok(stored) => stored,
            Err(failure) => return failure.into(),
        };
        match self.uploads.record_streamed(stored, link).await {
            Ok(view) => {
                let image = LegacyImage::from(view);
                LegacyUploadResponse::Ok(Json(LegacyUploaded {
                    success: true,
                    message: "Image uploaded successfully".to_owned(),
                    image_id: image_id.to_string(),
                    s3_url: image.s3_url,
                    uploaded_at: image.uploaded_at,
                }))
            }
            Err(err) => Failure::from(err).into(),
        }
    }

    /// Get the newest image's URL
    #[oai(
        path = "/api/url/:image_id",
        method = "get",
        operation_id = "legacy_latest_url"
    )]
    async fn legacy_latest_url(&self, image_id: Path<String>) -> LegacyUrlResponse {
        match self.uploads.latest(&image_id).await {
            Ok(view) => {
                let image = LegacyImage::from(view);
                LegacyUrlResponse::Ok(Json(LegacyLatest {
                    success: true,
                    image_id: image_id.0,
                    s3_url: image.s3_url,
                    original_filename: image.original_filename,
                    file_size: image.file_size,
                    content_type: image.content_type,
                    uploaded_at: image.uploaded_at,
                }))
            }
            Err(err) => Failure::from(err).into(),
        }
    }

    /// List every image of an image_id
    #[oai(
        path = "/api/images/:image_id",
        method = "get",
        operation_id = "legacy_list_images"
    )]
    async fn legacy_list_images(&self, image_id: Path<String>) -> LegacyListResponse {
        match self.uploads.list(&image_id, MAX_LEGACY_LIST, None).await {
            Ok(page) => {
                let images: Vec<LegacyImage> = page.images.into_iter().map(Into::into).collect();
                LegacyListResponse::Ok(Json(LegacyImageList {
                    success: true,
                    image_id: image_id.0,
                    count: images.len() as u64,
                    images,
                }))
            }
            Err(err) => Failure::from(err).into(),
        }
    }
}
