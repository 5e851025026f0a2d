//! Configuration: one struct of sections, loaded once from the environment (and `.env`),
//! validated at start; each section reads its own variables.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::variants::pipeline::{Preset, VariantFormat};
use crate::webhooks::signature::SigningKey;

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;
/// S3's smallest part (except the last) and its largest single object upload.
pub const MIN_PART_SIZE: u64 = 5 * MIB;
pub const MAX_S3_PART_SIZE: u64 = 5 * GIB;
pub const S3_MAX_PARTS: u32 = 10_000;
/// SigV4 query signatures live at most seven days.
pub const MAX_PRESIGN_SECS: u64 = 7 * 24 * 3600;

/// A value that must never reach a log line or a `Debug` dump.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Keys given in the configuration (the seed's variables); without them the AWS default
/// credential chain is used.
#[derive(Clone, Debug)]
pub struct StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

/// Where objects go.
#[derive(Clone, Debug)]
pub enum StorageConfig {
    /// The in-process, on-disk S3-compatible store under `DATA_DIR`.
    Embedded {
        /// `EMBEDDED_S3_PORT`; 0 picks a free port (tests).
        port: u16,
        root: PathBuf,
    },
    /// AWS S3 or any S3-compatible endpoint, credentials from the AWS default chain.
    External {
        bucket: String,
        /// `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`, when set.
        endpoint_url: Option<String>,
        force_path_style: bool,
        credentials: Option<StaticCredentials>,
    },
}

/// The whole configuration, one section per concern.
#[derive(Clone, Debug)]
pub struct Config {
    /// `DATA_DIR`: where the default SQLite file and the embedded store live.
    pub data_dir: PathBuf,
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub storage: StorageSettings,
    pub limits: LimitsConfig,
    pub access: AccessConfig,
    pub sweeper: SweeperConfig,
    pub webhooks: WebhookConfig,
    pub variants: VariantConfig,
}

/// The listener, the process and its logs.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub bind_addr: IpAddr,
    pub port: u16,
    pub environment: String,
    pub log_level: String,
    pub shutdown_grace: Duration,
    /// Serve the page's files from this folder instead of the binary (development).
    pub frontend_dir: Option<PathBuf>,
    /// `PUBLIC_URL`: the origin clients reach the service at; the embedded store's URLs
    /// name it instead of each request's `Host`.
    pub public_url: Option<crate::origin::ClientOrigin>,
    /// `ALLOWED_HOSTS`: the host names (with a port, only that port) the service answers
    /// for; empty answers any.
    pub allowed_hosts: Vec<crate::origin::AllowedHost>,
}

#[derive(Clone, Debug)]
pub struct DatabaseConfig {
    pub url: String,
    /// `DB_TIMEOUT`
    pub timeout: Duration,
}

/// The object store and how its objects are addressed.
#[derive(Clone, Debug)]
pub struct StorageSettings {
    pub backend: StorageConfig,
    /// `AWS_REGION` / `AWS_DEFAULT_REGION`
    pub region: String,
    pub public_base_url: Option<String>,
    /// The store honours `If-None-Match: *`, so PUT URLs carry it and a staged object
    /// cannot be replaced; without it they do not, and confirm's copy is conditional on
    /// the verified ETag alone.
    pub conditional_writes: bool,
    /// `AUTO_CONFIRM`: the embedded store confirms a single PUT as soon as it lands.
    pub auto_confirm: bool,
    /// `S3_EVENTS_QUEUE_URL`: the SQS queue the bucket's event notifications go to, and
    /// where SQS is reached (`AWS_ENDPOINT_URL_SQS`, then `AWS_ENDPOINT_URL`; AWS's own
    /// when neither is set).
    pub events_queue: Option<QueueSettings>,
    /// The bucket is private: every `s3_url` is a presigned GET.
    pub private_bucket: bool,
    /// The store's endpoint as clients reach it, when it differs from `AWS_ENDPOINT_URL`
    /// (a store inside a container network, say).
    pub s3_public_endpoint: Option<String>,
    /// `OBJECT_URL_EXPIRES`: how long a presigned `s3_url` (private buckets, the embedded
    /// store) works.
    pub object_url_expires: Duration,
    /// `S3_CONNECT_TIMEOUT`
    pub connect_timeout: Duration,
    /// `S3_OPERATION_TIMEOUT`
    pub operation_timeout: Duration,
}

