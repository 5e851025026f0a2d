//! The upload lifecycle, in one place that every way in calls (the v1 API, the legacy
//! upload, the sweeper). One file per verb: `issue`, `confirm` (with the pure `verify`),
//! `lookup`, `delete`, `sweep`, `streamed` (the legacy upload), `multipart` (parts), and
//! `transition`, the one way an upload changes state. It returns its own types
//! (`record`), and its errors carry their classification (`error`).

mod access;
mod admin;
mod confirm;
mod delete;
mod error;
mod health;
mod issue;
mod lookup;
mod multipart;
mod record;
mod storage_events;
mod streamed;
mod sweep;
mod transition;
pub mod tus;
mod variants;
pub mod verify;

pub use access::{Action, UploadLink};
pub use admin::{AuditEntry, AuditPage, Reverified, Stats, UploadFilter, UploadPage};
pub use error::{Rejection, UploadError};
pub use health::Readiness;
pub use issue::UploadRequest;
pub use multipart::{MAX_PARTS_PER_CALL, PartPlan, SignedParts};
pub use record::{
    BucketCors, ImagePage, IssuedUpload, SignedRequest, StoredPart, Upload, UploadMethod,
    UploadState, VariantFiles, VariantsState, wire_state,
};
pub use storage_events::{Landed, StorageEventReport, spawn_auto_confirm, spawn_queue_poller};
pub use streamed::{STREAM_BUFFER_BUDGET, StoredObject};
pub use sweep::{KEY_PREFIX, STAGING_PREFIX, SweepReport, spawn_sweeper};
pub use variants::{JOB_LEASE, VARIANT_PREFIX, VariantName, variant_key};

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::auth::Access;
use crate::config::Config;
use crate::db::{Db, UploadRow};
use crate::domain::{ImageFormat, ImageId};
use crate::shutdown::Shutdown;
use crate::storage::Storage;
use verify::ImageLimits;

/// Number of striped confirm locks.
const CONFIRM_LOCKS: usize = 64;

#[derive(Debug, Clone)]
pub struct UploadService {
    db: Db,
    storage: Storage,
    config: Arc<Config>,
    /// Memory of streamed uploads, in KiB.
    stream_budget: Arc<Semaphore>,
    /// Temporary files of streamed uploads, kept for the next ones.
    spool_files: Arc<streamed::SpoolFiles>,
    /// Striped locks that serialize confirms of the same upload within this process.
    confirm_locks: Arc<[tokio::sync::Mutex<()>]>,
    /// Streamed uploads stop (and clean up) when the service shuts down.
    shutdown: Shutdown,
    /// The last health check: when, and its answer.
    health: Arc<tokio::sync::Mutex<Option<(std::time::Instant, bool)>>>,
    access: Arc<Access>,
    /// Full decodes (`VERIFY_DECODE`) at once: one per core, each holding a whole file and
    /// up to `DECODE_MEMORY`.
    decode_slots: Arc<Semaphore>,
    /// Variant jobs at once in this process (`VARIANT_WORKERS`), the worker's and those
    /// asked for on demand together.
    variant_slots: Arc<Semaphore>,
    /// Upload ids whose variants this process is making on demand, and who waits.
    making: variants::Making,
    /// tus uploads: whose turn it is, and how far each has come.
    tus_turns: Arc<tus::Turns>,
    /// Where tus parts wait on local disk until they fill.
    tus_spool: tus::Spool,
}

impl UploadService {
    pub fn new(
        db: Db,
        storage: Storage,
        config: Arc<Config>,
        access: Arc<Access>,
        shutdown: Shutdown,
    ) -> Self {
        let budget_kib = usize::try_from(STREAM_BUFFER_BUDGET / 1024).unwrap_or(usize::MAX);
        let variant_workers = config.variants.workers.max(1);
        let tus_spool = tus::Spool::new(config.data_dir.join("tus"));
        Self {
            db,
            storage,
            stream_budget: Arc::new(Semaphore::new(budget_kib)),
            spool_files: Arc::default(),
            confirm_locks: (0..CONFIRM_LOCKS)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            shutdown,
            health: Arc::default(),
            access,
            config,
            decode_slots: Arc::new(Semaphore::new(
                std::thread::available_parallelism().map_or(1, |n| n.get()),
            )),
            variant_slots: Arc::new(Semaphore::new(variant_workers)),
            making: variants::Making::default(),
            tus_turns: Arc::default(),
            tus_spool,
        }
    }

