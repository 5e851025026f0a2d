//! The HTTP API: one `#[OpenApi]` struct per tag, documented from the code.

mod admin;
mod auth;
mod document;
mod error;
mod images;
mod legacy;
mod limits;
mod pages;
mod reach;
pub mod routes;
mod security;
mod system;
mod tus;
mod uploads;
mod webhooks;

use poem_openapi::{OpenApiService, Tags};

pub use auth::authenticate;
pub use document::document;
pub use error::{ApiError, ErrorBody, json_errors, limit_json_body};
pub use limits::{RateLimits, rate_limit};
pub use reach::{Reach, reach};
pub use security::{cors, security_headers};
pub use tus::tus_protocol;

use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;

use crate::frontend::Assets;
use crate::uploads::UploadService;
use crate::webhooks::WebhookService;

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
    /// Signed event notifications: endpoints, the delivery log, replays (admin key).
    Webhooks,
    Admin,
    /// Resumable uploads through the service (tus 1.0.0), for clients that cannot reach
    /// storage.
    Tus,
}

pub type Apis = (
    uploads::UploadsApi,
    images::ImagesApi,
    legacy::LegacyApi,
    system::SystemApi,
    pages::PagesApi,
    webhooks::WebhooksApi,
    admin::AdminApi,
    pages::ConsoleApi,
    tus::TusApi,
);

/// `Authorization: Bearer <token>`: one of `API_KEYS`, or an upload link's token.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", rename = "bearer")]
pub struct BearerToken(
    // Read by `auth::authenticate` from the request itself, before any input is parsed.
    #[allow(dead_code)] Bearer,
);

/// `Authorization: Bearer <admin key>`: one of `ADMIN_KEYS`, for the operators' endpoints.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", rename = "admin")]
pub struct AdminKey(
    // Checked by `auth::authenticate` before the handler runs.
    #[allow(dead_code)] Bearer,
);

/// The credentials of a v1 write request: needed only when `API_KEYS` is set. A handler
/// takes it to document the scheme; the credential itself is checked first of all, by
/// `auth::authenticate`, which hands the handler the `Caller` it found.
/// `STORAGE_EVENTS_TOKEN`, presented by a store that sends event notifications.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", rename = "storage")]
pub struct StorageToken(#[allow(dead_code)] Bearer);

#[derive(SecurityScheme)]
pub enum Credentials {
    Token(BearerToken),
    #[oai(fallback)]
    None,
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

/// The documented API. `environment` is what `/health` reports.
pub fn service(
    uploads: UploadService,
    webhooks: WebhookService,
    assets: Assets,
    environment: &str,
) -> OpenApiService<Apis, ()> {
    let uploads_for_admin = uploads.clone();
    let tus = tus::TusApi::new(uploads.clone(), uploads.max_upload_size());
    let apis = (
        uploads::UploadsApi::new(uploads.clone()),
        images::ImagesApi::new(uploads.clone()),
        legacy::LegacyApi::new(uploads.clone()),
        system::SystemApi::new(uploads, environment.to_owned()),
        pages::PagesApi::new(assets.clone()),
        webhooks::WebhooksApi::new(webhooks),
        admin::AdminApi::new(uploads_for_admin),
        pages::ConsoleApi::new(assets),
        tus,
    );
    OpenApiService::new(apis, "upload-broker", env!("CARGO_PKG_VERSION")).description(
        "Upload images straight to S3 through short-lived presigned URLs. Every upload is \
         recorded, and counts only after the service has verified the object: size, magic \
         bytes, pixel dimensions and, when declared, its SHA-256 checksum.",
    )
}

#[cfg(test)]
mod tests {
    /// The HTTP layer reaches storage and the database only through the lifecycle, and
    /// never sees a database row.
    #[test]
    fn api_uses_neither_the_database_nor_the_store() {
        let folder = concat!(env!("CARGO_MANIFEST_DIR"), "/src/api");
        let forbidden = ["crate::db", "crate::storage", "entity::", "UploadRow"];
        let mut checked = 0;
        for entry in std::fs::read_dir(folder).expect("api folder") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("source");
            // This test names what it forbids; only the code before any tests counts.
            let code = text.split("#[cfg(test)]").next().unwrap_or(&text);
            for word in forbidden {
                assert!(!code.contains(word), "{} uses {word}", path.display());
            }
            checked += 1;
        }
        assert!(checked >= 10, "only {checked} files read");
    }
}
