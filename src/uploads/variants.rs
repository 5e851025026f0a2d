//! Variants of a completed upload: the job that makes them (claimed by the worker in
//! `crate::variants`, or now, for a client asking for one that is missing), and finding
//! one for a redirect. A job reads the original, makes every preset in every format on
//! the blocking pool (`crate::variants::pipeline`, at most `VARIANT_WORKERS` at once in
//! this process), stores them, and settles the upload's `variants_state` with its
//! `variants.ready` event through the seam.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use uuid::Uuid;

use super::record::{StoredVariant, StoredVariants};
use super::transition::event_of;
use super::{UploadError, UploadService, UploadState, VariantFiles, VariantsState};
use crate::db::{JobOutcome, UploadRow};
use crate::domain::ImageId;
use crate::events::EventType;
use crate::metrics;
use crate::storage::StorageError;
use crate::variants::pipeline::{self, Limits, Preset, VariantFormat};

/// Every variant's key starts with this.
pub const VARIANT_PREFIX: &str = "variants/";
/// How long a claim holds a job without a heartbeat: a job whose holder died is claimed
/// again this long after its last one.
pub const JOB_LEASE: Duration = Duration::from_secs(15);
/// A running job renews its lease this often.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// Largest original a job reads.
const MAX_SOURCE_BYTES: u64 = 256 * 1024 * 1024;
/// Memory a decoder may allocate (a 50 MP RGBA image is 200 MB).
const DECODE_MEMORY: u64 = 256 * 1024 * 1024;
/// A job that found storage unavailable this many times fails for good.
const MAX_ATTEMPTS: i32 = 12;
/// How long a request waits for a variant someone else is making.
const WAIT_FOR_OTHERS: Duration = Duration::from_secs(30);

/// Where a variant is stored.
pub fn variant_key(image_id: &str, upload_id: Uuid, preset: &str, format: VariantFormat) -> String {
    format!(
        "{}{preset}.{}",
        variants_of(image_id, upload_id),
        format.extension()
    )
}

/// The prefix every variant of one upload is stored under.
fn variants_of(image_id: &str, upload_id: Uuid) -> String {
    format!("{VARIANT_PREFIX}{image_id}/{upload_id}/")
}

/// One variant as a client names it (`thumb.webp`): a configured preset and format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantName {
    pub preset: String,
    pub format: VariantFormat,
}

/// Requests waiting for this process to make one upload's variants.
pub(super) type Making = Arc<Mutex<HashMap<Uuid, Arc<tokio::sync::OnceCell<()>>>>>;

impl UploadService {
    /// Parses `<preset>.<format>`: 404 `unknown_preset` for a preset that is not in
    /// `IMAGE_VARIANTS`, 415 `unsupported_format` for a format not in `VARIANT_FORMATS`.
    pub fn variant_name(&self, raw: &str) -> Result<VariantName, UploadError> {
        let settings = &self.config.variants;
        let presets = || {
            let names: Vec<&str> = settings.presets.iter().map(|p| p.name.as_str()).collect();
            names.join(", ")
        };
        let (preset, format) = raw.rsplit_once('.').unwrap_or((raw, ""));
        if !settings.presets.iter().any(|p| p.name == preset) {
            return Err(UploadError::UnknownPreset(presets()));
        }
        let format = VariantFormat::parse(format)
            .filter(|f| settings.formats.contains(f))
            .ok_or_else(|| {
                let names: Vec<&str> = settings.formats.iter().map(|f| f.extension()).collect();
                UploadError::UnsupportedVariantFormat(names.join(", "))
            })?;
        Ok(VariantName {
            preset: preset.to_owned(),
            format,
        })
    }

    /// A URL of upload `id`'s variant `name`, making it first if it is missing.
    pub async fn variant_url(&self, id: Uuid, name: &VariantName) -> Result<String, UploadError> {
        let row = self.row(id).await?;
        self.variant_of(row, name).await
    }

