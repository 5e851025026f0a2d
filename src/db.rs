//! The database: SeaORM over SQLite (default) or Postgres, and the queries over `uploads`.
//!
//! SQLite allows one writer at a time, so writes go through a one-connection pool and reads
//! through a pool of their own: concurrent requests queue for the writer instead of failing
//! with "database is locked".

use entity::upload::{self, ActiveModel, Column, Entity as Upload, Model};
use entity::{UploadMethod, UploadState};
use migration::{Migrator, MigratorTrait};
use sea_orm::sea_query::{Expr, Query};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectOptions, ConnectionTrait, Database,
    DatabaseConnection, DbBackend, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect, Set, Statement, TransactionTrait, TryIntoModel,
};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::config::Config;

pub mod admin;
pub mod counters;
mod latest_cache;
mod lease;
mod sqlite_reads;
pub mod transitions;
pub mod variant_jobs;
pub mod webhooks;
use latest_cache::{Cached, LatestCache};
use sqlite_reads::SqliteReads;
pub use transitions::{Change, VerifiedObject};
pub use variant_jobs::{JobOutcome, VariantJobRow};
pub use webhooks::NewEvent;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database did not answer in time (locked, down, pool exhausted).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Query(String),
}

impl DbError {
    /// The one classification of a database failure, for every API: busy or down is a 503
    /// to retry, anything else an internal error. The detail is logged, never sent.
    pub fn problem(&self) -> crate::problem::Problem {
        match self {
            DbError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "database unavailable");
                crate::problem::Problem::unavailable(
                    "database_unavailable",
                    "the database is busy or unavailable; try again shortly",
                )
            }
            DbError::Query(detail) => {
                tracing::error!(error = %detail, "database query failed");
                crate::problem::Problem::internal()
            }
        }
    }
}

impl From<DbErr> for DbError {
    fn from(err: DbErr) -> Self {
        let text = err.to_string();
        let busy = matches!(err, DbErr::ConnectionAcquire(_) | DbErr::Conn(_))
            || text.contains("database is locked")
            || text.contains("busy")
            || text.contains("timed out");
        if busy {
            DbError::Unavailable(text)
        } else {
            DbError::Query(text)
        }
    }
}

#[derive(Debug, Clone)]
pub struct Db {
    read: DatabaseConnection,
    write: DatabaseConnection,
    /// SQLite: new rows and changes of state go through one task that commits them in
    /// groups.
    writes: Option<mpsc::Sender<PendingWrite>>,
    /// SQLite on a file: the hot lookups, read on the calling thread.
    direct: Option<std::sync::Arc<SqliteReads>>,
    /// SQLite: each image_id's newest completed upload, as recently read.
    latest: Option<std::sync::Arc<LatestCache>>,
    /// Woken after every commit that recorded an event, so its deliveries start at once.
    recorded: std::sync::Arc<tokio::sync::Notify>,
    /// `IMAGE_VARIANTS` is set: each completion also records a variants job.
    variants: bool,
    /// Woken after every commit that recorded a variants job.
    jobs_recorded: std::sync::Arc<tokio::sync::Notify>,
}

/// A write waiting for the group-commit task, and where its answer goes.
enum PendingWrite {
    /// A new pending upload; answered with the row.
    Insert(Box<ActiveModel>, oneshot::Sender<Result<Model, DbError>>),
    /// A change of state through the seam; answered with the row after it, `None` when the
    /// upload had already moved.
    Change(
        Box<QueuedChange>,
        oneshot::Sender<Result<Option<Model>, DbError>>,
    ),
}

struct QueuedChange {
    id: Uuid,
    change: Change,
    event: NewEvent,
}

/// How often the write-ahead log is checkpointed.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// Frames (pages) in the log past which it is started over: 32 MiB of 4 KiB pages, the
/// size it is cut back to.
const RESTART_FRAMES: i64 = 8192;
/// The page cache of each reader connection, in KiB (SQLite's default is 2 MiB): reads
/// touch a few pages each, and the OS keeps the file cached for all of them.
const READER_CACHE_KIB: i64 = 512;
/// Bytes the write-ahead log file keeps once a checkpoint has emptied it.
const WAL_SIZE_LIMIT: &str = "33554432";
/// Most rows one group commit carries.
const GROUP_MAX: usize = 128;

