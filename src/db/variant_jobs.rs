//! Variant jobs: claimed with a lease like webhook deliveries (one statement; `FOR UPDATE
//! SKIP LOCKED` on Postgres), and finished together with the upload's `variants_state`.

use entity::upload::{Column as UploadColumn, Entity as Upload};
use entity::variant_job::{self as job, Entity as Job};
use sea_orm::sea_query::{Expr, ExprTrait, LockBehavior, LockType, Query};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, TransactionTrait};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Db, DbError};

pub use job::Model as VariantJobRow;

const PENDING: &str = "pending";
const DONE: &str = "done";
const FAILED: &str = "failed";

/// How a job ended.
#[derive(Debug, Clone)]
pub enum JobOutcome {
    /// Every variant is stored: `variants` is the record's JSON.
    Ready { variants: String },
    /// It can never succeed (a bomb, an undecodable file): `code` says why.
    Failed { code: String },
    /// Try again at `at` (storage unavailable).
    Retry { error: String, at: OffsetDateTime },
}

impl Db {
    /// Claims up to `limit` due jobs until `until` under `lease`.
    pub async fn claim_variant_jobs(
        &self,
        now: OffsetDateTime,
        until: OffsetDateTime,
        lease: Uuid,
        limit: u64,
    ) -> Result<Vec<VariantJobRow>, DbError> {
        let mut due = Query::select();
        due.column(job::Column::UploadId)
            .from(Job)
            .and_where(job::Column::State.eq(PENDING))
            .and_where(job::Column::NextAttemptAt.lte(now))
            .and_where(
                job::Column::LockedUntil
                    .is_null()
                    .or(job::Column::LockedUntil.lt(now)),
            )
            .order_by(job::Column::NextAttemptAt, sea_orm::Order::Asc)
            .limit(limit)
            .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        Ok(Job::update_many()
            .col_expr(job::Column::LockedUntil, Expr::value(until))
            .col_expr(job::Column::Lease, Expr::value(lease))
            .filter(job::Column::UploadId.in_subquery(due.to_owned()))
            .exec_with_returning(&self.write)
            .await?)
    }

    /// Records how job `upload_id` ended, if `lease` still holds it, with the upload's
    /// `variants_state` (and `variants`) in the same transaction. Returns whether it did.
    pub async fn finish_variant_job(
        &self,
        upload_id: Uuid,
        lease: Uuid,
        outcome: &JobOutcome,
    ) -> Result<bool, DbError> {
        let now = OffsetDateTime::now_utc();
        let (state, error, next) = match outcome {
            JobOutcome::Ready { .. } => (DONE, None, now),
            JobOutcome::Failed { code } => (FAILED, Some(code.clone()), now),
            JobOutcome::Retry { error, at } => (PENDING, Some(error.clone()), *at),
        };
        let txn = self.write.begin().await?;
        let finished = Job::update_many()
            .col_expr(job::Column::State, Expr::value(state))
            .col_expr(
                job::Column::Attempts,
                Expr::col(job::Column::Attempts).add(1),
            )
            .col_expr(job::Column::LastError, Expr::value(error))
            .col_expr(job::Column::NextAttemptAt, Expr::value(next))
            .col_expr(
                job::Column::LockedUntil,
                Expr::value(Option::<OffsetDateTime>::None),
            )
            .col_expr(job::Column::Lease, Expr::value(Option::<Uuid>::None))
            .col_expr(job::Column::UpdatedAt, Expr::value(now))
            .filter(job::Column::UploadId.eq(upload_id))
            .filter(job::Column::Lease.eq(lease))
            .exec(&txn)
            .await?;
        if finished.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(false);
        }
        let upload = match outcome {
            JobOutcome::Ready { variants } => Some(("ready", Some(variants.clone()))),
            JobOutcome::Failed { code } => Some((
                "failed",
                Some(serde_json::json!({ "code": code }).to_string()),
            )),
            JobOutcome::Retry { .. } => None,
        };
        if let Some((variants_state, variants)) = upload {
            Upload::update_many()
                .col_expr(UploadColumn::VariantsState, Expr::value(variants_state))
                .col_expr(UploadColumn::Variants, Expr::value(variants))
                .filter(UploadColumn::Id.eq(upload_id))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(true)
    }
}
