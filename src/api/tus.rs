//! tus 1.0.0 at `/api/v1/tus`: resumable uploads through the service, for clients that
//! cannot reach storage. Each upload is a v1 upload (`method: TUS`). The protocol's rules
//! that hold for every request (`Tus-Resumable` in and out, 412 for another version,
//! `X-HTTP-Method-Override`) are `tus_protocol`, the outermost layer on these paths.

use poem::http::{HeaderValue, Method, StatusCode, header};
use poem::web::Data;
use poem::{Endpoint, IntoResponse, Request, Response};
use poem_openapi::param::{Header, Path};
use poem_openapi::payload::Json;
use poem_openapi::registry::{MetaMediaType, MetaRequest, MetaSchema, MetaSchemaRef};
use poem_openapi::{ApiExtractor, ApiExtractorType, ApiResponse, ExtractParamOptions, OpenApi};
use tokio_util::io::StreamReader;

use super::error::{ErrorBody, render};
use super::routes::ErrorStyle;
use super::uploads::parse_upload_id;
use super::{ApiTags, Credentials};
use crate::auth::Caller;
use crate::origin::ClientOrigin;
use crate::problem::{Problem, RETRY_AFTER_SECS};
use crate::uploads::tus::{
    ALGORITHMS, ChunkChecksum, HeaderError, TUS_EXTENSIONS, TUS_VERSION, TusUpload,
    format_metadata, http_date,
};
use crate::uploads::{Action, UploadError, UploadService};

/// Where the tus endpoint lives.
pub const TUS_PATH: &str = "/api/v1/tus";
/// The media type of a PATCH's body.
const OFFSET_STREAM: &str = "application/offset+octet-stream";

pub struct TusApi {
    uploads: UploadService,
    max_size: u64,
}

impl TusApi {
    pub fn new(uploads: UploadService, max_size: u64) -> Self {
        Self { uploads, max_size }
    }
}

/// A request's body, when it is `application/offset+octet-stream` (read as it arrives,
/// never whole), and its declared length.
pub struct TusBody {
    body: Option<poem::Body>,
    length: Option<u64>,
}

impl TusBody {
    /// The body as bytes to append; `None` when the request's type is another.
    fn take(&mut self) -> Option<impl tokio::io::AsyncRead + Unpin + Send + 'static> {
        use futures_util::TryStreamExt;
        let body = self.body.take()?;
        Some(StreamReader::new(
            body.into_bytes_stream().map_err(std::io::Error::other),
        ))
    }
}

impl<'a> ApiExtractor<'a> for TusBody {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: Some("The upload's next bytes, from `Upload-Offset`"),
            content: vec![MetaMediaType {
                content_type: OFFSET_STREAM,
                schema: MetaSchemaRef::Inline(Box::new(MetaSchema {
                    format: Some("binary"),
                    ..MetaSchema::new("string")
                })),
            }],
            required: false,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut poem::RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        let streamed = request.content_type().is_some_and(|ct| {
            ct.split(';')
                .next()
                .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(OFFSET_STREAM))
        });
        let length = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        Ok(Self {
            body: if streamed { Some(body.take()?) } else { None },
            length,
        })
    }
}

#[derive(ApiResponse)]
enum CapabilitiesResponse {
    /// What this server speaks.
    #[oai(status = 204)]
    Capabilities(
        /// `1.0.0`.
        #[oai(header = "Tus-Version")]
        String,
        /// `creation,creation-with-upload,termination,checksum,expiration`.
        #[oai(header = "Tus-Extension")]
        String,
        /// `sha1,sha256`.
        #[oai(header = "Tus-Checksum-Algorithm")]
        String,
        /// `MAX_UPLOAD_SIZE`.
        #[oai(header = "Tus-Max-Size")]
        u64,
    ),
}

#[derive(ApiResponse)]
enum CreatedResponse {
    /// The upload exists (with `creation-with-upload`, holding the body's bytes).
    #[oai(status = 201)]
    Created(
        /// Where to send the bytes: absolute, on the origin the request reached.
        #[oai(header = "Location")]
        String,
        #[oai(header = "Upload-Offset")] u64,
        /// When the upload stops accepting bytes (`MULTIPART_EXPIRES` after creation).
        #[oai(header = "Upload-Expires")]
        Option<String>,
    ),
}

