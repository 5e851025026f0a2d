//! Browser-facing safety: response headers, the page's policy, CORS for configured
//! origins only.

use reqwest::{Method, StatusCode};

use crate::helpers::*;

#[tokio::test]
async fn the_page_has_a_strict_policy_and_every_answer_is_not_sniffed() {
    let app = TestApp::spawn().await;
    let page = app.get("/cat_1").await;
    assert_eq!(page.status(), StatusCode::OK);
    let headers = page.headers();
    let policy = headers["content-security-policy"].to_str().expect("policy");
    for directive in [
        "script-src 'self'",
        "object-src 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(directive), "{policy}");
    }
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");

    let api = app.get("/api/v1/images/cat_1").await;
    assert_eq!(api.status(), StatusCode::OK);
    assert_eq!(api.headers()["x-content-type-options"], "nosniff");
    assert!(api.headers().get("content-security-policy").is_none());
    let missing = app.get("/api/v1/uploads/not-a-uuid").await;
    assert_eq!(missing.headers()["x-content-type-options"], "nosniff");
}

async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
    app.client
        .request(Method::OPTIONS, format!("{}/api/v1/uploads", app.address))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type")
        .send()
        .await
        .expect("preflight")
}

#[tokio::test]
async fn cors_answers_configured_origins_only() {
    // Off by default: no origin is let in.
    let closed = TestApp::spawn().await;
    let resp = preflight(&closed, "https://app.example.com").await;
    assert!(resp.headers().get("access-control-allow-origin").is_none());

    let app = TestApp::spawn_with(&[(
        "CORS_ORIGINS",
        "https://app.example.com, http://localhost:3000",
    )])
    .await;
    for origin in ["https://app.example.com", "http://localhost:3000"] {
        let resp = preflight(&app, origin).await;
        assert!(resp.status().is_success(), "{}", resp.status());
        assert_eq!(resp.headers()["access-control-allow-origin"], origin);
        let methods = resp.headers()["access-control-allow-methods"]
            .to_str()
            .expect("methods")
            .to_owned();
        assert!(methods.contains("POST"), "{methods}");
    }
    let resp = preflight(&app, "https://evil.example.net").await;
    assert!(resp.headers().get("access-control-allow-origin").is_none());

    // A real request from an allowed origin carries the header too.
    let resp = app
        .client
        .get(format!("{}/api/v1/images/cat_1", app.address))
        .header("Origin", "https://app.example.com")
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let exposed = resp.headers()["access-control-expose-headers"]
        .to_str()
        .expect("exposed")
        .to_ascii_lowercase();
    assert!(exposed.contains("retry-after"), "{exposed}");
}

#[tokio::test]
async fn readiness_checks_the_database_the_bucket_and_its_cors() {
    let app = TestApp::spawn().await;
    let resp = app.get("/health/ready").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["status"], "ready");
    assert_eq!(body["database"], "ok");
    assert_eq!(body["bucket"], "ok");
    if on_external_store() {
        // A fresh test bucket has no CORS rules; with a rule that exposes ETag to PUTs
        // from browsers, it is ok.
        assert_eq!(body["bucket_cors"], "no_rules");
        let settings: std::collections::HashMap<String, String> =
            app.s3_settings().await.into_iter().collect();
        let client = external_s3_client(&settings);
        let rule = aws_sdk_s3::types::CorsRule::builder()
            .allowed_origins("*")
            .allowed_methods("PUT")
            .allowed_methods("GET")
            .allowed_headers("*")
            .expose_headers("ETag")
            .build()
            .expect("rule");
        client
            .put_bucket_cors()
            .bucket(&settings["AWS_BUCKET_NAME"])
            .cors_configuration(
                aws_sdk_s3::types::CorsConfiguration::builder()
                    .cors_rules(rule)
                    .build()
                    .expect("cors"),
            )
            .send()
            .await
            .expect("put bucket cors");
        let body = app.get_json("/health/ready").await;
        assert_eq!(body["bucket_cors"], "ok");
    } else {
        assert_eq!(body["bucket_cors"], "served_by_service");
    }

    // A bucket that cannot be reached: not ready, within the time limit.
    let down = TestApp::spawn_with(&[
        ("AWS_BUCKET_NAME", "media"),
        ("AWS_ENDPOINT_URL", &closed_endpoint()),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("S3_CONNECT_TIMEOUT", "1"),
        ("S3_OPERATION_TIMEOUT", "1"),
    ])
    .await;
    let started = std::time::Instant::now();
    let resp = down.get("/health/ready").await;
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["database"], "ok");
    assert_eq!(body["bucket"], "unavailable");
}

/// Private buckets (and the embedded store) hand out presigned `s3_url`s that live
/// `OBJECT_URL_EXPIRES`, in both APIs, and open in a plain GET.
#[tokio::test]
async fn presigned_object_urls_live_as_long_as_configured() {
    let app =
        TestApp::spawn_with(&[("OBJECT_URL_EXPIRES", "600"), ("PRIVATE_BUCKET", "true")]).await;
    let issued = app.issue("short", "a.png", "image/png", PNG).await;
    assert_eq!(app.put(&issued, PNG).await.status(), StatusCode::OK);
    let record = app
        .confirm_stored(issued["upload_id"].as_str().expect("id"), PNG)
        .await;
    let legacy = app.get_json("/api/url/short").await;
    for url in [&record["s3_url"], &legacy["s3_url"]] {
        let url = url.as_str().expect("url");
        assert!(url.contains("X-Amz-Expires=600&"), "{url}");
        let fetched = app.client.get(url).send().await.expect("GET");
        assert_eq!(fetched.status(), StatusCode::OK);
        assert_eq!(fetched.bytes().await.expect("bytes").as_ref(), PNG);
    }
}
