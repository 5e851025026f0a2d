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
}
