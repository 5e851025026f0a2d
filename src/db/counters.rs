//! The stats the state-change seam keeps beside every change, in its transaction: how many
//! uploads each state holds and their bytes (the file's size once known, the declared size
//! before), and completions and failures per hour. Stats read these few rows and never
//! count the uploads table. On Postgres each change adds to one of `SHARDS` rows picked at
//! random, so replicas changing states together do not queue on one row lock; SQLite has
//! one writer and one shard.

use entity::UploadState;
use entity::upload_counter::{self as counter, Entity as Counter};
use entity::upload_hourly::{self as hourly, Entity as Hourly};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveValue, ConnectionTrait, DbBackend, DbErr, EntityTrait};
use time::OffsetDateTime;

/// Rows each counter is spread over on Postgres.
const SHARDS: u32 = 16;

/// The shard this change adds to.
fn shard<C: ConnectionTrait>(conn: &C) -> i32 {
    if conn.get_database_backend() != DbBackend::Postgres {
        return 0;
    }
    let mut byte = [0u8; 1];
    let _ = getrandom::fill(&mut byte);
    (u32::from(byte[0]) % SHARDS) as i32
}

/// Adds `uploads` uploads of `bytes` bytes in all to each state's counter (negative to
/// take them away), in one statement.
pub(super) async fn add<C: ConnectionTrait>(
    conn: &C,
    changes: &[(UploadState, i64, i64)],
) -> Result<(), DbErr> {
    if changes.is_empty() {
        return Ok(());
    }
    let shard = shard(conn);
    let rows = changes
        .iter()
        .map(|(state, uploads, bytes)| counter::ActiveModel {
            state: ActiveValue::Set(state.as_str().to_owned()),
            shard: ActiveValue::Set(shard),
            uploads: ActiveValue::Set(*uploads),
            bytes: ActiveValue::Set(*bytes),
        });
    Counter::insert_many(rows)
        .on_conflict(
            OnConflict::columns([counter::Column::State, counter::Column::Shard])
                .value(
                    counter::Column::Uploads,
                    Expr::cust("upload_counters.uploads + excluded.uploads"),
                )
                .value(
                    counter::Column::Bytes,
                    Expr::cust("upload_counters.bytes + excluded.bytes"),
                )
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// The hour `at` falls in, counted from the Unix epoch.
pub fn hour_of(at: OffsetDateTime) -> i64 {
    at.unix_timestamp().div_euclid(3600)
}

/// Counts a completion of `bytes` (or, with `failed`, a failure) in the current hour.
pub(super) async fn hourly<C: ConnectionTrait>(
    conn: &C,
    failed: bool,
    bytes: i64,
) -> Result<(), DbErr> {
    let (completed, failed) = if failed { (0, 1) } else { (1, 0) };
    let row = hourly::ActiveModel {
        hour: ActiveValue::Set(hour_of(OffsetDateTime::now_utc())),
        shard: ActiveValue::Set(shard(conn)),
        completed: ActiveValue::Set(completed),
        failed: ActiveValue::Set(failed),
        completed_bytes: ActiveValue::Set(if completed == 1 { bytes } else { 0 }),
    };
    Hourly::insert(row)
        .on_conflict(
            OnConflict::columns([hourly::Column::Hour, hourly::Column::Shard])
                .value(
                    hourly::Column::Completed,
                    Expr::cust("upload_hourly.completed + excluded.completed"),
                )
                .value(
                    hourly::Column::Failed,
                    Expr::cust("upload_hourly.failed + excluded.failed"),
                )
                .value(
                    hourly::Column::CompletedBytes,
                    Expr::cust("upload_hourly.completed_bytes + excluded.completed_bytes"),
                )
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    Ok(())
}
