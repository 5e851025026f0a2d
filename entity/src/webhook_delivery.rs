//! One event on its way to one endpoint.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "webhook_deliveries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub upload_id: Uuid,
    pub endpoint_id: Uuid,
    /// The endpoint's URL when the event was recorded, for the delivery log.
    pub endpoint_url: String,
    pub state: DeliveryState,
    /// Attempts finished so far.
    pub attempts: i32,
    pub last_status: Option<i32>,
    /// A short reason, never a secret or a signature.
    pub last_error: Option<String>,
    pub next_attempt_at: TimeDateTimeWithTimeZone,
    /// While a dispatcher holds it: until when. A lease a crash leaves simply runs out.
    pub locked_until: Option<TimeDateTimeWithTimeZone>,
    /// The holder's claim, so only the holder records the outcome.
    pub lease: Option<Uuid>,
    pub created_at: TimeDateTimeWithTimeZone,
    pub updated_at: TimeDateTimeWithTimeZone,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

#[derive(
    Copy, Clone, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "Text")]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Not yet delivered; attempted when `next_attempt_at` comes.
    #[sea_orm(string_value = "pending")]
    Pending,
    /// An attempt got a 2xx.
    #[sea_orm(string_value = "succeeded")]
    Succeeded,
    /// Every attempt of the schedule failed, or the endpoint answered 410 or is gone.
    #[sea_orm(string_value = "failed")]
    Failed,
}
