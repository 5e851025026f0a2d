//! The object store: presigning, HeadObject, ranged reads, hashing and deletes, through
//! aws-sdk-s3 against AWS, any S3-compatible endpoint, or the embedded store.
//!
//! `connect` makes the client; `objects` handles whole objects, `multipart` multipart
//! uploads, `listing` what the bucket holds and `cors` its CORS rules; `error` says how
//! the SDK's errors are classified.

mod budget;
mod connect;
mod cors;
mod discard;
pub mod embedded;
mod error;
mod leftovers;
mod listing;
mod multipart;
mod objects;
mod payload;
mod presign;
mod queue;
mod strict_fs;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::Client;

pub use budget::with_budget;
pub use cors::BucketCors;
pub use error::StorageError;
use error::classify;
pub use multipart::StoredPart;
pub use objects::{ObjectHead, ObjectStart};
pub use payload::Payload;
use presign::Presigner;
pub use presign::{SignedRequest, for_client};
pub use queue::{EventQueue, QueuedMessage};

/// How `s3_url` is made for a key.
#[derive(Debug, Clone)]
enum ObjectUrls {
    /// A presigned GET (embedded store, private buckets).
    Presigned,
    /// The bucket's own URL for the key (public-read buckets).
    Direct,
    /// `PUBLIC_BASE_URL` + key (a CDN).
    BaseUrl(String),
}

#[derive(Debug, Clone)]
pub struct Storage {
    client: Client,
    /// Signs the URLs clients use, for the endpoint they reach: the store's own, or
    /// `S3_PUBLIC_ENDPOINT_URL`.
    presigner: Arc<Presigner>,
    bucket: String,
    /// Where the service reaches the store: the embedded store's address or
    /// `AWS_ENDPOINT_URL`; `None` for AWS itself.
    endpoint: Option<String>,
    presign_expires: Duration,
    object_url_expires: Duration,
    /// `S3_OPERATION_TIMEOUT`: the storage budget of one request (`budget`).
    operation_timeout: Duration,
    /// `S3_CONDITIONAL_WRITES`: PUT URLs carry `If-None-Match: *`.
    conditional_writes: bool,
    object_urls: ObjectUrls,
    /// The embedded store's files; `None` for other stores.
    embedded: Option<Arc<leftovers::InternalFiles>>,
    /// The embedded store's S3 service, for the service's listener; `None` for other stores.
    store_service: Option<embedded::StoreService>,
    /// Objects to remove in batches, off the caller's path (`discard`).
    discards: tokio::sync::mpsc::UnboundedSender<String>,
    /// The keys the embedded store's PutObjects write (`AUTO_CONFIRM`), until taken.
    landed: Arc<std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<String>>>>,
}

impl Storage {
    /// The keys the embedded store's PutObjects write, once (`AUTO_CONFIRM`).
    pub fn take_landed(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<String>> {
        self.landed.lock().ok()?.take()
    }

    /// Removes `key` soon, with others in one DeleteObjects, off the caller's path: for an
    /// object nothing refers to any more (a confirmed upload's staged copy). One a crash
    /// leaves behind is removed by the sweeper.
    pub fn discard(&self, key: String) {
        let _ = self.discards.send(key);
    }

    /// The embedded store's S3 service, to serve under its bucket's path on the service's
    /// own listener; `None` for other stores.
    pub fn store_service(&self) -> Option<embedded::StoreService> {
        self.store_service.clone()
    }

    pub fn is_embedded(&self) -> bool {
        self.embedded.is_some()
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The URL the service reaches the store at (`http://127.0.0.1:PORT` for the embedded
    /// one, `AWS_ENDPOINT_URL` for another S3-compatible store); `None` for AWS itself,
    /// whose endpoint the SDK resolves per region.
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// Whether the bucket answers (for `/health`).
    pub async fn check(&self) -> Result<(), StorageError> {
        self.bounded(async {
            self.client
                .head_bucket()
                .bucket(&self.bucket)
                .send()
                .await
                .map_err(classify)?;
            Ok(())
        })
        .await
    }
}
