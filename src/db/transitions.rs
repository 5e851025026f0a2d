//! The seam for state changes: the only code that moves a stored upload from one state to
//! another, or records one that arrives already completed (the legacy upload). Each runs
//! inside a transaction it is handed, so whatever must commit with the change (an event, a
//! job, a counter) is written beside it in the same transaction, on SQLite and Postgres.

use entity::link_use::{self, Entity as LinkUse};
use entity::upload::{ActiveModel, Column, Entity as Upload, Model};
use entity::{UploadMethod, UploadState, VariantsState};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ActiveValue, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};
use time::OffsetDateTime;
use uuid::Uuid;

use super::counters;
use super::variant_jobs::JobOutcome;
use super::webhooks::{self, NewEvent};
use crate::events::EventType;

/// What `confirm` (or the legacy upload) learned about a verified object.
#[derive(Debug, Clone)]
pub struct VerifiedObject {
    pub file_size: i64,
    pub content_type: String,
    pub etag: Option<String>,
    pub checksum_sha256: Option<String>,
    pub width: i32,
    pub height: i32,
    pub s3_url: String,
    pub uploaded_at: OffsetDateTime,
}

/// A move from one state to another. Each names the one state it starts from, so a change
/// that lost a race to another (a confirm and a delete, two replicas) changes nothing.
#[derive(Debug, Clone)]
pub enum Change {
    /// `pending` -> `completed`, with what verification found.
    Complete(Box<VerifiedObject>),
    /// `pending` -> `failed`, with the rejection's code.
    Fail(&'static str),
    /// `pending` -> `expired`: its URLs ran out unconfirmed.
    Expire,
    /// `pending` -> `aborted`: its client gave it up.
    Abort,
    /// `completed` -> `deleted`.
    Delete,
}

impl Change {
    pub fn from(&self) -> UploadState {
        match self {
            Change::Complete(_) | Change::Fail(_) | Change::Expire | Change::Abort => {
                UploadState::Pending
            }
            Change::Delete => UploadState::Completed,
        }
    }

    pub fn to(&self) -> UploadState {
        match self {
            Change::Complete(_) => UploadState::Completed,
            Change::Fail(_) => UploadState::Failed,
            Change::Expire => UploadState::Expired,
            Change::Abort => UploadState::Aborted,
            Change::Delete => UploadState::Deleted,
        }
    }

    /// The event this change records.
    pub fn event_type(&self) -> EventType {
        match self {
            Change::Complete(_) => EventType::UploadCompleted,
            Change::Fail(_) => EventType::UploadFailed,
            Change::Expire => EventType::UploadExpired,
            Change::Abort => EventType::UploadAborted,
            Change::Delete => EventType::UploadDeleted,
        }
    }