/// Sizes, counts, lifetimes and rates an upload must stay within.
#[derive(Clone, Debug)]
pub struct LimitsConfig {
    /// Largest legacy (server-streamed) upload.
    pub max_file_size: u64,
    /// Largest declared size of a direct upload.
    pub max_upload_size: u64,
    pub multipart_threshold: u64,
    pub part_size: u64,
    pub max_parts: u32,
    pub presign_expires: Duration,
    /// How long a multipart upload may stay unfinished.
    pub multipart_expires: Duration,
    pub max_image_dimension: u32,
    pub max_image_pixels: u64,
    /// `VERIFY_DECODE`: decode every image up to `VERIFY_DECODE_MAX_BYTES` in full before
    /// it counts; larger ones get the header checks alone.
    pub verify_decode: bool,
    pub verify_decode_max_bytes: u64,
    /// At most this many pending uploads, and bytes declared by them, per image_id (0: no cap).
    pub max_pending_per_image: u64,
    pub max_pending_bytes_per_image: u64,
    /// `RATE_LIMIT`: requests per second each client address, and each key or link, may
    /// make to the write endpoints (0: no limit), with bursts up to `RATE_LIMIT_BURST`.
    pub rate_limit: u32,
    pub rate_limit_burst: u32,
}

/// Who may call the API, and from where.
#[derive(Clone, Debug)]
pub struct AccessConfig {
    /// `API_KEYS`: when set, the v1 write endpoints need one of them (or a link token).
    pub api_keys: Vec<Secret>,
    pub secret_key: Option<Secret>,
    /// `CORS_ORIGINS`: the browser origins other than the service's own that may call the
    /// API (none by default).
    pub cors_origins: Vec<String>,
    /// `TRUSTED_PROXIES`: addresses (or CIDR ranges) whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// `ADMIN_KEYS`: bearer keys of the operators' endpoints; none turns those off (403).
    pub admin_keys: Vec<Secret>,
    /// `STORAGE_EVENTS_TOKEN`: the bearer token of `POST /api/v1/storage-events`; unset
    /// turns it off (403).
    pub storage_events_token: Option<Secret>,
}

/// Where events are sent, and how hard the service tries.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// `WEBHOOK_URL`: endpoints that receive every event, trusted as the operator's.
    pub urls: Vec<String>,
    /// `WEBHOOK_SECRET`: the keys that sign requests to `urls` (several during a rotation).
    pub secrets: Vec<SigningKey>,
    /// `WEBHOOK_RETRY_SCHEDULE`: the wait before each retry.
    pub retry_schedule: Vec<Duration>,
    /// `WEBHOOK_TIMEOUT`: how long one attempt may take.
    pub timeout: Duration,
    /// `WEBHOOK_ALLOW_PRIVATE`: registered endpoints may be on private addresses.
    pub allow_private: bool,
    /// `EVENT_RETENTION_DAYS`: events (and their settled deliveries) older than this are
    /// removed; `None` keeps them.
    pub retention: Option<Duration>,
}

/// The background sweep of expired uploads.
#[derive(Clone, Debug)]
pub struct SweeperConfig {
    /// `SWEEP_INTERVAL`: how often the sweeper runs; 0 turns it off.
    pub interval: Duration,
    /// Allowance for clocks that disagree, added to every expiry the sweeper acts on.
    pub clock_skew_margin: Duration,
}

/// A start-up refusal: names the variable, never echoes a secret.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {variable}: {reason}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub reason: String,
}

fn invalid(variable: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        reason: reason.into(),
    }
}

/// Reads variables from any source, so tests can load a config from a plain map.
struct Vars<'a> {
    get: &'a dyn Fn(&str) -> Option<String>,
}

