//! The one place where errors become HTTP responses with stable machine codes. Internal
//! detail is logged here and never sent.

use poem::{Endpoint, IntoResponse, Request, Response};
use poem_openapi::ApiResponse;
use poem_openapi::payload::Json;

use crate::db::DbError;
use crate::domain::InputError;
use crate::storage::StorageError;
use crate::uploads::UploadError;

pub use upload_broker_types::Error as ErrorBody;

/// Seconds a client should wait before retrying after a 503.
const RETRY_AFTER_SECS: u32 = 5;

#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// The request is malformed or a value is invalid.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// With `API_KEYS` set: no valid API key or upload link.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>, #[oai(header = "WWW-Authenticate")] String),
    /// The credentials do not cover this: another image_id, a used-up link, a key needed.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// No such upload or image.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The object is not in storage yet.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The upload expired, was aborted or deleted.
    #[oai(status = 410)]
    Gone(Json<ErrorBody>),
    /// The declared size is above the limit.
    #[oai(status = 413)]
    TooLarge(Json<ErrorBody>),
    /// The content type is not an allowed image type.
    #[oai(status = 415)]
    UnsupportedType(Json<ErrorBody>),
    /// The uploaded object failed verification; it was deleted.
    #[oai(status = 422)]
    Rejected(Json<ErrorBody>),
    /// An unexpected failure.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// Object storage answered with an error.
    #[oai(status = 502)]
    BadGateway(Json<ErrorBody>),
    /// Too many requests (`rate_limited`), or too many pending uploads for the image_id.
    #[oai(status = 429)]
    TooManyRequests(
        Json<ErrorBody>,
        /// Seconds to wait before retrying.
        #[oai(header = "Retry-After")]
        u32,
    ),
    /// Storage or database unavailable; retry after the given seconds.
    #[oai(status = 503)]
    Unavailable(
        Json<ErrorBody>,
        /// Seconds to wait before retrying.
        #[oai(header = "Retry-After")]
        u32,
    ),
}

impl ApiError {
    pub fn body(&self) -> &ErrorBody {
        match self {
            ApiError::BadRequest(b)
            | ApiError::Unauthorized(b, _)
            | ApiError::Forbidden(b)
            | ApiError::TooManyRequests(b, _)
            | ApiError::NotFound(b)
            | ApiError::Conflict(b)
            | ApiError::Gone(b)
            | ApiError::TooLarge(b)
            | ApiError::UnsupportedType(b)
            | ApiError::Rejected(b)
            | ApiError::Internal(b)
            | ApiError::BadGateway(b)
            | ApiError::Unavailable(b, _) => b,
        }
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        ApiError::BadRequest(Json(ErrorBody::new(code, message)))
    }

    /// A 503 that tells the client to try again after `RETRY_AFTER_SECS`.
    pub fn unavailable(code: &str, message: impl Into<String>) -> Self {
        ApiError::Unavailable(Json(ErrorBody::new(code, message)), RETRY_AFTER_SECS)
    }
}

/// Errors that never reached a handler (unknown route, wrong method, a body or parameter
/// that does not parse) get the JSON error shape too: the v1 `{code, message}`, or the
/// seed's `{success: false, error}` on the legacy paths.
pub async fn json_errors<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    let legacy = is_legacy_path(req.uri().path());
    // Kept for a 405's `Allow` (a `Uri` clones without copying its text).
    let uri = req.uri().clone();
    let err = match next.call(req).await {
        Ok(resp) => return Ok(resp.into_response()),
        Err(err) => err,
    };
    // Errors made from an API response already have their body.
    if !err.has_source() {
        return Err(err);
    }
    let status = err.status();
    let (code, message) = match status.as_u16() {
        404 => ("not_found", "no such route".to_owned()),
        405 => (
            "method_not_allowed",
            "method not allowed for this route".to_owned(),
        ),
        413 => ("too_large", err.to_string()),
        415 => ("unsupported_media_type", err.to_string()),
        400..=499
            if err.is::<poem_openapi::error::ParseRequestPayloadError>()
                || err.is::<poem_openapi::error::ParseParamError>() =>
        {
            (
                "invalid_request",
                super::document::plain_parse_error(&err.to_string()),
            )
        }
        400..=499 => ("invalid_request", err.to_string()),
        _ => {
            tracing::error!(error = %err, "unhandled error");
            ("internal", "internal error".to_owned())
        }
    };
    let body = if legacy {
        serde_json::json!({ "success": false, "error": message })
    } else {
        serde_json::json!({ "code": code, "message": message })
    };
    let mut resp = Response::builder()
        .status(status)
        .content_type("application/json; charset=utf-8");
    if status == poem::http::StatusCode::METHOD_NOT_ALLOWED
        && let Some(allow) = super::document::allowed_methods(crate::metrics::route_of(uri.path()))
    {
        resp = resp.header(poem::http::header::ALLOW, allow);
    }
    Ok(resp.body(body.to_string()))
}

/// Largest JSON request body of the v1 API.
pub const MAX_JSON_BODY: usize = 64 * 1024;