impl Db {
    pub async fn connect(config: &Config) -> Result<Self, DbError> {
        if config.is_sqlite() {
            ensure_sqlite_parent(&config.database.url)?;
            let write = connect_pool(config, 1, None).await?;
            // Migrations first, so the readers open a database that has its schema.
            Migrator::up(&write, None).await?;
            let read = connect_pool(config, 8, Some(READER_CACHE_KIB)).await?;
            let (writes, queue) = mpsc::channel(4 * GROUP_MAX);
            tokio::spawn(group_commits(
                write.clone(),
                queue,
                config.variants.enabled(),
            ));
            tokio::spawn(checkpoints(read.clone(), write.clone(), writes.downgrade()));
            Ok(Self {
                read,
                write,
                writes: Some(writes),
                direct: sqlite_path(&config.database.url)
                    .map(|path| std::sync::Arc::new(SqliteReads::new(path))),
                latest: Some(std::sync::Arc::default()),
                recorded: std::sync::Arc::default(),
                jobs_recorded: std::sync::Arc::default(),
                variants: config.variants.enabled(),
            })
        } else {
            // Replicas starting together take turns at the migrations.
            let migrator = connect_pool(config, 1, None).await?;
            migrator
                .execute_unprepared("SELECT pg_advisory_lock(72451)")
                .await?;
            let migrated = Migrator::up(&migrator, None).await;
            migrator
                .execute_unprepared("SELECT pg_advisory_unlock(72451)")
                .await?;
            migrated?;
            migrator.close().await?;
            let pool = connect_pool(config, 16, None).await?;
            Ok(Self {
                read: pool.clone(),
                write: pool,
                writes: None,
                direct: None,
                latest: None,
                recorded: std::sync::Arc::default(),
                jobs_recorded: std::sync::Arc::default(),
                variants: config.variants.enabled(),
            })
        }
    }

    /// Inserts a row; returns once it is committed. On SQLite, rows that arrive while a
    /// commit is under way are committed together in the next one: one transaction for
    /// many requests, each still answered only after its row is durable in the WAL.
    pub async fn insert(&self, model: ActiveModel) -> Result<Model, DbError> {
        let Some(writes) = &self.writes else {
            let bytes = *model.declared_size.as_ref();
            let txn = self.write.begin().await?;
            let row = model.insert(&txn).await?;
            transitions::created(&txn, 1, bytes).await?;
            txn.commit().await?;
            return Ok(row);
        };
        let (tx, rx) = oneshot::channel();
        let row = queued(writes, PendingWrite::Insert(Box::new(model), tx), rx).await?;
        if row.state == UploadState::Completed {
            self.changed_latest(&row.image_id);
        }
        Ok(row)
    }

    /// After a committed write that may have changed `image_id`'s newest completed upload.
    fn changed_latest(&self, image_id: &str) {
        if let Some(latest) = &self.latest {
            latest.invalidate(image_id);
        }
    }

    pub async fn find(&self, id: Uuid) -> Result<Option<Model>, DbError> {
        if let Some(found) = self.direct.as_ref().and_then(|direct| direct.find(id)) {
            return Ok(found);
        }
        Ok(Upload::find_by_id(id).one(&self.read).await?)
    }

    /// Finds from the writer, to read what a just-finished write left.
    pub async fn find_fresh(&self, id: Uuid) -> Result<Option<Model>, DbError> {
        Ok(Upload::find_by_id(id).one(&self.write).await?)
    }

    /// Makes `change` to upload `id` (of `image_id`) and records its `event`, through the
    /// seam (`transitions::apply`): on SQLite in the group-commit task's next transaction,
    /// with whatever else is waiting, elsewhere in a transaction of its own. Returns the
    /// row as the change left it, or `None` when the upload had already left the state the
    /// change starts from (and then no event is recorded).
    pub async fn change(
        &self,
        id: Uuid,
        image_id: &str,
        change: &Change,
        event: &NewEvent,
    ) -> Result<Option<Model>, DbError> {
        let Some(writes) = &self.writes else {
            return self.change_audited(id, image_id, change, event, None).await;
        };
        let (tx, rx) = oneshot::channel();
        let queued_change = QueuedChange {
            id,
            change: change.clone(),
            event: event.clone(),
        };
        let after = queued(
            writes,
            PendingWrite::Change(Box::new(queued_change), tx),
            rx,
        )
        .await?;
        self.committed(after.is_some(), image_id, change);
        Ok(after)
    }

