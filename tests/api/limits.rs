//! Rate limits and pending caps: floods get 429 with Retry-After, then service resumes.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

fn issue_body(image_id: &str, size: usize) -> Value {
    json!({"image_id": image_id, "filename": "a.png", "content_type": "image/png", "size": size})
}

async fn issue_from(
    app: &TestApp,
    forwarded_for: Option<&str>,
    key: Option<&str>,
    image_id: &str,
) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url("/api/v1/uploads"))
        .json(&issue_body(image_id, PNG.len()));
    if let Some(addr) = forwarded_for {
        req = req.header("X-Forwarded-For", addr);
    }
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    req.send().await.expect("POST")
}

#[tokio::test]
async fn a_burst_over_the_rate_limit_gets_429_then_recovers() {
    let app = TestApp::spawn_with(&[("RATE_LIMIT", "2"), ("RATE_LIMIT_BURST", "3")]).await;
    // All at once, so the outcome does not depend on how fast this machine is.
    let burst = (0..12).map(|_| issue_from(&app, None, None, "burst"));
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for resp in futures_util::future::join_all(burst).await {
        statuses.push(resp.status());
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            let seconds: u64 = resp.headers()["retry-after"]
                .to_str()
                .expect("retry-after")
                .parse()
                .expect("seconds");
            retry_after = Some(seconds);
            let body: Value = resp.json().await.expect("json");
            assert_eq!(body["code"], "rate_limited");
        }
    }
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    assert!((3..=5).contains(&created), "{statuses:?}");
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    let retry_after = retry_after.expect("a 429");
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    // Only what was created is recorded.
    let listed = app.get_json("/api/v1/images/burst").await;
    assert_eq!(listed["images"], json!([]));

    // Reads are never limited.
    for _ in 0..20 {
        assert_eq!(
            app.get("/api/url/burst").await.status(),
            StatusCode::NOT_FOUND
        );
    }
    // The legacy upload answers in its own shape.
    let (content_type, body) = form_body(&[("file", Some("a.png"), PNG)]);
    let resp = app
        .client
        .post(app.url("/upload/burst"))
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .expect("legacy");
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["success"], false);

    // After the wait it was told, the client gets through again.
    tokio::time::sleep(std::time::Duration::from_secs(retry_after)).await;
    assert_eq!(
        issue_from(&app, None, None, "burst").await.status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn forwarded_for_names_the_client_only_behind_a_trusted_proxy() {
    let limits = [("RATE_LIMIT", "1"), ("RATE_LIMIT_BURST", "1")];
    // Not trusted: X-Forwarded-For is ignored, every request is the peer's.
    let app = TestApp::spawn_with(&limits).await;
    assert_eq!(
        issue_from(&app, Some("203.0.113.1"), None, "xff")
            .await
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        issue_from(&app, Some("203.0.113.2"), None, "xff")
            .await
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );

    // Behind a trusted proxy, each forwarded client has its own bucket...
    let proxied = TestApp::spawn_with(&[
        limits[0],
        limits[1],
        ("TRUSTED_PROXIES", "127.0.0.0/8"),
        ("API_KEYS", "key-one"),
        ("SECRET_KEY", "a-long-enough-secret-for-links"),
    ])
    .await;
    for addr in ["203.0.113.1", "198.51.100.7, 127.0.0.1"] {
        let resp = issue_from(
            &proxied,
            Some(addr),
            Some("key-one"),
            &format!("p{}", addr.len()),
        )
        .await;
        // ...but both came with one key, whose bucket is shared.
        let expected = if addr == "203.0.113.1" {
            StatusCode::CREATED
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(resp.status(), expected, "{addr}");
    }
    // The first address again, without a key: its address bucket is spent.
    assert_eq!(
        issue_from(&proxied, Some("203.0.113.1"), None, "xff")
            .await
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Minting a link counts against the key too: wait for its bucket to refill.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let link: Value = proxied
        .client
        .post(proxied.url("/api/v1/links"))
        .header("X-Forwarded-For", "192.0.2.50")
        .bearer_auth("key-one")
        .json(&json!({"image_id": "xff"}))
        .send()
        .await
        .expect("link")
        .json()
        .await
        .expect("json");
    let token = link["token"].as_str().expect("token");
    // Another address with its own link: its own buckets.
    assert_eq!(
        issue_from(&proxied, Some("192.0.2.99"), Some(token), "xff")
            .await
            .status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn pending_uploads_and_bytes_are_capped_per_image_id() {
    let app = TestApp::spawn_with(&[("MAX_PENDING_PER_IMAGE", "2")]).await;
    let first = app.issue("capped", "a.png", "image/png", PNG).await;
    app.issue("capped", "b.png", "image/png", PNG).await;
    let resp = app.create_upload(&issue_body("capped", PNG.len())).await;
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(
        error_code(resp).await,
        (StatusCode::TOO_MANY_REQUESTS, "too_many_pending".to_owned())
    );
    // Another image_id is not held back; confirming one frees a place.
    app.issue("other", "a.png", "image/png", PNG).await;
    assert_eq!(app.put(&first, PNG).await.status(), StatusCode::OK);
    app.confirm_stored(first["upload_id"].as_str().expect("id"), PNG)
        .await;
    app.issue("capped", "c.png", "image/png", PNG).await;

    let app = TestApp::spawn_with(&[("MAX_PENDING_BYTES_PER_IMAGE", "1000")]).await;
    assert_eq!(
        app.create_upload(&issue_body("bytes", 600)).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        error_code(app.create_upload(&issue_body("bytes", 600)).await).await,
        (
            StatusCode::TOO_MANY_REQUESTS,
            "pending_bytes_exceeded".to_owned()
        )
    );
    assert_eq!(
        app.create_upload(&issue_body("bytes", 400)).await.status(),
        StatusCode::CREATED
    );
}
