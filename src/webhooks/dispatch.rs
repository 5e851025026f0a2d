//! The dispatcher, one in every replica: it claims due deliveries with a lease, POSTs each
//! signed event, and records how the attempt went. A commit that records an event wakes it
//! at once (`Db::recorded`); otherwise it looks for due retries, and for deliveries other
//! replicas recorded, every `POLL`. Attempts run in parallel, at most `MAX_IN_FLIGHT` at
//! once and `PER_ENDPOINT` to one endpoint, so a slow or dead endpoint never holds up the
//! others. On shutdown it stops claiming and lets attempts in flight finish within the
//! grace; a lease left by a crash runs out (`WEBHOOK_TIMEOUT` + `LEASE_MARGIN`) and the
//! delivery is claimed again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use uuid::Uuid;

use super::schedule::{self, Attempt};
use super::signature::{self, SigningKey};
use super::target;
use crate::config::WebhookConfig;
use crate::db::Db;
use crate::db::webhooks::{Claimed, ENDPOINT_REMOVED, EndpointRow, Finished, Outcome};
use crate::metrics;
use crate::shutdown::Shutdown;
use entity::EndpointSource;

/// Attempts in flight at once, in all.
const MAX_IN_FLIGHT: usize = 128;
/// Attempts in flight at once to one endpoint.
const PER_ENDPOINT: usize = 32;
/// How often due retries (and other replicas' events) are looked for without a wake-up.
const POLL: Duration = Duration::from_millis(500);
/// After a commit wakes the dispatcher, how long it waits for more before claiming.
const GATHER: Duration = Duration::from_millis(5);
/// A lease outlives its attempt's timeout by this much.
const LEASE_MARGIN: Duration = Duration::from_secs(5);
/// How often events past `EVENT_RETENTION_DAYS` are removed.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How often the backlog gauge is counted again.
const BACKLOG_EVERY: Duration = Duration::from_secs(2);
/// Bytes of an answer's body read (so its connection can be reused); the rest is dropped.
const ANSWER_BODY_LIMIT: usize = 64 * 1024;

#[derive(Clone)]
struct Dispatcher {
    db: Db,
    settings: Arc<WebhookConfig>,
    /// Sends to `WEBHOOK_URL`'s endpoints (and registered ones with
    /// `WEBHOOK_ALLOW_PRIVATE`).
    trusted: reqwest::Client,
    /// Sends to registered endpoints: its resolver refuses private addresses.
    guarded: reqwest::Client,
    /// Attempts in flight per endpoint.
    busy: Arc<Mutex<HashMap<Uuid, usize>>>,
    /// The endpoints deliveries were claimed for, by id: what a delivery is sent with (URL,
    /// source, secret) never changes, so each is read and checked once.
    endpoints: Arc<Mutex<HashMap<Uuid, Arc<Target>>>>,
    /// Outcomes on their way to the database, written a burst per transaction.
    outcomes: mpsc::Sender<Finished>,
}

/// A claimed delivery and where it goes.
struct Job {
    claimed: Claimed,
    endpoint: Arc<Target>,
}

/// An endpoint as its attempts use it, read and checked once.
struct Target {
    id: Uuid,
    /// Where to POST and the keys that sign, or why it cannot be sent to.
    to: Result<(reqwest::Url, Vec<SigningKey>), &'static str>,
    /// Registered, and private addresses are not allowed: sent by the guarded client.
    guarded: bool,
}

impl Target {
    fn new(endpoint: &EndpointRow, settings: &WebhookConfig) -> Self {
        let guarded = endpoint.source == EndpointSource::Api && !settings.allow_private;
        let to = (|| {
            let keys = match &endpoint.secret {
                Some(secret) => vec![
                    SigningKey::parse(secret)
                        .map_err(|_| "the endpoint's stored secret is not valid")?,
                ],
                None => settings.secrets.clone(),
            };
            let url =
                target::parse(&endpoint.url).map_err(|_| "the endpoint's URL is not valid")?;
            // An address written in the URL is never looked up, so the resolver cannot see it.
            if guarded && target::literal_ip(&url).is_some_and(target::is_private) {
                return Err("the endpoint's address is private");
            }
            Ok((url, keys))
        })();
        Self {
            id: endpoint.id,
            to,
            guarded,
        }
    }
}

