//! Where events are sent: `WEBHOOK_URL`'s endpoints and those registered through the API.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "webhook_endpoints")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub url: String,
    /// Comma-separated event types it receives; `None`: every one.
    pub events: Option<String>,
    /// A registered endpoint's own `whsec_` secret; `None` for `WEBHOOK_URL`'s, which are
    /// signed with `WEBHOOK_SECRET`.
    pub secret: Option<String>,
    pub source: EndpointSource,
    /// Cleared by a 410 answer; its deliveries wait until it is enabled again.
    pub enabled: bool,
    pub disabled_at: Option<TimeDateTimeWithTimeZone>,
    pub disabled_reason: Option<String>,
    pub created_at: TimeDateTimeWithTimeZone,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// Where an endpoint comes from.
#[derive(
    Copy, Clone, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "Text")]
#[serde(rename_all = "lowercase")]
pub enum EndpointSource {
    /// `WEBHOOK_URL`: trusted as the operator's, enabled again at every start.
    #[sea_orm(string_value = "config")]
    Config,
    /// `POST /api/v1/webhooks`.
    #[sea_orm(string_value = "api")]
    Api,
}
