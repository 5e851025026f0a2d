//! What went wrong with a store request, and how the SDK's errors map to it.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Timeouts, refused connections, 5xx: worth retrying later.
    #[error("object storage unavailable: {0}")]
    Unavailable(String),
    /// The store answered and refused.
    #[error("object storage refused the request: {0}")]
    Refused(String),
    /// The multipart upload is gone (completed or aborted).
    #[error("no such multipart upload")]
    NoSuchUpload,
    /// The object is not there (any more).
    #[error("no such object")]
    NoSuchKey,
    #[error("cannot sign a request: {0}")]
    Signing(String),
}

/// Like `classify`, but tells a multipart upload that no longer exists apart.
pub(super) fn classify_multipart<E>(err: SdkError<E, HttpResponse>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(e) if e.err().code() == Some("NoSuchUpload") => {
            StorageError::NoSuchUpload
        }
        _ => classify(err),
    }
}

/// Timeouts, dispatch failures and 5xx mean "try later"; other answers are refusals.
pub(super) fn classify<E>(err: SdkError<E, HttpResponse>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let detail = DisplayErrorContext(&err).to_string();
    match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            StorageError::Unavailable(detail)
        }
        SdkError::ServiceError(service) if service.err().code() == Some("NoSuchKey") => {
            StorageError::NoSuchKey
        }
        SdkError::ServiceError(service) => {
            if service.raw().status().is_server_error() || service.err().code() == Some("SlowDown")
            {
                StorageError::Unavailable(detail)
            } else {
                StorageError::Refused(detail)
            }
        }
        _ => StorageError::Refused(detail),
    }
}
