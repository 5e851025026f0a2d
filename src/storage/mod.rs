//! The object store: presigning, HeadObject, ranged reads, hashing and deletes, through
//! aws-sdk-s3 against AWS, any S3-compatible endpoint, or the embedded store.

pub mod embedded;
mod payload;
mod presign;
mod strict_fs;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::config::{Config, StorageConfig};

const DAY_SECS: u64 = 24 * 3600;
use crate::domain::Sha256Checksum;
use crate::shutdown::Shutdown;
use embedded::{EMBEDDED_BUCKET, EmbeddedStore, EmbeddedStoreError};
pub use payload::Payload;
use presign::{Presigner, Unsigned};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Timeouts, refused connections, 5xx: worth retrying later.
    #[error("object storage unavailable: {0}")]
    Unavailable(String),
    /// The store answered and refused.
    #[error("object storage refused the request: {0}")]
    Refused(String),
    /// The multipart upload is gone (completed or aborted).
    #[error("no such multipart upload")]
    NoSuchUpload,
    /// The object is not there (any more).
    #[error("no such object")]
    NoSuchKey,
    #[error("cannot sign a request: {0}")]
    Signing(String),
}

/// A request the client sends itself: the URL and the headers it must carry verbatim.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    pub url: String,
    pub headers: BTreeMap<String, String>,
}

/// One part of a multipart upload, as ListParts reports it.
#[derive(Debug, Clone)]
pub struct StoredPart {
    pub part_number: i32,
    pub etag: String,
    pub size: u64,
    pub checksum_sha256: Option<String>,
}

/// What HeadObject says about an object.
#[derive(Debug, Clone)]
pub struct ObjectHead {
    pub size: u64,
    pub content_type: Option<String>,
    pub etag: Option<String>,
    pub checksum_sha256: Option<String>,
}

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
    presign_expires: Duration,
    object_url_expires: Duration,
    object_urls: ObjectUrls,
    embedded: bool,
}

impl Storage {
    /// Connects to the configured store, starting the embedded one when no bucket is set.
    pub async fn connect(config: &Config, shutdown: Shutdown) -> Result<Self, EmbeddedStoreError> {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(config.s3_connect_timeout)
            .operation_attempt_timeout(config.s3_operation_timeout)
            .operation_timeout(config.s3_operation_timeout * 2)
            .build();
        let object_urls = |fallback| match &config.public_base_url {
            Some(base) => ObjectUrls::BaseUrl(base.clone()),
            None => fallback,
        };
        match &config.storage {
            StorageConfig::Embedded { port, root } => {
                let store = embedded::start(root, *port, shutdown).await?;
                let s3_config = aws_sdk_s3::Config::builder()
                    .behavior_version(BehaviorVersion::latest())
                    .region(Region::new(config.aws_region.clone()))
                    .endpoint_url(&store.endpoint)
                    .force_path_style(true)
                    .credentials_provider(embedded_credentials(&store))
                    .timeout_config(timeouts)
                    .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                    .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
                    .interceptor(crate::metrics::S3Calls)
                    .build();
                tracing::warn!(
                    endpoint = %store.endpoint,
                    data = %root.display(),
                    "using the embedded object store (on disk, for development and tests); \
                     set AWS_BUCKET_NAME (and AWS_ENDPOINT_URL for MinIO, Garage or R2) to use S3"
                );
                let client = Client::from_conf(s3_config);
                Ok(Self {
                    presigner: presigner_for(
                        &client,
                        EMBEDDED_BUCKET,
                        &config.aws_region,
                        SharedCredentialsProvider::new(embedded_credentials(&store)),
                    )
                    .await?,
                    client,
                    bucket: EMBEDDED_BUCKET.to_owned(),
                    presign_expires: config.presign_expires,
                    object_url_expires: config.object_url_expires,
                    object_urls: object_urls(ObjectUrls::Presigned),
                    embedded: true,
                })
            }
            StorageConfig::External {
                bucket,
                endpoint_url,
                force_path_style,
                credentials,
            } => {
                let mut loader = aws_config::defaults(BehaviorVersion::latest())
                    .region(Region::new(config.aws_region.clone()))
                    .timeout_config(timeouts);
                if let Some(keys) = credentials {
                    loader = loader.credentials_provider(Credentials::new(
                        keys.access_key_id.clone(),
                        keys.secret_access_key.expose().to_owned(),
                        keys.session_token.as_ref().map(|t| t.expose().to_owned()),
                        None,
                        "upload-broker-config",
                    ));
                }
                let shared = loader.load().await;
                let credentials = shared.credentials_provider().ok_or_else(|| {
                    EmbeddedStoreError::Signer("no AWS credentials provider".to_owned())
                })?;
                let mut builder = aws_sdk_s3::config::Builder::from(&shared)
                    .force_path_style(*force_path_style)
                    .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                    .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
                    .interceptor(crate::metrics::S3Calls);
                if let Some(url) = endpoint_url {
                    builder = builder.endpoint_url(url);
                }
                tracing::info!(
                    bucket = %bucket,
                    endpoint = endpoint_url.as_deref().unwrap_or("AWS"),
                    region = %config.aws_region,
                    "using S3 bucket"
                );
                let client = Client::from_conf(builder.clone().build());
                let signer = match &config.s3_public_endpoint {
                    Some(public) => Client::from_conf(builder.endpoint_url(public).build()),
                    None => client.clone(),
                };
                let urls = if config.private_bucket {
                    ObjectUrls::Presigned
                } else {
                    ObjectUrls::Direct
                };
                Ok(Self {
                    presigner: presigner_for(&signer, bucket, &config.aws_region, credentials)
                        .await?,
                    client,
                    bucket: bucket.clone(),
                    presign_expires: config.presign_expires,
                    object_url_expires: config.object_url_expires,
                    object_urls: object_urls(urls),
                    embedded: false,
                })
            }
        }
    }

