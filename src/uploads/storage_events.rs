//! Uploads completed by the store's word: S3 event notifications (`s3:ObjectCreated:*`,
//! pushed to `POST /api/v1/storage-events` by stores that send webhooks, or relays) name
//! the keys written, and each pending upload they name is confirmed as its client would
//! have, through the same confirm. Repeats, unknown keys and other events change nothing.

use serde_json::Value;

use super::{KEY_PREFIX, STAGING_PREFIX, UploadError, UploadService, UploadState};

/// What one notification did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageEventReport {
    /// Records in it.
    pub received: usize,
    /// Uploads it completed.
    pub completed: usize,
    /// Uploads verification refused (their objects deleted).
    pub failed: usize,
    /// Records that named no pending upload, or were not object creations.
    pub ignored: usize,
}

/// The key a record names, URL-decoded as S3 encodes it (`+` for a space).
fn record_key(record: &Value) -> Option<String> {
    let created = record
        .get("eventName")
        .and_then(Value::as_str)
        .is_some_and(|name| name.trim_start_matches("s3:").starts_with("ObjectCreated:"));
    let raw = record.pointer("/s3/object/key").and_then(Value::as_str)?;
    created.then(|| {
        form_urlencoded::parse(format!("k={raw}").as_bytes())
            .next()
            .map(|(_, key)| key.into_owned())
            .unwrap_or_default()
    })
}

/// The key an upload's object is served at, for a key a PUT may write (a staged one too).
fn object_key(key: &str) -> Option<String> {
    match key.strip_prefix(STAGING_PREFIX) {
        Some(rest) => Some(format!("{KEY_PREFIX}{rest}")),
        None => key.starts_with(KEY_PREFIX).then(|| key.to_owned()),
    }
}

/// What an object that landed did to its upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Landed {
    Completed,
    Failed,
    /// It named no pending upload (a repeat, a key of no upload, an object since removed).
    Ignored,
}

/// Objects the embedded store reports landed that are confirmed at once.
const AUTO_CONFIRMS: usize = 16;

impl UploadService {
    /// Confirms the pending upload whose object (or staged object) `key` is, as its client
    /// would have: the same confirm, so whoever confirms first wins and the others get the
    /// same record.
    pub async fn object_landed(&self, key: &str) -> Result<Landed, UploadError> {
        let Some(key) = object_key(key) else {
            return Ok(Landed::Ignored);
        };
        let Some(row) = self.db.find_by_key(&key).await? else {
            return Ok(Landed::Ignored);
        };
        if row.state != UploadState::Pending {
            return Ok(Landed::Ignored);
        }
        match self.confirm(row.id).await {
            Ok(upload) if upload.state == UploadState::Completed => Ok(Landed::Completed),
            Ok(_) | Err(UploadError::NotUploaded | UploadError::Gone(_)) => Ok(Landed::Ignored),
            Err(UploadError::Rejected(_)) => Ok(Landed::Failed),
            Err(err) => Err(err),
        }
    }

    /// Confirms each pending upload an S3 event notification names. A failure to reach
    /// the database or the store is an error (the sender tries again); everything else
    /// is counted in the report.
    pub async fn storage_events(&self, body: &Value) -> Result<StorageEventReport, UploadError> {
        let mut report = StorageEventReport::default();
        // The test message S3 sends when a notification is configured.
        if body.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
            return Ok(report);
        }
        let records = body
            .get("Records")
            .and_then(Value::as_array)
            .ok_or(UploadError::InvalidEvent)?;
        for record in records {
            report.received += 1;
            let landed = match record_key(record) {
                Some(key) => self.object_landed(&key).await?,
                None => Landed::Ignored,
            };
            match landed {
                Landed::Completed => report.completed += 1,
                Landed::Failed => report.failed += 1,
                Landed::Ignored => report.ignored += 1,
            }
        }
        Ok(report)
    }
}

