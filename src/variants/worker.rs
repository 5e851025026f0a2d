//! The variants worker, one in every replica: it claims due variant jobs with a lease,
//! reads each original, makes its variants on the blocking pool (at most `VARIANT_WORKERS`
//! at once), stores them, and records the outcome with the upload's `variants_state`.
//! A store that does not answer is retried; an image that cannot be made fails for good.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use uuid::Uuid;

use super::pipeline::{self, Limits};
use crate::config::VariantConfig;
use crate::db::Db;
use crate::db::variant_jobs::{JobOutcome, VariantJobRow};
use crate::shutdown::Shutdown;
use crate::storage::{Storage, StorageError};
use entity::UploadState;

/// How often due jobs are looked for without a wake-up.
const POLL: Duration = Duration::from_secs(1);
/// A lease outlives a job by this much at most.
const LEASE: Duration = Duration::from_secs(120);
/// Largest original a job reads.
const MAX_SOURCE_BYTES: u64 = 256 * 1024 * 1024;
/// Memory a decoder may allocate.
const DECODE_MEMORY: u64 = 512 * 1024 * 1024;

/// Where a variant is stored.
pub fn variant_key(image_id: &str, upload_id: Uuid, preset: &str, extension: &str) -> String {
    format!("variants/{image_id}/{upload_id}/{preset}.{extension}")
}

pub fn spawn_variant_worker(
    db: Db,
    storage: Storage,
    settings: VariantConfig,
    mut shutdown: Shutdown,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let settings = Arc::new(settings);
        let slots = Arc::new(Semaphore::new(settings.workers));
        let mut jobs = JoinSet::new();
        loop {
            while jobs.try_join_next().is_some() {}
            let free = slots.available_permits();
            if free > 0 {
                let now = OffsetDateTime::now_utc();
                let lease = Uuid::now_v7();
                match db
                    .claim_variant_jobs(now, now + LEASE, lease, free as u64)
                    .await
                {
                    Ok(claimed) => {
                        for job in claimed {
                            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                                break;
                            };
                            let (db, storage, settings) =
                                (db.clone(), storage.clone(), Arc::clone(&settings));
                            jobs.spawn(async move {
                                let outcome = run(&db, &storage, &settings, &job).await;
                                if let Err(err) = db.finish_variant_job(job.upload_id, lease, &outcome).await {
                                    tracing::warn!(upload_id = %job.upload_id, error = %err, "cannot record a variants job");
                                }
                                drop(slot);
                            });
                        }
                    }
                    Err(err) => tracing::warn!(error = %err, "cannot claim variant jobs"),
                }
            }
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                Some(_) = jobs.join_next() => {}
                () = shutdown.wait() => break,
            }
        }
        while jobs.join_next().await.is_some() {}
    })
}

async fn run(
    db: &Db,
    storage: &Storage,
    settings: &VariantConfig,
    job: &VariantJobRow,
) -> JobOutcome {
    let failed = |code: &str| JobOutcome::Failed {
        code: code.to_owned(),
    };
    let retry = |err: &dyn std::fmt::Display| JobOutcome::Retry {
        error: err.to_string(),
        at: OffsetDateTime::now_utc()
            + Duration::from_secs(5 * (u64::try_from(job.attempts).unwrap_or(0) + 1)),
    };
    let row = match db.find_fresh(job.upload_id).await {
        Ok(Some(row)) if row.state == UploadState::Completed => row,
        Ok(_) => return failed("not_completed"),
        Err(err) => return retry(&err),
    };
    let bytes = match storage.read_all(&row.object_key, MAX_SOURCE_BYTES).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return failed("image_too_large"),
        Err(StorageError::NoSuchKey) => return failed("missing_object"),
        Err(err) => return retry(&err),
    };
    let limits = Limits {
        max_pixels: settings.max_pixels,
        max_memory: DECODE_MEMORY,
    };
    let (presets, formats) = (settings.presets.clone(), settings.formats.clone());
    let made =
        tokio::task::spawn_blocking(move || pipeline::make(&bytes, &presets, &formats, limits))
            .await;
    let made = match made {
        Ok(Ok(made)) => made,
        Ok(Err(err)) => {
            tracing::info!(upload_id = %job.upload_id, code = err.code(), error = %err, "variants refused");
            return failed(err.code());
        }
        Err(_) => return failed("variant_failed"),
    };
    let mut record: BTreeMap<String, BTreeMap<String, serde_json::Value>> = BTreeMap::new();
    for variant in made {
        let key = variant_key(
            &row.image_id,
            row.id,
            &variant.preset,
            variant.format.extension(),
        );
        let size = variant.bytes.len();
        if let Err(err) = storage
            .put_immutable(&key, variant.format.mime(), variant.bytes.into())
            .await
        {
            return retry(&err);
        }
        record.entry(variant.preset).or_default().insert(
            variant.format.extension().to_owned(),
            serde_json::json!({ "key": key, "width": variant.width, "height": variant.height, "size": size }),
        );
    }
    tracing::info!(upload_id = %job.upload_id, image_id = %row.image_id, "variants made");
    JobOutcome::Ready {
        variants: serde_json::to_string(&record).unwrap_or_default(),
    }
}
