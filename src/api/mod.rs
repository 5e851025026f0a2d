//! The HTTP API: one `#[OpenApi]` struct per tag, documented from the code.

mod document;
mod error;
mod images;
mod legacy;
mod limits;
mod pages;
mod security;
mod system;
mod uploads;

use poem_openapi::{OpenApiService, Tags};

pub use document::document;
pub use error::{ApiError, ErrorBody, json_errors, limit_json_body};
pub use limits::{RateLimits, rate_limit};
pub use security::{cors, security_headers};

use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;

use crate::frontend::Assets;
use crate::uploads::UploadService;

#[derive(Tags)]
#[oai(rename_all = "lowercase")]
pub enum ApiTags {
    /// Direct uploads to object storage through presigned URLs.
    Uploads,
    /// Completed uploads, grouped by image_id.
    Images,
    /// The Flask service's API, kept byte-for-byte for existing clients.
    Legacy,
    /// Health and service information.
    System,
}

pub type Apis = (
    uploads::UploadsApi,
    images::ImagesApi,
    legacy::LegacyApi,
    system::SystemApi,
    pages::PagesApi,
);

/// `Authorization: Bearer <token>`: one of `API_KEYS`, or an upload link's token.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", rename = "bearer")]
pub struct BearerToken(Bearer);

/// The credentials of a v1 write request: needed only when `API_KEYS` is set.
#[derive(SecurityScheme)]
pub enum Credentials {
    Token(BearerToken),
    #[oai(fallback)]
    None,
}

impl Credentials {
    pub fn token(&self) -> Option<&str> {
        match self {
            Credentials::Token(BearerToken(bearer)) => Some(&bearer.token),
            Credentials::None => None,
        }
    }
}

/// The token of an `Authorization: Bearer` header, outside the documented operations.
pub fn bearer_token(req: &poem::Request) -> Option<String> {
    let value = req
        .headers()
        .get(poem::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

pub fn service(uploads: UploadService, assets: Assets) -> OpenApiService<Apis, ()> {
    let apis = (
        uploads::UploadsApi::new(uploads.clone()),
        images::ImagesApi::new(uploads.clone()),
        legacy::LegacyApi::new(uploads.clone()),
        system::SystemApi::new(uploads),
        pages::PagesApi::new(assets),
    );
    OpenApiService::new(apis, "upload-broker", env!("CARGO_PKG_VERSION")).description(
        "Upload images straight to S3 through short-lived presigned URLs. Every upload is \
         recorded, and counts only after the service has verified the object: size, magic \
         bytes, pixel dimensions and, when declared, its SHA-256 checksum.",
    )
}
