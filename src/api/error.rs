//! Drawing problems: every failure is classified once into a `Problem` (status, code,
//! message, retry), and drawn here by the v1 renderer (`ApiError`, `{code, message}`) or
//! the legacy one (the seed's `{success: false, error}`), in handlers and middleware alike.

use poem::http::{HeaderValue, StatusCode, header};
use poem::{Endpoint, IntoResponse, Request, Response};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};

use super::routes::{self, ErrorStyle, Family};
use crate::domain::InputError;
use crate::problem::{Problem, RETRY_AFTER_SECS};
use crate::uploads::UploadError;

pub use upload_broker_types::Error as ErrorBody;

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
}

impl From<&Problem> for ErrorBody {
    fn from(problem: &Problem) -> Self {
        Self {
            code: problem.code.clone(),
            message: problem.message.clone(),
            missing_parts: problem.missing_parts.clone(),
            limit: problem.limit,
        }
    }
}

/// The v1 renderer, for handlers.
impl From<Problem> for ApiError {
    fn from(problem: Problem) -> Self {
        let body = Json(ErrorBody::from(&problem));
        let retry_after = problem.retry_after.unwrap_or(RETRY_AFTER_SECS);
        match problem.status {
            400 => ApiError::BadRequest(body),
            401 => ApiError::Unauthorized(body, "Bearer".to_owned()),
            403 => ApiError::Forbidden(body),
            404 => ApiError::NotFound(body),
            409 => ApiError::Conflict(body),
            410 => ApiError::Gone(body),
            413 => ApiError::TooLarge(body),
            415 => ApiError::UnsupportedType(body),
            422 => ApiError::Rejected(body),
            429 => ApiError::TooManyRequests(body, retry_after),
            502 => ApiError::BadGateway(body),
            503 => ApiError::Unavailable(body, retry_after),
            _ => ApiError::Internal(body),
        }
    }
}

impl From<UploadError> for ApiError {
    fn from(err: UploadError) -> Self {
        err.problem().into()
    }
}

impl From<InputError> for ApiError {
    fn from(err: InputError) -> Self {
        UploadError::from(err).problem().into()
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

const UNAVAILABLE: &str = "Service temporarily unavailable, try again shortly";
const INTERNAL: &str = "Internal server error";

/// The legacy renderer, for handlers: a problem as the seed answered it on an endpoint
/// that documents the statuses `declared`. The seed knew no 415 or 422 (a bad file was a
/// 400), and an endpoint's other client errors were 400s; anything it did not expect is a
/// 500.
pub fn legacy_answer(problem: &Problem, declared: &[u16]) -> (u16, Json<LegacyError>) {
    let status = match problem.status {
        415 | 422 => 400,
        status @ (400 | 401 | 403 | 404 | 413 | 503) => status,
        _ => 500,
    };
    let status = if status < 500 && !declared.contains(&status) {
        400
    } else {
        status
    };
    let message = match status {
        500 => INTERNAL.to_owned(),
        503 => UNAVAILABLE.to_owned(),
        _ => legacy_message(problem),
    };
    (status, LegacyError::new(message))
}

fn legacy_message(problem: &Problem) -> String {
    problem
        .legacy_message
        .clone()
        .unwrap_or_else(|| problem.message.clone())
}

/// Either renderer, for middleware: the problem's own status in the route's shape.
pub fn render(style: ErrorStyle, problem: &Problem) -> Response {
    let body = match style {
        ErrorStyle::V1 => v1_json(&ErrorBody::from(problem)),
        ErrorStyle::Legacy => {
            serde_json::json!({ "success": false, "error": legacy_message(problem) })
        }
    };
    let mut resp = Response::builder()
        .status(StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .content_type("application/json; charset=utf-8")
        .body(body.to_string());
    let headers = resp.headers_mut();
    if let Some(seconds) = problem.retry_after
        && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
    {
        headers.insert(header::RETRY_AFTER, value);
    }
    if problem.status == 401 {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    resp
}

/// A problem's body as v1 JSON, without the fields that do not apply.
fn v1_json(body: &ErrorBody) -> serde_json::Value {
    let mut json = serde_json::json!({ "code": body.code, "message": body.message });
    if let Some(missing) = &body.missing_parts {
        json["missing_parts"] = serde_json::json!(missing);
    }
    if let Some(limit) = body.limit {
        json["limit"] = serde_json::json!(limit);
    }
    json
}

/// Errors that never reached a handler (unknown route, wrong method, a body or parameter
/// that does not parse) get the JSON error shape too: the v1 `{code, message}`, or the
/// seed's `{success: false, error}` on the legacy paths.
pub async fn json_errors<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    let route = routes::route_of_request(&req);
    let err = match next.call(req).await {
        Ok(resp) => return Ok(resp.into_response()),
        Err(err) => err,
    };
    // Errors made from an API response already have their body.
    if !err.has_source() {
        return Err(err);
    }
    let status = err.status();
    let problem = match status.as_u16() {
        404 => Problem::new(404, "not_found", "no such route"),
        405 => Problem::new(
            405,
            "method_not_allowed",
            "method not allowed for this route",
        ),
        413 => Problem::new(413, "too_large", err.to_string()),
        415 => Problem::new(415, "unsupported_media_type", err.to_string()),
        status @ 400..=499
            if err.is::<poem_openapi::error::ParseRequestPayloadError>()
                || err.is::<poem_openapi::error::ParseParamError>() =>
        {
            Problem::new(
                status,
                "invalid_request",
                super::document::plain_parse_error(&err.to_string()),
            )
        }
        status @ 400..=499 => Problem::new(status, "invalid_request", err.to_string()),
        status => {
            tracing::error!(error = %err, "unhandled error");
            Problem::new(status, "internal", "internal error")
        }
    };
    let style = routes::error_style(route);
    let mut resp = render(style, &problem);
    if status == StatusCode::METHOD_NOT_ALLOWED
        && let Some(route) = route
        && let Ok(allow) = HeaderValue::from_str(&route.allow())
    {
        resp.headers_mut().insert(header::ALLOW, allow);
    }
    Ok(resp)
}

/// Largest JSON request body of the v1 API.
pub const MAX_JSON_BODY: usize = 64 * 1024;

/// Bounds v1 request bodies, whether or not they announce their length, so a huge or
/// endless JSON body is a 413 instead of memory.
pub async fn limit_json_body<E: Endpoint>(next: E, mut req: Request) -> poem::Result<Response> {
    let v1 = routes::route_of_request(&req).is_some_and(|r| r.family == Family::V1);
    if v1 {
        let too_large = || {
            let message = format!("request bodies are limited to {MAX_JSON_BODY} bytes");
            render(ErrorStyle::V1, &Problem::new(413, "too_large", message))
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
