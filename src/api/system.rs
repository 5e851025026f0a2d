//! `/health`: the seed's health check, answering within a bounded time.

use std::time::Duration;

use poem_openapi::payload::{Json, PlainText};
use poem_openapi::types::ToJSON;
use poem_openapi::{ApiResponse, Object, OpenApi};
use time::OffsetDateTime;

use super::ApiTags;
use crate::domain::seed_timestamp;
use crate::uploads::UploadService;

/// How long `/health` waits for the database and the bucket together.
const HEALTH_LIMIT: Duration = Duration::from_secs(2);

pub struct SystemApi {
    uploads: UploadService,
    /// The `ENVIRONMENT` setting, reported by `/health`.
    environment: String,
}

impl SystemApi {
    pub fn new(uploads: UploadService, environment: String) -> Self {
        Self {
            uploads,
            environment,
        }
    }
}

/// The seed's health document.
#[derive(Debug, Clone, Object)]
pub struct Health {
    /// `healthy` or `unhealthy`.
    pub status: String,
    /// UTC, `2025-10-26T10:30:00.000000`.
    pub timestamp: String,
    /// The `ENVIRONMENT` setting.
    pub environment: String,
}

/// What the readiness check found.
#[derive(Debug, Clone, Object)]
#[oai(rename = "Readiness")]
pub struct ReadinessBody {
    /// `ready` when the database and the bucket answer, else `not_ready`.
    pub status: String,
    /// `ok` or `unavailable`.
    pub database: String,
    /// `ok` or `unavailable`.
    pub bucket: String,
    /// What the bucket's CORS rules let a browser do: `ok` (PUT allowed, `ETag`
    /// exposed), `served_by_service` (the embedded store), `etag_not_exposed`,
    /// `no_rules`, or `unknown` (the store would not say, or the bucket is unreachable).
    pub bucket_cors: String,
}

/// The answer of a check, in the same body either way.
#[derive(ApiResponse)]
enum CheckResponse<T: ToJSON> {
    /// The database and the bucket answer.
    #[oai(status = 200)]
    Passed(Json<T>),
    /// The database or the bucket cannot be reached.
    #[oai(status = 503)]
    Failed(Json<T>),
}

impl<T: ToJSON> CheckResponse<T> {
    fn of(passed: bool, body: T) -> Self {
        if passed {
            Self::Passed(Json(body))
        } else {
            Self::Failed(Json(body))
        }
    }
}

#[OpenApi(tag = "ApiTags::System")]
impl SystemApi {
    /// Health check
    ///
    /// `healthy` when the database and the bucket both answer within two seconds.
    #[oai(path = "/health", method = "get", operation_id = "health")]
    async fn health(&self) -> CheckResponse<Health> {
        let healthy = self.uploads.healthy(HEALTH_LIMIT).await;
        let status = if healthy { "healthy" } else { "unhealthy" };
        CheckResponse::of(
            healthy,
            Health {
                status: status.to_owned(),
                timestamp: seed_timestamp(OffsetDateTime::now_utc()),
                environment: self.environment.clone(),
            },
        )
    }

    /// Readiness check
    ///
    /// For a load balancer or an orchestrator: the database and the bucket each answer
    /// within two seconds, and what the bucket's CORS rules let a browser do (a warning
    /// is logged when the page's uploads could not work).
    #[oai(path = "/health/ready", method = "get", operation_id = "readiness")]
    async fn readiness(&self) -> CheckResponse<ReadinessBody> {
        let found = self.uploads.readiness(HEALTH_LIMIT).await;
        let state = |ok: bool| if ok { "ok" } else { "unavailable" }.to_owned();
        let ready = found.database && found.bucket;
        CheckResponse::of(
            ready,
            ReadinessBody {
                status: if ready { "ready" } else { "not_ready" }.to_owned(),
                database: state(found.database),
                bucket: state(found.bucket),
                bucket_cors: found.cors.map_or("unknown", |c| c.as_str()).to_owned(),
            },
        )
    }

    /// Metrics
    ///
    /// Prometheus text format: requests by route and status with latency histograms,
    /// upload state changes, bytes confirmed, verification failures by code, S3 calls by
    /// operation, sweeps and what they removed, database pool use.
    #[oai(path = "/metrics", method = "get", operation_id = "metrics")]
    async fn metrics(&self) -> MetricsResponse {
        MetricsResponse::Ok(PlainText(crate::metrics::render(&self.uploads.pool_use())))
    }
}

#[derive(ApiResponse)]
enum MetricsResponse {
    /// Every metric, in the Prometheus text format (version 0.0.4).
    #[oai(status = 200)]
    Ok(PlainText<String>),
}