    /// The largest upload (`MAX_UPLOAD_SIZE`).
    pub fn max_upload_size(&self) -> u64 {
        self.config.limits.max_upload_size
    }

    /// Whether `VERIFY_DECODE` has an object of `size` bytes decoded in full.
    fn decodes(&self, size: u64) -> bool {
        let limits = &self.config.limits;
        limits.verify_decode && size <= limits.verify_decode_max_bytes
    }

    /// Decodes a whole image (`VERIFY_DECODE`) on the blocking pool, once a decode slot is
    /// free; `read` fetches its bytes only then, so waiting decodes hold no memory.
    async fn decode_whole<B: AsRef<[u8]> + Send + 'static>(
        &self,
        format: ImageFormat,
        read: impl Future<Output = Result<B, UploadError>>,
    ) -> Result<Result<(), Rejection>, UploadError> {
        let _slot = self.decode_slots.acquire().await.ok();
        let bytes = read.await?;
        let limits = self.image_limits();
        let decoded = tokio::task::spawn_blocking(move || {
            verify::decode::decode(bytes.as_ref(), format, limits)
        })
        .await;
        // The decode catches its own panics; a task that still failed decoded nothing.
        Ok(decoded.unwrap_or(Err(Rejection::InvalidImage)))
    }

    /// The pixel limits verification applies.
    fn image_limits(&self) -> ImageLimits {
        ImageLimits {
            max_side: self.config.limits.max_image_dimension,
            max_pixels: self.config.limits.max_image_pixels,
        }
    }

    /// How a file of `size` bytes is cut into parts, or `None` when it goes up whole (at
    /// most `MULTIPART_THRESHOLD`): one rule for direct and legacy uploads.
    fn part_plan(&self, size: u64) -> Option<PartPlan> {
        let limits = &self.config.limits;
        (size > limits.multipart_threshold)
            .then(|| PartPlan::new(size, limits.part_size, limits.max_parts))
    }

    /// When a URL signed now stops working. Signatures carry whole seconds, so the expiry
    /// counts from the start of this second: never later than the store's.
    pub(crate) fn url_expiry(&self, now: OffsetDateTime) -> OffsetDateTime {
        // A microsecond short of the whole second: SQLite keeps timestamps as text with
        // trailing zeros trimmed, and a bare `...:05Z` would sort after `...:05.3Z`.
        now.replace_nanosecond(0).unwrap_or(now) + self.config.limits.presign_expires
            - Duration::from_micros(1)
    }

    /// Where a client's bytes land. A single PUT's URL writes a staging key, never the key
    /// the object is served at: after a delete, an abort, a failure or an expiry, whatever
    /// the URL still writes is never served or counted, and the sweeper removes it. A
    /// multipart upload's parts land in the store's upload, which ends with it; the legacy
    /// and tus uploads are written by the service itself.
    fn landing_key(&self, row: &UploadRow) -> String {
        match row.method {
            UploadMethod::Put => staging_key(&row.object_key),
            UploadMethod::Multipart | UploadMethod::Legacy | UploadMethod::Tus => {
                row.object_key.clone()
            }
        }
    }

    /// The upload `id`, as stored.
    async fn row(&self, id: Uuid) -> Result<UploadRow, UploadError> {
        self.db.find(id).await?.ok_or(UploadError::NotFound)
    }

    /// The upload `id` as the writer sees it, just after a write.
    async fn fresh_row(&self, id: Uuid) -> Result<UploadRow, UploadError> {
        self.db.find_fresh(id).await?.ok_or(UploadError::NotFound)
    }
}

/// Where a PUT lands before confirm copies it to its key, when the store cannot refuse
/// overwrites: `staging/<image_id>/<uuid>.<ext>`.
pub fn staging_key(object_key: &str) -> String {
    format!(
        "{STAGING_PREFIX}{}",
        object_key.strip_prefix(KEY_PREFIX).unwrap_or(object_key)
    )
}

/// Keys are the server's own: never derived from the client's file name.
pub fn object_key(image_id: &ImageId, id: Uuid, format: ImageFormat) -> String {
    format!("{KEY_PREFIX}{image_id}/{id}.{}", format.extension())
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
