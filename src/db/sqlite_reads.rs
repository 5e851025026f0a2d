//! The hot SQLite lookups (an upload by id, an image_id's newest completed upload) run
//! on the calling thread. sqlx runs every SQLite connection on a thread of its own and
//! every query hops there and back; for a read of a few cached pages those hops cost far
//! more than the read. WAL readers never wait for the writer, so a read here takes tens of
//! microseconds. Any error falls back to the pooled path, which reports it as usual.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use entity::upload::Model;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use entity::{UploadMethod, UploadState, VariantsState};
use sea_orm::ActiveEnum;

use super::READER_CACHE_KIB;

/// Columns in the order `model` reads them (a macro, so the queries are literals).
macro_rules! columns {
    () => {
        "id, image_id, state, method, object_key, original_filename, content_type, \
         declared_size, file_size, checksum_sha256, etag, width, height, metadata, s3_url, \
         multipart_upload_id, part_size, part_count, checksum_algorithm, failure_code, \
         created_at, expires_at, uploaded_at, updated_at, link_id, variants_state, variants, \
         variants_failure_code"
    };
}
const FIND: &str = concat!("SELECT ", columns!(), " FROM uploads WHERE id = ?1");
const LATEST_COMPLETED: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM uploads WHERE image_id = ?1 AND state = ?2 ORDER BY uploaded_at DESC, id DESC LIMIT 1"
);
/// A read that would wait longer than this goes to the pooled path instead.
const BUSY_LIMIT: Duration = Duration::from_millis(20);
/// Idle connections kept; more are opened while more threads read at once.
const KEEP_IDLE: usize = 4;

#[derive(Debug)]
pub struct SqliteReads {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl SqliteReads {
    /// For the database file `path` (already created and migrated).
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    pub fn find(&self, id: Uuid) -> Option<Option<Model>> {
        self.with(|conn| {
            conn.prepare_cached(FIND)?
                .query_row([id.as_bytes().as_slice()], model)
                .optional()
        })
    }

    /// The newest completed upload of `image_id` (the order `completed_for_image` uses).
    pub fn latest_completed(&self, image_id: &str) -> Option<Option<Model>> {
        self.with(|conn| {
            conn.prepare_cached(LATEST_COMPLETED)?
                .query_row((image_id, UploadState::Completed.to_value()), model)
                .optional()
        })
    }

    /// Runs `read` on an idle connection (or a new one); `None` on any error.
    fn with<T>(&self, read: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Option<T> {
        let conn = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match conn {
            Some(conn) => conn,
            None => self.open().ok()?,
        };
        let result = read(&conn);
        if result.is_ok()
            && let Ok(mut idle) = self.idle.lock()
            && idle.len() < KEEP_IDLE
        {
            idle.push(conn);
        }
        result
            .map_err(|err| tracing::debug!(error = %err, "direct SQLite read failed"))
            .ok()
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_LIMIT)?;
        conn.pragma_update(None, "query_only", true)?;
        conn.pragma_update(None, "cache_size", -READER_CACHE_KIB)?;
        Ok(conn)
    }
}

fn model(row: &Row<'_>) -> rusqlite::Result<Model> {
    Ok(Model {
        id: uuid(row, 0)?,
        image_id: row.get(1)?,
        state: stored(row, 2, UploadState::parse)?,
        method: stored(row, 3, UploadMethod::parse)?,
        object_key: row.get(4)?,
        original_filename: row.get(5)?,
        content_type: row.get(6)?,
        declared_size: row.get(7)?,
        file_size: row.get(8)?,
        checksum_sha256: row.get(9)?,
        etag: row.get(10)?,
        width: row.get(11)?,
        height: row.get(12)?,
        metadata: row.get(13)?,
        s3_url: row.get(14)?,
        multipart_upload_id: row.get(15)?,
        part_size: row.get(16)?,
        part_count: row.get(17)?,
        checksum_algorithm: row.get(18)?,
        failure_code: row.get(19)?,
        created_at: timestamp(row, 20)?,
        expires_at: timestamp(row, 21)?,
        uploaded_at: row
            .get::<_, Option<String>>(22)?
            .map(|text| parse_time(22, &text))
            .transpose()?,
        updated_at: timestamp(row, 23)?,
        link_id: match row.get_ref(24)? {
            rusqlite::types::ValueRef::Null => None,
            _ => Some(uuid(row, 24)?),
        },
        variants_state: match row.get_ref(25)? {
            rusqlite::types::ValueRef::Null => None,
            _ => Some(stored(row, 25, VariantsState::parse)?),
        },
        variants: row.get(26)?,
        variants_failure_code: row.get(27)?,
    })
}

/// A stored name read as its enum; an unknown name is an error, so the read falls back to
/// the pooled path, which reports it.
fn stored<T>(row: &Row<'_>, idx: usize, parse: impl Fn(&str) -> Option<T>) -> rusqlite::Result<T> {
    let name = row.get_ref(idx)?.as_str()?;
    parse(name).ok_or_else(|| conversion(idx, UnknownName(name.to_owned())))
}

#[derive(Debug, thiserror::Error)]
#[error("unknown stored name {0:?}")]
struct UnknownName(String);

fn uuid(row: &Row<'_>, idx: usize) -> rusqlite::Result<Uuid> {
    let bytes = row.get_ref(idx)?.as_blob()?;
    Uuid::from_slice(bytes).map_err(|e| conversion(idx, e))
}

fn timestamp(row: &Row<'_>, idx: usize) -> rusqlite::Result<OffsetDateTime> {
    parse_time(idx, row.get_ref(idx)?.as_str()?)
}

/// The form sqlx writes: RFC 3339 (`2026-12-01T08:42:15.405637761Z`).
fn parse_time(idx: usize, text: &str) -> rusqlite::Result<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).map_err(|e| conversion(idx, e))
}

fn conversion(idx: usize, err: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(err))
}