    /// The same for the newest completed upload of `image_id`.
    pub async fn latest_variant_url(
        &self,
        image_id: &ImageId,
        name: &VariantName,
    ) -> Result<String, UploadError> {
        let row = self
            .db
            .latest_completed(image_id.as_str())
            .await?
            .ok_or(UploadError::NoImage)?;
        self.variant_of(row, name).await
    }

    async fn variant_of(&self, row: UploadRow, name: &VariantName) -> Result<String, UploadError> {
        if row.state != UploadState::Completed {
            return Err(UploadError::NotCompleted(row.state));
        }
        if let Some(url) = self.stored_variant_url(&row, name).await? {
            return Ok(url);
        }
        let row = self.make_now(&row).await?;
        match self.stored_variant_url(&row, name).await? {
            Some(url) => Ok(url),
            None if row.state != UploadState::Completed => {
                Err(UploadError::NotCompleted(row.state))
            }
            None => Err(UploadError::VariantsPending),
        }
    }

    /// The URL of a variant the row records; an error if its variants failed for good.
    async fn stored_variant_url(
        &self,
        row: &UploadRow,
        name: &VariantName,
    ) -> Result<Option<String>, UploadError> {
        match row.variants_state {
            Some(VariantsState::Failed) => {
                let code = row.variants_failure_code.clone();
                Err(UploadError::VariantsFailed(
                    code.unwrap_or_else(|| "variant_failed".to_owned()),
                ))
            }
            Some(VariantsState::Ready) => {
                let key = stored_variants(row)?
                    .remove(&name.preset)
                    .and_then(|mut formats| formats.remove(name.format.extension()))
                    .map(|variant| variant.key);
                match key {
                    Some(key) => Ok(Some(self.storage.object_url(&key).await?)),
                    None => Ok(None),
                }
            }
            Some(VariantsState::Pending) | None => Ok(None),
        }
    }

