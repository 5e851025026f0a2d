//! Webhooks, end to end: a real receiver on loopback (`tests/webhooks/receiver.py`) checks
//! every request with the official `standardwebhooks` verifier and logs what it got; these
//! tests read that log, the delivery log API and the database.

use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

use entity::EndpointSource;
use upload_broker::db::webhooks::EndpointRow;

use crate::helpers::*;

/// Two secrets, as during a rotation: each must sign every request.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NEXT_SECRET: &str = "whsec_c2Vjb25kLXNlY3JldC1vZi10aGUtdGVzdHMtMTIzNA==";

/// The receiver: a Python process that verifies, answers as its mode says, and logs.
struct Receiver {
    url: String,
    child: tokio::process::Child,
    client: reqwest::Client,
}

impl Receiver {
    async fn start(secrets: &[&str], mode: Value) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/webhooks/receiver.sh");
        let mut command = tokio::process::Command::new("bash");
        command.arg(script).arg("--mode").arg(mode.to_string());
        for secret in secrets {
            command.arg("--secret").arg(secret);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the receiver starts (python3 with venv)");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(180), lines.next_line())
            .await
            .expect("the receiver says its port")
            .expect("read")
            .expect("a line");
        let port: Value = serde_json::from_str(&first).expect("JSON");
        Self {
            url: format!("http://127.0.0.1:{}/hook", port["port"]),
            child,
            client: reqwest::Client::new(),
        }
    }

    fn base(&self) -> &str {
        self.url.trim_end_matches("/hook")
    }

    async fn set_mode(&self, mode: Value) {
        let resp = self
            .client
            .post(format!("{}/_mode", self.base()))
            .json(&mode)
            .send()
            .await
            .expect("mode");
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    }

    async fn set_secrets(&self, secrets: &[&str]) {
        let resp = self
            .client
            .post(format!("{}/_secrets", self.base()))
            .json(&secrets)
            .send()
            .await
            .expect("secrets");
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    }

    /// Every request it got, in the order they ended. Fails the test on any request whose
    /// signature the official verifier refused.
    async fn log(&self) -> Vec<Value> {
        let log: Vec<Value> = self
            .client
            .get(format!("{}/_log", self.base()))
            .send()
            .await
            .expect("log")
            .json()
            .await
            .expect("JSON");
        for entry in &log {
            assert_eq!(
                entry["verified"], true,
                "a request failed verification: {entry}"
            );
        }
        log
    }

    /// The requests it answered with a 2xx, by webhook-id.
    async fn delivered(&self) -> BTreeMap<String, Vec<Value>> {
        let mut by_id: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for entry in self.log().await {
            if entry["answer"]
                .as_i64()
                .is_some_and(|s| (200..300).contains(&s))
            {
                by_id
                    .entry(entry["id"].as_str().expect("id").to_owned())
                    .or_default()
                    .push(entry);
            }
        }
        by_id
    }