    pub fn is_embedded(&self) -> bool {
        self.embedded
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// A PUT URL that only accepts exactly `size` bytes of `content_type` (and, when given,
    /// a body with this SHA-256), and only while no object has the key: the store itself
    /// refuses anything else.
    pub async fn presign_put(
        &self,
        key: &str,
        content_type: &str,
        size: u64,
        checksum: Option<&Sha256Checksum>,
    ) -> Result<SignedRequest, StorageError> {
        let length = size.to_string();
        let headers = put_object_headers(&length, content_type, checksum);
        let request = Unsigned {
            method: "PUT",
            key,
            query: &[("x-id", "PutObject")],
            headers: &headers,
        };
        self.presigner
            .sign(&request, SystemTime::now(), self.presign_expires)
            .await
    }

    /// A URL that returns the object's bytes to a plain GET.
    pub async fn object_url(&self, key: &str) -> Result<String, StorageError> {
        match &self.object_urls {
            ObjectUrls::BaseUrl(base) => Ok(format!("{base}/{key}")),
            ObjectUrls::Direct => Ok(self.presigner.unsigned_url(key)),
            ObjectUrls::Presigned => {
                // Signed from the start of the current window (a day, or half the lifetime
                // when that is shorter): every answer within a window carries the same URL
                // (identical bodies, cacheable images), valid for at least half its life.
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_err(|e| StorageError::Signing(e.to_string()))?
                    .as_secs();
                let lifetime = self.object_url_expires;
                let window = (lifetime.as_secs() / 2).clamp(1, DAY_SECS);
                let anchor = UNIX_EPOCH + Duration::from_secs(now - now % window);
                let request = Unsigned {
                    method: "GET",
                    key,
                    query: &[("x-id", "GetObject")],
                    headers: &[],
                };
                let signed = self.presigner.sign(&request, anchor, lifetime).await?;
                Ok(signed.url)
            }
        }
    }

    /// HeadObject; `None` when there is no such object.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectHead>, StorageError> {
        let result = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await;
        match result {
            Ok(out) => Ok(Some(ObjectHead {
                size: out
                    .content_length()
                    .map_or(0, |n| u64::try_from(n).unwrap_or(0)),
                content_type: out.content_type().map(str::to_owned),
                etag: out.e_tag().map(str::to_owned),
                checksum_sha256: out.checksum_sha256().map(str::to_owned),
            })),
            Err(SdkError::ServiceError(err)) if err.raw().status().as_u16() == 404 => Ok(None),
            Err(err) => Err(classify(err)),
        }
    }

    /// The first `len` bytes of an object (fewer if it is shorter).
    pub async fn read_prefix(&self, key: &str, len: u64) -> Result<Bytes, StorageError> {
        self.read_range(key, format!("bytes=0-{}", len.saturating_sub(1)))
            .await
    }