    /// Makes `row`'s variants now, once however many requests ask at the same time: the
    /// first runs the job (or waits for whoever holds it, in this or another replica), the
    /// others wait for it. Returns the row as it reads afterwards.
    async fn make_now(&self, row: &UploadRow) -> Result<UploadRow, UploadError> {
        let id = row.id;
        let cell = {
            let mut making = self.making.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(making.entry(id).or_default())
        };
        cell.get_or_init(|| self.make_claimed(row)).await;
        {
            let mut making = self.making.lock().unwrap_or_else(|e| e.into_inner());
            if making.get(&id).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                making.remove(&id);
            }
        }
        self.fresh_row(id).await
    }

    /// Claims `row`'s job and runs it; if someone else holds it, waits until they are done
    /// (and if it is settled, returns at once).
    async fn make_claimed(&self, row: &UploadRow) {
        let lease = Uuid::now_v7();
        let until = OffsetDateTime::now_utc() + JOB_LEASE;
        // Ready without the variant asked for: made before a preset or format was added.
        let remake = row.variants_state == Some(VariantsState::Ready);
        match self
            .db
            .claim_variant_job_now(row.id, until, lease, remake)
            .await
        {
            Ok(true) => {
                if let Err(err) = self.run_variants_job(row.id, 0, lease).await {
                    tracing::warn!(upload_id = %row.id, error = %err, "cannot record a variants job");
                }
            }
            Ok(false) => {
                let deadline = Instant::now() + WAIT_FOR_OTHERS;
                while Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    match self.db.find_fresh(row.id).await {
                        Ok(Some(now))
                            if matches!(
                                now.variants_state,
                                Some(VariantsState::Ready | VariantsState::Failed)
                            ) =>
                        {
                            break;
                        }
                        Ok(Some(_)) => {}
                        Ok(None) | Err(_) => break,
                    }
                }
            }
            Err(err) => {
                tracing::warn!(upload_id = %row.id, error = %err, "cannot claim a variants job")
            }
        }
    }

    /// Runs upload `id`'s variants job, which `lease` holds (its `attempts` so far), and
    /// records how it ended. Returns whether the record was written (`false`: the lease ran
    /// out and someone else has the job).
    pub async fn run_variants_job(
        &self,
        id: Uuid,
        attempts: i32,
        lease: Uuid,
    ) -> Result<bool, UploadError> {
        let started = Instant::now();
        let work = self.make_variants(id, attempts);
        tokio::pin!(work);
        let mut heartbeat =
            tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
        let (outcome, row) = loop {
            tokio::select! {
                made = &mut work => break made,
                _ = heartbeat.tick() => {
                    let until = OffsetDateTime::now_utc() + JOB_LEASE;
                    match self.db.extend_variant_lease(id, lease, until).await {
                        Ok(true) => {}
                        Ok(false) => tracing::warn!(upload_id = %id, "a variants job lost its lease"),
                        Err(err) => tracing::warn!(upload_id = %id, error = %err, "cannot renew a variants job's lease"),
                    }
                }
            }
        };
        let event = match (&outcome, &row) {
            (JobOutcome::Ready { variants }, Some(row)) => {
                let mut after = row.clone();
                after.variants_state = Some(VariantsState::Ready);
                after.variants = Some(variants.clone());
                Some(event_of(EventType::VariantsReady, self.view(after).await?)?)
            }
            _ => None,
        };
        let image_id = row.as_ref().map_or("", |r| r.image_id.as_str());
        let recorded = self
            .db
            .finish_variant_job(id, image_id, lease, &outcome, event.as_ref())
            .await?;
        let label = match &outcome {
            JobOutcome::Ready { .. } => {
                tracing::info!(upload_id = %id, image_id, elapsed_ms = started.elapsed().as_millis() as u64, "variants made");
                "ready"
            }
            JobOutcome::Failed { code } => {
                tracing::info!(upload_id = %id, image_id, code, "variants failed");
                "failed"
            }
            JobOutcome::Retry { error, .. } => {
                tracing::warn!(upload_id = %id, image_id, error, "variants job to be retried");
                "retry"
            }
        };
        metrics::variant_job(label, started.elapsed());
        Ok(recorded)
    }

    /// Makes and stores upload `id`'s variants; the outcome, and the row it read.
    async fn make_variants(&self, id: Uuid, attempts: i32) -> (JobOutcome, Option<UploadRow>) {
        let failed = |code: &str| JobOutcome::Failed {
            code: code.to_owned(),
        };
        let retry = |err: &dyn std::fmt::Display| {
            if attempts + 1 >= MAX_ATTEMPTS {
                return failed("storage_unavailable");
            }
            let backoff = 5u64 << attempts.clamp(0, 7);
            JobOutcome::Retry {
                error: err.to_string(),
                at: OffsetDateTime::now_utc() + Duration::from_secs(backoff),
            }
        };
        let row = match self.db.find_fresh(id).await {
            Ok(Some(row)) if row.state == UploadState::Completed => row,
            Ok(_) => return (failed("not_completed"), None),
            Err(err) => return (retry(&err), None),
        };
        let settings = &self.config.variants;
        // A slot first, so jobs waiting for one hold no image in memory.
        let _slot = self.variant_slots.acquire().await.ok();
        let bytes = match self
            .storage
            .read_all(&row.object_key, MAX_SOURCE_BYTES)
            .await
        {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return (failed("image_too_large"), Some(row)),
            Err(StorageError::NoSuchKey) => return (failed("missing_object"), Some(row)),
            Err(err) => return (retry(&err), Some(row)),
        };
        let limits = Limits {
            max_pixels: settings.max_pixels,
            max_memory: DECODE_MEMORY,
        };
        let presets: Vec<Preset> = settings.presets.clone();
        let formats = settings.formats.clone();
        let made =
            tokio::task::spawn_blocking(move || pipeline::make(&bytes, &presets, &formats, limits))
                .await;
        let made = match made {
            Ok(Ok(made)) => made,
            Ok(Err(err)) => {
                tracing::info!(upload_id = %id, code = err.code(), error = %err, "variants refused");
                return (failed(err.code()), Some(row));
            }
            // The pipeline catches its own panics; a task that still failed made nothing.
            Err(_) => return (failed("variant_failed"), Some(row)),
        };
        let mut stored = StoredVariants::new();
        for variant in made {
            let key = variant_key(&row.image_id, row.id, &variant.preset, variant.format);
            let size = variant.bytes.len() as u64;
            if let Err(err) = self
                .storage
                .put_immutable(&key, variant.format.mime(), variant.bytes.into())
                .await
            {
                return (retry(&err), Some(row));
            }
            stored.entry(variant.preset).or_default().insert(
                variant.format.extension().to_owned(),
                StoredVariant {
                    key,
                    width: variant.width,
                    height: variant.height,
                    size,
                },
            );
        }
        match serde_json::to_string(&stored) {
            Ok(variants) => (JobOutcome::Ready { variants }, Some(row)),
            Err(err) => (failed("variant_failed"), {
                tracing::error!(error = %err, "variants record");
                Some(row)
            }),
        }
    }

    /// A completed row's variant files with fresh URLs, once they are ready.
    pub(super) async fn variant_files(
        &self,
        row: &UploadRow,
    ) -> Result<Option<VariantFiles>, UploadError> {
        if row.variants_state != Some(VariantsState::Ready) {
            return Ok(None);
        }
        let mut files = VariantFiles::new();
        for (preset, formats) in stored_variants(row)? {
            let mut by_format = std::collections::BTreeMap::new();
            for (format, variant) in formats {
                let url = self.storage.object_url(&variant.key).await?;
                by_format.insert(
                    format,
                    upload_broker_types::VariantFile {
                        url,
                        width: variant.width,
                        height: variant.height,
                        size: variant.size,
                    },
                );
            }
            files.insert(preset, by_format);
        }
        Ok(Some(files))
    }

    /// Deletes every variant of a deleted upload.
    pub(super) async fn remove_variants(&self, row: &UploadRow) -> Result<(), UploadError> {
        let prefix = variants_of(&row.image_id, row.id);
        for (key, _) in self.storage.list_objects(&prefix).await? {
            self.storage.delete(&key).await?;
        }
        Ok(())
    }
}

