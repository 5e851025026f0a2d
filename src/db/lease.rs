//! The claim-and-lease machinery every queue shares (webhook deliveries, variant jobs): a
//! row is due when it is pending, its `next_attempt_at` has come and no lease holds it; a
//! claim takes due rows in one statement that sets `locked_until` and a `lease` id, so only
//! its holder records the outcome, and a lease a crash leaves simply runs out. On Postgres
//! replicas claiming together skip each other's rows (`FOR UPDATE SKIP LOCKED`); SQLite
//! leaves the clause out, and its one writer runs each claim whole.

use sea_orm::sea_query::{
    Expr, ExprTrait, IntoIden, LockBehavior, LockType, Query, SelectStatement,
};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, UpdateMany, Value};
use time::OffsetDateTime;
use uuid::Uuid;

/// A table worked through with leases.
pub(super) trait Queue: EntityTrait + Default + IntoIden {
    const ID: Self::Column;
    const STATE: Self::Column;
    const NEXT_ATTEMPT_AT: Self::Column;
    const LOCKED_UNTIL: Self::Column;
    const LEASE: Self::Column;

    /// The stored state of a row still to be worked on.
    fn pending() -> Value;
}

/// The ids of up to `limit` due rows of `Q`, soonest first. Callers may narrow it further.
pub(super) fn due<Q: Queue>(now: OffsetDateTime, limit: u64) -> SelectStatement {
    Query::select()
        .column(Q::ID)
        .from(Q::default())
        .and_where(Q::STATE.eq(Q::pending()))
        .and_where(Q::NEXT_ATTEMPT_AT.lte(now))
        .and_where(free::<Q>(now))
        .order_by(Q::NEXT_ATTEMPT_AT, sea_orm::Order::Asc)
        .limit(limit)
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .to_owned()
}

/// No live lease holds the row.
fn free<Q: Queue>(now: OffsetDateTime) -> sea_orm::sea_query::SimpleExpr {
    Q::LOCKED_UNTIL.is_null().or(Q::LOCKED_UNTIL.lt(now))
}

/// Claims the rows `due` selects until `until` under `lease`, and returns them.
pub(super) async fn claim<Q: Queue, C: ConnectionTrait>(
    conn: &C,
    due: SelectStatement,
    until: OffsetDateTime,
    lease: Uuid,
) -> Result<Vec<Q::Model>, DbErr> {
    Q::update_many()
        .col_expr(Q::LOCKED_UNTIL, Expr::value(until))
        .col_expr(Q::LEASE, Expr::value(lease))
        .filter(Q::ID.in_subquery(due))
        .exec_with_returning(conn)
        .await
}

/// Claims row `id` until `until` under `lease` whatever its `next_attempt_at`, if it is
/// pending and no live lease holds it (work asked for now, such as an on-demand variant).
pub(super) async fn claim_one<Q: Queue, C: ConnectionTrait>(
    conn: &C,
    id: impl Into<Value>,
    now: OffsetDateTime,
    until: OffsetDateTime,
    lease: Uuid,
) -> Result<bool, DbErr> {
    let claimed = Q::update_many()
        .col_expr(Q::LOCKED_UNTIL, Expr::value(until))
        .col_expr(Q::LEASE, Expr::value(lease))
        .filter(Q::ID.eq(id))
        .filter(Q::STATE.eq(Q::pending()))
        .filter(free::<Q>(now))
        .exec(conn)
        .await?;
    Ok(claimed.rows_affected == 1)
}

/// Holds row `id` until `until`, if `lease` still holds it (a heartbeat of long work).
pub(super) async fn extend<Q: Queue, C: ConnectionTrait>(
    conn: &C,
    id: impl Into<Value>,
    lease: Uuid,
    until: OffsetDateTime,
) -> Result<bool, DbErr> {
    let extended = Q::update_many()
        .col_expr(Q::LOCKED_UNTIL, Expr::value(until))
        .filter(Q::ID.eq(id))
        .filter(Q::LEASE.eq(lease))
        .exec(conn)
        .await?;
    Ok(extended.rows_affected == 1)
}

/// `update`, also letting go of the row's lease.
pub(super) fn released<Q: Queue>(update: UpdateMany<Q>) -> UpdateMany<Q> {
    update
        .col_expr(Q::LOCKED_UNTIL, Expr::value(Option::<OffsetDateTime>::None))
        .col_expr(Q::LEASE, Expr::value(Option::<Uuid>::None))
}

impl Queue for entity::webhook_delivery::Entity {
    const ID: Self::Column = entity::webhook_delivery::Column::Id;
    const STATE: Self::Column = entity::webhook_delivery::Column::State;
    const NEXT_ATTEMPT_AT: Self::Column = entity::webhook_delivery::Column::NextAttemptAt;
    const LOCKED_UNTIL: Self::Column = entity::webhook_delivery::Column::LockedUntil;
    const LEASE: Self::Column = entity::webhook_delivery::Column::Lease;

    fn pending() -> Value {
        entity::DeliveryState::Pending.into()
    }
}

impl Queue for entity::variant_job::Entity {
    const ID: Self::Column = entity::variant_job::Column::UploadId;
    const STATE: Self::Column = entity::variant_job::Column::State;
    const NEXT_ATTEMPT_AT: Self::Column = entity::variant_job::Column::NextAttemptAt;
    const LOCKED_UNTIL: Self::Column = entity::variant_job::Column::LockedUntil;
    const LEASE: Self::Column = entity::variant_job::Column::Lease;

    fn pending() -> Value {
        entity::JobState::Pending.into()
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::sea_query::{PostgresQueryBuilder, SqliteQueryBuilder};

    use super::*;

    #[test]
    fn a_claim_skips_locked_rows_on_postgres_and_is_one_statement_on_sqlite() {
        let due = due::<entity::variant_job::Entity>(OffsetDateTime::UNIX_EPOCH, 8);
        let postgres = due.to_string(PostgresQueryBuilder);
        assert!(postgres.ends_with("FOR UPDATE SKIP LOCKED"), "{postgres}");
        assert!(
            postgres.contains("\"locked_until\" IS NULL OR"),
            "{postgres}"
        );
        let sqlite = due.to_string(SqliteQueryBuilder);
        assert!(!sqlite.contains("FOR UPDATE"), "{sqlite}");
    }
}
