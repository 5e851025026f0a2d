//! The upload page at `/{image_id}`, the same page for the legacy and the new UI.

use poem_openapi::param::Path;
use poem_openapi::payload::{Html, Json};
use poem_openapi::{ApiResponse, OpenApi};

use super::ApiTags;
use super::error::LegacyError;
use crate::domain::{ImageId, RESERVED_IMAGE_IDS};
use crate::frontend::Assets;

pub struct PagesApi {
    assets: Assets,
}

impl PagesApi {
    pub fn new(assets: Assets) -> Self {
        Self { assets }
    }
}

#[derive(ApiResponse)]
enum PageResponse {
    /// The upload page.
    #[oai(status = 200)]
    Page(Html<String>),
    /// The image_id is invalid.
    #[oai(status = 400)]
    BadRequest(Json<LegacyError>),
    /// A reserved name.
    #[oai(status = 404)]
    NotFound(Json<LegacyError>),
}

#[derive(ApiResponse)]
enum ConsoleResponse {
    /// The operators' console; it asks for an admin key, kept for the browser tab only.
    #[oai(status = 200)]
    Page(Html<String>),
}

#[OpenApi(tag = "ApiTags::Admin")]
impl ConsoleApi {
    /// The operators' console
    #[oai(path = "/admin", method = "get", operation_id = "admin_console")]
    async fn admin_console(&self) -> ConsoleResponse {
        ConsoleResponse::Page(Html(self.assets.console()))
    }
}

/// The console page, served without a key (its API calls need one).
pub struct ConsoleApi {
    assets: Assets,
}

impl ConsoleApi {
    pub fn new(assets: Assets) -> Self {
        Self { assets }
    }
}

#[OpenApi(tag = "ApiTags::Legacy")]
impl PagesApi {
    /// Upload page for an image_id
    #[oai(path = "/:image_id", method = "get", operation_id = "upload_page")]
    async fn upload_page(&self, image_id: Path<String>) -> PageResponse {
        if RESERVED_IMAGE_IDS.contains(&image_id.as_str()) {
            return PageResponse::NotFound(LegacyError::new("Not found"));
        }
        match ImageId::parse(&image_id) {
            Ok(_) => PageResponse::Page(Html(self.assets.page())),
            Err(err) => PageResponse::BadRequest(LegacyError::new(err.to_string())),
        }
    }
}
