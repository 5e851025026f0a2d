//! `/api/v1/images`: completed uploads grouped by image_id.

use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::uploads::{UploadRecord, VariantRedirect};
use super::{ApiError, ApiTags};
use crate::domain::ImageId;
use crate::uploads::UploadService;

pub use upload_broker_types::ImageList;

pub struct ImagesApi {
    uploads: UploadService,
}

impl ImagesApi {
    pub fn new(uploads: UploadService) -> Self {
        Self { uploads }
    }
}

#[derive(ApiResponse)]
enum ImageListResponse {
    /// One page of completed uploads, newest first.
    #[oai(status = 200)]
    Ok(Json<ImageList>),
}

#[derive(ApiResponse)]
enum LatestImageResponse {
    /// The newest completed upload.
    #[oai(status = 200)]
    Ok(Json<UploadRecord>),
}

#[OpenApi(tag = "ApiTags::Images")]
impl ImagesApi {
    /// List an image_id's uploads
    ///
    /// Completed uploads, newest first, paginated with `limit` and `cursor`.
    #[oai(
        path = "/api/v1/images/:image_id",
        method = "get",
        operation_id = "list_images"
    )]
    async fn list_images(
        &self,
        image_id: Path<String>,
        /// Page size (1-1000, default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
        limit: Query<Option<u64>>,
        /// `next_cursor` of the previous page (empty: the first page).
        cursor: Query<Option<String>>,
    ) -> Result<ImageListResponse, ApiError> {
        let parsed = ImageId::parse(&image_id)?;
        let cursor = cursor.0.as_deref().filter(|c| !c.is_empty());
        let page = self
            .uploads
            .list(&parsed, limit.0.unwrap_or(50), cursor)
            .await?;
        Ok(ImageListResponse::Ok(Json(ImageList {
            image_id: image_id.0,
            images: page.images.into_iter().map(Into::into).collect(),
            next_cursor: page.next_cursor,
        })))
    }

    /// Get an image_id's newest upload
    #[oai(
        path = "/api/v1/images/:image_id/latest",
        method = "get",
        operation_id = "latest_image"
    )]
    async fn latest_image(&self, image_id: Path<String>) -> Result<LatestImageResponse, ApiError> {
        let view = self.uploads.latest(&ImageId::parse(&image_id)?).await?;
        Ok(LatestImageResponse::Ok(Json(view.into())))
    }

    /// Get a variant of an image_id's newest upload
    ///
    /// As `get_upload_variant`, for the newest completed upload of the image_id: an
    /// `<img src>` that always shows the latest. Not cached, since a newer upload changes it.
    #[oai(
        path = "/api/v1/images/:image_id/latest/variants/:variant",
        method = "get",
        operation_id = "latest_image_variant"
    )]
    async fn latest_image_variant(
        &self,
        image_id: Path<String>,
        /// `<preset>.<format>`, such as `thumb.webp`.
        variant: Path<String>,
    ) -> Result<VariantRedirect, ApiError> {
        let parsed = ImageId::parse(&image_id)?;
        let name = self.uploads.variant_name(&variant)?;
        let url = self.uploads.latest_variant_url(&parsed, &name).await?;
        Ok(VariantRedirect::found(url, "no-cache"))
    }
}
