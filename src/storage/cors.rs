//! Whether the bucket's CORS rules let browsers on other origins upload to it.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use super::error::classify;
use super::{Storage, StorageError};

/// What the bucket's CORS rules allow a browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketCors {
    /// A rule allows PUT and exposes `ETag`.
    Ok,
    /// The embedded store: the service answers CORS for it.
    ServedByService,
    /// No rule allows PUT with `ETag` exposed: browsers cannot finish multipart uploads.
    EtagNotExposed,
    /// The bucket has no CORS rules: browsers on other origins cannot upload at all.
    NoRules,
    /// The store would not tell.
    Unknown,
}

impl BucketCors {
    pub fn as_str(self) -> &'static str {
        match self {
            BucketCors::Ok => "ok",
            BucketCors::ServedByService => "served_by_service",
            BucketCors::EtagNotExposed => "etag_not_exposed",
            BucketCors::NoRules => "no_rules",
            BucketCors::Unknown => "unknown",
        }
    }
}

impl Storage {
    /// Whether a browser on another origin can PUT to the bucket and read each part's
    /// `ETag`, which multipart uploads from the page need.
    pub async fn browser_cors(&self) -> Result<BucketCors, StorageError> {
        self.bounded(async {
            if self.is_embedded() {
                return Ok(BucketCors::ServedByService);
            }
            let rules = match self
                .client
                .get_bucket_cors()
                .bucket(&self.bucket)
                .send()
                .await
            {
                Ok(out) => out.cors_rules.unwrap_or_default(),
                Err(SdkError::ServiceError(e))
                    if e.err().code() == Some("NoSuchCORSConfiguration") =>
                {
                    return Ok(BucketCors::NoRules);
                }
                // A refusal means the store does not say (no GetBucketCors, or no permission
                // for it); what `classify` calls unavailable is an outage.
                Err(err @ SdkError::ServiceError(_)) => {
                    return match classify(err) {
                        StorageError::Unavailable(detail) => Err(StorageError::Unavailable(detail)),
                        _ => Ok(BucketCors::Unknown),
                    };
                }
                Err(err) => return Err(classify(err)),
            };
            let lets_browsers_upload = rules.iter().any(|rule| {
                rule.allowed_methods()
                    .iter()
                    .any(|m| m.eq_ignore_ascii_case("PUT"))
                    && rule
                        .expose_headers()
                        .iter()
                        .any(|h| h.eq_ignore_ascii_case("etag") || h == "*")
            });
            Ok(if lets_browsers_upload {
                BucketCors::Ok
            } else {
                BucketCors::EtagNotExposed
            })
        })
        .await
    }
}