    /// The last `len` bytes of an object (fewer if it is shorter).
    pub async fn read_suffix(&self, key: &str, len: u64) -> Result<Bytes, StorageError> {
        self.read_range(key, format!("bytes=-{len}")).await
    }

    async fn read_range(&self, key: &str, range: String) -> Result<Bytes, StorageError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(range)
            .send()
            .await
            .map_err(classify)?;
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| StorageError::Unavailable(e.to_string()))?;
        Ok(body.into_bytes())
    }

    /// Streams the whole object through SHA-256.
    pub async fn sha256(&self, key: &str) -> Result<Sha256Checksum, StorageError> {
        let mut out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(classify)?;
        let mut hasher = Sha256::new();
        while let Some(chunk) = out
            .body
            .try_next()
            .await
            .map_err(|e| StorageError::Unavailable(e.to_string()))?
        {
            hasher.update(&chunk);
        }
        Ok(Sha256Checksum::from_digest(&hasher.finalize()))
    }

    /// Copies an object within the bucket (server-side, up to 5 GiB).
    pub async fn copy(&self, from: &str, to: &str) -> Result<(), StorageError> {
        self.client
            .copy_object()
            .bucket(&self.bucket)
            .copy_source(format!("{}/{from}", self.bucket))
            .key(to)
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// Deletes an object; deleting a missing object succeeds.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// Stores a whole object. The payload is not signed (TLS protects it, and the caller
    /// hashes it): signing makes the SDK hash every byte, and a store that checks it
    /// buffers the whole body to do so.
    pub async fn put(
        &self,
        key: &str,
        content_type: &str,
        body: Payload,
    ) -> Result<Option<String>, StorageError> {
        let out = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .content_length(to_i64(body.len()))
            .body(body.into_stream())
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(classify)?;
        Ok(out.e_tag().map(str::to_owned))
    }

    /// Starts an S3 multipart upload; returns its upload id.
    pub async fn create_multipart(
        &self,
        key: &str,
        content_type: &str,
        part_checksums: bool,
    ) -> Result<String, StorageError> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .set_checksum_algorithm(part_checksums.then_some(ChecksumAlgorithm::Sha256))
            .send()
            .await
            .map_err(classify)?;
        out.upload_id().map(str::to_owned).ok_or_else(|| {
            StorageError::Refused("CreateMultipartUpload returned no upload id".to_owned())
        })
    }

    /// Uploads one part (not signed, as `put`); returns its ETag.
    pub async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: i32,
        body: Payload,
    ) -> Result<String, StorageError> {
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(part_number)
            .content_length(to_i64(body.len()))
            .body(body.into_stream())
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(classify)?;
        out.e_tag()
            .map(str::to_owned)
            .ok_or_else(|| StorageError::Refused("UploadPart returned no ETag".to_owned()))
    }

    /// A presigned UploadPart URL that accepts exactly `size` bytes (and, when given, only
    /// bytes with this SHA-256).
    pub async fn presign_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: i32,
        size: u64,
        checksum: Option<&Sha256Checksum>,
    ) -> Result<SignedRequest, StorageError> {
        let length = size.to_string();
        let headers = upload_part_headers(&length, checksum);
        let part = part_number.to_string();
        let request = Unsigned {
            method: "PUT",
            key,
            query: &[
                ("partNumber", part.as_str()),
                ("uploadId", upload_id),
                ("x-id", "UploadPart"),
            ],
            headers: &headers,
        };
        self.presigner
            .sign(&request, SystemTime::now(), self.presign_expires)
            .await
    }

    /// Every part the store holds for a multipart upload (all pages of ListParts).
    pub async fn list_parts(
        &self,
        key: &str,
        upload_id: &str,
    ) -> Result<Vec<StoredPart>, StorageError> {
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .set_part_number_marker(marker.take())
                .send()
                .await
                .map_err(classify_multipart)?;
            parts.extend(out.parts().iter().filter_map(|p| {
                Some(StoredPart {
                    part_number: p.part_number()?,
                    etag: p.e_tag()?.to_owned(),
                    size: p.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                    checksum_sha256: p.checksum_sha256().map(str::to_owned),
                })
            }));
            match (out.is_truncated(), out.next_part_number_marker()) {
                (Some(true), Some(next)) => marker = Some(next.to_owned()),
                _ => break,
            }
        }
        parts.sort_by_key(|p| p.part_number);
        Ok(parts)
    }

    /// Completes a multipart upload from the given parts, in order.
    pub async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[StoredPart],
    ) -> Result<Option<String>, StorageError> {
        let parts = parts
            .iter()
            .map(|p| {
                CompletedPart::builder()
                    .part_number(p.part_number)
                    .e_tag(&p.etag)
                    .set_checksum_sha256(p.checksum_sha256.clone())
                    .build()
            })
            .collect();
        let out = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(classify_multipart)?;
        Ok(out.e_tag().map(str::to_owned))
    }

    /// Aborts a multipart upload; its parts are discarded. Aborting one that is already
    /// gone succeeds.
    pub async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StorageError> {
        let result = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(classify_multipart);
        match result {
            Ok(_) | Err(StorageError::NoSuchUpload) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Every object under `prefix` with its last-modified time (all pages).
    pub async fn list_objects(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, SystemTime)>, StorageError> {
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(classify)?;
            for object in out.contents() {
                let (Some(key), Some(modified)) = (object.key(), object.last_modified()) else {
                    continue;
                };
                if let Ok(modified) = SystemTime::try_from(*modified) {
                    objects.push((key.to_owned(), modified));
                }
            }
            match (out.is_truncated(), out.next_continuation_token()) {
                (Some(true), Some(next)) => token = Some(next.to_owned()),
                _ => break,
            }
        }
        Ok(objects)
    }

    /// Open multipart uploads under `prefix`: (key, upload id, initiated), all pages.
    pub async fn list_multipart_uploads(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, String, SystemTime)>, StorageError> {
        let mut uploads = Vec::new();
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        loop {
            let out = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(classify)?;
            for upload in out.uploads() {
                let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) else {
                    continue;
                };
                let initiated = upload
                    .initiated()
                    .and_then(|t| SystemTime::try_from(*t).ok())
                    .unwrap_or(UNIX_EPOCH);
                uploads.push((key.to_owned(), id.to_owned(), initiated));
            }
            match (out.is_truncated(), out.next_key_marker()) {
                (Some(true), Some(next)) => {
                    key_marker = Some(next.to_owned());
                    id_marker = out.next_upload_id_marker().map(str::to_owned);
                }
                _ => break,
            }
        }
        Ok(uploads)
    }

    /// Whether the bucket answers (for `/health`).
    pub async fn check(&self) -> Result<(), StorageError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// Whether a browser on another origin can PUT to the bucket and read each part's
    /// `ETag`, which multipart uploads from the page need.
    pub async fn browser_cors(&self) -> Result<BucketCors, StorageError> {
        if self.embedded {
            return Ok(BucketCors::ServedByService);
        }
        let rules = match self
            .client
            .get_bucket_cors()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(out) => out.cors_rules.unwrap_or_default(),
            Err(SdkError::ServiceError(e)) if e.err().code() == Some("NoSuchCORSConfiguration") => {
                return Ok(BucketCors::NoRules);
            }
            // A refusal means the store does not say (no GetBucketCors, or no permission
            // for it); what `classify` calls unavailable is an outage.
            Err(err @ SdkError::ServiceError(_)) => {
                return match classify(err) {
                    StorageError::Unavailable(detail) => Err(StorageError::Unavailable(detail)),
                    _ => Ok(BucketCors::Unknown),
                };
            }
            Err(err) => return Err(classify(err)),
        };
        let lets_browsers_upload = rules.iter().any(|rule| {
            rule.allowed_methods()
                .iter()
                .any(|m| m.eq_ignore_ascii_case("PUT"))
                && rule
                    .expose_headers()
                    .iter()
                    .any(|h| h.eq_ignore_ascii_case("etag") || h == "*")
        });
        Ok(if lets_browsers_upload {
            BucketCors::Ok
        } else {
            BucketCors::EtagNotExposed
        })
    }
}

