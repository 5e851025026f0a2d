//! Objects that are no longer needed but need not go at once: a confirmed upload's staged
//! copy. They are removed in batches, one DeleteObjects per up to a thousand keys, off the
//! path of the request that let them go. A key a crash or a failed batch leaves behind is
//! the sweeper's, like any other leftover.

use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use tokio::sync::mpsc;

use super::error::classify;

/// Most keys one DeleteObjects takes.
const BATCH_MAX: usize = 1000;
/// How long a batch waits for company after its first key.
const GATHER: Duration = Duration::from_millis(100);

/// Starts the remover; keys sent to the returned sender are deleted in batches.
pub(super) fn start(client: Client, bucket: String) -> mpsc::UnboundedSender<String> {
    let (keys, mut queue) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(BATCH_MAX);
        while queue.recv_many(&mut batch, BATCH_MAX).await > 0 {
            tokio::time::sleep(GATHER).await;
            // What arrived meanwhile, without waiting for more.
            while batch.len() < BATCH_MAX {
                match queue.try_recv() {
                    Ok(key) => batch.push(key),
                    Err(_) => break,
                }
            }
            remove(&client, &bucket, &batch).await;
            batch.clear();
        }
    });
    keys
}

async fn remove(client: &Client, bucket: &str, keys: &[String]) {
    let objects: Result<Vec<ObjectIdentifier>, _> = keys
        .iter()
        .map(|key| ObjectIdentifier::builder().key(key).build())
        .collect();
    let delete = objects.and_then(|objects| {
        Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
    });
    let delete = match delete {
        Ok(delete) => delete,
        Err(err) => {
            tracing::warn!(error = %err, "cannot build a batch delete");
            return;
        }
    };
    match client
        .delete_objects()
        .bucket(bucket)
        .delete(delete)
        .send()
        .await
    {
        Ok(out) => {
            for failed in out.errors() {
                tracing::warn!(
                    key = failed.key().unwrap_or(""),
                    code = failed.code().unwrap_or(""),
                    "a staged copy was not removed; the sweeper will"
                );
            }
        }
        Err(err) => {
            tracing::warn!(error = %classify(err), keys = keys.len(), "staged copies not removed; the sweeper will");
        }
    }
}
