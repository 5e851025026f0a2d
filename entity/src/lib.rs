//! Database entities shared by the service and its migrations.

pub mod audit_entry;
pub mod event;
pub mod link_use;
pub mod upload;
pub mod upload_counter;
pub mod upload_hourly;
pub mod variant_job;
pub mod webhook_delivery;
pub mod webhook_endpoint;

pub use upload::{
    Entity as Upload, Model as UploadModel, UploadMethod, UploadState, VariantsState,
};
pub use variant_job::JobState;
pub use webhook_delivery::DeliveryState;
pub use webhook_endpoint::EndpointSource;
