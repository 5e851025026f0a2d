//! What the system endpoints ask of the lifecycle's dependencies: whether the database
//! and the bucket answer, what the bucket's CORS rules allow, and the pools' use.

use std::time::Duration;

use super::{BucketCors, UploadService};
use crate::metrics::PoolUse;

/// How long a health check's answer is reused.
const HEALTH_TTL: Duration = Duration::from_secs(1);

/// What the readiness check found.
#[derive(Debug, Clone, Copy)]
pub struct Readiness {
    pub database: bool,
    pub bucket: bool,
    /// `None` when the bucket could not be asked.
    pub cors: Option<BucketCors>,
}

impl UploadService {
    /// Readiness: the database and the bucket answer within `limit`, and what the bucket's
    /// CORS rules let a browser do (a warning in the log when uploads from a page cannot
    /// work).
    pub async fn readiness(&self, limit: Duration) -> Readiness {
        // Each check has the whole limit, so a hanging bucket does not fail the database.
        let database = async {
            matches!(
                tokio::time::timeout(limit, self.db.check()).await,
                Ok(Ok(()))
            )
        };
        let bucket_and_cors = async {
            match tokio::time::timeout(limit, self.storage.check()).await {
                Ok(Ok(())) => {
                    let cors = tokio::time::timeout(limit, self.storage.browser_cors()).await;
                    (true, cors.ok().and_then(Result::ok))
                }
                _ => (false, None),
            }
        };
        let (database, (bucket, cors)) = tokio::join!(database, bucket_and_cors);
        if let Some(cors @ (BucketCors::EtagNotExposed | BucketCors::NoRules)) = cors {
            tracing::warn!(
                cors = cors.as_str(),
                "the bucket's CORS rules do not let a browser PUT and read ETag; \
                 uploads from the page will fail (see the README's bucket CORS section)"
            );
        }
        Readiness {
            database,
            bucket,
            cors,
        }
    }

    /// Database and bucket both answer within `limit`. Checked at most once a second:
    /// requests meanwhile share the last answer, so `/health` stays cheap under load and an
    /// outage still shows within a second.
    pub async fn healthy(&self, limit: Duration) -> bool {
        let mut last = self.health.lock().await;
        if let Some((at, healthy)) = *last
            && at.elapsed() < HEALTH_TTL
        {
            return healthy;
        }
        let checks = async { self.db.check().await.is_ok() && self.storage.check().await.is_ok() };
        let healthy = tokio::time::timeout(limit, checks).await.unwrap_or(false);
        *last = Some((std::time::Instant::now(), healthy));
        healthy
    }

    /// How many database connections each pool holds, for `/metrics`.
    pub fn pool_use(&self) -> Vec<PoolUse> {
        self.db.pool_use()
    }
}
