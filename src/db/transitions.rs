//! The seam for state changes: the only code that moves a stored upload from one state to
//! another, or records one that arrives already completed (the legacy upload). Each runs
//! inside a transaction it is handed, so whatever must commit with the change (an event, a
//! job, a counter) is written beside it in the same transaction, on SQLite and Postgres.

use entity::upload::{ActiveModel, Column, Entity as Upload};
use entity::{UploadMethod, UploadState};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};
use time::OffsetDateTime;
use uuid::Uuid;

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

    /// Whether an image_id's newest completed upload may be different afterwards.
    pub fn touches_completed(&self) -> bool {
        self.from() == UploadState::Completed || self.to() == UploadState::Completed
    }
}

/// Applies `change` to upload `id` inside `txn`, only if the upload is still in the state
/// the change starts from. Returns whether this call made the change.
pub async fn apply<C: ConnectionTrait>(txn: &C, id: Uuid, change: &Change) -> Result<bool, DbErr> {
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
            .col_expr(Column::UploadedAt, Expr::value(object.uploaded_at)),
        Change::Fail(code) => update.col_expr(Column::FailureCode, Expr::value(*code)),
        Change::Expire | Change::Abort | Change::Delete => update,
    };
    let result = update
        .filter(Column::Id.eq(id))
        .filter(Column::State.eq(change.from()))
        .exec(txn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Records an upload that arrives completed (the legacy upload: the service stored and
/// verified the bytes itself), inside `txn`.
pub async fn insert_completed<C: ConnectionTrait>(txn: &C, row: ActiveModel) -> Result<(), DbErr> {
    debug_assert!(
        row.state.as_ref() == &UploadState::Completed
            && row.method.as_ref() == &UploadMethod::Legacy
    );
    Upload::insert(row).exec_without_returning(txn).await?;
    Ok(())
}
