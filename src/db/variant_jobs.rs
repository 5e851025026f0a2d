//! Variant jobs: one per completed upload, claimed with a lease through the same machinery
//! as webhook deliveries (`lease.rs`), and settled together with the upload's
//! `variants_state` through the seam (`transitions::settle_variants`).

use entity::JobState;
use entity::variant_job::{self as job, ActiveModel, Entity as Job};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ActiveValue, ColumnTrait, EntityTrait, QueryFilter, TransactionTrait};
use time::OffsetDateTime;
use uuid::Uuid;

use super::admin::{self, NewAudit};
use super::webhooks::NewEvent;
use super::{Db, DbError, lease, transitions};

pub use job::Model as VariantJobRow;

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// Every variant is stored: `variants` is what the upload's record keeps (JSON).
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
        let due = lease::due::<Job>(now, limit);
        Ok(lease::claim::<Job, _>(&self.write, due, until, lease).await?)
    }

    /// Claims upload `upload_id`'s job now, whenever it was due, recording it first if it
    /// has none (variants asked for on demand); with `remake`, a job that is done is made
    /// again (its record lacks a preset or format asked for). Returns `false` when a live
    /// lease holds it (someone is making it), or it is settled and not to be made again.
    pub async fn claim_variant_job_now(
        &self,
        upload_id: Uuid,
        until: OffsetDateTime,
        lease: Uuid,
        remake: bool,
    ) -> Result<bool, DbError> {
        let now = OffsetDateTime::now_utc();
        let txn = self.write.begin().await?;
        let mut on_conflict = OnConflict::column(job::Column::UploadId);
        if remake {
            on_conflict
                .value(job::Column::State, JobState::Pending)
                .value(job::Column::NextAttemptAt, now)
                .action_and_where(job::Column::State.eq(JobState::Done));
        } else {
            on_conflict.do_nothing();
        }
        Job::insert(pending_job(upload_id, now))
            .on_conflict(on_conflict.to_owned())
            .exec_without_returning(&txn)
            .await?;
        let claimed = lease::claim_one::<Job, _>(&txn, upload_id, now, until, lease).await?;
        txn.commit().await?;
        Ok(claimed)
    }

    /// Makes upload `upload_id` (of `image_id`)'s variants again: its job is due now and
    /// its `variants_state` pending, with an operator's `audit` entry, in one transaction.
    pub async fn request_variants(
        &self,
        upload_id: Uuid,
        image_id: &str,
        audit: &NewAudit,
    ) -> Result<(), DbError> {
        let now = OffsetDateTime::now_utc();
        let txn = self.write.begin().await?;
        Job::insert(pending_job(upload_id, now))
            .on_conflict(
                OnConflict::column(job::Column::UploadId)
                    .value(job::Column::State, JobState::Pending)
                    .value(job::Column::NextAttemptAt, now)
                    .value(job::Column::Attempts, 0)
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
        transitions::variants_requested(&txn, upload_id).await?;
        admin::write(&txn, audit).await?;
        txn.commit().await?;
        self.jobs_recorded.notify_one();
        self.changed_latest(image_id);
        Ok(())
    }

    /// Holds job `upload_id` until `until`, if `lease` still holds it. Returns whether it does.
    pub async fn extend_variant_lease(
        &self,
        upload_id: Uuid,
        lease: Uuid,
        until: OffsetDateTime,
    ) -> Result<bool, DbError> {
        Ok(lease::extend::<Job, _>(&self.write, upload_id, lease, until).await?)
    }

    /// Records how job `upload_id` (of `image_id`) ended, if `lease` still holds it, with
    /// the upload's variants and its `event` through the seam, in one transaction. Returns
    /// whether it did.
    pub async fn finish_variant_job(
        &self,
        upload_id: Uuid,
        image_id: &str,
        lease: Uuid,
        outcome: &JobOutcome,
        event: Option<&NewEvent>,
    ) -> Result<bool, DbError> {
        let now = OffsetDateTime::now_utc();
        let (state, error, next) = match outcome {
            JobOutcome::Ready { .. } => (JobState::Done, None, now),
            JobOutcome::Failed { code } => (JobState::Failed, Some(code.clone()), now),
            JobOutcome::Retry { error, at } => (JobState::Pending, Some(error.clone()), *at),
        };
        let txn = self.write.begin().await?;
        let finished = lease::released(Job::update_many())
            .col_expr(job::Column::State, Expr::value(state))
            .col_expr(
                job::Column::Attempts,
                Expr::col(job::Column::Attempts).add(1),
            )
            .col_expr(job::Column::LastError, Expr::value(error))
            .col_expr(job::Column::NextAttemptAt, Expr::value(next))
            .col_expr(job::Column::UpdatedAt, Expr::value(now))
            .filter(job::Column::UploadId.eq(upload_id))
            .filter(job::Column::Lease.eq(lease))
            .exec(&txn)
            .await?;
        if finished.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(false);
        }
        let settled = transitions::settle_variants(&txn, upload_id, outcome, event).await?;
        txn.commit().await?;
        if settled {
            if event.is_some() {
                self.recorded.notify_one();
            }
            self.changed_latest(image_id);
        }
        Ok(true)
    }
}

/// A job for `upload_id`, due at `now`.
pub(super) fn pending_job(upload_id: Uuid, now: OffsetDateTime) -> ActiveModel {
    ActiveModel {
        upload_id: ActiveValue::Set(upload_id),
        state: ActiveValue::Set(JobState::Pending),
        attempts: ActiveValue::Set(0),
        next_attempt_at: ActiveValue::Set(now),
        locked_until: ActiveValue::Set(None),
        lease: ActiveValue::Set(None),
        last_error: ActiveValue::Set(None),
        created_at: ActiveValue::Set(now),
        updated_at: ActiveValue::Set(now),
    }
}