    /// `change`, made by an operator: `audit` is recorded in the same transaction, whether
    /// or not the change was still to make.
    pub async fn change_audited(
        &self,
        id: Uuid,
        image_id: &str,
        change: &Change,
        event: &NewEvent,
        audit: Option<&admin::NewAudit>,
    ) -> Result<Option<Model>, DbError> {
        let txn = self.write.begin().await?;
        let after = transitions::apply(&txn, id, change, event, self.variants).await?;
        if let Some(entry) = audit {
            admin::write(&txn, entry).await?;
        }
        txn.commit().await?;
        self.committed(after.is_some(), image_id, change);
        Ok(after)
    }

    /// Wakes whoever waits on what a committed change recorded.
    fn committed(&self, changed: bool, image_id: &str, change: &Change) {
        if changed {
            self.recorded.notify_one();
            if self.variants && matches!(change, Change::Complete(_)) {
                self.jobs_recorded.notify_one();
            }
            if change.touches_completed() {
                self.changed_latest(image_id);
            }
        }
    }

    /// Records an upload that arrived completed (the legacy upload) and its event, through
    /// the seam.
    pub async fn insert_completed(&self, row: Model, event: &NewEvent) -> Result<(), DbError> {
        let image_id = row.image_id.clone();
        let txn = self.write.begin().await?;
        transitions::insert_completed(&txn, row.into_active_model(), event, self.variants).await?;
        txn.commit().await?;
        self.recorded.notify_one();
        if self.variants {
            self.jobs_recorded.notify_one();
        }
        self.changed_latest(&image_id);
        Ok(())
    }

    /// Woken after each commit that recorded a variants job.
    pub fn jobs_recorded(&self) -> &tokio::sync::Notify {
        &self.jobs_recorded
    }

    /// Woken after each commit that recorded an event.
    pub fn recorded(&self) -> &tokio::sync::Notify {
        &self.recorded
    }

    /// Pending uploads whose signed URLs ran out before `cutoff`, oldest first.
    pub async fn pending_expired_before(
        &self,
        cutoff: OffsetDateTime,
        limit: u64,
    ) -> Result<Vec<Model>, DbError> {
        Ok(Upload::find()
            .filter(Column::State.eq(UploadState::Pending))
            .filter(Column::ExpiresAt.lt(cutoff))
            .order_by_asc(Column::ExpiresAt)
            .limit(limit)
            .all(&self.read)
            .await?)
    }

    /// The upload that owns an object key.
    pub async fn find_by_key(&self, key: &str) -> Result<Option<Model>, DbError> {
        Ok(Upload::find()
            .filter(Column::ObjectKey.eq(key))
            .one(&self.read)
            .await?)
    }

    /// The upload that owns an S3 multipart upload id.
    pub async fn find_by_multipart_id(&self, upload_id: &str) -> Result<Option<Model>, DbError> {
        Ok(Upload::find()
            .filter(Column::MultipartUploadId.eq(upload_id))
            .one(&self.read)
            .await?)
    }

    /// How many pending uploads an image_id has, and the bytes they declared.
    pub async fn pending_usage(&self, image_id: &str) -> Result<(u64, u64), DbError> {
        let usage: Option<(i64, i64)> = Upload::find()
            .select_only()
            .column_as(Expr::cust("COUNT(*)"), "uploads")
            .column_as(
                Expr::cust("CAST(COALESCE(SUM(declared_size), 0) AS BIGINT)"),
                "bytes",
            )
            .filter(Column::ImageId.eq(image_id))
            .filter(Column::State.eq(UploadState::Pending))
            .into_tuple()
            .one(&self.read)
            .await?;
        let (uploads, bytes) = usage.unwrap_or_default();
        Ok((
            u64::try_from(uploads).unwrap_or(0),
            u64::try_from(bytes).unwrap_or(0),
        ))
    }

    /// Takes one of an upload link's `max` uses, in one conditional statement, so that
    /// parallel requests never take more than there are. Returns whether one was free.
    pub async fn reserve_link_use(&self, link_id: Uuid, max: u32) -> Result<bool, DbError> {
        Ok(transitions::reserve_link_use(&self.write, link_id, max).await?)
    }

    /// Gives back a use taken by `reserve_link_use` for an upload that was never recorded.
    pub async fn release_link_use(&self, link_id: Uuid) -> Result<(), DbError> {
        Ok(transitions::release_link_use(&self.write, link_id).await?)
    }