#[derive(ApiResponse)]
enum StatusResponse {
    /// How many bytes the server has (a completed upload has all of them).
    #[oai(status = 200)]
    Status(
        #[oai(header = "Upload-Offset")] u64,
        #[oai(header = "Upload-Length")] u64,
        /// `image_id`, `filename`, `filetype` and the upload's other metadata.
        #[oai(header = "Upload-Metadata")]
        String,
        #[oai(header = "Upload-Expires")] Option<String>,
        /// `no-store`.
        #[oai(header = "Cache-Control")]
        String,
    ),
}

#[derive(ApiResponse)]
enum AppendedResponse {
    /// The bytes are kept. When the offset reached `Upload-Length`, the upload was verified
    /// and completed before this answer (`GET /api/v1/uploads/{upload_id}` shows it).
    #[oai(status = 204)]
    Appended(
        #[oai(header = "Upload-Offset")] u64,
        #[oai(header = "Upload-Expires")] Option<String>,
    ),
}

#[derive(ApiResponse)]
enum TerminatedResponse {
    /// Aborted (or, once completed, deleted), and its bytes removed from storage.
    #[oai(status = 204)]
    Terminated,
}

/// A tus request's failure, in the v1 error shape.
#[derive(Debug, ApiResponse)]
pub enum TusError {
    /// A header is missing or malformed.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// With `API_KEYS` set: no valid API key or upload link.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>, #[oai(header = "WWW-Authenticate")] String),
    /// The credentials do not cover this upload or image_id.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// No such tus upload.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// `Upload-Offset` is not the upload's offset (`offset_mismatch`).
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The upload expired, was terminated, aborted or deleted.
    #[oai(status = 410)]
    Gone(Json<ErrorBody>),
    /// `Tus-Resumable` is missing or names another version (`Tus-Version` lists ours).
    #[oai(status = 412)]
    UnsupportedVersion(Json<ErrorBody>),
    /// `Upload-Length` is over `MAX_UPLOAD_SIZE` (or the link's size limit), or the body
    /// goes past it.
    #[oai(status = 413)]
    TooLarge(Json<ErrorBody>),
    /// The type (`filetype`, else the file name's extension) is missing, not allowed or
    /// disagrees with the other; or a PATCH's body is not `application/offset+octet-stream`.
    #[oai(status = 415)]
    UnsupportedType(Json<ErrorBody>),
    /// The whole file failed verification (the code says why); nothing is left in storage.
    #[oai(status = 422)]
    Rejected(Json<ErrorBody>),
    /// Another request is still writing the upload.
    #[oai(status = 423)]
    Locked(Json<ErrorBody>, #[oai(header = "Retry-After")] u32),
    /// Too many requests, or too many pending uploads for the image_id.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>, #[oai(header = "Retry-After")] u32),
    /// The PATCH's bytes do not match its `Upload-Checksum`; none of them were kept.
    #[oai(status = 460)]
    ChecksumMismatch(Json<ErrorBody>),
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// Object storage answered with an error.
    #[oai(status = 502)]
    BadGateway(Json<ErrorBody>),
    /// Storage, the database or the local spool unavailable, or shutting down.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>, #[oai(header = "Retry-After")] u32),
}

impl From<Problem> for TusError {
    fn from(problem: Problem) -> Self {
        let body = Json(ErrorBody::from(&problem));
        let retry_after = problem.retry_after.unwrap_or(RETRY_AFTER_SECS);
        match problem.status {
            400 => Self::BadRequest(body),
            401 => Self::Unauthorized(body, "Bearer".to_owned()),
            403 => Self::Forbidden(body),
            404 => Self::NotFound(body),
            409 => Self::Conflict(body),
            410 => Self::Gone(body),
            412 => Self::UnsupportedVersion(body),
            413 => Self::TooLarge(body),
            415 => Self::UnsupportedType(body),
            422 => Self::Rejected(body),
            423 => Self::Locked(body, retry_after),
            429 => Self::TooManyRequests(body, retry_after),
            460 => Self::ChecksumMismatch(body),
            502 => Self::BadGateway(body),
            503 => Self::Unavailable(body, retry_after),
            _ => Self::Internal(body),
        }
    }
}

impl From<UploadError> for TusError {
    fn from(err: UploadError) -> Self {
        err.problem().into()
    }
}

fn header_error(err: HeaderError) -> TusError {
    UploadError::TusHeader(err.to_string()).into()
}

fn expires(upload: &TusUpload) -> Option<String> {
    upload.expires_at.map(http_date)
}

#[OpenApi(tag = "ApiTags::Tus")]
impl TusApi {
    /// tus capabilities
    ///
    /// The protocol versions, extensions and checksum algorithms served, and the largest
    /// upload (`Tus-Max-Size`).
    #[oai(path = "/api/v1/tus", method = "options", operation_id = "tus_options")]
    async fn options(&self) -> CapabilitiesResponse {
        CapabilitiesResponse::Capabilities(
            TUS_VERSION.to_owned(),
            TUS_EXTENSIONS.to_owned(),
            ALGORITHMS.to_owned(),
            self.max_size,
        )
    }

