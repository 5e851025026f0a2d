//! `/api/v1/webhooks`: the endpoints events are sent to, the delivery log, and replays.
//! Every operation needs an admin key (`ADMIN_KEYS`), checked by `auth::authenticate`
//! before anything else.

use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};
use uuid::Uuid;

use poem::web::Data;

use super::{AdminKey, ApiError, ApiTags};
use crate::auth::Operator;
use crate::problem::Problem;
use crate::webhooks::{MAX_PAGE, WebhookError, WebhookService};

pub use upload_broker_types::{
    CreateWebhookRequest, CreatedWebhook, DeliveryList, DeliveryState, Webhook, WebhookList,
};

/// Deliveries a page holds unless `limit` says otherwise.
const DEFAULT_PAGE: u64 = 50;

pub struct WebhooksApi {
    webhooks: WebhookService,
}

impl WebhooksApi {
    pub fn new(webhooks: WebhookService) -> Self {
        Self { webhooks }
    }
}

impl From<WebhookError> for ApiError {
    fn from(err: WebhookError) -> Self {
        err.problem().into()
    }
}

fn parse_id(raw: &str, what: &'static str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| {
        Problem::bad_request(
            what,
            format!("{} must be a UUID", what.trim_start_matches("invalid_")),
        )
        .into()
    })
}

#[derive(ApiResponse)]
enum CreatedResponse {
    /// The endpoint, with its signing secret (shown only this once).
    #[oai(status = 201)]
    Created(Json<CreatedWebhook>),
}

#[derive(ApiResponse)]
enum ListResponse {
    /// Every endpoint: `WEBHOOK_URL`'s and the registered ones.
    #[oai(status = 200)]
    Ok(Json<WebhookList>),
}

#[derive(ApiResponse)]
enum EndpointResponse {
    /// The endpoint, enabled.
    #[oai(status = 200)]
    Ok(Json<Webhook>),
}

#[derive(ApiResponse)]
enum RemovedResponse {
    /// Removed; its deliveries still pending are marked failed.
    #[oai(status = 204)]
    Removed,
}

#[derive(ApiResponse)]
enum DeliveriesResponse {
    /// One page of the delivery log, newest first.
    #[oai(status = 200)]
    Ok(Json<DeliveryList>),
}

#[derive(ApiResponse)]
enum RetryResponse {
    /// The delivery is due now; it is attempted again with the same `webhook-id`.
    #[oai(status = 202)]
    Accepted,
}

#[OpenApi(tag = "ApiTags::Webhooks")]
impl WebhooksApi {
    /// Register a webhook endpoint
    ///
    /// Events (all types, or those listed in `events`) are POSTed to `url`, signed with the
    /// returned `secret` per the Standard Webhooks specification. The URL's host must
    /// resolve to public addresses only (unless `WEBHOOK_ALLOW_PRIVATE=true`).
    #[oai(
        path = "/api/v1/webhooks",
        method = "post",
        operation_id = "create_webhook"
    )]
    async fn create_webhook(
        &self,
        _auth: AdminKey,
        operator: Data<&Operator>,
        body: Json<CreateWebhookRequest>,
    ) -> Result<CreatedResponse, ApiError> {
        let body = body.0;
        let created = self
            .webhooks
            .register(&operator, &body.url, body.events)
            .await?;
        Ok(CreatedResponse::Created(Json(created)))
    }

    /// List webhook endpoints
    #[oai(
        path = "/api/v1/webhooks",
        method = "get",
        operation_id = "list_webhooks"
    )]
    async fn list_webhooks(&self, _auth: AdminKey) -> Result<ListResponse, ApiError> {
        Ok(ListResponse::Ok(Json(self.webhooks.list().await?)))
    }

    /// Remove a registered webhook endpoint
    ///
    /// `WEBHOOK_URL`'s endpoints are removed by changing that variable (409).
    #[oai(
        path = "/api/v1/webhooks/:webhook_id",
        method = "delete",
        operation_id = "delete_webhook"
    )]
    async fn delete_webhook(
        &self,
        _auth: AdminKey,
        operator: Data<&Operator>,
        webhook_id: Path<String>,
    ) -> Result<RemovedResponse, ApiError> {
        let id = parse_id(&webhook_id, "invalid_webhook_id")?;
        self.webhooks.remove(&operator, id).await?;
        Ok(RemovedResponse::Removed)
    }

    /// Enable a webhook endpoint again
    ///
    /// After it answered 410 Gone. Its deliveries that waited are attempted again.
    #[oai(
        path = "/api/v1/webhooks/:webhook_id/enable",
        method = "post",
        operation_id = "enable_webhook"
    )]
    async fn enable_webhook(
        &self,
        _auth: AdminKey,
        operator: Data<&Operator>,
        webhook_id: Path<String>,
    ) -> Result<EndpointResponse, ApiError> {
        let id = parse_id(&webhook_id, "invalid_webhook_id")?;
        Ok(EndpointResponse::Ok(Json(
            self.webhooks.enable(&operator, id).await?,
        )))
    }

    /// The webhook delivery log
    ///
    /// One delivery per event and endpoint, newest first, with its attempts so far and the
    /// last one's status and error.
    #[oai(
        path = "/api/v1/webhooks/deliveries",
        method = "get",
        operation_id = "list_deliveries"
    )]
    async fn list_deliveries(
        &self,
        _auth: AdminKey,
        /// Only deliveries in this state.
        state: Query<Option<DeliveryState>>,
        /// Only deliveries of this upload's events.
        upload_id: Query<Option<String>>,
        /// The `next_cursor` of the page before.
        cursor: Query<Option<String>>,
        /// Deliveries per page, 1 to 200 (50 when not given).
        limit: Query<Option<u64>>,
    ) -> Result<DeliveriesResponse, ApiError> {
        let upload_id = upload_id
            .0
            .as_deref()
            .map(|raw| parse_id(raw, "invalid_upload_id"))
            .transpose()?;
        let limit = limit.0.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(
                Problem::bad_request("invalid_limit", "limit must be between 1 and 200").into(),
            );
        }
        let page = self
            .webhooks
            .deliveries(state.0, upload_id, cursor.0.as_deref(), limit)
            .await?;
        Ok(DeliveriesResponse::Ok(Json(page)))
    }

    /// Replay a webhook delivery
    ///
    /// Attempts it again now, whatever its state, with the same `webhook-id` (so a receiver
    /// that already has it can tell) and a fresh `webhook-timestamp` and signature.
    #[oai(
        path = "/api/v1/webhooks/deliveries/:delivery_id/retry",
        method = "post",
        operation_id = "retry_delivery"
    )]
    async fn retry_delivery(
        &self,
        _auth: AdminKey,
        operator: Data<&Operator>,
        delivery_id: Path<String>,
    ) -> Result<RetryResponse, ApiError> {
        let id = parse_id(&delivery_id, "invalid_delivery_id")?;
        self.webhooks.retry(&operator, id).await?;
        Ok(RetryResponse::Accepted)
    }
}
