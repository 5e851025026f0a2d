//! Database entities shared by the service and its migrations.

pub mod link_use;
pub mod upload;

pub use upload::{Entity as Upload, Model as UploadModel, UploadMethod, UploadState};