/// What the bucket's CORS rules allow a browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketCors {
    /// A rule allows PUT and exposes `ETag`.
    Ok,
    /// The embedded store: the service answers CORS for it.
    ServedByService,
    /// No rule allows PUT with `ETag` exposed: browsers cannot finish multipart uploads.
    EtagNotExposed,
    /// The bucket has no CORS rules: browsers on other origins cannot upload at all.
    NoRules,
    /// The store would not tell.
    Unknown,
}

impl BucketCors {
    pub fn as_str(self) -> &'static str {
        match self {
            BucketCors::Ok => "ok",
            BucketCors::ServedByService => "served_by_service",
            BucketCors::EtagNotExposed => "etag_not_exposed",
            BucketCors::NoRules => "no_rules",
            BucketCors::Unknown => "unknown",
        }
    }
}

fn embedded_credentials(store: &EmbeddedStore) -> Credentials {
    Credentials::new(
        store.access_key.clone(),
        store.secret_key.expose().to_owned(),
        None,
        None,
        "upload-broker-embedded",
    )
}

/// What a presigned PutObject signs, sorted by name: the exact length and type, no
/// overwrite of an existing object, and the body's SHA-256 when declared.
fn put_object_headers<'a>(
    length: &'a str,
    content_type: &'a str,
    checksum: Option<&'a Sha256Checksum>,
) -> Vec<(&'a str, &'a str)> {
    let mut headers = vec![
        ("content-length", length),
        ("content-type", content_type),
        ("if-none-match", "*"),
    ];
    if let Some(sum) = checksum {
        headers.push(("x-amz-checksum-sha256", sum.as_str()));
    }
    headers
}

