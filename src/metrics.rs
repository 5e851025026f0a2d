//! Process metrics in the Prometheus text format, served at `/metrics`: requests by route
//! and status with latency histograms, upload state changes, bytes confirmed, verification
//! failures, S3 calls, sweeps, webhook deliveries and the database pools.
//!
//! One registry per process, like Prometheus client libraries keep: every part of the
//! service records into it without being handed a handle.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::config::interceptors::{
    BeforeSerializationInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_types::config_bag::{Storable, StoreReplace};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if let Some(i) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.counts[i] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }
}

/// A metric's name and its labels, rendered once: `name{a="x",b="y"}`.
type Series = (&'static str, String);

#[derive(Default)]
struct Registry {
    counters: BTreeMap<Series, u64>,
    histograms: BTreeMap<Series, Histogram>,
    gauges: BTreeMap<Series, f64>,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Mutex::default);

/// What each metric is, for its `# HELP` and `# TYPE` lines.
const HELP: &[(&str, &str, &str)] = &[
    (
        "upload_broker_http_requests_total",
        "counter",
        "HTTP requests by route, method and status.",
    ),
    (
        "upload_broker_http_request_duration_seconds",
        "histogram",
        "HTTP request latency by route.",
    ),
    (
        "upload_broker_upload_transitions_total",
        "counter",
        "Uploads entering each state.",
    ),
    (
        "upload_broker_confirmed_bytes_total",
        "counter",
        "Bytes of uploads that completed.",
    ),
    (
        "upload_broker_verification_failures_total",
        "counter",
        "Confirms refused, by error code.",
    ),
    (
        "upload_broker_s3_requests_total",
        "counter",
        "S3 calls by operation and outcome.",
    ),
    (
        "upload_broker_s3_request_duration_seconds",
        "histogram",
        "S3 call latency by operation.",
    ),
    (
        "upload_broker_rate_limited_total",
        "counter",
        "Requests refused by the rate limits, by route.",
    ),
    (
        "upload_broker_sweeps_total",
        "counter",
        "Sweeper runs, by outcome.",
    ),
    (
        "upload_broker_swept_total",
        "counter",
        "What the sweeper removed or expired, by kind.",
    ),
    (
        "upload_broker_webhook_deliveries_total",
        "counter",
        "Webhook delivery attempts, by outcome (succeeded, retry, failed, gone).",
    ),
    (
        "upload_broker_webhook_attempt_duration_seconds",
        "histogram",
        "Webhook attempt latency, from sending the request to its answer or failure.",
    ),
    (
        "upload_broker_variant_jobs_total",
        "counter",
        "Variant jobs run, by outcome (ready, failed, retry).",
    ),
    (
        "upload_broker_variant_job_duration_seconds",
        "histogram",
        "Variant job time, from claiming it to its variants stored (or its failure).",
    ),
    (
        "upload_broker_webhook_backlog",
        "gauge",
        "Webhook deliveries not yet made (the outbox), as the dispatcher last counted.",
    ),
    (
        "upload_broker_db_connections",
        "gauge",
        "Database pool connections, by pool and state.",
    ),
];

fn labels(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{name}=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out
}

fn add(name: &'static str, pairs: &[(&str, &str)], by: u64) {
    if let Ok(mut registry) = REGISTRY.lock() {
        *registry.counters.entry((name, labels(pairs))).or_default() += by;
    }
}

fn observe(name: &'static str, pairs: &[(&str, &str)], elapsed: Duration) {
    if let Ok(mut registry) = REGISTRY.lock() {
        registry
            .histograms
            .entry((name, labels(pairs)))
            .or_default()
            .observe(elapsed.as_secs_f64());
    }
}

pub fn http_request(route: &str, method: &str, status: u16, elapsed: Duration) {
    let status = status.to_string();
    let by_status = [
        ("route", route),
        ("method", method),
        ("status", status.as_str()),
    ];
    add("upload_broker_http_requests_total", &by_status, 1);
    observe(
        "upload_broker_http_request_duration_seconds",
        &[("route", route)],
        elapsed,
    );
}

/// An upload entered `state`.
pub fn upload_transition(state: entity::UploadState) {
    add(
        "upload_broker_upload_transitions_total",
        &[("state", &state.to_string())],
        1,
    );
}

pub fn bytes_confirmed(bytes: u64) {
    add("upload_broker_confirmed_bytes_total", &[], bytes);
}

pub fn verification_failure(code: &str) {
    add(
        "upload_broker_verification_failures_total",
        &[("code", code)],
        1,
    );
}

/// A request refused by the rate limits.
pub fn rate_limited(route: &str) {
    add("upload_broker_rate_limited_total", &[("route", route)], 1);
}

pub fn sweep(outcome: &str) {
    add("upload_broker_sweeps_total", &[("outcome", outcome)], 1);
}

pub fn swept(kind: &str, count: u64) {
    if count > 0 {
        add("upload_broker_swept_total", &[("kind", kind)], count);
    }
}

/// A webhook attempt ended with `outcome` after `elapsed`.
pub fn webhook_attempt(outcome: &str, elapsed: Duration) {
    add(
        "upload_broker_webhook_deliveries_total",
        &[("outcome", outcome)],
        1,
    );
    observe(
        "upload_broker_webhook_attempt_duration_seconds",
        &[],
        elapsed,
    );
}

/// A variants job ended with `outcome` after `elapsed`.
pub fn variant_job(outcome: &str, elapsed: Duration) {
    add(
        "upload_broker_variant_jobs_total",
        &[("outcome", outcome)],
        1,
    );
    observe("upload_broker_variant_job_duration_seconds", &[], elapsed);
}

/// Deliveries still to make.
pub fn webhook_backlog(pending: u64) {
    if let Ok(mut registry) = REGISTRY.lock() {
        registry.gauges.insert(
            ("upload_broker_webhook_backlog", String::new()),
            pending as f64,
        );
    }
}

/// One database pool's connections at scrape time.
pub struct PoolUse {
    pub pool: &'static str,
    pub open: u32,
    pub idle: u32,
}

/// The whole registry in the Prometheus text format (version 0.0.4), with the pools'
/// current use.
pub fn render(pools: &[PoolUse]) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let Ok(registry) = REGISTRY.lock() else {
        return out;
    };
    for (name, kind, help) in HELP {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        match *kind {
            "counter" => {
                let mut any = false;
                for ((series, labels), value) in &registry.counters {
                    if series == name {
                        any = true;
                        let _ = writeln!(out, "{}", sample(name, labels, "", *value as f64));
                    }
                }
                // A counter without labels exists from the start.
                if !any && !HAS_LABELS.contains(name) {
                    let _ = writeln!(out, "{name} 0");
                }
            }
            "histogram" => {
                for ((series, labels), histogram) in &registry.histograms {
                    if series != name {
                        continue;
                    }
                    let mut cumulative = 0;
                    for (bound, count) in BUCKETS.iter().zip(histogram.counts) {
                        cumulative += count;
                        let le = format!("le=\"{bound}\"");
                        let _ = writeln!(out, "{}", bucket(name, labels, &le, cumulative));
                    }
                    let _ = writeln!(
                        out,
                        "{}",
                        bucket(name, labels, "le=\"+Inf\"", histogram.count)
                    );
                    let _ = writeln!(out, "{}", sample(name, labels, "_sum", histogram.sum));
                    let _ = writeln!(
                        out,
                        "{}",
                        sample(name, labels, "_count", histogram.count as f64)
                    );
                }
            }
            _ => {
                for ((series, labels), value) in &registry.gauges {
                    if series == name {
                        let _ = writeln!(out, "{}", sample(name, labels, "", *value));
                    }
                }
                for pool in pools
                    .iter()
                    .filter(|_| *name == "upload_broker_db_connections")
                {
                    let busy = pool.open.saturating_sub(pool.idle);
                    for (state, value) in [("idle", pool.idle), ("in_use", busy)] {
                        let labels = labels(&[("pool", pool.pool), ("state", state)]);
                        let _ = writeln!(out, "{}", sample(name, &labels, "", f64::from(value)));
                    }
                }
            }
        }
    }
    out
}