/// Bounds v1 request bodies, whether or not they announce their length, so a huge or
/// endless JSON body is a 413 instead of memory.
pub async fn limit_json_body<E: Endpoint>(next: E, mut req: Request) -> poem::Result<Response> {
    if req.uri().path().starts_with("/api/v1/") {
        let too_large = || {
            Response::builder()
                .status(poem::http::StatusCode::PAYLOAD_TOO_LARGE)
                .content_type("application/json; charset=utf-8")
                .body(
                    serde_json::json!({
                        "code": "too_large",
                        "message": format!("request bodies are limited to {MAX_JSON_BODY} bytes"),
                    })
                    .to_string(),
                )
        };
        let declared = req
            .headers()
            .get(poem::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > MAX_JSON_BODY) {
            return Ok(too_large());
        }
        match req.take_body().into_bytes_limit(MAX_JSON_BODY).await {
            Ok(bytes) => req.set_body(bytes),
            Err(poem::error::ReadBodyError::PayloadTooLarge) => return Ok(too_large()),
            Err(err) => return Err(err.into()),
        }
    }
    next.call(req).await.map(IntoResponse::into_response)
}

fn is_legacy_path(path: &str) -> bool {
    ["/upload/", "/api/url/", "/api/images/"]
        .iter()
        .any(|prefix| path.starts_with(prefix))
}

impl From<InputError> for ApiError {
    fn from(err: InputError) -> Self {
        let code = match err {
            InputError::InvalidImageId => "invalid_image_id",
            InputError::UnsupportedType => {
                return ApiError::UnsupportedType(Json(ErrorBody::new(
                    "unsupported_type",
                    err.to_string(),
                )));
            }
            InputError::ExtensionMismatch => "extension_mismatch",
            InputError::MissingFilename | InputError::FilenameTooLong => "invalid_filename",
            InputError::InvalidChecksum => "invalid_checksum",
            InputError::InvalidMetadata(_) => "invalid_metadata",
        };
        ApiError::bad_request(code, err.to_string())
    }
}

impl From<StorageError> for ApiError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "object storage unavailable");
                ApiError::unavailable(
                    "storage_unavailable",
                    "object storage is unavailable; try again shortly",
                )
            }
            StorageError::NoSuchKey => {
                tracing::warn!("an object disappeared while it was being read");
                ApiError::Conflict(Json(ErrorBody::new(
                    "not_uploaded",
                    "the object is no longer in storage",
                )))
            }
            StorageError::NoSuchUpload => {
                tracing::warn!("the store no longer has a multipart upload we recorded");
                ApiError::Conflict(Json(ErrorBody::new(
                    "not_uploaded",
                    "the multipart upload no longer exists in storage",
                )))
            }
            StorageError::Refused(detail) | StorageError::Signing(detail) => {
                tracing::error!(error = %detail, "object storage refused a request");
                ApiError::BadGateway(Json(ErrorBody::new(
                    "storage_error",
                    "object storage refused the request",
                )))
            }
        }
    }
}

impl From<DbError> for ApiError {
    fn from(err: DbError) -> Self {
        match err {
            DbError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "database unavailable");
                ApiError::unavailable(
                    "database_unavailable",
                    "the database is busy or unavailable; try again shortly",
                )
            }
            DbError::Query(detail) => {
                tracing::error!(error = %detail, "database query failed");
                ApiError::Internal(Json(ErrorBody::new("internal", "internal error")))
            }
        }
    }
}

impl From<UploadError> for ApiError {
    fn from(err: UploadError) -> Self {
        let message = err.to_string();
        let body = |code: &str| Json(ErrorBody::new(code, message.clone()));
        match err {
            UploadError::Input(input) => input.into(),
            UploadError::EmptyFile => ApiError::BadRequest(body("invalid_size")),
            UploadError::TooLarge { limit } => {
                let mut body = ErrorBody::new("too_large", message);
                body.limit = Some(limit);
                ApiError::TooLarge(Json(body))
            }
            UploadError::InvalidCursor => ApiError::BadRequest(body("invalid_cursor")),
            UploadError::ShuttingDown => ApiError::unavailable("shutting_down", message),
            UploadError::Busy => ApiError::unavailable("busy", message),
            UploadError::Spool(_) => {
                tracing::error!(error = %message, "temporary file for an upload failed");
                ApiError::unavailable(
                    "local_disk_unavailable",
                    "the upload could not be held on local disk; try again shortly",
                )
            }
            UploadError::BodyRead(_) => {
                ApiError::bad_request("invalid_request", "the request body could not be read")
            }
            UploadError::NotFound | UploadError::NoImage => ApiError::NotFound(body("not_found")),
            UploadError::NotUploaded => ApiError::Conflict(body("not_uploaded")),
            UploadError::Gone(state) => ApiError::Gone(body(state)),
            UploadError::AlreadyCompleted => ApiError::Conflict(body("already_completed")),
            UploadError::NotMultipart => ApiError::Conflict(body("not_multipart")),
            UploadError::InvalidParts(_) => ApiError::BadRequest(body("invalid_parts")),
            UploadError::IncompleteUpload(missing) => {
                let mut body = ErrorBody::new("incomplete_upload", message);
                body.missing_parts = Some(missing);
                ApiError::Conflict(Json(body))
            }
            UploadError::Rejected(rejection) => ApiError::Rejected(body(rejection.code())),
            UploadError::Storage(err) => err.into(),
            UploadError::Db(err) => err.into(),
            UploadError::Auth(auth) if auth.is_unauthenticated() => {
                ApiError::Unauthorized(body(auth.code()), "Bearer".to_owned())
            }
            UploadError::Auth(auth) => ApiError::Forbidden(body(auth.code())),
            UploadError::InvalidLink(_) => ApiError::BadRequest(body("invalid_link")),
            UploadError::PendingCap { code, .. } => {
                ApiError::TooManyRequests(body(code), RETRY_AFTER_SECS)
            }
        }
    }
}