impl Vars<'_> {
    fn text(&self, name: &str) -> Option<String> {
        (self.get)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// A comma-separated list: its items trimmed, empty ones dropped.
    fn list(&self, name: &str) -> Vec<String> {
        self.text(name)
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn number<T>(&self, name: &'static str, default: T, range: (T, T)) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + Copy + fmt::Display,
    {
        let Some(raw) = self.text(name) else {
            return Ok(default);
        };
        // Accept the seed's habit of trailing comments: `MAX_FILE_SIZE=10485760  # 10MB`.
        let raw = raw.split('#').next().unwrap_or("").trim();
        let value: T = raw
            .parse()
            .map_err(|_| invalid(name, format!("expected a whole number, got {raw:?}")))?;
        if value < range.0 || value > range.1 {
            return Err(invalid(
                name,
                format!("must be between {} and {}, got {value}", range.0, range.1),
            ));
        }
        Ok(value)
    }

    fn seconds(
        &self,
        name: &'static str,
        default: u64,
        range: (u64, u64),
    ) -> Result<Duration, ConfigError> {
        self.number(name, default, range).map(Duration::from_secs)
    }

    fn url(&self, name: &'static str) -> Result<Option<String>, ConfigError> {
        match self.text(name) {
            None => Ok(None),
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                Ok(Some(url.trim_end_matches('/').to_owned()))
            }
            Some(_) => Err(invalid(name, "must start with http:// or https://")),
        }
    }

    /// A comma-separated list of addresses or CIDR ranges (`10.0.0.0/8`, `::1`).
    fn networks(&self, name: &'static str) -> Result<Vec<IpNet>, ConfigError> {
        self.list(name)
            .iter()
            .map(|net| {
                IpNet::parse(net).ok_or_else(|| {
                    invalid(
                        name,
                        "must list IP addresses or CIDR ranges, separated by commas",
                    )
                })
            })
            .collect()
    }

    /// A comma-separated list of origins: `scheme://host[:port]`, nothing after it.
    fn origins(&self, name: &'static str) -> Result<Vec<String>, ConfigError> {
        self.list(name)
            .into_iter()
            .map(|origin| {
                let host = origin
                    .strip_prefix("https://")
                    .or_else(|| origin.strip_prefix("http://"));
                match host {
                    Some(host) if !host.is_empty() && !host.contains(['/', '?', '#', '*']) => {
                        Ok(origin.to_owned())
                    }
                    _ => Err(invalid(
                        name,
                        "must list origins like https://app.example.com, separated by commas",
                    )),
                }
            })
            .collect()
    }

    fn flag(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.text(name).map(|v| v.to_ascii_lowercase()).as_deref() {
            None => Ok(default),
            Some("1" | "true" | "yes" | "on") => Ok(true),
            Some("0" | "false" | "no" | "off") => Ok(false),
            Some(other) => Err(invalid(
                name,
                format!("expected true or false, got {other:?}"),
            )),
        }
    }
}

impl Config {
    /// Loads `.env` (if present) and then the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        // A missing .env is normal; a malformed one is a start-up error.
        match dotenvy::dotenv() {
            Ok(_) => {}
            Err(e) if e.not_found() => {}
            Err(e) => return Err(invalid(".env", e.to_string())),
        }
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Builds a config from a map of variables, ignoring the process environment.
    pub fn from_map(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        Self::from_lookup(&|name| vars.get(name).cloned())
    }

    fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let vars = Vars { get };
        let data_dir = PathBuf::from(vars.text("DATA_DIR").unwrap_or_else(|| "data".to_owned()));
        Ok(Self {
            server: ServerConfig::read(&vars)?,
            database: DatabaseConfig::read(&vars, &data_dir)?,
            storage: StorageSettings::read(&vars, &data_dir)?,
            limits: LimitsConfig::read(&vars)?,
            access: AccessConfig::read(&vars)?,
            sweeper: SweeperConfig::read(&vars)?,
            webhooks: WebhookConfig::read(&vars)?,
            variants: VariantConfig::read(&vars)?,
            data_dir,
        })
    }

    pub fn is_production(&self) -> bool {
        self.server.is_production()
    }

    pub fn is_sqlite(&self) -> bool {
        self.database.is_sqlite()
    }
}

