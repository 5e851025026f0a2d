//! What upload-broker's service and its command-line uploader share: the v1 API's requests
//! and answers (serde always; poem-openapi's `Object` and `Enum` with the `openapi`
//! feature, for the service's OpenAPI document), the image formats the service accepts, and
//! how a multipart upload's file is cut into parts.

mod admin;
mod api;
mod format;
mod plan;
mod text;
mod webhooks;

pub use admin::{
    AdminStats, AdminUploadList, AuditEntry, AuditList, LastDay, ReverifiedUpload, ReverifyResult,
    StateStats,
};
pub use api::{
    CreateLinkRequest, CreateUploadRequest, Error, ImageList, IssuedUpload, SignPartsRequest,
    SignedPart, SignedPartList, StorageEventsResult, Upload, UploadLink, UploadMethod, UploadState,
    UploadedPart, UploadedPartList, VariantFile, VariantsState,
};
pub use format::{ImageFormat, InputError};
pub use plan::PartPlan;
pub use text::Text;
pub use webhooks::{
    CreateWebhookRequest, CreatedWebhook, Delivery, DeliveryList, DeliveryState, Webhook,
    WebhookList,
};
