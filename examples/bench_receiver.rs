//! The webhook benchmark's receiver (`bench/webhooks.py`): a small HTTP server that takes
//! little CPU, so the service it measures keeps the machine's cores. It checks every
//! request's Standard Webhooks signature, fails the first attempt of a share of the
//! webhook-ids (`--fail-first-percent`, drawn from the id) with a 500, answers 204
//! otherwise, and keeps a log of every request that `GET /_log` returns as JSON.
//! (The test suite checks signatures with the official `standardwebhooks` library; this
//! receiver is for load.)
//!
//!     cargo run --release --example bench_receiver -- --secret whsec_... --fail-first-percent 30

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use upload_broker::crypto::{constant_time_eq, hmac_sha256};

#[derive(Default)]
struct Log {
    attempts: HashMap<String, u32>,
    entries: Vec<String>,
}

struct Settings {
    key: Vec<u8>,
    fail_first_percent: u32,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> &'a str {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// Whether one of `signatures` (`v1,<base64>` entries) signs `id.timestamp.body`.
fn verified(key: &[u8], id: &str, timestamp: &str, body: &[u8], signatures: &str) -> bool {
    let mut signed = format!("{id}.{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    let expected = hmac_sha256(key, &signed);
    signatures.split(' ').any(|entry| {
        entry
            .strip_prefix("v1,")
            .and_then(|b64| STANDARD.decode(b64).ok())
            .is_some_and(|sig| constant_time_eq(&sig, &expected))
    })
}

async fn handle(
    req: Request<Incoming>,
    settings: Arc<Settings>,
    log: Arc<Mutex<Log>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let started = now();
    if req.method() == hyper::Method::GET && req.uri().path() == "/_log" {
        let body = {
            let log = log.lock().expect("log");
            format!("[{}]", log.entries.join(","))
        };
        return Ok(Response::new(Full::new(Bytes::from(body))));
    }
    let id = header(&req, "webhook-id").to_owned();
    let timestamp = header(&req, "webhook-timestamp").to_owned();
    let signatures = header(&req, "webhook-signature").to_owned();
    let body = match req.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let ok = verified(&settings.key, &id, &timestamp, &body, &signatures);
    let drawn = u32::from(Sha256::digest(id.as_bytes())[2]) * 100 / 256;
    let (attempt, status) = {
        let mut log = log.lock().expect("log");
        let attempt = {
            let n = log.attempts.entry(id.clone()).or_default();
            *n += 1;
            *n
        };
        let status = if !ok {
            400
        } else if attempt == 1 && drawn < settings.fail_first_percent {
            500
        } else {
            204
        };
        let entry = serde_json::json!({
            "id": id, "attempt": attempt, "answer": status, "verified": ok,
            "started": started, "ended": now(),
        });
        log.entries.push(entry.to_string());
        (attempt, status)
    };
    let _ = attempt;
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = hyper::StatusCode::from_u16(status).expect("status");
    Ok(resp)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let secret = value("--secret").expect("--secret whsec_...");
    let key = STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .expect("a whsec_ secret");
    let settings = Arc::new(Settings {
        key,
        fail_first_percent: value("--fail-first-percent")
            .map_or(0, |v| v.parse().expect("a number")),
    });
    let log = Arc::new(Mutex::new(Log::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    println!(
        "{}",
        serde_json::json!({"port": listener.local_addr().expect("address").port()})
    );
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (settings, log) = (settings.clone(), log.clone());
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req| handle(req, settings.clone(), log.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