impl ServerConfig {
    fn read(vars: &Vars<'_>) -> Result<Self, ConfigError> {
        let environment = vars
            .text("ENVIRONMENT")
            .unwrap_or_else(|| "development".to_owned());
        let log_level = log_level(vars)?;
        let bind_addr = match vars.text("BIND_ADDR") {
            None => IpAddr::from([0, 0, 0, 0]),
            Some(addr) => addr
                .parse()
                .map_err(|_| invalid("BIND_ADDR", "expected an IP address"))?,
        };
        Ok(Self {
            environment,
            log_level,
            bind_addr,
            port: vars.number("PORT", 5000u16, (0, u16::MAX))?,
            shutdown_grace: vars.seconds("SHUTDOWN_GRACE", 10, (0, 600))?,
            frontend_dir: vars.text("FRONTEND_DIR").map(PathBuf::from),
            public_url: vars
                .text("PUBLIC_URL")
                .map(|url| {
                    crate::origin::ClientOrigin::parse(&url).ok_or_else(|| {
                        invalid(
                            "PUBLIC_URL",
                            "must be an origin, http(s)://host[:port], with no path",
                        )
                    })
                })
                .transpose()?,
            allowed_hosts: vars
                .list("ALLOWED_HOSTS")
                .iter()
                .map(|entry| {
                    crate::origin::AllowedHost::parse(entry).ok_or_else(|| {
                        invalid(
                            "ALLOWED_HOSTS",
                            "must list host names or addresses, each with an optional :port, separated by commas",
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
        })
    }

    pub fn is_production(&self) -> bool {
        self.environment.eq_ignore_ascii_case("production")
    }
}

/// `LOG_LEVEL`, in the seed's Python spelling, as a tracing level.
fn log_level(vars: &Vars<'_>) -> Result<String, ConfigError> {
    let Some(level) = vars.text("LOG_LEVEL") else {
        return Ok("info".to_owned());
    };
    let level = match level.to_ascii_uppercase().as_str() {
        "TRACE" => "trace",
        "DEBUG" => "debug",
        "INFO" => "info",
        "WARN" | "WARNING" => "warn",
        "ERROR" | "CRITICAL" => "error",
        _ => {
            return Err(invalid(
                "LOG_LEVEL",
                "expected DEBUG, INFO, WARNING, ERROR or CRITICAL",
            ));
        }
    };
    Ok(level.to_owned())
}

impl DatabaseConfig {
    fn read(vars: &Vars<'_>, data_dir: &std::path::Path) -> Result<Self, ConfigError> {
        let url = match (vars.text("DATABASE_URL"), vars.text("DATABASE_PATH")) {
            (Some(url), _) => {
                if !(url.starts_with("sqlite:")
                    || url.starts_with("postgres://")
                    || url.starts_with("postgresql://"))
                {
                    return Err(invalid(
                        "DATABASE_URL",
                        "expected a sqlite:// or postgres:// URL",
                    ));
                }
                if url.contains(":memory:") || url.contains("mode=memory") {
                    // Each pooled connection would see its own empty database.
                    return Err(invalid(
                        "DATABASE_URL",
                        "an in-memory SQLite database is not supported; use a file",
                    ));
                }
                url
            }
            (None, Some(path)) => sqlite_url(&PathBuf::from(path)),
            (None, None) => sqlite_url(&data_dir.join("images.db")),
        };
        Ok(Self {
            url,
            timeout: vars.seconds("DB_TIMEOUT", 5, (1, 300))?,
        })
    }

    pub fn is_sqlite(&self) -> bool {
        self.url.starts_with("sqlite:")
    }
}

impl StorageSettings {
    fn read(vars: &Vars<'_>, data_dir: &std::path::Path) -> Result<Self, ConfigError> {
        let region = vars
            .text("AWS_REGION")
            .or_else(|| vars.text("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".to_owned());
        Ok(Self {
            region,
            backend: StorageConfig::read(vars, data_dir)?,
            public_base_url: vars.url("PUBLIC_BASE_URL")?,
            private_bucket: vars.flag("PRIVATE_BUCKET", false)?,
            conditional_writes: vars.flag("S3_CONDITIONAL_WRITES", true)?,
            auto_confirm: vars.flag("AUTO_CONFIRM", true)?,
            events_queue: match vars.url("S3_EVENTS_QUEUE_URL")? {
                None => None,
                Some(url) => Some(QueueSettings {
                    url,
                    endpoint_url: match vars.url("AWS_ENDPOINT_URL_SQS")? {
                        Some(endpoint) => Some(endpoint),
                        None => vars.url("AWS_ENDPOINT_URL")?,
                    },
                }),
            },
            s3_public_endpoint: vars.url("S3_PUBLIC_ENDPOINT_URL")?,
            object_url_expires: vars.seconds(
                "OBJECT_URL_EXPIRES",
                MAX_PRESIGN_SECS,
                (60, MAX_PRESIGN_SECS),
            )?,
            connect_timeout: vars.seconds("S3_CONNECT_TIMEOUT", 3, (1, 300))?,
            operation_timeout: vars.seconds("S3_OPERATION_TIMEOUT", 30, (1, 3600))?,
        })
    }
}

/// The queue the bucket's event notifications arrive on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueSettings {
    pub url: String,
    pub endpoint_url: Option<String>,
}

impl StorageConfig {
    /// An external bucket when `AWS_BUCKET_NAME` is set, else the embedded store.
    fn read(vars: &Vars<'_>, data_dir: &std::path::Path) -> Result<Self, ConfigError> {
        let endpoint_url = match vars.url("AWS_ENDPOINT_URL_S3")? {
            Some(url) => Some(url),
            None => vars.url("AWS_ENDPOINT_URL")?,
        };
        let Some(bucket) = vars.text("AWS_BUCKET_NAME") else {
            return Ok(Self::Embedded {
                port: vars.number("EMBEDDED_S3_PORT", 9000u16, (0, u16::MAX))?,
                root: data_dir.join("s3"),
            });
        };
        if !valid_bucket_name(&bucket) {
            return Err(invalid(
                "AWS_BUCKET_NAME",
                "expected 3-63 lowercase letters, digits, dots or hyphens",
            ));
        }
        // Self-hosted stores (MinIO, Garage) rarely have wildcard DNS for buckets.
        let force_path_style = vars.flag("S3_FORCE_PATH_STYLE", endpoint_url.is_some())?;
        Ok(Self::External {
            bucket,
            endpoint_url,
            force_path_style,
            credentials: StaticCredentials::read(vars)?,
        })
    }
}

impl StaticCredentials {
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`, both or neither.
    fn read(vars: &Vars<'_>) -> Result<Option<Self>, ConfigError> {
        match (
            vars.text("AWS_ACCESS_KEY_ID"),
            vars.text("AWS_SECRET_ACCESS_KEY"),
        ) {
            (Some(access_key_id), Some(secret)) => Ok(Some(Self {
                access_key_id,
                secret_access_key: Secret::new(secret),
                session_token: vars.text("AWS_SESSION_TOKEN").map(Secret::new),
            })),
            (None, None) => Ok(None),
            (Some(_), None) => Err(invalid(
                "AWS_SECRET_ACCESS_KEY",
                "must be set together with AWS_ACCESS_KEY_ID",
            )),
            (None, Some(_)) => Err(invalid(
                "AWS_ACCESS_KEY_ID",
                "must be set together with AWS_SECRET_ACCESS_KEY",
            )),
        }
    }
}

impl LimitsConfig {
    fn read(vars: &Vars<'_>) -> Result<Self, ConfigError> {
        // A legacy upload waits on local disk before it is stored: 50 GiB is plenty.
        let max_file_size = vars.number(
            "MAX_FILE_SIZE",
            10 * MIB,
            (1, MIN_PART_SIZE * u64::from(S3_MAX_PARTS)),
        )?;
        let max_upload_size = vars.number("MAX_UPLOAD_SIZE", 5 * GIB, (1, 5 * 1024 * GIB))?;
        let multipart_threshold = vars.number(
            "MULTIPART_THRESHOLD",
            64 * MIB,
            (MIN_PART_SIZE, MAX_S3_PART_SIZE),
        )?;
        let part_size = vars.number("PART_SIZE", 16 * MIB, (MIN_PART_SIZE, MAX_S3_PART_SIZE))?;
        let max_parts = vars.number("MAX_PARTS", S3_MAX_PARTS, (1, S3_MAX_PARTS))?;
        if max_upload_size > MAX_S3_PART_SIZE * u64::from(max_parts) {
            return Err(invalid(
                "MAX_UPLOAD_SIZE",
                "cannot be reached with MAX_PARTS parts of at most 5 GiB",
            ));
        }
        let presign_expires = vars.seconds("PRESIGN_EXPIRES", 900, (1, MAX_PRESIGN_SECS))?;
        let rate_limit = vars.number("RATE_LIMIT", 0u32, (0, 1_000_000))?;
        Ok(Self {
            max_file_size,
            max_upload_size,
            multipart_threshold,
            part_size,
            max_parts,
            presign_expires,
            multipart_expires: vars.seconds("MULTIPART_EXPIRES", 86_400, (1, 30 * 86_400))?,
            max_image_dimension: vars.number("MAX_IMAGE_DIMENSION", 30_000u32, (1, 1 << 20))?,
            max_image_pixels: vars.number("MAX_IMAGE_PIXELS", 200_000_000u64, (1, 1 << 40))?,
            verify_decode: vars.flag("VERIFY_DECODE", false)?,
            verify_decode_max_bytes: vars.number("VERIFY_DECODE_MAX_BYTES", 50 * MIB, (1, GIB))?,
            max_pending_per_image: vars.number("MAX_PENDING_PER_IMAGE", 0u64, (0, u64::MAX))?,
            max_pending_bytes_per_image: vars.number(
                "MAX_PENDING_BYTES_PER_IMAGE",
                0u64,
                (0, u64::MAX),
            )?,
            rate_limit,
            rate_limit_burst: vars.number(
                "RATE_LIMIT_BURST",
                rate_limit.saturating_mul(2).max(1),
                (1, 1_000_000),
            )?,
        })
    }
}

impl AccessConfig {
    fn read(vars: &Vars<'_>) -> Result<Self, ConfigError> {
        let secret_key = vars.text("SECRET_KEY").map(Secret::new);
        let api_keys: Vec<Secret> = vars.list("API_KEYS").into_iter().map(Secret::new).collect();
        if !api_keys.is_empty() && secret_key.as_ref().is_none_or(|s| s.expose().len() < 16) {
            return Err(invalid(
                "SECRET_KEY",
                "must be set, at least 16 characters, when API_KEYS is (it signs upload links)",
            ));
        }
        Ok(Self {
            api_keys,
            secret_key,
            cors_origins: vars.origins("CORS_ORIGINS")?,
            trusted_proxies: vars.networks("TRUSTED_PROXIES")?,
            admin_keys: vars
                .list("ADMIN_KEYS")
                .into_iter()
                .map(Secret::new)
                .collect(),
            storage_events_token: vars.text("STORAGE_EVENTS_TOKEN").map(Secret::new),
        })
    }
}

/// Which variants are made, and with what.
#[derive(Clone, Debug)]
pub struct VariantConfig {
    /// `IMAGE_VARIANTS`: named presets, the longest side in pixels; empty turns variants off.
    pub presets: Vec<Preset>,
    /// `VARIANT_FORMATS`: the encodings each preset is made in.
    pub formats: Vec<VariantFormat>,
    /// `VARIANT_MAX_PIXELS`: larger images get no variants (`image_too_large`).
    pub max_pixels: u64,
    /// `VARIANT_WORKERS`: jobs decoding at once (default: the number of cores).
    pub workers: usize,
}

/// The longest side a preset may ask for.
const MAX_PRESET_SIDE: u32 = 8192;

impl VariantConfig {
    fn read(vars: &Vars<'_>) -> Result<Self, ConfigError> {
        // Unset gives the default; set but empty turns variants off.
        let presets_text = match (vars.get)("IMAGE_VARIANTS") {
            None => "thumb:256,display:1280".to_owned(),
            Some(text) => text,
        };
        let mut presets: Vec<Preset> = Vec::new();
        for item in presets_text
            .split(',')
            .map(str::trim)
            .filter(|i| !i.is_empty())
        {
            let preset = item
                .split_once(':')
                .and_then(|(name, side)| {
                    let valid_name = !name.is_empty()
                        && name.len() <= 32
                        && name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    let side: u32 = side.trim().parse().ok()?;
                    (valid_name && (1..=MAX_PRESET_SIDE).contains(&side)).then(|| Preset {
                        name: name.to_owned(),
                        longest: side,
                    })
                })
                .ok_or_else(|| {
                    invalid(
                        "IMAGE_VARIANTS",
                        "must list name:pixels presets (1 to 8192), separated by commas, like thumb:256,display:1280",
                    )
                })?;
            if presets.iter().any(|p| p.name == preset.name) {
                return Err(invalid(
                    "IMAGE_VARIANTS",
                    format!("{} is listed twice", preset.name),
                ));
            }
            presets.push(preset);
        }
        let formats_text = vars
            .text("VARIANT_FORMATS")
            .unwrap_or_else(|| "webp,jpeg".to_owned());
        let mut formats = Vec::new();
        for name in formats_text
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
        {
            let format = VariantFormat::parse(&name.to_ascii_lowercase())
                .ok_or_else(|| invalid("VARIANT_FORMATS", "must list webp and/or jpeg"))?;
            if !formats.contains(&format) {
                formats.push(format);
            }
        }
        if formats.is_empty() && !presets.is_empty() {
            return Err(invalid("VARIANT_FORMATS", "must list webp and/or jpeg"));
        }
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Ok(Self {
            presets,
            formats,
            max_pixels: vars.number("VARIANT_MAX_PIXELS", 50_000_000u64, (1, 1_000_000_000))?,
            workers: vars.number("VARIANT_WORKERS", cores, (1, 256))?,
        })
    }

    pub fn enabled(&self) -> bool {
        !self.presets.is_empty()
    }
}

/// The default `WEBHOOK_RETRY_SCHEDULE`: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
const DEFAULT_RETRY_SCHEDULE: [u64; 7] = [5, 300, 1800, 7200, 18000, 36000, 36000];

impl WebhookConfig {
    fn read(vars: &Vars<'_>) -> Result<Self, ConfigError> {
        let urls = vars
            .list("WEBHOOK_URL")
            .into_iter()
            .map(|url| match crate::webhooks::target::parse(&url) {
                Ok(_) => Ok(url),
                Err(_) => Err(invalid(
                    "WEBHOOK_URL",
                    "must list http:// or https:// URLs, separated by commas",
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let secrets = vars
            .text("WEBHOOK_SECRET")
            .map(|text| {
                text.split_whitespace()
                    .map(|secret| {
                        SigningKey::parse(secret)
                            .map_err(|reason| invalid("WEBHOOK_SECRET", reason))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        if !urls.is_empty() && secrets.is_empty() {
            return Err(invalid(
                "WEBHOOK_SECRET",
                "must be set with WEBHOOK_URL (whsec_ followed by the base64 of 24 to 64 bytes)",
            ));
        }
        let retry_schedule = match vars.text("WEBHOOK_RETRY_SCHEDULE") {
            None => DEFAULT_RETRY_SCHEDULE.map(Duration::from_secs).to_vec(),
            Some(text) => text
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| match item.parse::<u64>() {
                    Ok(secs) if secs <= 7 * 86_400 => Ok(Duration::from_secs(secs)),
                    _ => Err(invalid(
                        "WEBHOOK_RETRY_SCHEDULE",
                        "must list seconds (0 to 604800) before each retry, separated by commas",
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        Ok(Self {
            urls,
            secrets,
            retry_schedule,
            timeout: vars.seconds("WEBHOOK_TIMEOUT", 10, (1, 300))?,
            allow_private: vars.flag("WEBHOOK_ALLOW_PRIVATE", false)?,
            retention: match vars.number("EVENT_RETENTION_DAYS", 30u64, (0, 36_500))? {
                0 => None,
                days => Some(Duration::from_secs(days * 86_400)),
            },
        })
    }
}

impl SweeperConfig {
    fn read(vars: &Vars<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            interval: vars.seconds("SWEEP_INTERVAL", 300, (0, 7 * 86_400))?,
            clock_skew_margin: vars.seconds("CLOCK_SKEW_MARGIN", 300, (0, 86_400))?,
        })
    }
}

/// An address range: `10.0.0.0/8`, `fd00::/8`, or one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn parse(text: &str) -> Option<Self> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (
                addr.parse::<IpAddr>().ok()?,
                Some(prefix.parse::<u8>().ok()?),
            ),
            None => (text.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Self { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

fn sqlite_url(path: &std::path::Path) -> String {
    // `mode=rwc` creates the file on first start.
    format!("sqlite://{}?mode=rwc", path.display())
}

fn valid_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_map(&map)
    }

    #[test]
    fn defaults_run_embedded_on_port_5000() {
        let config = load(&[]).expect("defaults load");
        assert_eq!(config.server.port, 5000);
        assert_eq!(config.limits.max_file_size, 10 * MIB);
        assert_eq!(config.limits.multipart_threshold, 64 * MIB);
        assert_eq!(config.limits.presign_expires, Duration::from_secs(900));
        assert!(!config.limits.verify_decode);
        assert_eq!(config.limits.verify_decode_max_bytes, 50 * MIB);
        assert_eq!(config.database.url, "sqlite://data/images.db?mode=rwc");
        assert!(matches!(
            config.storage.backend,
            StorageConfig::Embedded { port: 9000, .. }
        ));
    }

    #[test]
    fn seed_variables_keep_their_meaning() {
        let config = load(&[
            ("AWS_BUCKET_NAME", "my-bucket"),
            ("AWS_REGION", "eu-west-1"),
            ("MAX_FILE_SIZE", "10485760  # 10MB in bytes"),
            ("DATABASE_PATH", "images.db"),
            ("LOG_LEVEL", "WARNING"),
            ("SECRET_KEY", "hunter2"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI"),
        ])
        .expect("seed config loads");
        assert_eq!(config.database.url, "sqlite://images.db?mode=rwc");
        assert_eq!(config.server.log_level, "warn");
        assert_eq!(config.storage.region, "eu-west-1");
        assert!(matches!(
            config.storage.backend,
            StorageConfig::External { ref bucket, force_path_style: false, .. } if bucket == "my-bucket"
        ));
        let printed = format!("{config:?}");
        assert!(!printed.contains("hunter2"));
        assert!(!printed.contains("wJalrXUtnFEMI"));
    }

    #[test]
    fn trusted_proxies_are_addresses_and_ranges() {
        let config = load(&[("TRUSTED_PROXIES", "10.0.0.0/8, ::1, 192.168.1.7")]).expect("nets");
        let trusted = |ip: &str| {
            let ip: IpAddr = ip.parse().expect("ip");
            config
                .access
                .trusted_proxies
                .iter()
                .any(|net| net.contains(ip))
        };
        assert!(trusted("10.200.3.4") && trusted("::1") && trusted("192.168.1.7"));
        assert!(
            trusted("::ffff:10.1.1.1"),
            "IPv4-mapped addresses count as IPv4"
        );
        assert!(!trusted("11.0.0.1") && !trusted("192.168.1.8") && !trusted("::2"));
        assert!(load(&[("TRUSTED_PROXIES", "10.0.0.0/33")]).is_err());
        assert!(load(&[("TRUSTED_PROXIES", "proxy.local")]).is_err());
    }

    #[test]
    fn cors_origins_are_a_list_of_origins() {
        assert!(load(&[]).expect("defaults").access.cors_origins.is_empty());
        let config = load(&[(
            "CORS_ORIGINS",
            " https://app.example.com,http://localhost:3000 ,",
        )])
        .expect("origins");
        assert_eq!(
            config.access.cors_origins,
            ["https://app.example.com", "http://localhost:3000"]
        );
    }

    #[test]
    fn database_url_overrides_path_and_endpoint_implies_path_style() {
        let config = load(&[
            ("DATABASE_URL", "postgres://u@localhost/db"),
            ("DATABASE_PATH", "ignored.db"),
            ("AWS_BUCKET_NAME", "media"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:3900/"),
        ])
        .expect("loads");
        assert_eq!(config.database.url, "postgres://u@localhost/db");
        assert!(matches!(
            config.storage.backend,
            StorageConfig::External { force_path_style: true, endpoint_url: Some(ref url), .. }
                if url == "http://127.0.0.1:3900"
        ));
    }

    #[test]
    fn webhooks_need_a_secret_and_take_several() {
        let err = load(&[("WEBHOOK_URL", "https://hooks.example.com/in")]).expect_err("no secret");
        assert_eq!(err.variable, "WEBHOOK_SECRET");
        let two = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw whsec_c2Vjb25kLXNlY3JldC1vZi10aGUtdGVzdHMtMTIzNA==";
        let config = load(&[
            (
                "WEBHOOK_URL",
                "https://a.example.com/in, https://b.example.com/in",
            ),
            ("WEBHOOK_SECRET", two),
            ("WEBHOOK_RETRY_SCHEDULE", "1, 2,4"),
        ])
        .expect("config");
        assert_eq!(config.webhooks.urls.len(), 2);
        assert_eq!(config.webhooks.secrets.len(), 2);
        assert_eq!(
            config.webhooks.retry_schedule,
            [1, 2, 4].map(Duration::from_secs)
        );
        assert!(
            !format!("{config:?}").contains("MfKQ9r8"),
            "secrets are never printed"
        );
        let defaults = load(&[]).expect("config");
        assert_eq!(defaults.webhooks.retry_schedule.len(), 7);
        assert_eq!(defaults.webhooks.timeout, Duration::from_secs(10));
        assert_eq!(
            defaults.webhooks.retention,
            Some(Duration::from_secs(30 * 86_400))
        );
    }

    #[test]
    fn variants_have_presets_formats_and_limits() {
        let defaults = load(&[]).expect("config");
        let names: Vec<(&str, u32)> = defaults
            .variants
            .presets
            .iter()
            .map(|p| (p.name.as_str(), p.longest))
            .collect();
        assert_eq!(names, [("thumb", 256), ("display", 1280)]);
        assert_eq!(
            defaults.variants.formats,
            [VariantFormat::Webp, VariantFormat::Jpeg]
        );
        assert_eq!(defaults.variants.max_pixels, 50_000_000);
        assert!(defaults.variants.workers >= 1);
        let off = load(&[("IMAGE_VARIANTS", "")]).expect("config");
        assert!(!off.variants.enabled());
        let one =
            load(&[("IMAGE_VARIANTS", "card:600"), ("VARIANT_FORMATS", "JPEG")]).expect("config");
        assert_eq!(one.variants.presets.len(), 1);
        assert_eq!(one.variants.formats, [VariantFormat::Jpeg]);
        for (name, value) in [
            ("IMAGE_VARIANTS", "thumb"),
            ("IMAGE_VARIANTS", "thumb:0"),
            ("IMAGE_VARIANTS", "thumb:99999"),
            ("IMAGE_VARIANTS", "a b:100"),
            ("IMAGE_VARIANTS", "thumb:100,thumb:200"),
            ("VARIANT_FORMATS", "gif"),
            ("VARIANT_MAX_PIXELS", "0"),
            ("VARIANT_WORKERS", "0"),
        ] {
            assert_eq!(load(&[(name, value)]).expect_err(value).variable, name);
        }
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (name, value) in [
            ("PORT", "http"),
            ("PART_SIZE", "1024"),
            ("PRESIGN_EXPIRES", "0"),
            ("MAX_PARTS", "20000"),
            ("LOG_LEVEL", "loud"),
            ("DATABASE_URL", "mysql://x"),
            ("AWS_ENDPOINT_URL", "localhost:9000"),
            ("CORS_ORIGINS", "https://app.example.com/path"),
            ("CORS_ORIGINS", "*"),
            ("OBJECT_URL_EXPIRES", "10"),
            ("RATE_LIMIT", "-1"),
            ("WEBHOOK_URL", "hooks.example.com/in"),
            ("WEBHOOK_SECRET", "not-a-whsec-secret"),
            ("WEBHOOK_RETRY_SCHEDULE", "5,soon"),
            ("WEBHOOK_TIMEOUT", "0"),
            ("EVENT_RETENTION_DAYS", "-3"),
        ] {
            let err = load(&[(name, value)]).expect_err(name);
            assert_eq!(err.variable, name);
            assert!(
                err.to_string()
                    .starts_with(&format!("invalid configuration: {name}: "))
            );
        }
    }
}
