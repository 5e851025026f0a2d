//! The operators' API: searches over every state, stats, re-verification and the audit log.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::Upload;

/// One page of a search, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct AdminUploadList {
    pub uploads: Vec<Upload>,
    /// Pass as `cursor` for the next page; null on the last page.
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub next_cursor: Option<String>,
}

/// How many uploads a state holds, and their bytes (the file's size once known, the
/// declared size before).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct StateStats {
    pub count: i64,
    pub bytes: i64,
}

/// Completions and failures in the current hour and the 23 before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct LastDay {
    pub completed: i64,
    pub failed: i64,
    /// Bytes completed.
    pub bytes: i64,
}

/// Every state's uploads and bytes, and the last 24 hours.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct AdminStats {
    /// By state: `pending`, `completed`, `failed`, `expired`, `aborted`, `deleted`.
    pub states: BTreeMap<String, StateStats>,
    pub last_24h: LastDay,
}

/// What checking the stored object again found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct ReverifyResult {
    pub ok: bool,
    /// Why it would be refused now (the codes confirm answers with), or `not_uploaded`
    /// when no object is stored; null when it passes.
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub code: Option<String>,
}

/// The upload's record, with the result of checking its object again.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct ReverifiedUpload {
    #[cfg_attr(feature = "openapi", oai(flatten))]
    #[serde(flatten)]
    pub upload: Upload,
    pub reverify: ReverifyResult,
}

/// One operator action.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct AuditEntry {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// A fingerprint of the admin key (`key-` and 12 hex digits), never the key.
    pub actor: String,
    /// `reverify`, `delete`, `regenerate_variants`, `replay_delivery`, `register_webhook`,
    /// `remove_webhook` or `enable_webhook`.
    pub action: String,
    /// The upload, delivery or endpoint id acted on.
    pub target: String,
}

/// One page of the audit log, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct AuditList {
    pub entries: Vec<AuditEntry>,
    #[cfg_attr(feature = "openapi", oai(nullable))]
    pub next_cursor: Option<String>,
}