/// Starts the dispatcher. The handle resolves once it has stopped after `shutdown`, with
/// its attempts finished or, past `grace`, left to their leases.
pub fn spawn_dispatcher(
    db: Db,
    settings: WebhookConfig,
    shutdown: Shutdown,
    grace: Duration,
) -> Result<JoinHandle<()>, reqwest::Error> {
    let client = |guard: bool| {
        let builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .user_agent(concat!(
                "upload-broker/",
                env!("CARGO_PKG_VERSION"),
                " (webhooks)"
            ))
            .pool_max_idle_per_host(PER_ENDPOINT);
        if guard {
            builder.dns_resolver(Arc::new(target::PublicOnly)).build()
        } else {
            builder.build()
        }
    };
    let (outcomes, queue) = mpsc::channel(MAX_IN_FLIGHT);
    let recorder = tokio::spawn(record_outcomes(db.clone(), queue));
    let dispatcher = Dispatcher {
        trusted: client(false)?,
        guarded: client(true)?,
        db,
        settings: Arc::new(settings),
        busy: Arc::default(),
        endpoints: Arc::default(),
        outcomes,
    };
    Ok(tokio::spawn(async move {
        dispatcher.run(shutdown, grace).await;
        // Every sender is gone with the dispatcher: the recorder writes what is left, then
        // stops.
        let _ = tokio::time::timeout(grace.max(Duration::from_secs(1)), recorder).await;
    }))
}

/// Most outcomes one transaction records.
const RECORD_BATCH: usize = 128;

/// Writes attempts' outcomes as they come, each burst in one transaction. A database that
/// does not answer leaves the leases to run out: those deliveries are attempted again,
/// never lost.
async fn record_outcomes(db: Db, mut queue: mpsc::Receiver<Finished>) {
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    while queue.recv_many(&mut batch, RECORD_BATCH).await > 0 {
        for wait in [0, 200, 1000] {
            tokio::time::sleep(Duration::from_millis(wait)).await;
            match db.finish_deliveries(&batch).await {
                Ok(recorded) => {
                    if recorded < batch.len() {
                        tracing::warn!(
                            lost = batch.len() - recorded,
                            "webhook leases ran out before their attempts were recorded"
                        );
                    }
                    break;
                }
                Err(err) => {
                    tracing::warn!(error = %err, attempts = batch.len(), "cannot record webhook attempts");
                }
            }
        }
        batch.clear();
    }
}

