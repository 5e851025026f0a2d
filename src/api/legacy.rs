//! The seed's API, byte-for-byte: `POST /upload/{image_id}`, `GET /api/url/{image_id}`,
//! `GET /api/images/{image_id}`.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::{Stream, TryStreamExt};
use poem::Request;
use poem::error::ParseMultipartError;
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::registry::{MetaMediaType, MetaRequest, MetaSchema, MetaSchemaRef};
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ApiResponse, ExtractParamOptions, Object, OpenApi,
};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::io::{ReaderStream, StreamReader};

use super::ApiTags;
use super::error::{LegacyError, legacy_answer};
use crate::auth::Caller;
use crate::domain::{ImageId, seed_timestamp};
use crate::problem::{Problem, RETRY_AFTER_SECS};
use crate::uploads::{StoredObject, Upload, UploadError, UploadService};
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

impl From<Upload> for LegacyImage {
    fn from(upload: Upload) -> Self {
        Self {
            s3_url: upload.s3_url.unwrap_or_default(),
            original_filename: upload.original_filename,
            file_size: upload.file_size.unwrap_or(upload.declared_size),
            content_type: upload.content_type,
            uploaded_at: upload.uploaded_at.map(seed_timestamp).unwrap_or_default(),
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

impl From<UploadError> for LegacyUploadResponse {
    fn from(err: UploadError) -> Self {
        let problem = err.problem();
        match legacy_answer(&problem, &[400, 401, 403, 413]) {
            (401, body) => Self::Unauthorized(body, "Bearer".to_owned()),
            (403, body) => Self::Forbidden(body),
            (413, body) => Self::TooLarge(body),
            (503, body) => Self::Unavailable(body, retry_after(&problem)),
            (500, body) => Self::Internal(body),
            (_, body) => Self::BadRequest(body),
        }
    }
}

impl From<UploadError> for LegacyUrlResponse {
    fn from(err: UploadError) -> Self {
        let problem = err.problem();
        match legacy_answer(&problem, &[400, 404]) {
            (404, body) => Self::NotFound(body),
            (503, body) => Self::Unavailable(body, retry_after(&problem)),
            (500, body) => Self::Internal(body),
            (_, body) => Self::BadRequest(body),
        }
    }
}

impl From<UploadError> for LegacyListResponse {
    fn from(err: UploadError) -> Self {
        let problem = err.problem();
        match legacy_answer(&problem, &[400]) {
            (503, body) => Self::Unavailable(body, retry_after(&problem)),
            (500, body) => Self::Internal(body),
            (_, body) => Self::BadRequest(body),
        }
    }
}

fn retry_after(problem: &Problem) -> u32 {
    problem.retry_after.unwrap_or(RETRY_AFTER_SECS)
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
    ) -> Result<StoredObject, UploadError> {
        let mut stored: Option<StoredObject> = None;
        let outcome = loop {
            let field = match form.next_field().await {
                Ok(Some(field)) => field,
                Ok(None) => break Ok(()),
                Err(err) => break Err(UploadError::BodyRead(err.to_string())),
            };
            if field.name() != Some("file") {
                let mut rest = field_reader(field).take(MAX_OTHER_FIELD + 1);
                match tokio::io::copy(&mut rest, &mut tokio::io::sink()).await {
                    Ok(n) if n <= MAX_OTHER_FIELD => continue,
                    Ok(_) => break Err(UploadError::InvalidForm("Form field too large")),
                    Err(err) => break Err(UploadError::BodyRead(err.to_string())),
                }
            }
            if stored.is_some() {
                break Err(UploadError::InvalidForm(
                    "Only one file can be uploaded per request",
                ));
            }
            let filename = field.file_name().unwrap_or_default().to_owned();
            match self
                .uploads
                .store_streamed(image_id, &filename, field_reader(field), size_hint, limit)
                .await
            {
                Ok(object) => stored = Some(object),
                Err(err) => break Err(err),
            }
        };
        match (outcome, stored) {
            (Ok(()), Some(object)) => Ok(object),
            (Ok(()), None) => Err(UploadError::InvalidForm("No file provided")),
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
        #[oai(name = "token")]
        _token: Query<Option<String>>,
        caller: Data<&Caller>,
        request: &Request,
        form: LegacyUploadForm,
    ) -> LegacyUploadResponse {
        let image_id = match ImageId::parse_new(&image_id) {
            Ok(image_id) => image_id,
            Err(err) => return UploadError::from(err).into(),
        };
        let Some(form) = form.0 else {
            return UploadError::InvalidForm("No file provided").into();
        };
        let link = match self.uploads.authorize_new(&caller, &image_id, None).await {
            Ok(link) => link,
            Err(err) => return err.into(),
        };
        let limit = self.uploads.streamed_limit(&caller);
        let size_hint = request
            .headers()
            .get(poem::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let recorded = self
            .uploads
            .keeping_link(link, async {
                let stored = self.read_form(&image_id, form, size_hint, limit).await?;
                self.uploads.record_streamed(stored, link).await
            })
            .await;
        match recorded {
            Ok(upload) => {
                let image = LegacyImage::from(upload);
                LegacyUploadResponse::Ok(Json(LegacyUploaded {
                    success: true,
                    message: "Image uploaded successfully".to_owned(),
                    image_id: image_id.to_string(),
                    s3_url: image.s3_url,
                    uploaded_at: image.uploaded_at,
                }))
            }
            Err(err) => err.into(),
        }
    }

    /// Get the newest image's URL
    #[oai(
        path = "/api/url/:image_id",
        method = "get",
        operation_id = "legacy_latest_url"
    )]
    async fn legacy_latest_url(&self, image_id: Path<String>) -> LegacyUrlResponse {
        let found = match ImageId::parse(&image_id) {
            Ok(parsed) => self.uploads.latest(&parsed).await,
            Err(err) => Err(err.into()),
        };
        match found {
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
            Err(err) => err.into(),
        }
    }

    /// List every image of an image_id
    #[oai(
        path = "/api/images/:image_id",
        method = "get",
        operation_id = "legacy_list_images"
    )]
    async fn legacy_list_images(&self, image_id: Path<String>) -> LegacyListResponse {
        let found = match ImageId::parse(&image_id) {
            Ok(parsed) => self.uploads.list(&parsed, MAX_LEGACY_LIST, None).await,
            Err(err) => Err(err.into()),
        };
        match found {
            Ok(page) => {
                let images: Vec<LegacyImage> = page.images.into_iter().map(Into::into).collect();
                LegacyListResponse::Ok(Json(LegacyImageList {
                    success: true,
                    image_id: image_id.0,
                    count: images.len() as u64,
                    images,
                }))
            }
            Err(err) => err.into(),
        }
    }
}
