//! The SQS queue a bucket's event notifications go to (`S3_EVENTS_QUEUE_URL`): long-polled
//! for messages, each deleted once it is handled. SQS is reached as the AWS SDK's endpoint
//! rules say (`AWS_ENDPOINT_URL_SQS`, then `AWS_ENDPOINT_URL`), with the bucket's
//! credentials.

use aws_sdk_sqs::Client;

use super::StorageError;
use super::connect::{load_aws_config, timeouts};
use super::error::classify;
use crate::config::{Config, StorageConfig};

/// How long one receive waits for a message (SQS's longest long poll).
const LONG_POLL_SECS: i32 = 20;
/// Messages one receive takes at most (SQS's largest batch).
const BATCH: i32 = 10;

/// One message: its body, and the handle that deletes it.
#[derive(Debug, Clone)]
pub struct QueuedMessage {
    pub body: String,
    pub receipt: String,
}

#[derive(Debug, Clone)]
pub struct EventQueue {
    client: Client,
    url: String,
}

impl EventQueue {
    /// The queue `S3_EVENTS_QUEUE_URL` names, if it is set.
    pub async fn connect(config: &Config) -> Option<Self> {
        let settings = config.storage.events_queue.as_ref()?;
        let keys = match &config.storage.backend {
            StorageConfig::External { credentials, .. } => credentials.as_ref(),
            StorageConfig::Embedded { .. } => None,
        };
        // A poll waits up to LONG_POLL_SECS for its answer: its timeout allows for that.
        let connect = timeouts(config)
            .connect_timeout()
            .unwrap_or(config.storage.connect_timeout);
        let limits = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(connect)
            .operation_timeout(std::time::Duration::from_secs(LONG_POLL_SECS as u64 + 10))
            .build();
        let shared = load_aws_config(config, keys, limits).await;
        let mut builder = aws_sdk_sqs::config::Builder::from(&shared);
        if let Some(endpoint) = &settings.endpoint_url {
            builder = builder.endpoint_url(endpoint);
        }
        Some(Self {
            client: Client::from_conf(builder.build()),
            url: settings.url.clone(),
        })
    }

    /// Waits up to 20 s for messages.
    pub async fn receive(&self) -> Result<Vec<QueuedMessage>, StorageError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .wait_time_seconds(LONG_POLL_SECS)
            .max_number_of_messages(BATCH)
            .send()
            .await
            .map_err(classify)?;
        Ok(out
            .messages()
            .iter()
            .filter_map(|m| {
                Some(QueuedMessage {
                    body: m.body()?.to_owned(),
                    receipt: m.receipt_handle()?.to_owned(),
                })
            })
            .collect())
    }

    /// Deletes a message that was handled.
    pub async fn delete(&self, receipt: &str) -> Result<(), StorageError> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }
}
