//! Connecting: the SDK client for the embedded store or an external bucket, with the
//! configured timeouts, and the presigner for the URLs clients use.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::presigning::PresigningConfig;

use super::embedded::{self, EMBEDDED_BUCKET, EmbeddedStore, EmbeddedStoreError, StoreService};
use super::leftovers::InternalFiles;
use super::presign::Presigner;
use super::{ObjectUrls, Storage};
use crate::config::{Config, StaticCredentials, StorageConfig};
use crate::shutdown::Shutdown;

/// What connecting to one kind of store yields; `connect` adds what every store shares.
struct Connected {
    client: Client,
    presigner: Presigner,
    bucket: String,
    endpoint: Option<String>,
    /// How object URLs are made when `PUBLIC_BASE_URL` is not set.
    urls: ObjectUrls,
    embedded: Option<Arc<InternalFiles>>,
    service: Option<StoreService>,
}

impl Storage {
    /// Connects to the configured store, starting the embedded one when no bucket is set.
    pub async fn connect(config: &Config, shutdown: Shutdown) -> Result<Self, EmbeddedStoreError> {
        let timeouts = timeouts(config);
        let mut landed = None;
        let connected = match &config.storage.backend {
            StorageConfig::Embedded { port, root } => {
                let sender = config.storage.auto_confirm.then(|| {
                    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
                    landed = Some(receiver);
                    sender
                });
                let store = embedded::start(root, *port, sender, shutdown).await?;
                connect_embedded(config, &store, root, timeouts).await?
            }
            StorageConfig::External {
                bucket,
                endpoint_url,
                force_path_style,
                credentials,
            } => {
                connect_external(
                    config,
                    bucket,
                    endpoint_url.as_deref(),
                    *force_path_style,
                    credentials.as_ref(),
                    timeouts,
                )
                .await?
            }
        };
        let discards = super::discard::start(connected.client.clone(), connected.bucket.clone());
        let storage = Self {
            discards,
            client: connected.client,
            presigner: Arc::new(connected.presigner),
            bucket: connected.bucket,
            endpoint: connected.endpoint,
            presign_expires: config.limits.presign_expires,
            object_url_expires: config.storage.object_url_expires,
            operation_timeout: config.storage.operation_timeout,
            conditional_writes: config.storage.conditional_writes,
            object_urls: match &config.storage.public_base_url {
                Some(base) => ObjectUrls::BaseUrl(base.clone()),
                None => connected.urls,
            },
            embedded: connected.embedded,
            store_service: connected.service,
            landed: Arc::new(std::sync::Mutex::new(landed)),
        };
        // What a killed process left in the embedded store goes before anything is served;
        // files younger than a URL's lifetime are left to the sweeper.
        let settled = config.limits.presign_expires + config.sweeper.clock_skew_margin;
        let cutoff = SystemTime::now()
            .checked_sub(settled)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        if let Err(err) = storage.remove_internal_leftovers(cutoff).await {
            tracing::warn!(error = %err, "cannot remove the embedded store's leftovers");
        }
        Ok(storage)
    }
}

/// `S3_CONNECT_TIMEOUT` per connection, and `S3_OPERATION_TIMEOUT` for a whole operation
/// with its retries (a request's calls together are held to it as well: `budget`).
pub(super) fn timeouts(config: &Config) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(config.storage.connect_timeout)
        .operation_timeout(config.storage.operation_timeout)
        .build()
}

/// What every client of the service does: checksums only where S3 requires them, and its
/// calls counted for `/metrics`.
fn with_service_defaults(builder: aws_sdk_s3::config::Builder) -> aws_sdk_s3::config::Builder {
    builder
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .interceptor(crate::metrics::S3Calls)
}