    /// Waits until it has delivered `n` distinct webhook-ids.
    async fn wait_delivered(&self, n: usize, within: Duration) -> BTreeMap<String, Vec<Value>> {
        let started = Instant::now();
        loop {
            let delivered = self.delivered().await;
            if delivered.len() >= n {
                return delivered;
            }
            assert!(
                started.elapsed() < within,
                "{} of {n} events delivered after {within:?}: {:#?}",
                delivered.len(),
                self.log().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// The service's settings for sending every event to `receiver`, signed with `secrets`
/// (space-separated).
fn sending_to(receiver: &Receiver, schedule: &str, secrets: &str) -> Vec<(String, String)> {
    vec![
        ("WEBHOOK_URL".into(), receiver.url.clone()),
        ("WEBHOOK_SECRET".into(), secrets.into()),
        ("WEBHOOK_RETRY_SCHEDULE".into(), schedule.into()),
        ("WEBHOOK_TIMEOUT".into(), "3".into()),
        ("ADMIN_KEYS".into(), ADMIN.into()),
    ]
}

fn pairs(settings: &[(String, String)]) -> Vec<(&str, &str)> {
    settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// Every delivery of the log (all pages).
async fn all_deliveries(app: &TestApp, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/webhooks/deliveries?limit=7{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = admin_get(app, &path).await;
        out.extend(
            page["deliveries"]
                .as_array()
                .expect("deliveries")
                .iter()
                .cloned(),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return out,
        }
    }
}

/// Waits until no delivery is pending; returns them all.
async fn settled_deliveries(app: &TestApp, within: Duration) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let all = all_deliveries(app, "").await;
        if !all.is_empty() && all.iter().all(|d| d["state"] != "pending") {
            return all;
        }
        assert!(
            started.elapsed() < within,
            "deliveries still pending: {all:#?}"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

#[tokio::test]
async fn every_event_type_arrives_signed_by_each_secret_with_its_state() {
    let receiver = Receiver::start(&[SECRET, NEXT_SECRET], json!({"mode": "ok"})).await;
    let mut settings = sending_to(&receiver, "1,1,1,1,1", &format!("{SECRET} {NEXT_SECRET}"));
    settings.extend([
        ("PRESIGN_EXPIRES".into(), "2".into()),
        ("CLOCK_SKEW_MARGIN".into(), "0".into()),
        ("MULTIPART_THRESHOLD".into(), "5242880".into()),
        ("PART_SIZE".into(), "5242880".into()),
    ]);
    let app = TestApp::spawn_with(&pairs(&settings)).await;
    let mut expected: Vec<(String, &str, &str)> = Vec::new();

    // v1, one PUT: completed, then deleted.
    let done = app.upload("hooks", "a.png", "image/png", PNG).await;
    let done_id = done["upload_id"].as_str().expect("id").to_owned();
    expected.push((done_id.clone(), "upload.completed", "completed"));
    assert_eq!(app.delete(&done_id).await.status(), StatusCode::NO_CONTENT);
    expected.push((done_id, "upload.deleted", "deleted"));

    // v1 multipart: completed.
    let big = png_of_size(6 * MIB);
    let issued = app.issue_multipart("hooks", &big, json!({})).await;
    let multipart_id = issued["upload_id"].as_str().expect("id").to_owned();
    let urls = app.part_urls(&multipart_id, &[1, 2]).await;
    for (number, signed) in &urls {
        let range = if *number == 1 {
            0..5 * MIB
        } else {
            5 * MIB..big.len()
        };
        assert_eq!(
            app.put_part(signed, &big[range]).await.status(),
            StatusCode::OK
        );
    }
    app.confirm_stored(&multipart_id, &big).await;
    expected.push((multipart_id, "upload.completed", "completed"));

    // The legacy upload: completed.
    let legacy = app.legacy_stored("hooks", "legacy.png", PNG).await;
    expected.push((
        legacy["upload_id"].as_str().expect("id").to_owned(),
        "upload.completed",
        "completed",
    ));

    // Refused by verification: failed.
    let issued = app.issue("hooks", "fake.png", "image/png", PNG).await;
    let mut not_png = PNG.to_vec();
    not_png[1] = b'X';
    assert_eq!(app.put(&issued, &not_png).await.status(), StatusCode::OK);
    let failed_id = issued["upload_id"].as_str().expect("id").to_owned();
    assert_eq!(
        app.confirm(&failed_id).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    expected.push((failed_id.clone(), "upload.failed", "failed"));

    // Given up while pending: aborted.
    let issued = app.issue("hooks", "b.png", "image/png", PNG).await;
    let aborted_id = issued["upload_id"].as_str().expect("id").to_owned();
    assert_eq!(
        app.delete(&aborted_id).await.status(),
        StatusCode::NO_CONTENT
    );
    expected.push((aborted_id, "upload.aborted", "aborted"));

    // Never confirmed: expired by the sweeper.
    let issued = app.issue("hooks", "c.png", "image/png", PNG).await;
    let expired_id = issued["upload_id"].as_str().expect("id").to_owned();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let report = app.uploads.sweep(Duration::ZERO).await.expect("sweep");
    assert_eq!(report.expired, 1);
    expected.push((expired_id, "upload.expired", "expired"));

    let delivered = receiver
        .wait_delivered(expected.len(), Duration::from_secs(30))
        .await;
    let got: Vec<(String, String, String)> = delivered
        .values()
        .map(|entries| {
            assert_eq!(
                entries.len(),
                1,
                "each event is delivered once: {entries:?}"
            );
            let e = &entries[0];
            assert_eq!(e["signatures"], 2, "one signature per secret");
            assert_eq!(e["content_type"], "application/json");
            assert!(
                e["user_agent"]
                    .as_str()
                    .expect("agent")
                    .starts_with("upload-broker/")
            );
            assert_eq!(e["path"], "/hook");
            (
                e["upload_id"].as_str().expect("upload_id").to_owned(),
                e["type"].as_str().expect("type").to_owned(),
                e["state"].as_str().expect("state").to_owned(),
            )
        })
        .collect();
    let mut got_sorted = got.clone();
    got_sorted.sort();
    let mut wanted: Vec<(String, String, String)> = expected
        .iter()
        .map(|(id, t, s)| (id.clone(), (*t).to_owned(), (*s).to_owned()))
        .collect();
    wanted.sort();
    assert_eq!(got_sorted, wanted);
    let failed = delivered
        .values()
        .map(|e| &e[0])
        .find(|e| e["type"] == "upload.failed")
        .expect("failed event");
    assert_eq!(failed["failure_code"], "invalid_image");

    // The delivery log agrees, page by page, and filters by upload.
    let deliveries = settled_deliveries(&app, Duration::from_secs(10)).await;
    assert_eq!(deliveries.len(), expected.len());
    for d in &deliveries {
        assert_eq!(d["state"], "succeeded", "{d}");
        assert_eq!(d["attempts"], 1);
        assert_eq!(d["last_status"], 204);
        assert_eq!(d["endpoint"], receiver.url);
        assert!(d["next_attempt_at"].is_null());
        assert!(delivered.contains_key(d["event_id"].as_str().expect("event_id")));
    }
    let one = all_deliveries(&app, &format!("&upload_id={failed_id}")).await;
    assert_eq!(one.len(), 1);
    assert_eq!(one[0]["event_type"], "upload.failed");
    let metrics = app.get("/metrics").await.text().await.expect("metrics");
    // One registry per process, shared by the tests running beside this one: at least these.
    let sample = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
    };
    assert!(sample("upload_broker_webhook_deliveries_total{outcome=\"succeeded\"}") >= 8.0);
    assert!(sample("upload_broker_webhook_attempt_duration_seconds_count") >= 8.0);
    assert!(metrics.contains("# TYPE upload_broker_webhook_backlog gauge"));

    // Each event is in the same transaction as its change: one per change, no more.
    let events = app.sql("SELECT COUNT(*) AS n FROM events").await;
    assert_eq!(
        events[0].try_get::<i64>("", "n").expect("n"),
        expected.len() as i64
    );
}

#[tokio::test]
async fn failed_attempts_are_retried_until_each_event_is_delivered_exactly_once() {
    let receiver = Receiver::start(&[SECRET], json!({"mode": "flaky"})).await;
    let settings = sending_to(&receiver, "1,1,1,1,1", SECRET);
    let app = TestApp::spawn_with(&pairs(&settings)).await;
    let mut ids = Vec::new();
    for n in 0..24 {
        let record = app
            .legacy_stored(&format!("flaky{}", n % 3), "a.png", PNG)
            .await;
        ids.push(record["upload_id"].as_str().expect("id").to_owned());
    }
    let deliveries = settled_deliveries(&app, Duration::from_secs(60)).await;
    assert_eq!(deliveries.len(), ids.len());
    let log = receiver.log().await;
    let mut attempts: HashMap<String, usize> = HashMap::new();
    for entry in &log {
        *attempts
            .entry(entry["id"].as_str().expect("id").to_owned())
            .or_default() += 1;
    }
    let delivered = receiver.delivered().await;
    assert_eq!(delivered.len(), ids.len(), "every event arrived");
    let mut failures_seen = [0usize; 4];
    for d in &deliveries {
        assert_eq!(d["state"], "succeeded", "{d}");
        let id = d["event_id"].as_str().expect("id");
        assert_eq!(
            delivered[id].len(),
            1,
            "delivered successfully exactly once: {id}"
        );
        // The receiver failed this id's first k attempts; the service made k + 1.
        let made = attempts[id];
        assert_eq!(d["attempts"].as_u64(), Some(made as u64), "{d}");
        failures_seen[made - 1] += 1;
    }
    // The plan draws k from 0 to 3: both kinds of failure, and retries, were exercised.
    assert!(
        failures_seen[1..].iter().sum::<usize>() > 0,
        "{failures_seen:?}"
    );
    let dropped = log.iter().filter(|e| e["answer"] == "dropped").count();
    let errors = log.iter().filter(|e| e["answer"] == 500).count();
    assert!(
        dropped > 0 && errors > 0,
        "{dropped} dropped, {errors} 500s"
    );
}

#[tokio::test]
async fn a_410_disables_the_endpoint_until_it_is_enabled_and_nothing_waiting_is_lost() {
    let receiver = Receiver::start(&[], json!({"mode": "gone"})).await;
    let app = TestApp::spawn_with(&[
        ("ADMIN_KEYS", ADMIN),
        ("WEBHOOK_ALLOW_PRIVATE", "true"),
        ("WEBHOOK_RETRY_SCHEDULE", "1,1,1"),
    ])
    .await;
    let resp = admin_post(&app, "/api/v1/webhooks", Some(json!({"url": receiver.url}))).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let created: Value = resp.json().await.expect("JSON");
    let secret = created["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(created["events"].as_array().expect("events").len(), 6);
    // The receiver verifies with the registered endpoint's own secret.
    receiver.set_secrets(&[&secret]).await;
    let webhook_id = created["id"].as_str().expect("id").to_owned();

    app.legacy_stored("gone", "a.png", PNG).await;
    let first = settled_deliveries(&app, Duration::from_secs(15)).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0]["state"], "failed");
    assert_eq!(first[0]["last_status"], 410);
    assert_eq!(first[0]["attempts"], 1, "a 410 is not retried");
    let listed = admin_get(&app, "/api/v1/webhooks").await;
    let endpoint = &listed["webhooks"][0];
    assert_eq!(endpoint["enabled"], false);
    assert!(
        endpoint["disabled_reason"]
            .as_str()
            .expect("reason")
            .contains("410")
    );

    // While disabled, new events wait for it.
    let waiting = app.legacy_stored("gone", "b.png", PNG).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pending = all_deliveries(&app, "&state=pending").await;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0]["upload_id"], waiting["upload_id"]);
    assert_eq!(
        receiver.log().await.len(),
        1,
        "nothing sent to a disabled endpoint"
    );

    receiver.set_mode(json!({"mode": "ok"})).await;
    let resp = admin_post(&app, &format!("/api/v1/webhooks/{webhook_id}/enable"), None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let enabled: Value = resp.json().await.expect("JSON");
    assert_eq!(enabled["enabled"], true);
    let delivered = receiver.wait_delivered(1, Duration::from_secs(10)).await;
    let entry = delivered.values().next().expect("one")[0].clone();
    assert_eq!(entry["upload_id"], waiting["upload_id"]);

    // A registered endpoint is removed; one from WEBHOOK_URL is not removable here.
    let resp = app
        .client
        .delete(app.url(&format!("/api/v1/webhooks/{webhook_id}")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        admin_get(&app, "/api/v1/webhooks").await["webhooks"],
        json!([])
    );
}

#[tokio::test]
async fn a_failed_delivery_is_replayed_with_the_same_id_and_passes_the_verifier_an_hour_later() {
    let receiver = Receiver::start(&[SECRET], json!({"mode": "fail"})).await;
    let settings = sending_to(&receiver, "1", SECRET);
    let app = TestApp::spawn_with(&pairs(&settings)).await;
    let record = app.legacy_stored("replay", "a.png", PNG).await;
    let failed = settled_deliveries(&app, Duration::from_secs(15)).await;
    assert_eq!(failed.len(), 1);
    let delivery = &failed[0];
    assert_eq!(delivery["state"], "failed");
    assert_eq!(delivery["attempts"], 2, "the first attempt and one retry");
    assert_eq!(delivery["last_status"], 500);
    assert_eq!(delivery["last_error"], "HTTP 500");
    assert_eq!(delivery["upload_id"], record["upload_id"]);

    // The event happened an hour ago; a replay signs with the time of its own attempt.
    let an_hour_ago = (time::OffsetDateTime::now_utc() - Duration::from_secs(3600))
        .format(&time::format_description::well_known::Rfc3339)
        .expect("time");
    app.sql(&format!(
        "UPDATE events SET payload = REPLACE(payload, '\"timestamp\":\"', '\"timestamp\":\"{an_hour_ago}\",\"was\":\"')"
    ))
    .await;
    receiver.set_mode(json!({"mode": "ok"})).await;
    let id = delivery["id"].as_str().expect("id");
    let resp = admin_post(
        &app,
        &format!("/api/v1/webhooks/deliveries/{id}/retry"),
        None,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let delivered = receiver.wait_delivered(1, Duration::from_secs(10)).await;
    let entries = &delivered[delivery["event_id"].as_str().expect("event id")];
    assert_eq!(entries.len(), 1, "the replay carries the same webhook-id");
    let sent_at: i64 = entries[0]["timestamp"]
        .as_str()
        .expect("ts")
        .parse()
        .expect("int");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(
        (now - sent_at).abs() < 60,
        "webhook-timestamp is the attempt's"
    );
    assert_eq!(entries[0]["event_timestamp"], an_hour_ago.as_str());
    let after = all_deliveries(&app, "&state=succeeded").await;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0]["attempts"], 3);

    // Unknown ids and bad input get JSON errors.
    let unknown = uuid::Uuid::now_v7();
    let resp = admin_post(
        &app,
        &format!("/api/v1/webhooks/deliveries/{unknown}/retry"),
        None,
    )
    .await;
    assert_eq!(
        error_code(resp).await,
        (StatusCode::NOT_FOUND, "not_found".into())
    );
    let resp = admin_post(&app, "/api/v1/webhooks/deliveries/nope/retry", None).await;
    assert_eq!(
        error_code(resp).await,
        (StatusCode::BAD_REQUEST, "invalid_delivery_id".into())
    );
}

#[tokio::test]
async fn admin_keys_guard_the_webhooks_api_and_private_urls_are_refused() {
    // Without ADMIN_KEYS the endpoints are off.
    let off = TestApp::spawn().await;
    let resp = off
        .client
        .get(off.url("/api/v1/webhooks"))
        .bearer_auth("x")
        .send()
        .await
        .expect("GET");
    assert_eq!(
        error_code(resp).await,
        (StatusCode::FORBIDDEN, "admin_disabled".into())
    );

    let app = TestApp::spawn_with(&[
        ("ADMIN_KEYS", ADMIN),
        ("API_KEYS", "an-api-key"),
        ("SECRET_KEY", "a-long-enough-secret-for-links"),
    ])
    .await;
    for token in [None, Some("wrong"), Some("an-api-key")] {
        let mut req = app.client.get(app.url("/api/v1/webhooks/deliveries"));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.expect("GET");
        assert_eq!(resp.headers()["www-authenticate"], "Bearer", "{token:?}");
        assert_eq!(
            error_code(resp).await,
            (StatusCode::UNAUTHORIZED, "unauthorized".into())
        );
    }
    // An admin key is not an API key.
    let resp = app
        .client
        .post(app.url("/api/v1/uploads"))
        .bearer_auth(ADMIN)
        .json(
            &json!({"image_id": "x", "filename": "a.png", "content_type": "image/png", "size": 10}),
        )
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // Authentication comes before the input is read.
    let resp = app
        .client
        .post(app.url("/api/v1/webhooks"))
        .body("{not json")
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    for (url, code) in [
        ("http://127.0.0.1:9/hook", "forbidden_webhook_url"),
        ("http://localhost:9/hook", "forbidden_webhook_url"),
        ("http://10.1.2.3/hook", "forbidden_webhook_url"),
        (
            "http://169.254.169.254/latest/meta-data",
            "forbidden_webhook_url",
        ),
        ("http://[::1]/hook", "forbidden_webhook_url"),
        ("http://[::ffff:192.168.0.1]/hook", "forbidden_webhook_url"),
        ("ftp://example.com/hook", "invalid_webhook_url"),
        ("not a url", "invalid_webhook_url"),
    ] {
        let resp = admin_post(&app, "/api/v1/webhooks", Some(json!({"url": url}))).await;
        assert_eq!(
            error_code(resp).await,
            (StatusCode::BAD_REQUEST, code.into()),
            "{url}"
        );
    }
    let resp = admin_post(
        &app,
        "/api/v1/webhooks",
        Some(json!({"url": "https://hooks.example.com/in", "events": ["upload.exploded"]})),
    )
    .await;
    assert_eq!(
        error_code(resp).await,
        (StatusCode::BAD_REQUEST, "unknown_event_type".into())
    );
    let resp = app
        .client
        .get(app.url("/api/v1/webhooks/deliveries?state=lost"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = app
        .client
        .get(app.url("/api/v1/webhooks/deliveries?limit=0"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("GET");
    assert_eq!(
        error_code(resp).await,
        (StatusCode::BAD_REQUEST, "invalid_limit".into())
    );
    assert_eq!(
        admin_get(&app, "/api/v1/webhooks").await["webhooks"],
        json!([])
    );
}

#[tokio::test]
async fn a_name_that_resolves_to_a_private_address_when_sending_is_not_reached() {
    // As if a public name had been registered and then pointed at loopback (DNS
    // rebinding): the row is written directly, since the API would refuse it.
    let receiver = Receiver::start(&[SECRET], json!({"mode": "ok"})).await;
    let app = TestApp::spawn_with(&[("ADMIN_KEYS", ADMIN), ("WEBHOOK_RETRY_SCHEDULE", "0")]).await;
    let port = receiver.url.rsplit(':').next().expect("port").to_owned();
    for host in ["localhost", "127.0.0.1", "[::ffff:127.0.0.1]"] {
        app.db()
            .insert_endpoint(
                EndpointRow {
                    id: uuid::Uuid::now_v7(),
                    url: format!("http://{host}:{port}"),
                    events: None,
                    secret: Some(SECRET.into()),
                    source: EndpointSource::Api,
                    enabled: true,
                    disabled_at: None,
                    disabled_reason: None,
                    created_at: time::OffsetDateTime::now_utc(),
                },
                &upload_broker::db::admin::NewAudit::new("test", "register_webhook", host),
            )
            .await
            .expect("endpoint");
    }
    app.legacy_stored("rebind", "a.png", PNG).await;
    let deliveries = settled_deliveries(&app, Duration::from_secs(60)).await;
    assert_eq!(deliveries.len(), 3);
    for d in &deliveries {
        assert_eq!(d["state"], "failed", "{d}");
        assert!(d["last_status"].is_null());
        let error = d["last_error"].as_str().expect("error");
        assert!(error.contains("private"), "{error}");
    }
    assert!(
        receiver.log().await.is_empty(),
        "nothing reached the private address"
    );
}

impl Process {
    /// The first page of the delivery log.
    async fn deliveries(&self) -> Vec<Value> {
        let page: Value = self
            .client
            .get(format!(
                "http://127.0.0.1:{}/api/v1/webhooks/deliveries",
                self.port
            ))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("deliveries")
            .json()
            .await
            .expect("JSON");
        page["deliveries"].as_array().expect("deliveries").clone()
    }
}

/// The settings of a service process sending to `receiver`, on a fresh database and
/// bucket, plus `extra`.
async fn process_env(
    receiver: &Receiver,
    extra: &[(&str, &str)],
) -> (Vec<(String, String)>, std::sync::Arc<tempfile::TempDir>) {
    let mut settings = sending_to(receiver, "1,1,1,1,1", SECRET);
    settings.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let settings: Vec<(&str, &str)> = settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    service_process_env(&settings).await
}

#[tokio::test]
async fn variants_ready_follows_the_completion_with_the_variants_urls() {
    let receiver = Receiver::start(&[SECRET], json!({"mode": "ok"})).await;
    let mut settings = sending_to(&receiver, "1,1,1,1,1", SECRET);
    settings.push(("IMAGE_VARIANTS".into(), "thumb:32".into()));
    let app = TestApp::spawn_with(&pairs(&settings)).await;
    let record = app.upload("madehook", "a.jpg", "image/jpeg", JPEG).await;
    let id = record["upload_id"].as_str().expect("id");
    let delivered = receiver.wait_delivered(2, Duration::from_secs(30)).await;
    let mut events: Vec<&Value> = delivered.values().map(|entries| &entries[0]).collect();
    events.sort_by_key(|e| e["event_timestamp"].as_str().map(str::to_owned));
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().expect("type"),
                e["upload_id"].as_str().expect("id"),
            )
        })
        .collect();
    assert_eq!(kinds, [("upload.completed", id), ("variants.ready", id)]);
    assert_eq!(events[0]["variants_state"], "pending");
    assert_eq!(events[1]["variants_state"], "ready");
    assert_eq!(events[1]["verified"], true);
    let thumb = &events[1]["variants"]["thumb"]["webp"];
    let bytes = reqwest::get(thumb["url"].as_str().expect("url"))
        .await
        .expect("GET")
        .bytes()
        .await
        .expect("bytes");
    let image = image::load_from_memory(&bytes).expect("the variant decodes");
    assert_eq!(image.width().max(image.height()), 32);
    assert_eq!(thumb["size"], bytes.len());
}

#[tokio::test]
async fn a_service_killed_with_deliveries_in_flight_delivers_them_all_after_a_restart() {
    // The receiver holds each request two seconds: the kill comes while they are in flight.
    let receiver = Receiver::start(&[SECRET], json!({"mode": "slow", "delay": 2})).await;
    let (env, _dir) = process_env(&receiver, &[]).await;

    let port = free_port();
    let service = start_process(&env, port).await;
    let mut uploads = Vec::new();
    for n in 0..10 {
        service.legacy_upload(&format!("killed{n}")).await;
        uploads.push(format!("killed{n}"));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        receiver.log().await.is_empty(),
        "nothing answered before the kill"
    );
    drop(service); // SIGKILL
    receiver.set_mode(json!({"mode": "ok"})).await;

    let restarted_at = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as f64 / 1e9;
    let port = free_port();
    let service = start_process(&env, port).await;
    // The killed process's leases run out (WEBHOOK_TIMEOUT + 5 s) and are taken again.
    let started = Instant::now();
    let deliveries = loop {
        let deliveries = service.deliveries().await;
        if deliveries.iter().all(|d| d["state"] == "succeeded") {
            break deliveries;
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "{deliveries:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(deliveries.len(), 10, "one delivery per upload");
    // Each event reached the receiver, verified, from the restarted service.
    let mut image_ids: Vec<String> = receiver
        .log()
        .await
        .iter()
        .filter(|e| e["started"].as_f64().expect("start") > restarted_at && e["answer"] == 204)
        .map(|e| e["image_id"].as_str().expect("image_id").to_owned())
        .collect();
    image_ids.sort();
    image_ids.dedup();
    uploads.sort();
    assert_eq!(image_ids, uploads, "every event arrived after the restart");
    for d in &deliveries {
        assert_eq!(
            d["attempts"], 1,
            "the killed attempt was never recorded: {d}"
        );
    }
}

#[tokio::test]
async fn two_replicas_deliver_each_event_once_and_never_at_the_same_time() {
    let receiver = Receiver::start(&[SECRET], json!({"mode": "ok", "delay": 0.05})).await;
    let settings = sending_to(&receiver, "1,1,1,1,1", SECRET);
    let one = TestApp::spawn_with(&pairs(&settings)).await;
    let mut shared = one.s3_settings().await;
    shared.push(("DATABASE_URL".into(), one.database_url()));
    shared.extend(settings);
    let two = TestApp::spawn_with(&pairs(&shared)).await;

    use futures_util::StreamExt as _;
    let replicas = [&one, &two];
    futures_util::stream::iter(0..40usize)
        .map(|n| async move {
            let resp = replicas[n % 2]
                .legacy_upload(&format!("pair{}", n % 4), "a.png", PNG)
                .await;
            assert_eq!(resp.status(), StatusCode::OK);
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    receiver.wait_delivered(40, Duration::from_secs(30)).await;
    // Late duplicates would arrive now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut by_id: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for entry in receiver.log().await {
        by_id
            .entry(entry["id"].as_str().expect("id").to_owned())
            .or_default()
            .push((
                entry["started"].as_f64().expect("start"),
                entry["ended"].as_f64().expect("end"),
            ));
    }
    assert_eq!(by_id.len(), 40);
    for (id, mut spans) in by_id {
        assert_eq!(spans.len(), 1, "{id} was sent {} times", spans.len());
        spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    for d in settled_deliveries(&one, Duration::from_secs(10)).await {
        assert_eq!(d["state"], "succeeded");
        assert_eq!(d["attempts"], 1);
    }
}

#[tokio::test]
async fn a_stopping_service_finishes_its_attempts_within_the_grace() {
    let receiver = Receiver::start(&[SECRET], json!({"mode": "slow", "delay": 1.5})).await;
    let (env, _dir) = process_env(&receiver, &[("SHUTDOWN_GRACE", "5")]).await;

    let port = free_port();
    let mut service = start_process(&env, port).await;
    service.legacy_upload("drained").await;
    // The attempt is in flight (the receiver holds it 1.5 s) when SIGTERM comes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = service.child.id().to_string();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(term.success());
    let stopped = tokio::task::spawn_blocking(move || {
        let status = service.child.wait().expect("wait");
        (service, status)
    })
    .await
    .expect("join");
    assert!(stopped.1.success(), "a clean exit: {:?}", stopped.1);
    let log = receiver.log().await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["answer"], 204);

    // Started again: the attempt was recorded before the exit, so it is not made twice.
    let port = free_port();
    let service = start_process(&env, port).await;
    let deliveries = service.deliveries().await;
    assert_eq!(deliveries[0]["state"], "succeeded", "{deliveries:?}");
    assert_eq!(deliveries[0]["attempts"], 1);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(receiver.log().await.len(), 1, "no second attempt");
}

#[tokio::test]
async fn old_events_are_pruned_but_never_one_still_being_delivered() {
    let receiver = Receiver::start(&[SECRET], json!({"mode": "ok"})).await;
    let settings = sending_to(&receiver, "60", SECRET);
    let app = TestApp::spawn_with(&pairs(&settings)).await;
    app.legacy_stored("pruned", "a.png", PNG).await;
    receiver.wait_delivered(1, Duration::from_secs(10)).await;
    settled_deliveries(&app, Duration::from_secs(10)).await;
    receiver.set_mode(json!({"mode": "fail"})).await;
    let waiting = app.legacy_stored("pruned", "b.png", PNG).await;
    let started = Instant::now();
    while all_deliveries(&app, "&state=pending").await[0]["attempts"] != 1 {
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let later = time::OffsetDateTime::now_utc() + Duration::from_secs(1);
    let removed = app.db().prune_events(later).await.expect("prune");
    assert_eq!(removed, 1, "the delivered event goes");
    let left = all_deliveries(&app, "").await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["upload_id"], waiting["upload_id"]);
    let events = app.sql("SELECT COUNT(*) AS n FROM events").await;
    assert_eq!(events[0].try_get::<i64>("", "n").expect("n"), 1);
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let receiver = Receiver::start(&[SECRET], json!({"mode": "redirect"})).await;
    let settings = sending_to(&receiver, "0", SECRET);
    let app = TestApp::spawn_with(&pairs(&settings)).await;
    app.legacy_stored("redirected", "a.png", PNG).await;
    let deliveries = settled_deliveries(&app, Duration::from_secs(15)).await;
    assert_eq!(deliveries[0]["state"], "failed");
    assert_eq!(deliveries[0]["attempts"], 2);
    assert_eq!(deliveries[0]["last_status"], 302);
    assert_eq!(
        deliveries[0]["last_error"],
        "HTTP 302: redirects are not followed"
    );
    let log = receiver.log().await;
    assert_eq!(log.len(), 2);
    assert!(log.iter().all(|e| e["path"] == "/hook"), "{log:?}");
}

#[tokio::test]
async fn a_hanging_endpoint_does_not_hold_up_another() {
    // One endpoint holds every request past the timeout; the other answers at once.
    let hanging = Receiver::start(&[], json!({"mode": "slow", "delay": 30})).await;
    let prompt = Receiver::start(&[], json!({"mode": "ok"})).await;
    let app = TestApp::spawn_with(&[
        ("ADMIN_KEYS", ADMIN),
        ("WEBHOOK_ALLOW_PRIVATE", "true"),
        ("WEBHOOK_TIMEOUT", "20"),
    ])
    .await;
    for receiver in [&hanging, &prompt] {
        let resp = admin_post(&app, "/api/v1/webhooks", Some(json!({"url": receiver.url}))).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        let created: Value = resp.json().await.expect("JSON");
        receiver
            .set_secrets(&[created["secret"].as_str().expect("secret")])
            .await;
    }
    // More events than the dispatcher has attempts in flight (128): without a bound per
    // endpoint the hanging one would take them all until its requests time out.
    let started = Instant::now();
    use futures_util::StreamExt as _;
    futures_util::stream::iter(0..140)
        .map(|n| {
            let app = &app;
            async move {
                let resp = app.legacy_upload("busy", &format!("{n}.png"), PNG).await;
                assert_eq!(resp.status(), StatusCode::OK);
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    prompt.wait_delivered(140, Duration::from_secs(15)).await;
    assert!(
        started.elapsed() < Duration::from_secs(18),
        "the prompt endpoint got every event before the other's first timeout (20 s)"
    );
    // The prompt endpoint's outcomes are recorded in bursts, just after its answers.
    let mut held = all_deliveries(&app, "&state=pending").await;
    while held.len() > 140 && started.elapsed() < Duration::from_secs(18) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        held = all_deliveries(&app, "&state=pending").await;
    }
    assert_eq!(
        held.len(),
        140,
        "the hanging endpoint's deliveries are still pending"
    );
    assert!(held.iter().all(|d| d["endpoint"] == hanging.url));
}
