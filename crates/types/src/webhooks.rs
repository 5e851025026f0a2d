//! The webhooks API's requests and answers.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// An endpoint to register.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(poem_openapi::Object),
    oai(deny_unknown_fields)
)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookRequest {
    /// Where events are POSTed: `http://` or `https://`, on a public address.
    pub url: String,
    /// The event types it receives; every type when not given.
    #[cfg_attr(feature = "openapi", oai(nullable, skip_serializing_if_is_none))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
}

/// A registered endpoint, with its signing secret: shown this once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct CreatedWebhook {
    pub id: Uuid,
    pub url: String,
    /// The event types it receives.
    pub events: Vec<String>,
    /// `whsec_` + base64: verify each request's `webhook-signature` with it.
    pub secret: String,
}

/// An endpoint events are sent to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct Webhook {
    pub id: Uuid,
    pub url: String,
    pub events: Vec<String>,
    /// `config` (`WEBHOOK_URL`) or `api` (registered).
    pub source: String,
    /// False after the endpoint answered 410 Gone: its deliveries wait until it is enabled.
    pub enabled: bool,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub disabled_at: Option<OffsetDateTime>,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub disabled_reason: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Every endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct WebhookList {
    pub webhooks: Vec<Webhook>,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(poem_openapi::Enum),
    oai(rename_all = "lowercase")
)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Waiting for its next attempt.
    Pending,
    /// An attempt got a 2xx answer.
    Succeeded,
    /// Its retries ran out, or its endpoint answered 410 or was removed.
    Failed,
}

/// One event on its way to one endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct Delivery {
    pub id: Uuid,
    /// The `webhook-id` every attempt carries.
    pub event_id: Uuid,
    pub event_type: String,
    /// The endpoint's URL.
    pub endpoint: String,
    pub upload_id: Uuid,
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempts: i32,
    /// The HTTP status of the last attempt (null: none yet, or no answer).
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub last_status: Option<i32>,
    /// Why the last attempt failed, in short.
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub last_error: Option<String>,
    /// When it is attempted next (null once it succeeded or failed).
    #[cfg_attr(feature = "openapi", oai(nullable))]
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub next_attempt_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// One page of the delivery log, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct DeliveryList {
    pub deliveries: Vec<Delivery>,
    /// Pass as `cursor` for the next page; null on the last page.
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub next_cursor: Option<String>,
}