/// What a presigned UploadPart signs: the part's exact length, and its SHA-256 when given.
fn upload_part_headers<'a>(
    length: &'a str,
    checksum: Option<&'a Sha256Checksum>,
) -> Vec<(&'a str, &'a str)> {
    let mut headers = vec![("content-length", length)];
    if let Some(sum) = checksum {
        headers.push(("x-amz-checksum-sha256", sum.as_str()));
    }
    headers
}

/// The presigner for the URLs `signer` would sign: its endpoint and addressing style come
/// from one URL the SDK presigns here.
async fn presigner_for(
    signer: &Client,
    bucket: &str,
    region: &str,
    credentials: SharedCredentialsProvider,
) -> Result<Arc<Presigner>, EmbeddedStoreError> {
    const PROBE: &str = "upload-broker-probe";
    let failed = |detail: String| EmbeddedStoreError::Signer(detail);
    let presigning =
        PresigningConfig::expires_in(Duration::from_secs(60)).map_err(|e| failed(e.to_string()))?;
    let probe = signer
        .get_object()
        .bucket(bucket)
        .key(PROBE)
        .presigned(presigning)
        .await
        .map_err(|e| failed(DisplayErrorContext(&e).to_string()))?;
    Presigner::new(probe.uri(), PROBE, region, credentials)
        .map(Arc::new)
        .map_err(|e| failed(e.to_string()))
}

/// `content-type` -> `Content-Type`; `x-amz-*` headers keep S3's lower case.
fn canonical_header_name(name: &str) -> String {
    if name.starts_with("x-amz-") {
        return name.to_owned();
    }
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Like `classify`, but tells a multipart upload that no longer exists apart.
fn classify_multipart<E>(err: SdkError<E, HttpResponse>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(e) if e.err().code() == Some("NoSuchUpload") => {
            StorageError::NoSuchUpload
        }
        _ => classify(err),
    }
}

