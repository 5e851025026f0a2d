//! A failure as a client sees it: one status, one stable code, one message, and when to
//! retry. Every refusal becomes one of these (the lifecycle's errors in
//! `uploads::UploadError::problem`, the middleware's refusals where they happen), and the
//! API draws it in the v1 shape or the seed's (`api::error`).

/// Seconds a client should wait before retrying a 503 (or a 429 with no better estimate).
pub const RETRY_AFTER_SECS: u32 = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The HTTP status of the v1 API; the legacy renderer narrows it to what the seed sent.
    pub status: u16,
    /// Stable and machine-readable: `invalid_image_id`, `not_found`, `storage_unavailable`...
    pub code: String,
    /// For people; never internals.
    pub message: String,
    /// The seed's own words for this failure, where they differ from `message`.
    pub legacy_message: Option<String>,
    /// Seconds to wait before retrying (429 and 503).
    pub retry_after: Option<u32>,
    /// For `incomplete_upload`: the parts still missing.
    pub missing_parts: Option<Vec<i32>>,
    /// For `too_large`: the largest size accepted, in bytes.
    pub limit: Option<u64>,
}

impl Problem {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.into(),
            legacy_message: None,
            retry_after: None,
            missing_parts: None,
            limit: None,
        }
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(400, code, message)
    }

    /// A 503 to retry after `RETRY_AFTER_SECS`.
    pub fn unavailable(code: &str, message: impl Into<String>) -> Self {
        Self::new(503, code, message).retry_after(RETRY_AFTER_SECS)
    }

    pub fn internal() -> Self {
        Self::new(500, "internal", "internal error")
    }

    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// What the seed said for this failure.
    pub fn legacy(mut self, message: impl Into<String>) -> Self {
        self.legacy_message = Some(message.into());
        self
    }
}