    /// Create a tus upload
    ///
    /// `Upload-Length` is the file's size; `Upload-Metadata` carries `image_id` and
    /// `filename` (required) and `filetype` (else the type follows the name's extension),
    /// base64-encoded; any other keys become the upload's metadata. With a body of type
    /// `application/offset+octet-stream` (creation-with-upload), its bytes are appended
    /// at once. Same credentials, checks and caps as `POST /api/v1/uploads`.
    #[oai(path = "/api/v1/tus", method = "post", operation_id = "tus_create")]
    #[allow(clippy::too_many_arguments)]
    async fn create(
        &self,
        _auth: Credentials,
        caller: Data<&Caller>,
        origin: Option<Data<&ClientOrigin>>,
        #[oai(name = "Upload-Length")] length: Header<Option<String>>,
        #[oai(name = "Upload-Defer-Length")] defer: Header<Option<String>>,
        #[oai(name = "Upload-Metadata")] metadata: Header<Option<String>>,
        #[oai(name = "Upload-Checksum")] checksum: Header<Option<String>>,
        mut body: TusBody,
    ) -> Result<CreatedResponse, TusError> {
        if defer.0.is_some() {
            return Err(UploadError::TusHeader(
                "Upload-Defer-Length is not supported: give Upload-Length".to_owned(),
            )
            .into());
        }
        let request = self
            .uploads
            .parse_tus_creation(length.0.as_deref(), metadata.0.as_deref())?;
        let checksum = checksum
            .0
            .as_deref()
            .map(ChunkChecksum::parse)
            .transpose()
            .map_err(header_error)?;
        let size = request.size;
        if body.body.is_some() && body.length.is_some_and(|len| len > size) {
            return Err(UploadError::BeyondLength { length: size }.into());
        }
        let link = self
            .uploads
            .authorize_new(&caller, &request.image_id, Some(size))
            .await?;
        let created = self.uploads.tus_create(request, link).await?;
        let location = match origin {
            Some(origin) => format!("{}{TUS_PATH}/{}", origin.url(), created.id),
            None => format!("{TUS_PATH}/{}", created.id),
        };
        let upload = match body.take() {
            None => created,
            Some(bytes) => match self
                .uploads
                .tus_append(created.id, 0, body.length, checksum, bytes)
                .await
            {
                Ok(upload) => upload,
                // A refused file is failed: there is nothing to resume.
                Err(err @ UploadError::Rejected(_)) => return Err(err.into()),
                // The body did not have its checksum: 460 as for a PATCH, and the upload
                // the client never learnt the Location of is not kept either.
                Err(err @ UploadError::ChunkChecksumMismatch) => {
                    self.uploads.tus_terminate(created.id).await?;
                    return Err(err.into());
                }
                // Otherwise the upload exists, and its Location is what the client needs:
                // it resumes from what was kept (none of the body, after a 460).
                Err(err) => match self.uploads.tus_status(created.id).await {
                    Ok(upload) => {
                        tracing::info!(upload_id = %created.id, error = %err, "tus creation kept only part of its body");
                        upload
                    }
                    Err(_) => return Err(err.into()),
                },
            },
        };
        Ok(CreatedResponse::Created(
            location,
            upload.offset,
            expires(&upload),
        ))
    }

