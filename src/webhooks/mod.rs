//! Webhooks: every event the outbox records (`db::webhooks`, written in the state change's
//! transaction) is POSTed to every endpoint that takes its type, signed the Standard
//! Webhooks way (`signature`), at least once, across restarts and replicas (`dispatch`).
//! Endpoints come from `WEBHOOK_URL` and from the management API (`WebhookService`), whose
//! URLs must be public (`target`). What an attempt's answer means is decided by the pure
//! `schedule::outcome`.

pub mod dispatch;
pub mod schedule;
pub mod signature;
pub mod target;

use std::sync::Arc;

use time::OffsetDateTime;
use upload_broker_types as types;
use uuid::Uuid;

use crate::auth::Operator;
use crate::config::Config;
use crate::db::admin::NewAudit;
use crate::db::webhooks::{DeliveryFilter, DeliveryRow, EndpointRow};
use crate::db::{Db, DbError};
use crate::events::EventType;
use crate::problem::Problem;
use entity::{DeliveryState, EndpointSource};
use signature::SigningKey;
use target::TargetError;

pub use dispatch::spawn_dispatcher;

/// Most deliveries one page of the log holds.
pub const MAX_PAGE: u64 = 200;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("unknown event type {0:?}; the types are {types}", types = event_names())]
    UnknownEvent(String),
    #[error("no webhook endpoint has this id")]
    NoEndpoint,
    #[error("no webhook delivery has this id")]
    NoDelivery,
    #[error("this endpoint comes from WEBHOOK_URL; change that variable to remove it")]
    Configured,
    #[error("{0}")]
    InvalidInput(&'static str),
    #[error("cursor is not one this API gave")]
    InvalidCursor,
    #[error("cannot make a signing secret: {0}")]
    Random(std::io::Error),
    #[error(transparent)]
    Db(#[from] DbError),
}

fn event_names() -> String {
    EventType::ALL.map(EventType::as_str).join(", ")
}

impl WebhookError {
    pub fn problem(&self) -> Problem {
        let message = self.to_string();
        match self {
            WebhookError::Target(TargetError::NotHttp) => {
                Problem::bad_request("invalid_webhook_url", message)
            }
            WebhookError::Target(TargetError::Private | TargetError::Unresolvable) => {
                Problem::bad_request("forbidden_webhook_url", message)
            }
            WebhookError::UnknownEvent(_) => Problem::bad_request("unknown_event_type", message),
            WebhookError::InvalidInput(_) => Problem::bad_request("invalid_request", message),
            WebhookError::InvalidCursor => Problem::bad_request("invalid_cursor", message),
            WebhookError::NoEndpoint | WebhookError::NoDelivery => {
                Problem::new(404, "not_found", message)
            }
            WebhookError::Configured => Problem::new(409, "configured_endpoint", message),
            WebhookError::Random(err) => {
                tracing::error!(error = %err, "cannot make a webhook secret");
                Problem::internal()
            }
            WebhookError::Db(err) => err.problem(),
        }
    }
}

/// The webhooks API's logic: endpoints, the delivery log, and replays.
#[derive(Debug, Clone)]
pub struct WebhookService {
    db: Db,
    config: Arc<Config>,
}

impl WebhookService {
    pub fn new(db: Db, config: Arc<Config>) -> Self {
        Self { db, config }
    }

    /// Registers an endpoint; its secret is returned this once.
    pub async fn register(
        &self,
        operator: &Operator,
        url: &str,
        events: Option<Vec<String>>,
    ) -> Result<types::CreatedWebhook, WebhookError> {
        let parsed = target::parse(url.trim())?;
        let events = match events {
            None => None,
            Some(names) if names.is_empty() => {
                return Err(WebhookError::InvalidInput(
                    "events must name at least one event type, or be left out for all",
                ));
            }
            Some(names) => {
                let mut types = Vec::with_capacity(names.len());
                for name in names {
                    let event = EventType::parse(name.trim())
                        .ok_or_else(|| WebhookError::UnknownEvent(name.clone()))?;
                    if !types.contains(&event) {
                        types.push(event);
                    }
                }
                Some(
                    types
                        .iter()
                        .map(|t| t.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                )
            }
        };
        // Resolved last, once the input is known to be well-formed.
        if !self.config.webhooks.allow_private {
            target::check_public(&parsed).await?;
        }
        let (_, secret) = SigningKey::generate().map_err(WebhookError::Random)?;
        let row = EndpointRow {
            id: Uuid::now_v7(),
            url: parsed.to_string(),
            events,
            secret: Some(secret.clone()),
            source: EndpointSource::Api,
            enabled: true,
            disabled_at: None,
            disabled_reason: None,
            created_at: OffsetDateTime::now_utc(),
        };
        let audit = NewAudit::new(&operator.fingerprint, "register_webhook", row.id);
        self.db.insert_endpoint(row.clone(), &audit).await?;
        tracing::info!(webhook_id = %row.id, "webhook endpoint registered");
        let endpoint = endpoint_body(row);
        Ok(types::CreatedWebhook {
            id: endpoint.id,
            url: endpoint.url,
            events: endpoint.events,
            secret,
        })
    }

    pub async fn list(&self) -> Result<types::WebhookList, WebhookError> {
        let webhooks = self
            .db
            .endpoints()
            .await?
            .into_iter()
            .map(endpoint_body)
            .collect();
        Ok(types::WebhookList { webhooks })
    }

    /// Removes a registered endpoint; its pending deliveries fail.
    pub async fn remove(&self, operator: &Operator, id: Uuid) -> Result<(), WebhookError> {
        let endpoint = self
            .db
            .endpoint(id)
            .await?
            .ok_or(WebhookError::NoEndpoint)?;
        if endpoint.source == EndpointSource::Config {
            return Err(WebhookError::Configured);
        }
        let audit = NewAudit::new(&operator.fingerprint, "remove_webhook", id);
        self.db.delete_endpoint(id, &audit).await?;
        tracing::info!(webhook_id = %id, "webhook endpoint removed");
        Ok(())
    }

    /// Enables an endpoint a 410 disabled: its waiting deliveries go out again.
    pub async fn enable(
        &self,
        operator: &Operator,
        id: Uuid,
    ) -> Result<types::Webhook, WebhookError> {
        let audit = NewAudit::new(&operator.fingerprint, "enable_webhook", id);
        let endpoint = self
            .db
            .enable_endpoint(id, &audit)
            .await?
            .ok_or(WebhookError::NoEndpoint)?;
        tracing::info!(webhook_id = %id, "webhook endpoint enabled");
        self.db.recorded().notify_one();
        Ok(endpoint_body(endpoint))
    }

    /// The delivery log, newest first.
    pub async fn deliveries(
        &self,
        state: Option<types::DeliveryState>,
        upload_id: Option<Uuid>,
        cursor: Option<&str>,
        limit: u64,
    ) -> Result<types::DeliveryList, WebhookError> {
        let before = cursor
            .map(|c| {
                Uuid::parse_str(c)
                    .map_err(|_| WebhookError::InvalidInput("cursor is not one this API gave"))
            })
            .transpose()?;
        let filter = DeliveryFilter {
            state: state.map(|s| match s {
                types::DeliveryState::Pending => DeliveryState::Pending,
                types::DeliveryState::Succeeded => DeliveryState::Succeeded,
                types::DeliveryState::Failed => DeliveryState::Failed,
            }),
            upload_id,
            before,
        };
        let mut rows = self.db.deliveries(&filter, limit + 1).await?;
        let next_cursor = if rows.len() as u64 > limit {
            rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            rows.last().map(|row| row.id.to_string())
        } else {
            None
        };
        Ok(types::DeliveryList {
            deliveries: rows.into_iter().map(delivery_body).collect(),
            next_cursor,
        })
    }

    /// Attempts delivery `id` again now, with the same `webhook-id`.
    pub async fn retry(&self, operator: &Operator, id: Uuid) -> Result<(), WebhookError> {
        let audit = NewAudit::new(&operator.fingerprint, "replay_delivery", id);
        if !self.db.retry_delivery(id, &audit).await? {
            return Err(WebhookError::NoDelivery);
        }
        tracing::info!(delivery_id = %id, "webhook delivery replayed");
        Ok(())
    }
}

fn endpoint_body(row: EndpointRow) -> types::Webhook {
    let events = match &row.events {
        Some(list) => list.split(',').map(str::to_owned).collect(),
        None => EventType::ALL.map(|t| t.as_str().to_owned()).to_vec(),
    };
    types::Webhook {
        id: row.id,
        url: row.url,
        events,
        source: match row.source {
            EndpointSource::Config => "config",
            EndpointSource::Api => "api",
        }
        .to_owned(),
        enabled: row.enabled,
        disabled_at: row.disabled_at,
        disabled_reason: row.disabled_reason,
        created_at: row.created_at,
    }
}

fn delivery_body(row: DeliveryRow) -> types::Delivery {
    types::Delivery {
        id: row.id,
        event_id: row.event_id,
        event_type: row.event_type,
        endpoint: row.endpoint_url,
        upload_id: row.upload_id,
        state: match row.state {
            DeliveryState::Pending => types::DeliveryState::Pending,
            DeliveryState::Succeeded => types::DeliveryState::Succeeded,
            DeliveryState::Failed => types::DeliveryState::Failed,
        },
        attempts: row.attempts,
        last_status: row.last_status,
        last_error: row.last_error,
        next_attempt_at: (row.state == DeliveryState::Pending).then_some(row.next_attempt_at),
        created_at: row.created_at,
    }
}
