//! What operators read: uploads in every state searched newest first with keyset pages
//! (each filter is a range scan of one index, `created_at, id` order), the stats the seam
//! keeps, and the audit log, which every operator action writes in its own transaction.

use entity::UploadState;
use entity::audit_entry::{self as audit, Entity as Audit};
use entity::upload::{Column, Entity as Upload, Model};
use entity::upload_counter::{self as counter, Entity as Counter};
use entity::upload_hourly::{self as hourly, Entity as Hourly};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, QueryFilter,
    QueryOrder, QuerySelect, Select,
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Db, DbError, counters, older_than};

/// One operator action to record.
#[derive(Debug, Clone)]
pub struct NewAudit {
    /// The admin key's fingerprint.
    pub actor: String,
    pub action: &'static str,
    pub target: String,
    /// What it found or did, as JSON.
    pub detail: Option<String>,
}

impl NewAudit {
    pub fn new(actor: &str, action: &'static str, target: impl ToString) -> Self {
        Self {
            actor: actor.to_owned(),
            action,
            target: target.to_string(),
            detail: None,
        }
    }
}

pub use audit::Model as AuditRow;

/// What a search keeps; every field is optional.
#[derive(Debug, Clone, Default)]
pub struct UploadFilter {
    pub image_id: Option<String>,
    pub state: Option<UploadState>,
    pub sha256: Option<String>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
}

/// Each state's uploads and bytes, and the last 24 hours' completions and failures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub states: Vec<(UploadState, i64, i64)>,
    pub completed_24h: i64,
    pub failed_24h: i64,
    pub bytes_24h: i64,
}

/// Writes `entry` inside `conn`'s transaction.
pub(super) async fn write<C: ConnectionTrait>(conn: &C, entry: &NewAudit) -> Result<(), DbErr> {
    let row = audit::ActiveModel {
        id: ActiveValue::Set(Uuid::now_v7()),
        at: ActiveValue::Set(OffsetDateTime::now_utc()),
        actor: ActiveValue::Set(entry.actor.clone()),
        action: ActiveValue::Set(entry.action.to_owned()),
        target: ActiveValue::Set(entry.target.clone()),
        detail: ActiveValue::Set(entry.detail.clone()),
    };
    Audit::insert(row).exec_without_returning(conn).await?;
    Ok(())
}

/// The search, as the database runs it (public so tests can ask how it is planned).
pub fn search_query(
    filter: &UploadFilter,
    after: Option<(OffsetDateTime, Uuid)>,
    limit: u64,
) -> Select<Upload> {
    let mut query = Upload::find();
    if let Some(image_id) = &filter.image_id {
        query = query.filter(Column::ImageId.eq(image_id.as_str()));
    }
    if let Some(state) = filter.state {
        query = query.filter(Column::State.eq(state));
    }
    if let Some(sha256) = &filter.sha256 {
        query = query.filter(Column::ChecksumSha256.eq(sha256.as_str()));
    }
    if let Some(since) = filter.since {
        query = query.filter(Column::CreatedAt.gte(since));
    }
    if let Some(until) = filter.until {
        query = query.filter(Column::CreatedAt.lt(until));
    }
    if let Some(cursor) = after {
        query = query.filter(older_than(Column::CreatedAt, Column::Id, cursor));
    }
    query
        .order_by_desc(Column::CreatedAt)
        .order_by_desc(Column::Id)
        .limit(limit)
}

/// `SUM(column)` as a 64-bit integer (Postgres sums BIGINTs as NUMERIC).
fn total(column: &str) -> Expr {
    Expr::cust(format!("CAST(SUM({column}) AS BIGINT)"))
}

#[derive(Debug, FromQueryResult)]
struct StateSum {
    state: String,
    uploads: Option<i64>,
    bytes: Option<i64>,
}

#[derive(Debug, FromQueryResult)]
struct HourSum {
    completed: Option<i64>,
    failed: Option<i64>,
    bytes: Option<i64>,
}

impl Db {
    /// Up to `limit` uploads `filter` keeps, after the cursor's `(created_at, id)`.
    pub async fn search_uploads(
        &self,
        filter: &UploadFilter,
        after: Option<(OffsetDateTime, Uuid)>,
        limit: u64,
    ) -> Result<Vec<Model>, DbError> {
        Ok(search_query(filter, after, limit).all(&self.read).await?)
    }

    /// The stats, from the counters and the hourly rollup (a few dozen rows at most).
    pub async fn stats(&self) -> Result<Stats, DbError> {
        let sums = Counter::find()
            .select_only()
            .column(counter::Column::State)
            .column_as(total("uploads"), "uploads")
            .column_as(total("bytes"), "bytes")
            .group_by(counter::Column::State)
            .into_model::<StateSum>()
            .all(&self.read)
            .await?;
        let mut states = Vec::new();
        for sum in sums {
            let state = UploadState::parse(&sum.state).ok_or_else(|| {
                DbError::Query(format!("unknown state {:?} in counters", sum.state))
            })?;
            states.push((state, sum.uploads.unwrap_or(0), sum.bytes.unwrap_or(0)));
        }
        // This hour and the 23 before it.
        let first_hour = counters::hour_of(OffsetDateTime::now_utc()) - 23;
        let day = Hourly::find()
            .select_only()
            .column_as(total("completed"), "completed")
            .column_as(total("failed"), "failed")
            .column_as(total("completed_bytes"), "bytes")
            .filter(hourly::Column::Hour.gte(first_hour))
            .into_model::<HourSum>()
            .one(&self.read)
            .await?;
        let day = day.unwrap_or(HourSum {
            completed: None,
            failed: None,
            bytes: None,
        });
        Ok(Stats {
            states,
            completed_24h: day.completed.unwrap_or(0),
            failed_24h: day.failed.unwrap_or(0),
            bytes_24h: day.bytes.unwrap_or(0),
        })
    }

    /// Records an operator action that changes nothing else.
    pub async fn audit(&self, entry: &NewAudit) -> Result<(), DbError> {
        write(&self.write, entry).await?;
        Ok(())
    }

    /// Up to `limit` audit entries after `(at, id)`, newest first.
    pub async fn audit_page(
        &self,
        after: Option<(OffsetDateTime, Uuid)>,
        limit: u64,
    ) -> Result<Vec<AuditRow>, DbError> {
        let mut query = Audit::find();
        if let Some(cursor) = after {
            query = query.filter(older_than(audit::Column::At, audit::Column::Id, cursor));
        }
        Ok(query
            .order_by_desc(audit::Column::At)
            .order_by_desc(audit::Column::Id)
            .limit(limit)
            .all(&self.write)
            .await?)
    }
}
