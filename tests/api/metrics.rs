//! `/metrics`: what the service did, in the Prometheus text format. The registry is the
//! process's, shared by the tests running beside this one, so it checks growth.

use reqwest::StatusCode;
use std::time::Duration;

use crate::helpers::*;

/// The value of one sample line (`name{labels} value`), 0 when it is not there yet.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.parse().expect("a number"))
}

async fn scrape(app: &TestApp) -> String {
    let resp = app.get("/metrics").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let kind = resp.headers()["content-type"]
        .to_str()
        .expect("type")
        .to_owned();
    assert!(kind.starts_with("text/plain"), "{kind}");
    resp.text().await.expect("text")
}

#[tokio::test]
async fn metrics_count_requests_uploads_failures_s3_calls_and_sweeps() {
    let app = TestApp::spawn().await;
    let before = scrape(&app).await;

    let issued = app.issue("metered", "a.png", "image/png", PNG).await;
    assert_eq!(app.put(&issued, PNG).await.status(), StatusCode::OK);
    app.confirm_stored(issued["upload_id"].as_str().expect("id"), PNG)
        .await;
    let liar = app.issue("metered", "b.png", "image/png", JPEG).await;
    assert_eq!(app.put(&liar, JPEG).await.status(), StatusCode::OK);
    let (status, code) =
        error_code(app.confirm(liar["upload_id"].as_str().expect("id")).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "type_mismatch")
    );
    app.uploads.sweep(Duration::ZERO).await.expect("sweep");

    let after = scrape(&app).await;
    let grew = |series: &str, by: f64| {
        let (was, now) = (sample(&before, series), sample(&after, series));
        assert!(now >= was + by, "{series}: {was} -> {now}\n{after}");
    };
    grew(
        r#"upload_broker_http_requests_total{route="/api/v1/uploads",method="POST",status="201"}"#,
        2.0,
    );
    grew(
        r#"upload_broker_http_requests_total{route="/api/v1/uploads/{upload_id}/confirm",method="POST",status="422"}"#,
        1.0,
    );
    grew(
        r#"upload_broker_http_request_duration_seconds_count{route="/api/v1/uploads/{upload_id}/confirm"}"#,
        2.0,
    );
    grew(
        r#"upload_broker_upload_transitions_total{state="pending"}"#,
        2.0,
    );
    grew(
        r#"upload_broker_upload_transitions_total{state="completed"}"#,
        1.0,
    );
    grew(
        r#"upload_broker_upload_transitions_total{state="failed"}"#,
        1.0,
    );
    grew("upload_broker_confirmed_bytes_total", PNG.len() as f64);
    grew(
        r#"upload_broker_verification_failures_total{code="type_mismatch"}"#,
        1.0,
    );
    // Each confirm reads its object's first bytes (a ranged GetObject, which also gives
    // its size), and needs no HeadObject.
    grew(
        r#"upload_broker_s3_requests_total{operation="GetObject",outcome="ok"}"#,
        2.0,
    );
    grew(
        r#"upload_broker_s3_request_duration_seconds_count{operation="GetObject"}"#,
        2.0,
    );
    grew(r#"upload_broker_sweeps_total{outcome="ok"}"#, 1.0);
    // Every histogram ends with its +Inf bucket equal to its count.
    let inf = sample(
        &after,
        r#"upload_broker_http_request_duration_seconds_bucket{route="/metrics",le="+Inf"}"#,
    );
    let count = sample(
        &after,
        r#"upload_broker_http_request_duration_seconds_count{route="/metrics"}"#,
    );
    assert!(inf >= 1.0 && inf == count, "{inf} vs {count}");
    // The pools of this service's database, open connections split by use.
    assert!(after.contains("# TYPE upload_broker_db_connections gauge"));
    assert!(
        after.contains("upload_broker_db_connections{pool="),
        "{after}"
    );
    // What a client sends in a URL never becomes a series of its own.
    assert!(!after.contains("metered"));
}
