//! The variants worker, one in every replica: it claims due variant jobs with a lease (the
//! same machinery as webhook deliveries) and runs each through the lifecycle
//! (`UploadService::run_variants_job`), at most `VARIANT_WORKERS` at once. A completion's
//! commit wakes it; a poll finds retries and jobs other replicas recorded.

use std::time::Duration;

use time::OffsetDateTime;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::db::Db;
use crate::shutdown::Shutdown;
use crate::uploads::{JOB_LEASE, UploadService};

/// How often due jobs are looked for without a wake-up.
const POLL: Duration = Duration::from_secs(1);

/// Starts the worker with `workers` jobs at most in flight; it stops claiming at
/// `shutdown` and lets the jobs it holds finish.
pub fn spawn_variant_worker(
    db: Db,
    uploads: UploadService,
    workers: usize,
    mut shutdown: Shutdown,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut jobs = JoinSet::new();
        loop {
            let free = workers.saturating_sub(jobs.len());
            if free > 0 {
                let now = OffsetDateTime::now_utc();
                let lease = Uuid::now_v7();
                match db
                    .claim_variant_jobs(now, now + JOB_LEASE, lease, free as u64)
                    .await
                {
                    Ok(claimed) => {
                        for job in claimed {
                            let uploads = uploads.clone();
                            jobs.spawn(async move {
                                let run = uploads.run_variants_job(job.upload_id, job.attempts, lease);
                                if let Err(err) = run.await {
                                    tracing::warn!(upload_id = %job.upload_id, error = %err, "cannot record a variants job");
                                }
                            });
                        }
                    }
                    Err(err) => tracing::warn!(error = %err, "cannot claim variant jobs"),
                }
            }
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = db.jobs_recorded().notified(), if jobs.len() < workers => {}
                Some(_) = jobs.join_next() => {}
                () = shutdown.wait() => break,
            }
        }
        while jobs.join_next().await.is_some() {}
    })
}