/// The embedded store, already started: path-style addressing, its own key pair.
async fn connect_embedded(
    config: &Config,
    store: &EmbeddedStore,
    root: &Path,
    timeouts: TimeoutConfig,
) -> Result<Connected, EmbeddedStoreError> {
    let s3_config = with_service_defaults(
        aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.storage.region.clone()))
            .endpoint_url(&store.endpoint)
            .force_path_style(true)
            .credentials_provider(embedded_credentials(store))
            .timeout_config(timeouts),
    )
    .build();
    tracing::warn!(
        endpoint = %store.endpoint,
        data = %root.display(),
        "using the embedded object store (on disk, for development and tests); \
         set AWS_BUCKET_NAME (and AWS_ENDPOINT_URL for MinIO, Garage or R2) to use S3"
    );
    let client = Client::from_conf(s3_config);
    let presigner = presigner_for(
        &client,
        EMBEDDED_BUCKET,
        &config.storage.region,
        SharedCredentialsProvider::new(embedded_credentials(store)),
    )
    .await?;
    // The service's listener serves the store too: URLs name PUBLIC_URL when it is set,
    // else the origin each request reached (the loopback port outside any request).
    let presigner = match &config.server.public_url {
        Some(public) => presigner.at_origin(public),
        None => presigner.following_client(),
    };
    Ok(Connected {
        client,
        presigner,
        bucket: EMBEDDED_BUCKET.to_owned(),
        endpoint: Some(store.endpoint.clone()),
        urls: ObjectUrls::Presigned,
        embedded: Some(store.files.clone()),
        service: Some(store.service.clone()),
    })
}

/// AWS or an S3-compatible store: the AWS default configuration chain, with the configured
/// keys when given; URLs for clients are signed for `S3_PUBLIC_ENDPOINT_URL` when set.
async fn connect_external(
    config: &Config,
    bucket: &str,
    endpoint_url: Option<&str>,
    force_path_style: bool,
    keys: Option<&StaticCredentials>,
    timeouts: TimeoutConfig,
) -> Result<Connected, EmbeddedStoreError> {
    let shared = load_aws_config(config, keys, timeouts).await;
    let credentials = shared
        .credentials_provider()
        .ok_or_else(|| EmbeddedStoreError::Signer("no AWS credentials provider".to_owned()))?;
    let mut builder = with_service_defaults(
        aws_sdk_s3::config::Builder::from(&shared).force_path_style(force_path_style),
    );
    if let Some(url) = endpoint_url {
        builder = builder.endpoint_url(url);
    }
    tracing::info!(
        bucket = %bucket,
        endpoint = endpoint_url.unwrap_or("AWS"),
        region = %config.storage.region,
        "using S3 bucket"
    );
    let client = Client::from_conf(builder.clone().build());
    let signer = match &config.storage.s3_public_endpoint {
        Some(public) => Client::from_conf(builder.endpoint_url(public).build()),
        None => client.clone(),
    };
    let presigner = presigner_for(&signer, bucket, &config.storage.region, credentials).await?;
    Ok(Connected {
        client,
        presigner,
        bucket: bucket.to_owned(),
        endpoint: endpoint_url.map(str::to_owned),
        urls: if config.storage.private_bucket {
            ObjectUrls::Presigned
        } else {
            ObjectUrls::Direct
        },
        embedded: None,
        service: None,
    })
}

/// The AWS configuration from the environment, profile or instance, in the configured
/// region, with the configured keys in place of the chain's when given.
pub(super) async fn load_aws_config(
    config: &Config,
    keys: Option<&StaticCredentials>,
    timeouts: TimeoutConfig,
) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(config.storage.region.clone()))
        .timeout_config(timeouts);
    if let Some(keys) = keys {
        loader = loader.credentials_provider(Credentials::new(
            keys.access_key_id.clone(),
            keys.secret_access_key.expose().to_owned(),
            keys.session_token.as_ref().map(|t| t.expose().to_owned()),
            None,
            "upload-broker-config",
        ));
    }
    loader.load().await
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

/// The presigner for the URLs `signer` would sign: its endpoint and addressing style come
/// from one URL the SDK presigns here.
pub(super) async fn presigner_for(
    signer: &Client,
    bucket: &str,
    region: &str,
    credentials: SharedCredentialsProvider,
) -> Result<Presigner, EmbeddedStoreError> {
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
    Presigner::new(probe.uri(), PROBE, region, credentials).map_err(|e| failed(e.to_string()))
}
