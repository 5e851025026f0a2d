//! The HTTP API: one `#[OpenApi]` struct per tag, documented from the code.

mod error;
mod images;
mod legacy;
mod pages;
mod security;
mod system;
mod uploads;

use poem_openapi::{OpenApiService, Tags};

pub use error::{ApiError, ErrorBody, json_errors, limit_json_body};
pub use security::{cors, security_headers};

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