impl Dispatcher {
    async fn run(self, mut shutdown: Shutdown, grace: Duration) {
        let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let mut attempts = JoinSet::new();
        let mut counted = Instant::now() - BACKLOG_EVERY;
        let mut pruned: Option<Instant> = None;
        loop {
            // Finished attempts are collected (their outcomes are with the recorder).
            while attempts.try_join_next().is_some() {}
            let free = slots.available_permits();
            let mut full = false;
            if free > 0 {
                match self.claim(free).await {
                    Ok(claimed) => {
                        full = claimed.len() == free;
                        for delivery in claimed {
                            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                                break;
                            };
                            let dispatcher = self.clone();
                            attempts.spawn(async move {
                                dispatcher.attempt(delivery).await;
                                drop(slot);
                            });
                        }
                    }
                    Err(err) => tracing::warn!(error = %err, "cannot claim webhook deliveries"),
                }
            }
            if counted.elapsed() >= BACKLOG_EVERY {
                counted = Instant::now();
                if let Ok(backlog) = self.db.delivery_backlog().await {
                    metrics::webhook_backlog(backlog);
                }
            }
            if let Some(retention) = self.settings.retention
                && pruned.is_none_or(|at| at.elapsed() >= PRUNE_EVERY)
            {
                pruned = Some(Instant::now());
                match self
                    .db
                    .prune_events(OffsetDateTime::now_utc() - retention)
                    .await
                {
                    Ok(0) => {}
                    Ok(removed) => tracing::info!(removed, "events past their retention removed"),
                    Err(err) => tracing::warn!(error = %err, "cannot remove old events"),
                }
            }
            if full {
                // There may be more due: claim again once slots are free.
                tokio::select! {
                    Some(_) = attempts.join_next() => tokio::time::sleep(GATHER).await,
                    () = shutdown.wait() => break,
                }
                continue;
            }
            // A finished attempt frees a slot, and room at its endpoint.
            tokio::select! {
                () = self.db.recorded().notified() => {
                    // Commits come in bursts: one claim takes the events of the next moment.
                    tokio::time::sleep(GATHER).await;
                }
                () = tokio::time::sleep(POLL) => {}
                Some(_) = attempts.join_next() => tokio::time::sleep(GATHER).await,
                () = shutdown.wait() => break,
            }
        }
        // Drain: no new claims; attempts in flight get the grace to finish and record.
        let drained = tokio::time::timeout(grace, async {
            while attempts.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = attempts.len(),
                "webhook attempts still in flight at shutdown; their leases run out and they are retried"
            );
            attempts.abort_all();
        }
    }

    /// Claims up to `room` due deliveries, leaving out endpoints already at `PER_ENDPOINT`.
    async fn claim(&self, room: usize) -> Result<Vec<Job>, crate::db::DbError> {
        let saturated: Vec<Uuid> = self
            .busy
            .lock()
            .map(|busy| {
                busy.iter()
                    .filter(|(_, n)| **n >= PER_ENDPOINT)
                    .map(|(id, _)| *id)
                    .collect()
            })
            .unwrap_or_default();
        let now = OffsetDateTime::now_utc();
        let until = now + self.settings.timeout + LEASE_MARGIN;
        let lease = Uuid::now_v7();
        let claimed = self
            .db
            .claim_deliveries(now, until, lease, room as u64, &saturated)
            .await?;
        let unknown: Vec<Uuid> = {
            let known = self
                .endpoints
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut unknown: Vec<Uuid> = claimed
                .iter()
                .map(|c| c.delivery.endpoint_id)
                .filter(|id| !known.contains_key(id))
                .collect();
            unknown.sort_unstable();
            unknown.dedup();
            unknown
        };
        if !unknown.is_empty() {
            let found = self.db.endpoints_by_id(&unknown).await?;
            let mut known = self
                .endpoints
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for endpoint in found {
                known.insert(
                    endpoint.id,
                    Arc::new(Target::new(&endpoint, &self.settings)),
                );
            }
        }
        // Within one claim, an endpoint still gets at most `PER_ENDPOINT`; the rest are let
        // go at once.
        let mut jobs = Vec::with_capacity(claimed.len());
        let mut let_go = Vec::new();
        let mut removed = Vec::new();
        {
            let known = self
                .endpoints
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut busy = self
                .busy
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for claimed in claimed {
                let Some(endpoint) = known.get(&claimed.delivery.endpoint_id).cloned() else {
                    removed.push(claimed.delivery.id);
                    continue;
                };
                let n = busy.entry(endpoint.id).or_default();
                if *n < PER_ENDPOINT {
                    *n += 1;
                    jobs.push(Job { claimed, endpoint });
                } else {
                    let_go.push(claimed.delivery.id);
                }
            }
        }
        for id in let_go {
            self.db.release_delivery(id, lease).await?;
        }
        // Its endpoint was removed between the event and now.
        let gone = Outcome::Failed {
            status: None,
            error: ENDPOINT_REMOVED.to_owned(),
        };
        for id in removed {
            self.db.finish_delivery(id, lease, &gone).await?;
        }
        Ok(jobs)
    }

    /// One attempt: sign, POST, record the outcome.
    async fn attempt(&self, job: Job) {
        let Job {
            claimed: Claimed { delivery, payload },
            endpoint,
        } = job;
        let lease = delivery.lease.unwrap_or_default();
        let started = Instant::now();
        let result = self.send(&endpoint, &delivery.event_id, payload).await;
        let elapsed = started.elapsed();
        // The endpoint has its answer: room for the next request to it.
        if let Ok(mut busy) = self.busy.lock()
            && let Some(n) = busy.get_mut(&endpoint.id)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                busy.remove(&endpoint.id);
            }
        }
        let attempt = u32::try_from(delivery.attempts).unwrap_or(0) + 1;
        let outcome = schedule::outcome(
            attempt,
            result.clone(),
            &self.settings.retry_schedule,
            OffsetDateTime::now_utc(),
        );
        let label = match &outcome {
            Outcome::Delivered { .. } => "succeeded",
            Outcome::Retry { .. } => "retry",
            Outcome::Failed { .. } => "failed",
            Outcome::Gone => "gone",
        };
        metrics::webhook_attempt(label, elapsed);
        let (status, reason) = match &result {
            Attempt::Answered(status) => (Some(*status), None),
            Attempt::NoAnswer(reason) => (None, Some(reason.as_str())),
        };
        tracing::info!(
            delivery_id = %delivery.id,
            event_id = %delivery.event_id,
            webhook_id = %endpoint.id,
            upload_id = %delivery.upload_id,
            attempt,
            status,
            reason,
            outcome = label,
            elapsed_ms = elapsed.as_millis() as u64,
            "webhook attempt"
        );
        if matches!(outcome, Outcome::Gone) {
            tracing::warn!(webhook_id = %endpoint.id, "webhook endpoint answered 410 Gone; disabled");
        }
        let finished = Finished {
            id: delivery.id,
            lease,
            outcome,
        };
        if self.outcomes.send(finished).await.is_err() {
            tracing::warn!(delivery_id = %delivery.id, "webhook attempt not recorded: the recorder stopped");
        }
    }

    /// POSTs `payload` to `endpoint`, signed for this attempt's time.
    async fn send(&self, endpoint: &Target, event_id: &Uuid, payload: String) -> Attempt {
        let (url, keys) = match &endpoint.to {
            Ok((url, keys)) => (url.clone(), keys.as_slice()),
            Err(reason) => return Attempt::NoAnswer((*reason).to_owned()),
        };
        let id = event_id.to_string();
        let timestamp = OffsetDateTime::now_utc().unix_timestamp();
        let signature = signature::sign(&id, timestamp, payload.as_bytes(), keys);
        let client = if endpoint.guarded {
            &self.guarded
        } else {
            &self.trusted
        };
        let sent = client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(payload)
            .send()
            .await;
        match sent {
            Ok(mut answer) => {
                let status = answer.status().as_u16();
                // Read a little of the body so the connection can be used again.
                let mut read = 0;
                while read < ANSWER_BODY_LIMIT {
                    match answer.chunk().await {
                        Ok(Some(chunk)) => read += chunk.len(),
                        Ok(None) | Err(_) => break,
                    }
                }
                Attempt::Answered(status)
            }
            Err(err) => Attempt::NoAnswer(no_answer(&err, self.settings.timeout)),
        }
    }
}

/// A short reason for a request that got no answer: never a URL, a secret or a signature.
fn no_answer(err: &reqwest::Error, timeout: Duration) -> String {
    if err.is_timeout() {
        format!("no answer within {} s", timeout.as_secs())
    } else if err.is_connect() {
        let private = std::error::Error::source(err)
            .map(|s| format!("{s:?}"))
            .is_some_and(|s| s.contains("Private"));
        if private {
            "the endpoint's host resolves only to private addresses".into()
        } else {
            "could not connect".into()
        }
    } else {
        "the connection closed before an answer".into()
    }
}