    /// The newest completed upload of one image_id.
    pub async fn latest_completed(&self, image_id: &str) -> Result<Option<Model>, DbError> {
        let Some(latest) = &self.latest else {
            return self.read_latest_completed(image_id).await;
        };
        let epoch = match latest.get(image_id) {
            // The row is copied out after the cache's lock is let go.
            Cached::Hit(row) => return Ok(row.map(std::sync::Arc::unwrap_or_clone)),
            Cached::Miss(epoch) => epoch,
        };
        let read_at = std::time::Instant::now();
        let row = self.read_latest_completed(image_id).await?;
        latest.put(image_id, epoch, row.as_ref(), read_at);
        Ok(row)
    }

    async fn read_latest_completed(&self, image_id: &str) -> Result<Option<Model>, DbError> {
        if let Some(found) = self
            .direct
            .as_ref()
            .and_then(|direct| direct.latest_completed(image_id))
        {
            return Ok(found);
        }
        Ok(self
            .completed_for_image(image_id, None, 1)
            .await?
            .into_iter()
            .next())
    }

    /// Completed uploads of one image_id, newest first, after an optional cursor.
    pub async fn completed_for_image(
        &self,
        image_id: &str,
        after: Option<(OffsetDateTime, Uuid)>,
        limit: u64,
    ) -> Result<Vec<Model>, DbError> {
        let mut query = Upload::find()
            .filter(Column::ImageId.eq(image_id))
            .filter(Column::State.eq(UploadState::Completed));
        if let Some(cursor) = after {
            query = query.filter(older_than(Column::UploadedAt, Column::Id, cursor));
        }
        Ok(query
            .order_by_desc(Column::UploadedAt)
            .order_by_desc(Column::Id)
            .limit(limit)
            .all(&self.read)
            .await?)
    }

    /// Whether the database answers (for `/health`).
    pub async fn check(&self) -> Result<(), DbError> {
        let select = Query::select().expr(Expr::value(1)).to_owned();
        self.read.query_one(&select).await?;
        Ok(())
    }

