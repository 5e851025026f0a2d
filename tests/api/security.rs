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

/// `x-amz-*` headers a presigned PUT could add to the object: metadata, tags, an ACL.
const UNSIGNED_EXTRAS: [(&str, &str); 3] = [
    ("x-amz-meta-evil", "1"),
    ("x-amz-tagging", "evil=1"),
    ("x-amz-acl", "public-read"),
];

#[tokio::test]
async fn the_store_refuses_amz_headers_a_presigned_put_did_not_sign() {
    if on_external_store() {
        return; // The embedded store's own rule; AWS has the same.
    }
    let app = TestApp::spawn().await;
    let issued = app.issue("unsigned", "a.png", "image/png", PNG).await;
    // Where the URL writes (its staging key).
    let key = &app.landing(issued["key"].as_str().expect("key"));
    for (name, value) in UNSIGNED_EXTRAS {
        let mut put = app
            .client
            .put(issued["url"].as_str().expect("url"))
            .header(name, value)
            .body(PNG.to_vec());
        for (signed, value) in issued["headers"].as_object().expect("headers") {
            put = put.header(signed, value.as_str().expect("value"));
        }
        let resp = put.send().await.expect("PUT");
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{name}");
        let body = resp.text().await.expect("body");
        assert!(body.contains("<Code>AccessDenied</Code>"), "{body}");
        assert!(body.contains(name), "{body}");
        assert!(app.object(key).await.is_none(), "{name}: nothing stored");
    }
    // Exactly the headers the service returned: stored.
    assert_eq!(app.put(&issued, PNG).await.status(), StatusCode::OK);
    assert_eq!(app.object(key).await.expect("object"), PNG);
}

/// Adds a header after the SDK has signed the request.
#[derive(Debug)]
struct AddAfterSigning(&'static str, &'static str);

impl aws_sdk_s3::config::Intercept for AddAfterSigning {
    fn name(&self) -> &'static str {
        "add a header after signing"
    }

    fn modify_before_transmit(
        &self,
        context: &mut aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextMut<'_>,
        _components: &aws_sdk_s3::config::RuntimeComponents,
        _cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        context.request_mut().headers_mut().insert(self.0, self.1);
        Ok(())
    }
}

#[tokio::test]
async fn the_store_refuses_amz_headers_an_authorization_header_did_not_sign() {
    if on_external_store() {
        return;
    }
    let app = TestApp::spawn().await;
    let settings: std::collections::HashMap<String, String> =
        app.s3_settings().await.into_iter().collect();
    let client = |extra: Option<AddAfterSigning>| {
        let mut config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(&settings["AWS_ENDPOINT_URL"])
            .force_path_style(true)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                &settings["AWS_ACCESS_KEY_ID"],
                &settings["AWS_SECRET_ACCESS_KEY"],
                None,
                None,
                "tests",
            ));
        if let Some(extra) = extra {
            config = config.interceptor(extra);
        }
        aws_sdk_s3::Client::from_conf(config.build())
    };
    let bucket = settings["AWS_BUCKET_NAME"].clone();
    let put = |client: aws_sdk_s3::Client| {
        let bucket = bucket.clone();
        async move {
            client
                .put_object()
                .bucket(bucket)
                .key("other/signed.png")
                .body(PNG.to_vec().into())
                .send()
                .await
        }
    };
    for (name, value) in UNSIGNED_EXTRAS {
        let err = put(client(Some(AddAfterSigning(name, value))))
            .await
            .expect_err("refused");
        let raw = err.raw_response().map(|r| r.status().as_u16());
        assert_eq!(raw, Some(403), "{name}: {err:?}");
        assert!(app.object("other/signed.png").await.is_none(), "{name}");
    }
    put(client(None))
        .await
        .expect("a fully signed PUT is stored");
    assert_eq!(app.object("other/signed.png").await.expect("object"), PNG);
}

/// Whether the answer's `Vary` names `Origin`.
fn varies_on_origin(resp: &reqwest::Response) -> bool {
    resp.headers()
        .get_all("vary")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|name| name.trim().eq_ignore_ascii_case("origin"))
}

#[tokio::test]
async fn cors_answers_say_they_vary_with_the_origin() {
    let app = TestApp::spawn_with(&[("CORS_ORIGINS", "https://app.example.com")]).await;
    let allowed = preflight(&app, "https://app.example.com").await;
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert!(varies_on_origin(&allowed), "{:?}", allowed.headers());
    let refused = preflight(&app, "https://evil.example.net").await;
    assert!(varies_on_origin(&refused), "{:?}", refused.headers());
    for origin in [Some("https://app.example.com"), None] {
        let mut get = app
            .client
            .get(format!("{}/api/v1/images/cat_1", app.address));
        if let Some(origin) = origin {
            get = get.header("Origin", origin);
        }
        let resp = get.send().await.expect("GET");
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(varies_on_origin(&resp), "{origin:?}: {:?}", resp.headers());
    }

    if on_external_store() {
        return; // The bucket's own CORS answers there.
    }
    let issued = app.issue("vary", "a.png", "image/png", PNG).await;
    let url = issued["url"].as_str().expect("url");
    let store_preflight = app
        .client
        .request(Method::OPTIONS, url)
        .header("Origin", "https://app.example.com")
        .header("Access-Control-Request-Method", "PUT")
        .send()
        .await
        .expect("preflight");
    assert!(store_preflight.status().is_success());
    assert!(
        varies_on_origin(&store_preflight),
        "{:?}",
        store_preflight.headers()
    );
    let put = app
        .client
        .put(url)
        .header("Origin", "https://app.example.com")
        .body(PNG.to_vec());
    let put = with_signed_headers(put, &issued);
    let stored = put.send().await.expect("PUT");
    assert_eq!(stored.status(), StatusCode::OK);
    assert_eq!(stored.headers()["access-control-allow-origin"], "*");
    assert!(varies_on_origin(&stored), "{:?}", stored.headers());
}
