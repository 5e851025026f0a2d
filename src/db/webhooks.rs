//! The outbox and the webhook tables. `record` runs inside a state change's transaction
//! (`transitions`); the rest is what the dispatcher and the webhooks API ask for. A claim is
//! one statement that sets a lease (`FOR UPDATE SKIP LOCKED` on Postgres; on SQLite, whose
//! single writer makes the conditional update atomic, the lock clause is left out), and
//! finishing is another, honoured only while the lease is still the claimer's.

use entity::event::{self, Entity as Event};
use entity::webhook_delivery::{self as delivery, Entity as Delivery};
use entity::webhook_endpoint::{self as endpoint, Entity as Endpoint};
use entity::{DeliveryState, EndpointSource};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::admin::{self, NewAudit};
use super::{Db, DbError, lease};
use crate::events::{EventType, subscribed};

pub use delivery::Model as DeliveryRow;
pub use endpoint::Model as EndpointRow;

/// An event to record with the state change that causes it.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: Uuid,
    pub upload_id: Uuid,
    pub event_type: EventType,
    /// The body every delivery sends.
    pub payload: String,
    pub created_at: OffsetDateTime,
}

/// Records `event`, and one pending delivery for each endpoint that takes its type, inside
/// `txn`. Returns how many deliveries it made.
pub async fn record<C: ConnectionTrait>(txn: &C, event: &NewEvent) -> Result<usize, DbErr> {
    Event::insert(event::ActiveModel {
        id: Set(event.id),
        upload_id: Set(event.upload_id),
        event_type: Set(event.event_type.as_str().to_owned()),
        payload: Set(event.payload.clone()),
        created_at: Set(event.created_at),
    })
    .exec_without_returning(txn)
    .await?;
    // Postgres: shared row locks, so an endpoint being removed waits for this transaction
    // (and then fails the delivery it made), or is gone before it reads. SQLite has one
    // writer, and sea-query leaves the clause out there.
    let endpoints = Endpoint::find().lock_shared().all(txn).await?;
    let deliveries: Vec<delivery::ActiveModel> = endpoints
        .iter()
        .filter(|e| subscribed(e.events.as_deref(), event.event_type))
        .map(|e| delivery::ActiveModel {
            id: Set(Uuid::now_v7()),
            event_id: Set(event.id),
            event_type: Set(event.event_type.as_str().to_owned()),
            upload_id: Set(event.upload_id),
            endpoint_id: Set(e.id),
            endpoint_url: Set(e.url.clone()),
            state: Set(DeliveryState::Pending),
            attempts: Set(0),
            last_status: Set(None),
            last_error: Set(None),
            next_attempt_at: Set(event.created_at),
            locked_until: Set(None),
            lease: Set(None),
            created_at: Set(event.created_at),
            updated_at: Set(event.created_at),
        })
        .collect();
    let made = deliveries.len();
    if made > 0 {
        Delivery::insert_many(deliveries)
            .exec_without_returning(txn)
            .await?;
    }
    Ok(made)
}

/// A delivery a dispatcher holds, with what it sends.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub delivery: DeliveryRow,
    pub payload: String,
}

/// How an attempt ended, as it is recorded.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A 2xx.
    Delivered { status: i32 },
    /// Anything else, with attempts left: try again at `at`.
    Retry {
        status: Option<i32>,
        error: String,
        at: OffsetDateTime,
    },
    /// The last attempt of the schedule failed.
    Failed { status: Option<i32>, error: String },
    /// 410 Gone: the delivery fails and its endpoint is disabled.
    Gone,
}

/// An attempt's outcome, for the delivery its lease holds.
#[derive(Debug, Clone)]
pub struct Finished {
    pub id: Uuid,
    pub lease: Uuid,
    pub outcome: Outcome,
}

/// Filters of the delivery log.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub state: Option<DeliveryState>,
    pub upload_id: Option<Uuid>,
    /// Only deliveries older than this one (the page's cursor).
    pub before: Option<Uuid>,
}