    /// Whether an image_id's newest completed upload may be different afterwards.
    pub fn touches_completed(&self) -> bool {
        self.from() == UploadState::Completed || self.to() == UploadState::Completed
    }
}

/// Applies `change` to upload `id` inside `txn`, only if the upload is still in the state
/// the change starts from, and records its `event` beside it. Returns the row as the change
/// left it when this call made the change (the event is recorded exactly then), `None` when
/// the upload had already moved.
pub async fn apply<C: ConnectionTrait>(
    txn: &C,
    id: Uuid,
    change: &Change,
    event: &NewEvent,
    variants: bool,
) -> Result<Option<Model>, DbErr> {
    debug_assert!(event.upload_id == id && event.event_type == change.event_type());
    let updated_at = match change {
        Change::Complete(object) => object.uploaded_at,
        _ => OffsetDateTime::now_utc(),
    };
    let mut update = Upload::update_many()
        .col_expr(Column::State, Expr::value(change.to()))
        .col_expr(Column::UpdatedAt, Expr::value(updated_at));
    update = match change {
        Change::Complete(object) => update
            .col_expr(Column::FileSize, Expr::value(object.file_size))
            .col_expr(
                Column::ContentType,
                Expr::value(object.content_type.clone()),
            )
            .col_expr(Column::Etag, Expr::value(object.etag.clone()))
            .col_expr(
                Column::ChecksumSha256,
                Expr::value(object.checksum_sha256.clone()),
            )
            .col_expr(Column::Width, Expr::value(object.width))
            .col_expr(Column::Height, Expr::value(object.height))
            .col_expr(Column::S3Url, Expr::value(object.s3_url.clone()))
            .col_expr(Column::UploadedAt, Expr::value(object.uploaded_at))
            .col_expr(
                Column::VariantsState,
                Expr::value(variants.then_some(VariantsState::Pending)),
            ),
        Change::Fail(code) => update.col_expr(Column::FailureCode, Expr::value(*code)),
        Change::Expire | Change::Abort | Change::Delete => update,
    };
    let after = update
        .filter(Column::Id.eq(id))
        .filter(Column::State.eq(change.from()))
        .exec_with_returning(txn)
        .await?;
    let after = after.into_iter().next();
    if let Some(row) = &after {
        // Bytes: the file's size once known, the declared size before.
        let bytes = row.file_size.unwrap_or(row.declared_size);
        let before = match change {
            Change::Complete(_) => row.declared_size,
            Change::Fail(_) | Change::Expire | Change::Abort | Change::Delete => bytes,
        };
        counters::add(
            txn,
            &[(change.from(), -1, -before), (change.to(), 1, bytes)],
        )
        .await?;
        match change {
            Change::Complete(_) => counters::hourly(txn, false, bytes).await?,
            Change::Fail(_) => counters::hourly(txn, true, 0).await?,
            Change::Expire | Change::Abort | Change::Delete => {}
        }
        webhooks::record(txn, event).await?;
        if variants && matches!(change, Change::Complete(_)) {
            enqueue_variants(txn, id, updated_at).await?;
        }
        if change.to() != UploadState::Completed {
            // It no longer counts against the link it was made with.
            release_link_use_of(txn, id).await?;
        }
    }
    Ok(after)
}

/// Takes one of link `link_id`'s `max` uses if one is free: an insert of its first use, or
/// an increment only while below `max`, in one statement.
pub async fn reserve_link_use<C: ConnectionTrait>(
    conn: &C,
    link_id: Uuid,
    max: u32,
) -> Result<bool, DbErr> {
    let first = link_use::ActiveModel {
        link_id: ActiveValue::Set(link_id),
        used: ActiveValue::Set(1),
    };
    let used = Expr::col((LinkUse, link_use::Column::Used));
    let taken = LinkUse::insert(first)
        .on_conflict(
            OnConflict::column(link_use::Column::LinkId)
                .value(link_use::Column::Used, used.clone().add(1))
                .action_and_where(used.lt(i64::from(max)))
                .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
    Ok(taken == 1 && max > 0)
}

/// Gives back one use of link `link_id`.
pub async fn release_link_use<C: ConnectionTrait>(conn: &C, link_id: Uuid) -> Result<(), DbErr> {
    give_back_use(conn, link_use::Column::LinkId.eq(link_id)).await
}

/// Gives back the use that upload `id` took of its link, if it was made with one.
async fn release_link_use_of<C: ConnectionTrait>(txn: &C, id: Uuid) -> Result<(), DbErr> {
    let link_of_upload = Query::select()
        .column(Column::LinkId)
        .from(Upload)
        .and_where(Column::Id.eq(id))
        .to_owned();
    give_back_use(txn, link_use::Column::LinkId.in_subquery(link_of_upload)).await
}

/// The job that makes upload `id`'s variants, due now.
async fn enqueue_variants<C: ConnectionTrait>(
    txn: &C,
    id: Uuid,
    now: OffsetDateTime,
) -> Result<(), DbErr> {
    entity::variant_job::Entity::insert(super::variant_jobs::pending_job(id, now))
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

/// One use fewer for the link `which` selects, never below zero.
async fn give_back_use<C: ConnectionTrait>(
    conn: &C,
    which: sea_orm::sea_query::SimpleExpr,
) -> Result<(), DbErr> {
    LinkUse::update_many()
        .col_expr(
            link_use::Column::Used,
            Expr::col(link_use::Column::Used).sub(1),
        )
        .filter(which)
        .filter(link_use::Column::Used.gt(0))
        .exec(conn)
        .await?;
    Ok(())
}

/// Records how upload `id`'s variants job ended on the upload (while it is still
/// completed), and its `event` (`variants.ready`), inside `txn`. A job that will be tried
/// again changes nothing. Returns whether the upload changed.
pub async fn settle_variants<C: ConnectionTrait>(
    txn: &C,
    id: Uuid,
    outcome: &JobOutcome,
    event: Option<&NewEvent>,
) -> Result<bool, DbErr> {
    let update = Upload::update_many()
        .filter(Column::Id.eq(id))
        .filter(Column::State.eq(UploadState::Completed));
    let update = match outcome {
        JobOutcome::Ready { variants } => update
            .col_expr(Column::VariantsState, Expr::value(VariantsState::Ready))
            .col_expr(Column::Variants, Expr::value(variants.clone()))
            .col_expr(
                Column::VariantsFailureCode,
                Expr::value(Option::<String>::None),
            ),
        JobOutcome::Failed { code } => update
            .col_expr(Column::VariantsState, Expr::value(VariantsState::Failed))
            .col_expr(Column::VariantsFailureCode, Expr::value(code.clone())),
        JobOutcome::Retry { .. } => return Ok(false),
    };
    let settled = update.exec(txn).await?.rows_affected == 1;
    if let (true, Some(event)) = (settled, event) {
        debug_assert!(event.upload_id == id && event.event_type == EventType::VariantsReady);
        webhooks::record(txn, event).await?;
    }
    Ok(settled)
}

/// Upload `id`'s variants are to be made again (an operator asked): pending, while it is
/// completed.
pub async fn variants_requested<C: ConnectionTrait>(txn: &C, id: Uuid) -> Result<(), DbErr> {
    Upload::update_many()
        .col_expr(Column::VariantsState, Expr::value(VariantsState::Pending))
        .col_expr(
            Column::VariantsFailureCode,
            Expr::value(Option::<String>::None),
        )
        .filter(Column::Id.eq(id))
        .filter(Column::State.eq(UploadState::Completed))
        .exec(txn)
        .await?;
    Ok(())
}

/// Records new pending uploads, `count` of them declaring `bytes` in all, in the stats
/// (their creation has no event).
pub async fn created<C: ConnectionTrait>(txn: &C, count: i64, bytes: i64) -> Result<(), DbErr> {
    counters::add(txn, &[(UploadState::Pending, count, bytes)]).await
}

/// Records an upload that arrives completed (the legacy upload: the service stored and
/// verified the bytes itself), and its `upload.completed` event, inside `txn`.
pub async fn insert_completed<C: ConnectionTrait>(
    txn: &C,
    mut row: ActiveModel,
    event: &NewEvent,
    variants: bool,
) -> Result<(), DbErr> {
    debug_assert!(
        row.state.as_ref() == &UploadState::Completed
            && row.method.as_ref() == &UploadMethod::Legacy
            && event.event_type == EventType::UploadCompleted
    );
    if variants {
        row.variants_state = ActiveValue::Set(Some(VariantsState::Pending));
    }
    let bytes = row
        .file_size
        .as_ref()
        .unwrap_or(*row.declared_size.as_ref());
    Upload::insert(row).exec_without_returning(txn).await?;
    counters::add(txn, &[(UploadState::Completed, 1, bytes)]).await?;
    counters::hourly(txn, false, bytes).await?;
    webhooks::record(txn, event).await?;
    if variants {
        // The event is the new upload's: its id is the row's.
        enqueue_variants(txn, event.upload_id, event.created_at).await?;
    }
    Ok(())
}