    /// How many connections each pool holds open and idle, for `/metrics`.
    pub fn pool_use(&self) -> Vec<crate::metrics::PoolUse> {
        let pools: &[(&'static str, &DatabaseConnection)] = if self.writes.is_some() {
            &[("read", &self.read), ("write", &self.write)]
        } else {
            &[("shared", &self.write)]
        };
        pools
            .iter()
            .filter_map(|(name, conn)| {
                // The getters panic on another backend: ask the backend first.
                let (open, idle) = match conn.get_database_backend() {
                    DbBackend::Sqlite => {
                        let pool = conn.get_sqlite_connection_pool();
                        (pool.size(), pool.num_idle())
                    }
                    DbBackend::Postgres => {
                        let pool = conn.get_postgres_connection_pool();
                        (pool.size(), pool.num_idle())
                    }
                    _ => return None,
                };
                Some(crate::metrics::PoolUse {
                    pool: name,
                    open,
                    idle: u32::try_from(idle).unwrap_or(u32::MAX),
                })
            })
            .collect()
    }

    /// The writer connection, for tests and tools that inspect the schema.
    pub fn writer(&self) -> &DatabaseConnection {
        &self.write
    }
}

/// Copies the write-ahead log back into the database once a second from a reader
/// connection. A passive checkpoint never blocks the writer, so commits do not stall behind
/// the fsync that an automatic checkpoint would do inside one of them. But under steady
/// writes the log is never wholly copied at the moment a write starts, so SQLite never
/// starts it over: it grew to 1.4 GB in 30 s of issuing, and every page lookup walks its
/// index, so writes slowed as it grew. Once the log holds `RESTART_FRAMES`, a restart
/// checkpoint copies the few frames left and starts the log over. It runs on the writer's
/// own connection, between two of its commits: from another connection it would wait for
/// the write lock in SQLite's sleeping busy handler, and the writer would then wait for it
/// the same way, a stall of tens of milliseconds each time. Stops with the database (when
/// the group-commit queue is gone).
async fn checkpoints(
    read: DatabaseConnection,
    write: DatabaseConnection,
    alive: mpsc::WeakSender<PendingWrite>,
) {
    let mut ticker = tokio::time::interval(CHECKPOINT_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if alive.upgrade().is_none() {
            return;
        }
        let passive = checkpoint(&read, "PASSIVE").await;
        let outcome = match passive {
            Ok(frames) if frames >= RESTART_FRAMES => checkpoint(&write, "RESTART").await,
            other => other,
        };
        if let Err(err) = outcome {
            tracing::debug!(error = %err, "checkpoint skipped");
        }
    }
}

/// Runs one checkpoint; returns the frames the log held.
async fn checkpoint(conn: &DatabaseConnection, mode: &str) -> Result<i64, DbErr> {
    let sql = format!("PRAGMA wal_checkpoint({mode})");
    let row = conn
        .query_one_raw(Statement::from_string(DbBackend::Sqlite, sql))
        .await?;
    // The row is (busy, frames in the log, frames copied).
    row.map_or(Ok(0), |row| row.try_get_by_index::<i64>(1))
}

/// Hands `write` to the group-commit task and waits for its answer.
async fn queued<T>(
    writes: &mpsc::Sender<PendingWrite>,
    write: PendingWrite,
    answer: oneshot::Receiver<Result<T, DbError>>,
) -> Result<T, DbError> {
    let stopped = || DbError::Unavailable("the database writer stopped".to_owned());
    writes.send(write).await.map_err(|_| stopped())?;
    answer.await.map_err(|_| stopped())?
}

/// Commits queued writes in groups until every sender is gone.
async fn group_commits(
    write: DatabaseConnection,
    mut queue: mpsc::Receiver<PendingWrite>,
    variants: bool,
) {
    let mut group = Vec::with_capacity(GROUP_MAX);
    while queue.recv_many(&mut group, GROUP_MAX).await > 0 {
        // One transaction for the group: one INSERT for its new rows (every row sets every
        // column, so each stored row is exactly its model and nothing is read back) and one
        // counter update for them, then each change through the seam in turn. Every request
        // is still answered only once its write is durable in the WAL.
        match write_group(&write, &group, variants).await {
            Ok(mut changed) => {
                changed.reverse();
                for pending in group.drain(..) {
                    match pending {
                        PendingWrite::Insert(model, reply) => {
                            let _ = reply.send(model.try_into_model().map_err(DbError::from));
                        }
                        PendingWrite::Change(_, reply) => {
                            let _ = reply.send(Ok(changed.pop().flatten()));
                        }
                    }
                }
            }
            // A busy or unreachable database fails the whole group at once (each request
            // gets its 503 without waiting again)...
            Err(err) => match DbError::from(err) {
                DbError::Unavailable(reason) => {
                    for pending in group.drain(..) {
                        let failed = DbError::Unavailable(reason.clone());
                        match pending {
                            PendingWrite::Insert(_, reply) => {
                                let _ = reply.send(Err(failed));
                            }
                            PendingWrite::Change(_, reply) => {
                                let _ = reply.send(Err(failed));
                            }
                        }
                    }
                }
                // ...but one bad write must not fail the others: retry each on its own.
                DbError::Query(_) => {
                    for pending in group.drain(..) {
                        let one = [pending];
                        let result = write_group(&write, &one, variants).await;
                        let [pending] = one;
                        match pending {
                            PendingWrite::Insert(model, reply) => {
                                let _ =
                                    reply.send(result.map_err(DbError::from).and_then(|_| {
                                        model.try_into_model().map_err(DbError::from)
                                    }));
                            }
                            PendingWrite::Change(_, reply) => {
                                let _ = reply.send(
                                    result
                                        .map(|mut after| after.pop().flatten())
                                        .map_err(DbError::from),
                                );
                            }
                        }
                    }
                }
            },
        }
    }
}

/// Writes `group` in one transaction: its new rows (counted in the stats), then its
/// changes in order. Returns the row after each change, in the group's order.
async fn write_group(
    write: &DatabaseConnection,
    group: &[PendingWrite],
    variants: bool,
) -> Result<Vec<Option<Model>>, DbErr> {
    let txn = write.begin().await?;
    let new_rows: Vec<ActiveModel> = group
        .iter()
        .filter_map(|pending| match pending {
            PendingWrite::Insert(model, _) => Some((**model).clone()),
            PendingWrite::Change(..) => None,
        })
        .collect();
    if !new_rows.is_empty() {
        let bytes: i64 = new_rows.iter().map(|m| *m.declared_size.as_ref()).sum();
        let count = new_rows.len() as i64;
        Upload::insert_many(new_rows)
            .exec_without_returning(&txn)
            .await?;
        transitions::created(&txn, count, bytes).await?;
    }
    let mut changed = Vec::new();
    for pending in group {
        if let PendingWrite::Change(queued, _) = pending {
            changed.push(
                transitions::apply(&txn, queued.id, &queued.change, &queued.event, variants)
                    .await?,
            );
        }
    }
    txn.commit().await?;
    Ok(changed)
}

/// Rows after the cursor `(at, id)` in a newest-first, `(at, id)`-ordered page: older,
/// or as old with a smaller id (the keyset every paged list uses).
pub(crate) fn older_than<C: ColumnTrait>(
    at_column: C,
    id_column: C,
    (at, id): (OffsetDateTime, Uuid),
) -> Condition {
    Condition::any()
        .add(at_column.lt(at))
        .add(Condition::all().add(at_column.eq(at)).add(id_column.lt(id)))
}

/// A pool of `max` connections; on SQLite, with a page cache of `cache_kib` each when given.
async fn connect_pool(
    config: &Config,
    max: u32,
    cache_kib: Option<i64>,
) -> Result<DatabaseConnection, DbError> {
    let mut options = ConnectOptions::new(config.database.url.clone());
    options
        .max_connections(max)
        .min_connections(if config.is_sqlite() { 1 } else { 0 })
        .acquire_timeout(config.database.timeout)
        .connect_timeout(config.database.timeout)
        // A SQLite connection is a file in this process: pinging it before each use only
        // costs a round trip to its thread. A server connection can drop, so it is checked.
        .test_before_acquire(!config.is_sqlite())
        .sqlx_logging(false);
    let busy_timeout = config.database.timeout;
    options.map_sqlx_sqlite_opts(move |opts| {
        let opts = opts
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(busy_timeout)
            .foreign_keys(true)
            // Checkpoints (with their fsync) run beside the writer, not inside its commits:
            // see `checkpoints`.
            .pragma("wal_autocheckpoint", "0")
            // After a busy spell the log file shrinks back to this size once it restarts.
            .pragma("journal_size_limit", WAL_SIZE_LIMIT);
        match cache_kib {
            Some(kib) => opts.pragma("cache_size", (-kib).to_string()),
            None => opts,
        }
    });
    Ok(Database::connect(options).await?)
}

/// The file of a `sqlite:` URL; `None` for an in-memory database.
fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or("");
    (!path.is_empty() && path != ":memory:").then(|| std::path::PathBuf::from(path))
}

