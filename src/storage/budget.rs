//! `S3_OPERATION_TIMEOUT` as a budget for one request: every call that waits on the store
//! for an answer (head, ranged reads, copies, deletes, multipart bookkeeping, listings)
//! spends from it, so however many such calls a request makes, it waits on storage that
//! long at most, retries included, before it answers 503. Outside a request (the sweeper),
//! each call gets the whole timeout.

use std::cell::Cell;
use std::time::{Duration, Instant};

use super::{Storage, StorageError};

tokio::task_local! {
    static LEFT: Cell<Duration>;
}

/// Runs `work` (one request) with `budget` of storage waiting.
pub async fn with_budget<F: Future>(budget: Duration, work: F) -> F::Output {
    LEFT.scope(Cell::new(budget), work).await
}

impl Storage {
    /// Runs one storage call within what is left of the request's budget.
    pub(super) async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        let left = LEFT.try_with(Cell::get).unwrap_or(self.operation_timeout);
        let started = Instant::now();
        let answer = tokio::time::timeout(left, call).await;
        let _ = LEFT.try_with(|left| left.set(left.get().saturating_sub(started.elapsed())));
        answer.unwrap_or_else(|_| {
            Err(StorageError::Unavailable(format!(
                "no answer within S3_OPERATION_TIMEOUT ({} s)",
                self.operation_timeout.as_secs()
            )))
        })
    }
}