/// Confirms each single PUT the embedded store reports as soon as it lands (`AUTO_CONFIRM`),
/// at most `AUTO_CONFIRMS` at once, until `shutdown`. What cannot be confirmed now (storage
/// or the database busy) is left to the client's confirm or the sweeper.
pub fn spawn_auto_confirm(
    uploads: UploadService,
    mut landed: tokio::sync::mpsc::UnboundedReceiver<String>,
    mut shutdown: crate::shutdown::Shutdown,
) {
    tokio::spawn(async move {
        let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(AUTO_CONFIRMS));
        loop {
            let key = tokio::select! {
                key = landed.recv() => match key {
                    Some(key) => key,
                    None => return,
                },
                () = shutdown.wait() => return,
            };
            let Ok(slot) = std::sync::Arc::clone(&slots).acquire_owned().await else {
                return;
            };
            let uploads = uploads.clone();
            tokio::spawn(async move {
                if let Err(err) = uploads.object_landed(&key).await {
                    tracing::warn!(key, error = %err, "cannot confirm an object that landed");
                }
                drop(slot);
            });
        }
    });
}

/// A message's notification: the S3 event JSON itself, or inside an SNS envelope (a bucket
/// that notifies a topic the queue subscribes to).
fn notification_of(body: &str) -> Option<Value> {
    let value: Value = serde_json::from_str(body).ok()?;
    if value.get("Type").and_then(Value::as_str) == Some("Notification") {
        return serde_json::from_str(value.get("Message")?.as_str()?).ok();
    }
    Some(value)
}

/// Long-polls `queue` for the bucket's event notifications until `shutdown`, confirming
/// each upload they name. A message is deleted once it is handled, or when it is no
/// notification at all (logged); one that could not be handled (the database or the
/// store unavailable) stays, for SQS to deliver again.
pub fn spawn_queue_poller(
    uploads: UploadService,
    queue: crate::storage::EventQueue,
    mut shutdown: crate::shutdown::Shutdown,
) {
    tokio::spawn(async move {
        let mut failures: u32 = 0;
        loop {
            let received = tokio::select! {
                received = queue.receive() => received,
                () = shutdown.wait() => return,
            };
            let messages = match received {
                Ok(messages) => {
                    failures = 0;
                    messages
                }
                Err(err) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %err, "cannot receive from the storage events queue");
                    let wait = std::time::Duration::from_secs(u64::from(failures.min(30)));
                    tokio::select! {
                        () = tokio::time::sleep(wait) => continue,
                        () = shutdown.wait() => return,
                    }
                }
            };
            for message in messages {
                let handled = match notification_of(&message.body) {
                    None => {
                        tracing::warn!(
                            "a storage events message that is no notification was removed"
                        );
                        true
                    }
                    Some(notification) => match uploads.storage_events(&notification).await {
                        Ok(report) => {
                            tracing::debug!(
                                completed = report.completed,
                                ignored = report.ignored,
                                "storage events handled"
                            );
                            true
                        }
                        Err(UploadError::InvalidEvent) => {
                            tracing::warn!("a storage events message without Records was removed");
                            true
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "a storage events message is left for SQS to deliver again");
                            false
                        }
                    },
                };
                if handled && let Err(err) = queue.delete(&message.receipt).await {
                    tracing::warn!(error = %err, "cannot delete a handled storage events message");
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn keys_are_read_as_s3_encodes_them() {
        let record =
            |name: &str, key: &str| json!({"eventName": name, "s3": {"object": {"key": key}}});
        assert_eq!(
            record_key(&record("ObjectCreated:Put", "uploads/user%5F1/a+b.png")),
            Some("uploads/user_1/a b.png".to_owned())
        );
        assert_eq!(
            record_key(&record(
                "s3:ObjectCreated:CompleteMultipartUpload",
                "uploads/x/y.png"
            )),
            Some("uploads/x/y.png".to_owned())
        );
        assert_eq!(
            record_key(&record("ObjectRemoved:Delete", "uploads/x/y.png")),
            None
        );
        assert_eq!(record_key(&json!({"eventName": "ObjectCreated:Put"})), None);
        assert_eq!(
            object_key("staging/x/y.png").as_deref(),
            Some("uploads/x/y.png")
        );
        assert_eq!(
            object_key("uploads/x/y.png").as_deref(),
            Some("uploads/x/y.png")
        );
        assert_eq!(object_key("variants/x/y/thumb.webp"), None);
    }
}