    /// A tus upload's offset
    ///
    /// How many bytes the server holds: where the client resumes. After a restart this is
    /// what storage and the local spool hold (at least the end of the last stored part).
    #[oai(
        path = "/api/v1/tus/:upload_id",
        method = "head",
        operation_id = "tus_status"
    )]
    async fn status(&self, upload_id: Path<String>) -> Result<StatusResponse, TusError> {
        let id = parse_upload_id::<TusError>(&upload_id)?;
        let upload = self.uploads.tus_status(id).await?;
        let metadata = format_metadata(
            upload
                .metadata
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        Ok(StatusResponse::Status(
            upload.offset,
            upload.length,
            metadata,
            expires(&upload),
            "no-store".to_owned(),
        ))
    }

    /// Append to a tus upload
    ///
    /// The body (`application/offset+octet-stream`) continues the upload at
    /// `Upload-Offset`, which must be the server's offset (409 otherwise). With
    /// `Upload-Checksum` (`sha1` or `sha256`, base64), the bytes are kept only if they have
    /// that digest (460 otherwise, and the offset does not move). The PATCH that reaches
    /// `Upload-Length` verifies the file as confirm does: 204 once it is completed, 422
    /// with the code when it is refused (nothing is left in storage).
    #[oai(
        path = "/api/v1/tus/:upload_id",
        method = "patch",
        operation_id = "tus_append"
    )]
    async fn append(
        &self,
        _auth: Credentials,
        caller: Data<&Caller>,
        upload_id: Path<String>,
        #[oai(name = "Upload-Offset")] offset: Header<u64>,
        #[oai(name = "Upload-Checksum")] checksum: Header<Option<String>>,
        mut body: TusBody,
    ) -> Result<AppendedResponse, TusError> {
        let id = parse_upload_id::<TusError>(&upload_id)?;
        let checksum = checksum
            .0
            .as_deref()
            .map(ChunkChecksum::parse)
            .transpose()
            .map_err(header_error)?;
        let Some(bytes) = body.take() else {
            return Err(Problem::new(
                415,
                "unsupported_media_type",
                format!("a PATCH's body must be {OFFSET_STREAM}"),
            )
            .into());
        };
        self.uploads
            .authorize_existing(&caller, id, Action::Finish)
            .await?;
        let upload = self
            .uploads
            .tus_append(id, offset.0, body.length, checksum, bytes)
            .await?;
        Ok(AppendedResponse::Appended(upload.offset, expires(&upload)))
    }

    /// Terminate a tus upload
    ///
    /// Aborts it (a completed one is deleted, as `DELETE /api/v1/uploads/{upload_id}`
    /// does) and removes its bytes from storage and the spool.
    #[oai(
        path = "/api/v1/tus/:upload_id",
        method = "delete",
        operation_id = "tus_terminate"
    )]
    async fn terminate(
        &self,
        _auth: Credentials,
        caller: Data<&Caller>,
        upload_id: Path<String>,
    ) -> Result<TerminatedResponse, TusError> {
        let id = parse_upload_id::<TusError>(&upload_id)?;
        self.uploads
            .authorize_existing(&caller, id, Action::Remove)
            .await?;
        self.uploads.tus_terminate(id).await?;
        Ok(TerminatedResponse::Terminated)
    }
}

/// Whether `path` is one of tus's.
fn is_tus(path: &str) -> bool {
    path.strip_prefix(TUS_PATH)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The rules of tus that hold for every request on its paths: `X-HTTP-Method-Override`
/// names the method (for clients behind proxies that only pass GET and POST); a request
/// other than OPTIONS must carry `Tus-Resumable: 1.0.0` (412 with `Tus-Version`
/// otherwise); and every answer carries `Tus-Resumable`. Outermost, so the route table's
/// method rules see the method meant.
pub async fn tus_protocol<E: Endpoint>(next: E, mut req: Request) -> poem::Result<Response> {
    if !is_tus(req.uri().path()) {
        return next.call(req).await.map(IntoResponse::into_response);
    }
    if let Some(method) = req
        .headers()
        .get("x-http-method-override")
        .and_then(|v| Method::from_bytes(v.as_bytes()).ok())
    {
        req.set_method(method);
    }
    let version = HeaderValue::from_static(TUS_VERSION);
    let mut resp = if req.method() != Method::OPTIONS
        && req.headers().get("tus-resumable") != Some(&version)
    {
        let problem = Problem::new(
            StatusCode::PRECONDITION_FAILED.as_u16(),
            "unsupported_tus_version",
            format!("this server speaks tus {TUS_VERSION}: send Tus-Resumable: {TUS_VERSION}"),
        );
        let mut resp = render(ErrorStyle::V1, &problem);
        resp.headers_mut().insert("tus-version", version.clone());
        resp
    } else {
        match next.call(req).await {
            Ok(resp) => resp.into_response(),
            Err(err) => err.into_response(),
        }
    };
    resp.headers_mut().insert("tus-resumable", version);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tus_paths_are_tus() {
        assert!(is_tus("/api/v1/tus"));
        assert!(is_tus("/api/v1/tus/0190d5e6-8a5e-7c41-9a3e-6f1d2b3c4d5e"));
        assert!(!is_tus("/api/v1/tusk"));
        assert!(!is_tus("/api/v1/uploads"));
    }
}
