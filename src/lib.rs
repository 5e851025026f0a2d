//! upload-broker: presigned S3 uploads with a durable record and server-side verification.

pub mod api;
pub mod auth;
pub mod config;
pub mod crypto;
pub mod db;
pub mod domain;
pub mod events;
pub mod frontend;
pub mod metrics;
pub mod origin;
pub mod problem;
pub mod shutdown;
pub mod startup;
pub mod storage;
pub mod telemetry;
pub mod uploads;
pub mod variants;
pub mod vary;
pub mod webhooks;

pub use startup::Application;