/// Timeouts, dispatch failures and 5xx mean "try later"; other answers are refusals.
fn classify<E>(err: SdkError<E, HttpResponse>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let detail = DisplayErrorContext(&err).to_string();
    match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            StorageError::Unavailable(detail)
        }
        SdkError::ServiceError(service) if service.err().code() == Some("NoSuchKey") => {
            StorageError::NoSuchKey
        }
        SdkError::ServiceError(service) => {
            if service.raw().status().is_server_error() || service.err().code() == Some("SlowDown")
            {
                StorageError::Unavailable(detail)
            } else {
                StorageError::Refused(detail)
            }
        }
        _ => StorageError::Refused(detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdk_client(endpoint: &str, path_style: bool, token: Option<&str>) -> Client {
        Client::from_conf(
            aws_sdk_s3::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("eu-west-3"))
                .endpoint_url(endpoint)
                .force_path_style(path_style)
                .credentials_provider(Credentials::new(
                    "AKIDEXAMPLE",
                    "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                    token.map(str::to_owned),
                    None,
                    "test",
                ))
                .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                .build(),
        )
    }

    /// The query parameters of a URL, decoded enough to compare.
    fn query(url: &str) -> BTreeMap<String, String> {
        let (base, query) = url.split_once('?').expect("a query");
        let mut out: BTreeMap<String, String> = query
            .split('&')
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect();
        out.insert("(base)".into(), base.to_owned());
        out
    }

    /// Our signer must produce what the SDK's presigner produces for the same request at
    /// the same instant: same URL, same signature, same headers for the client.
    #[tokio::test]
    async fn urls_match_the_sdk_presigner_for_every_request_we_sign() {
        let at = UNIX_EPOCH + Duration::from_secs(1_764_000_123);
        let expires = Duration::from_secs(900);
        let sum = Sha256Checksum::parse("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=")
            .expect("checksum");
        for (endpoint, path_style, token) in [
            ("http://127.0.0.1:9000", true, None),
            (
                "https://s3.eu-west-3.amazonaws.com",
                false,
                Some("session/token+x="),
            ),
        ] {
            let client = sdk_client(endpoint, path_style, token);
            let keys = Credentials::new(
                "AKIDEXAMPLE",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                token.map(str::to_owned),
                None,
                "test",
            );
            let presigner = presigner_for(
                &client,
                "my-bucket",
                "eu-west-3",
                SharedCredentialsProvider::new(keys),
            )
            .await
            .expect("presigner");
            let config = || {
                PresigningConfig::builder()
                    .start_time(at)
                    .expires_in(expires)
                    .build()
                    .expect("config")
            };
            let key = "uploads/cat_1-x/0190a2b4-7c1e-7000-8000-000000000000.png";

            for checksum in [None, Some(&sum)] {
                let sdk = client
                    .put_object()
                    .bucket("my-bucket")
                    .key(key)
                    .content_type("image/png")
                    .content_length(1234)
                    .set_checksum_sha256(checksum.map(|c| c.as_str().to_owned()))
                    .if_none_match("*")
                    .presigned(config())
                    .await
                    .expect("sdk presign");
                let headers = put_object_headers("1234", "image/png", checksum);
                let ours = presigner
                    .sign(
                        &Unsigned {
                            method: "PUT",
                            key,
                            query: &[("x-id", "PutObject")],
                            headers: &headers,
                        },
                        at,
                        expires,
                    )
                    .await
                    .expect("sign");
                assert_eq!(query(&ours.url), query(sdk.uri()), "PUT via {endpoint}");
                let sdk_headers: BTreeMap<String, String> = sdk
                    .headers()
                    .filter(|(n, _)| !n.eq_ignore_ascii_case("content-length"))
                    .map(|(n, v)| (canonical_header_name(n), v.to_owned()))
                    .collect();
                assert_eq!(ours.headers, sdk_headers);

                let sdk = client
                    .upload_part()
                    .bucket("my-bucket")
                    .key(key)
                    .upload_id("abc/def+ghi=")
                    .part_number(7)
                    .content_length(5_242_880)
                    .set_checksum_sha256(checksum.map(|c| c.as_str().to_owned()))
                    .presigned(config())
                    .await
                    .expect("sdk presign");
                let headers = upload_part_headers("5242880", checksum);
                let ours = presigner
                    .sign(
                        &Unsigned {
                            method: "PUT",
                            key,
                            query: &[
                                ("partNumber", "7"),
                                ("uploadId", "abc/def+ghi="),
                                ("x-id", "UploadPart"),
                            ],
                            headers: &headers,
                        },
                        at,
                        expires,
                    )
                    .await
                    .expect("sign");
                assert_eq!(
                    query(&ours.url),
                    query(sdk.uri()),
                    "UploadPart via {endpoint}"
                );
            }

            let sdk = client
                .get_object()
                .bucket("my-bucket")
                .key(key)
                .presigned(config())
                .await
                .expect("sdk presign");
            let ours = presigner
                .sign(
                    &Unsigned {
                        method: "GET",
                        key,
                        query: &[("x-id", "GetObject")],
                        headers: &[],
                    },
                    at,
                    expires,
                )
                .await
                .expect("sign");
            assert_eq!(query(&ours.url), query(sdk.uri()), "GET via {endpoint}");
        }
    }
}