/// Counters that only exist with labels (no bare zero sample for them).
const HAS_LABELS: &[&str] = &[
    "upload_broker_http_requests_total",
    "upload_broker_upload_transitions_total",
    "upload_broker_verification_failures_total",
    "upload_broker_s3_requests_total",
    "upload_broker_sweeps_total",
    "upload_broker_swept_total",
    "upload_broker_rate_limited_total",
    "upload_broker_webhook_deliveries_total",
];

fn sample(name: &str, labels: &str, suffix: &str, value: f64) -> String {
    if labels.is_empty() {
        format!("{name}{suffix} {value}")
    } else {
        format!("{name}{suffix}{{{labels}}} {value}")
    }
}

fn bucket(name: &str, labels: &str, le: &str, count: u64) -> String {
    if labels.is_empty() {
        format!("{name}_bucket{{{le}}} {count}")
    } else {
        format!("{name}_bucket{{{labels},{le}}} {count}")
    }
}

/// When an S3 call started, kept in the call's config bag.
#[derive(Debug, Clone)]
struct CallStarted(Instant);

impl Storable for CallStarted {
    type Storer = StoreReplace<Self>;
}

/// Counts and times every S3 call the SDK makes, by operation.
#[derive(Debug)]
pub struct S3Calls;

impl Intercept for S3Calls {
    fn name(&self) -> &'static str {
        "upload-broker metrics"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        cfg.interceptor_state()
            .store_put(CallStarted(Instant::now()));
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = cfg.load::<Metadata>().map_or("unknown", Metadata::name);
        let outcome = match context.output_or_error() {
            Some(Ok(_)) => "ok",
            _ => "error",
        };
        add(
            "upload_broker_s3_requests_total",
            &[("operation", operation), ("outcome", outcome)],
            1,
        );
        if let Some(started) = cfg.load::<CallStarted>() {
            observe(
                "upload_broker_s3_request_duration_seconds",
                &[("operation", operation)],
                started.0.elapsed(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(labels(&[("a", "x\"y\\z\n")]), "a=\"x\\\"y\\\\z\\n\"");
    }
}