/// What the row keeps of its variants.
fn stored_variants(row: &UploadRow) -> Result<StoredVariants, UploadError> {
    let raw = row.variants.as_deref().unwrap_or("{}");
    serde_json::from_str(raw)
        .map_err(|e| UploadError::Corrupt(format!("variants of upload {}: {e}", row.id)))
}

/// The upload id in a variant's key (`variants/<image_id>/<upload_id>/<preset>.<ext>`).
pub(super) fn variant_owner(key: &str) -> Option<Uuid> {
    let rest = key.strip_prefix(VARIANT_PREFIX)?;
    let mut parts = rest.split('/');
    let (image_id, upload_id, file) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || file.is_empty() || ImageId::parse(image_id).is_err() {
        return None;
    }
    Uuid::parse_str(upload_id).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_variant_key_names_its_upload() {
        let id = Uuid::now_v7();
        let key = variant_key("user_1", id, "thumb", VariantFormat::Webp);
        assert_eq!(key, format!("variants/user_1/{id}/thumb.webp"));
        assert_eq!(variant_owner(&key), Some(id));
        assert_eq!(variant_owner("variants/user_1/not-a-uuid/thumb.webp"), None);
        assert_eq!(
            variant_owner(&format!("variants/user_1/{id}/a/b.webp")),
            None
        );
        assert_eq!(
            variant_owner(&format!("uploads/user_1/{id}/thumb.webp")),
            None
        );
    }
}