/// SQLite creates the file but not its folder (`DATA_DIR` on a fresh machine).
fn ensure_sqlite_parent(url: &str) -> Result<(), DbError> {
    let Some(path) = sqlite_path(url) else {
        return Ok(());
    };
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)
            .map_err(|e| DbError::Query(format!("cannot create {}: {e}", parent.display())))?;
    }
    Ok(())
}

/// Builds a new pending row.
pub fn new_pending(fields: NewUpload) -> ActiveModel {
    let now = OffsetDateTime::now_utc();
    ActiveModel {
        id: Set(fields.id),
        image_id: Set(fields.image_id),
        state: Set(UploadState::Pending),
        method: Set(fields.method),
        object_key: Set(fields.object_key),
        original_filename: Set(fields.original_filename),
        content_type: Set(fields.content_type),
        declared_size: Set(fields.declared_size),
        file_size: Set(None),
        checksum_sha256: Set(fields.checksum_sha256),
        etag: Set(None),
        width: Set(None),
        height: Set(None),
        metadata: Set(fields.metadata),
        s3_url: Set(None),
        multipart_upload_id: Set(fields.multipart_upload_id),
        part_size: Set(fields.part_size),
        part_count: Set(fields.part_count),
        checksum_algorithm: Set(fields.checksum_algorithm),
        failure_code: Set(None),
        link_id: Set(fields.link_id),
        created_at: Set(now),
        expires_at: Set(fields.expires_at),
        uploaded_at: Set(None),
        updated_at: Set(now),
        variants_state: Set(None),
        variants: Set(None),
        variants_failure_code: Set(None),
    }
}

#[derive(Debug, Clone)]
pub struct NewUpload {
    pub id: Uuid,
    pub image_id: String,
    pub method: UploadMethod,
    pub object_key: String,
    pub original_filename: String,
    pub content_type: String,
    pub declared_size: i64,
    pub checksum_sha256: Option<String>,
    pub metadata: Option<String>,
    pub multipart_upload_id: Option<String>,
    pub part_size: Option<i64>,
    pub part_count: Option<i32>,
    pub checksum_algorithm: Option<String>,
    pub expires_at: OffsetDateTime,
    pub link_id: Option<Uuid>,
}

pub use upload::Model as UploadRow;