/// The id a `WEBHOOK_URL` endpoint always has, so every replica and every start agree.
pub fn config_endpoint_id(url: &str) -> Uuid {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("webhook-url:{url}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// The error a delivery keeps when its endpoint goes away.
pub const ENDPOINT_REMOVED: &str = "the endpoint was removed";

impl Db {
    /// Claims up to `limit` due deliveries whose endpoints are enabled and not in `busy`,
    /// holding each until `until` under `lease`.
    pub async fn claim_deliveries(
        &self,
        now: OffsetDateTime,
        until: OffsetDateTime,
        lease: Uuid,
        limit: u64,
        busy: &[Uuid],
    ) -> Result<Vec<Claimed>, DbError> {
        let due = due_deliveries(now, limit, busy);
        let claimed = lease::claim::<Delivery, _>(&self.write, due, until, lease).await?;
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        let payloads: std::collections::HashMap<Uuid, String> = Event::find()
            .filter(event::Column::Id.is_in(claimed.iter().map(|d| d.event_id)))
            .all(&self.write)
            .await?
            .into_iter()
            .map(|e| (e.id, e.payload))
            .collect();
        Ok(claimed
            .into_iter()
            .filter_map(|row| {
                // Deliveries of one event share its payload.
                let payload = payloads.get(&row.event_id)?.clone();
                Some(Claimed {
                    payload,
                    delivery: row,
                })
            })
            .collect())
    }

    /// The endpoints among `ids` (what a delivery is sent with never changes: its URL,
    /// source and secret).
    pub async fn endpoints_by_id(&self, ids: &[Uuid]) -> Result<Vec<EndpointRow>, DbError> {
        Ok(Endpoint::find()
            .filter(endpoint::Column::Id.is_in(ids.iter().copied()))
            .all(&self.read)
            .await?)
    }

    /// Records how an attempt of delivery `id` ended, if `lease` still holds it. Returns
    /// whether it did (a lease that ran out and was taken by another dispatcher does not).
    pub async fn finish_delivery(
        &self,
        id: Uuid,
        lease: Uuid,
        outcome: &Outcome,
    ) -> Result<bool, DbError> {
        let finished = self
            .finish_deliveries(&[Finished {
                id,
                lease,
                outcome: outcome.clone(),
            }])
            .await?;
        Ok(finished == 1)
    }

    /// Records several attempts' outcomes in one transaction (one commit for a burst).
    /// Returns how many were still held by their lease.
    pub async fn finish_deliveries(&self, finished: &[Finished]) -> Result<usize, DbError> {
        let now = OffsetDateTime::now_utc();
        let txn = self.write.begin().await?;
        let mut recorded = 0;
        // Deliveries that succeeded with the same status are recorded by one statement:
        // most of a burst. A row matches only while it holds one of the burst's leases, and
        // a lease is one claim's own, so another dispatcher's claim is never touched.
        let mut delivered: std::collections::BTreeMap<i32, Vec<&Finished>> = Default::default();
        let mut each = Vec::new();
        for one in finished {
            match one.outcome {
                Outcome::Delivered { status } => delivered.entry(status).or_default().push(one),
                _ => each.push(one),
            }
        }
        for (status, group) in delivered {
            let result = attempt_recorded(DeliveryState::Succeeded, Some(status), None, now, now)
                .filter(delivery::Column::Id.is_in(group.iter().map(|f| f.id)))
                .filter(delivery::Column::Lease.is_in(group.iter().map(|f| f.lease)))
                .exec(&txn)
                .await?;
            recorded += usize::try_from(result.rows_affected).unwrap_or(0);
        }
        for Finished { id, lease, outcome } in each {
            let (state, status, error, next) = match outcome {
                Outcome::Delivered { status } => {
                    (DeliveryState::Succeeded, Some(*status), None, now)
                }
                Outcome::Retry { status, error, at } => {
                    (DeliveryState::Pending, *status, Some(error.clone()), *at)
                }
                Outcome::Failed { status, error } => {
                    (DeliveryState::Failed, *status, Some(error.clone()), now)
                }
                Outcome::Gone => (
                    DeliveryState::Failed,
                    Some(410),
                    Some("410 Gone: the endpoint is disabled".to_owned()),
                    now,
                ),
            };
            let update = attempt_recorded(state, status, error, next, now)
                .filter(delivery::Column::Id.eq(*id))
                .filter(delivery::Column::Lease.eq(*lease));
            if !matches!(outcome, Outcome::Gone) {
                recorded += usize::from(update.exec(&txn).await?.rows_affected == 1);
                continue;
            }
            // A 410 fails the delivery and disables its endpoint, together.
            let Some(row) = update.exec_with_returning(&txn).await?.into_iter().next() else {
                continue;
            };
            recorded += 1;
            Endpoint::update_many()
                .col_expr(endpoint::Column::Enabled, Expr::value(false))
                .col_expr(endpoint::Column::DisabledAt, Expr::value(Some(now)))
                .col_expr(
                    endpoint::Column::DisabledReason,
                    Expr::value(Some(format!("answered 410 Gone to delivery {id}"))),
                )
                .filter(endpoint::Column::Id.eq(row.endpoint_id))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(recorded)
    }

    /// Lets go of a claimed delivery without attempting it.
    pub async fn release_delivery(&self, id: Uuid, lease: Uuid) -> Result<(), DbError> {
        lease::released(Delivery::update_many())
            .filter(delivery::Column::Id.eq(id))
            .filter(delivery::Column::Lease.eq(lease))
            .exec(&self.write)
            .await?;
        Ok(())
    }

    /// The delivery log, newest first.
    pub async fn deliveries(
        &self,
        filter: &DeliveryFilter,
        limit: u64,
    ) -> Result<Vec<DeliveryRow>, DbError> {
        let mut query = Delivery::find();
        if let Some(state) = filter.state {
            query = query.filter(delivery::Column::State.eq(state));
        }
        if let Some(upload_id) = filter.upload_id {
            query = query.filter(delivery::Column::UploadId.eq(upload_id));
        }
        if let Some(before) = filter.before {
            query = query.filter(delivery::Column::Id.lt(before));
        }
        Ok(query
            .order_by_desc(delivery::Column::Id)
            .limit(limit)
            .all(&self.read)
            .await?)
    }

    pub async fn delivery(&self, id: Uuid) -> Result<Option<DeliveryRow>, DbError> {
        Ok(Delivery::find_by_id(id).one(&self.write).await?)
    }

    /// Makes delivery `id` due now, whatever its state: the same event, the same
    /// `webhook-id`. A lease another dispatcher holds is let go. Returns whether it exists.
    /// `audit` is recorded with it.
    pub async fn retry_delivery(&self, id: Uuid, audit: &NewAudit) -> Result<bool, DbError> {
        let now = OffsetDateTime::now_utc();
        let txn = self.write.begin().await?;
        let result = lease::released(Delivery::update_many())
            .col_expr(delivery::Column::State, Expr::value(DeliveryState::Pending))
            .col_expr(delivery::Column::NextAttemptAt, Expr::value(now))
            .col_expr(delivery::Column::UpdatedAt, Expr::value(now))
            .filter(delivery::Column::Id.eq(id))
            .exec(&txn)
            .await?;
        let found = result.rows_affected == 1;
        if found {
            admin::write(&txn, audit).await?;
        }
        txn.commit().await?;
        if found {
            self.recorded.notify_one();
        }
        Ok(found)
    }

    /// Removes events recorded before `before`, with their settled deliveries; an event
    /// with a delivery still pending stays. Returns how many events went.
    pub async fn prune_events(&self, before: OffsetDateTime) -> Result<u64, DbError> {
        Delivery::delete_many()
            .filter(delivery::Column::State.ne(DeliveryState::Pending))
            .filter(delivery::Column::CreatedAt.lt(before))
            .exec(&self.write)
            .await?;
        let still_delivered = Query::select()
            .column(delivery::Column::EventId)
            .from(Delivery)
            .to_owned();
        let result = Event::delete_many()
            .filter(event::Column::CreatedAt.lt(before))
            .filter(event::Column::Id.not_in_subquery(still_delivered))
            .exec(&self.write)
            .await?;
        Ok(result.rows_affected)
    }

    /// Deliveries still to make, held ones (their endpoint disabled) included.
    pub async fn delivery_backlog(&self) -> Result<u64, DbError> {
        Ok(Delivery::find()
            .filter(delivery::Column::State.eq(DeliveryState::Pending))
            .count(&self.read)
            .await?)
    }

    pub async fn endpoints(&self) -> Result<Vec<EndpointRow>, DbError> {
        Ok(Endpoint::find()
            .order_by_asc(endpoint::Column::CreatedAt)
            .order_by_asc(endpoint::Column::Id)
            .all(&self.write)
            .await?)
    }

    pub async fn endpoint(&self, id: Uuid) -> Result<Option<EndpointRow>, DbError> {
        Ok(Endpoint::find_by_id(id).one(&self.write).await?)
    }

    /// Registers an endpoint, with the operator's `audit` entry.
    pub async fn insert_endpoint(&self, row: EndpointRow, audit: &NewAudit) -> Result<(), DbError> {
        let model: endpoint::ActiveModel = row.into();
        let txn = self.write.begin().await?;
        Endpoint::insert(model).exec_without_returning(&txn).await?;
        admin::write(&txn, audit).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Removes endpoint `id`; its deliveries still pending fail. Returns whether it was there
    /// (and only then records `audit`).
    pub async fn delete_endpoint(&self, id: Uuid, audit: &NewAudit) -> Result<bool, DbError> {
        let txn = self.write.begin().await?;
        let gone = remove_endpoints(&txn, endpoint::Column::Id.eq(id)).await?;
        if gone > 0 {
            admin::write(&txn, audit).await?;
        }
        txn.commit().await?;
        Ok(gone > 0)
    }

    /// Enables endpoint `id` again; returns it, or `None` when there is none (and only then
    /// is `audit` left out).
    pub async fn enable_endpoint(
        &self,
        id: Uuid,
        audit: &NewAudit,
    ) -> Result<Option<EndpointRow>, DbError> {
        let txn = self.write.begin().await?;
        let enabled = Endpoint::update_many()
            .col_expr(endpoint::Column::Enabled, Expr::value(true))
            .col_expr(
                endpoint::Column::DisabledAt,
                Expr::value(Option::<OffsetDateTime>::None),
            )
            .col_expr(
                endpoint::Column::DisabledReason,
                Expr::value(Option::<String>::None),
            )
            .filter(endpoint::Column::Id.eq(id))
            .exec(&txn)
            .await?;
        if enabled.rows_affected == 1 {
            admin::write(&txn, audit).await?;
        }
        txn.commit().await?;
        self.endpoint(id).await
    }

    /// Makes the `WEBHOOK_URL` endpoints exactly `urls`, each enabled (a start enables again
    /// one that a 410 disabled); those no longer listed are removed.
    pub async fn sync_config_endpoints(&self, urls: &[String]) -> Result<(), DbError> {
        let now = OffsetDateTime::now_utc();
        let ids: Vec<Uuid> = urls.iter().map(|url| config_endpoint_id(url)).collect();
        let txn = self.write.begin().await?;
        remove_endpoints(
            &txn,
            endpoint::Column::Source
                .eq(EndpointSource::Config)
                .and(endpoint::Column::Id.is_not_in(ids.iter().copied())),
        )
        .await?;
        for (url, id) in urls.iter().zip(ids) {
            let row = endpoint::ActiveModel {
                id: Set(id),
                url: Set(url.clone()),
                events: Set(None),
                secret: Set(None),
                source: Set(EndpointSource::Config),
                enabled: Set(true),
                disabled_at: Set(None),
                disabled_reason: Set(None),
                created_at: Set(now),
            };
            Endpoint::insert(row)
                .on_conflict(
                    sea_orm::sea_query::OnConflict::column(endpoint::Column::Id)
                        .update_columns([
                            endpoint::Column::Enabled,
                            endpoint::Column::DisabledAt,
                            endpoint::Column::DisabledReason,
                        ])
                        .to_owned(),
                )
                .exec_without_returning(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(())
    }
}

/// The ids of up to `limit` due deliveries whose endpoints are enabled and not in `busy`,
/// soonest first.
fn due_deliveries(
    now: OffsetDateTime,
    limit: u64,
    busy: &[Uuid],
) -> sea_orm::sea_query::SelectStatement {
    let enabled = Query::select()
        .column(endpoint::Column::Id)
        .from(Endpoint)
        .and_where(endpoint::Column::Enabled.eq(true))
        .to_owned();
    let mut due = lease::due::<Delivery>(now, limit);
    due.and_where(delivery::Column::EndpointId.in_subquery(enabled));
    if !busy.is_empty() {
        due.and_where(delivery::Column::EndpointId.is_not_in(busy.iter().copied()));
    }
    due
}

/// An update of a delivery whose attempt ended: its new state, the attempt counted, the
/// answer kept, when it is due next, and its lease let go.
fn attempt_recorded(
    state: DeliveryState,
    status: Option<i32>,
    error: Option<String>,
    next: OffsetDateTime,
    now: OffsetDateTime,
) -> sea_orm::UpdateMany<Delivery> {
    lease::released(Delivery::update_many())
        .col_expr(delivery::Column::State, Expr::value(state))
        .col_expr(
            delivery::Column::Attempts,
            Expr::col(delivery::Column::Attempts).add(1),
        )
        .col_expr(delivery::Column::LastStatus, Expr::value(status))
        .col_expr(delivery::Column::LastError, Expr::value(error))
        .col_expr(delivery::Column::NextAttemptAt, Expr::value(next))
        .col_expr(delivery::Column::UpdatedAt, Expr::value(now))
}

/// Deletes the endpoints `which` selects and fails their pending deliveries.
async fn remove_endpoints<C: ConnectionTrait>(
    txn: &C,
    which: sea_orm::sea_query::SimpleExpr,
) -> Result<u64, DbErr> {
    // Locked first, so a state change recording deliveries to these endpoints has
    // committed (and its deliveries are failed below) or waits and no longer sees them.
    let ids: Vec<Uuid> = Endpoint::find()
        .filter(which)
        .lock_exclusive()
        .all(txn)
        .await?
        .into_iter()
        .map(|e| e.id)
        .collect();
    if ids.is_empty() {
        return Ok(0);
    }
    let now = OffsetDateTime::now_utc();
    lease::released(Delivery::update_many())
        .col_expr(delivery::Column::State, Expr::value(DeliveryState::Failed))
        .col_expr(
            delivery::Column::LastError,
            Expr::value(Some(ENDPOINT_REMOVED.to_owned())),
        )
        .col_expr(delivery::Column::UpdatedAt, Expr::value(now))
        .filter(delivery::Column::EndpointId.is_in(ids.iter().copied()))
        .filter(delivery::Column::State.eq(DeliveryState::Pending))
        .exec(txn)
        .await?;
    let result = Endpoint::delete_many()
        .filter(endpoint::Column::Id.is_in(ids))
        .exec(txn)
        .await?;
    Ok(result.rows_affected)
}

#[cfg(test)]
mod tests {
    use sea_orm::sea_query::{PostgresQueryBuilder, SqliteQueryBuilder};

    use super::*;

    #[test]
    fn a_claim_skips_locked_rows_on_postgres_and_is_one_statement_on_sqlite() {
        let due = due_deliveries(OffsetDateTime::UNIX_EPOCH, 8, &[Uuid::nil()]);
        let postgres = due.to_string(PostgresQueryBuilder);
        assert!(postgres.ends_with("FOR UPDATE SKIP LOCKED"), "{postgres}");
        assert!(
            postgres.contains("\"locked_until\" IS NULL OR"),
            "{postgres}"
        );
        assert!(postgres.contains("NOT IN"), "{postgres}");
        let sqlite = due.to_string(SqliteQueryBuilder);
        assert!(!sqlite.contains("FOR UPDATE"), "{sqlite}");
        // The endpoints a change reads are share-locked on Postgres only.
        let read = Endpoint::find().lock_shared();
        let on = |backend| sea_orm::QueryTrait::build(&read, backend).to_string();
        assert!(on(sea_orm::DbBackend::Postgres).ends_with("FOR SHARE"));
        assert!(!on(sea_orm::DbBackend::Sqlite).contains("FOR"));
    }
}
