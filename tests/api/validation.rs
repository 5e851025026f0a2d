//! Bad input gets a clear JSON error with a stable code, and nothing is signed or recorded.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

fn request(image_id: &str, filename: &str, content_type: &str, size: i64) -> Value {
    json!({ "image_id": image_id, "filename": filename, "content_type": content_type, "size": size })
}

#[tokio::test]
async fn invalid_requests_are_refused_before_signing() {
    let app = TestApp::spawn_with(&[("MAX_UPLOAD_SIZE", "5242880")]).await;
    let long_id = "a".repeat(101);
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            request("../etc", "a.png", "image/png", 10),
            StatusCode::BAD_REQUEST,
            "invalid_image_id",
        ),
        (
            request(&long_id, "a.png", "image/png", 10),
            StatusCode::BAD_REQUEST,
            "invalid_image_id",
        ),
        (
            request("", "a.png", "image/png", 10),
            StatusCode::BAD_REQUEST,
            "invalid_image_id",
        ),
        (
            request("a b", "a.png", "image/png", 10),
            StatusCode::BAD_REQUEST,
            "invalid_image_id",
        ),
        (
            request("ok", "a.svg", "image/svg+xml", 10),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_type",
        ),
        (
            request("ok", "a.txt", "text/plain", 10),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_type",
        ),
        (
            request("ok", "a.svg", "image/png", 10),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_type",
        ),
        (
            request("ok", "a.jpg", "image/png", 10),
            StatusCode::BAD_REQUEST,
            "extension_mismatch",
        ),
        (
            request("ok", "noext", "image/png", 10),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_type",
        ),
        (
            request("ok", "", "image/png", 10),
            StatusCode::BAD_REQUEST,
            "invalid_filename",
        ),
        (
            request("ok", "a.png", "image/png", 0),
            StatusCode::BAD_REQUEST,
            "invalid_size",
        ),
        (
            request("ok", "a.png", "image/png", -5),
            StatusCode::BAD_REQUEST,
            "invalid_size",
        ),
        (
            request("ok", "a.png", "image/png", 5 * 1024 * 1024 + 1),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
        (
            request("ok", "a.png", "image/png", 6 * 1024 * 1024 * 1024),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
        (
            json!({"image_id": "ok", "filename": "a.png", "content_type": "image/png", "size": 10, "checksum_sha256": "nope"}),
            StatusCode::BAD_REQUEST,
            "invalid_checksum",
        ),
        (
            json!({"image_id": "ok", "filename": "a.png", "content_type": "image/png", "size": 10, "metadata": {"bad key": "x"}}),
            StatusCode::BAD_REQUEST,
            "invalid_metadata",
        ),
        (
            json!({"image_id": "ok", "filename": "a.png"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"image_id": "ok", "filename": "a.png", "content_type": "image/png", "size": "ten"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (body, status, code) in cases {
        let resp = app.create_upload(&body).await;
        assert_eq!(error_code(resp).await, (status, code.to_owned()), "{body}");
    }
    assert_eq!(app.count_rows().await, 0, "nothing recorded");
}

#[tokio::test]
async fn malformed_bodies_get_json_errors() {
    let app = TestApp::spawn().await;
    let resp = app
        .client
        .post(app.url("/api/v1/uploads"))
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("POST");
    assert_eq!(
        error_code(resp).await,
        (StatusCode::BAD_REQUEST, "invalid_request".to_owned())
    );
    let resp = app
        .client
        .post(app.url("/api/v1/uploads"))
        .header("Content-Type", "text/plain")
        .body("hello")
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(resp.json::<Value>().await.expect("JSON")["code"].is_string());

    // Wrong types and missing fields are said in plain words, not in the parser's.
    for (path, body, says) in [
        (
            "/api/v1/uploads",
            json!({ "image_id": "cat", "content_type": "image/png", "size": 5 }),
            "invalid CreateUploadRequest: a required field is missing or null (a string is expected)",
        ),
        (
            "/api/v1/links",
            json!({ "image_id": "cat", "max_uploads": -1 }),
            "invalid CreateLinkRequest: a field is not a whole number of 0 or more",
        ),
        (
            "/api/v1/uploads",
            json!({ "image_id": 5, "filename": "a.png", "content_type": "image/png", "size": 5 }),
            "invalid CreateUploadRequest: a field is 5, where a string is expected",
        ),
        (
            "/api/v1/uploads",
            json!({ "image_id": "cat", "filename": "a.png", "content_type": "image/png", "size": 5, "metadata": { "alt": false } }),
            "invalid CreateUploadRequest: a field is false, where a string is expected",
        ),
    ] {
        let resp = app.post_json(path, &body).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let body: Value = resp.json().await.expect("JSON");
        assert_eq!(body["code"], "invalid_request");
        assert_eq!(body["message"], says);
    }
    let resp = app.get("/api/v1/images/cat?limit=many").await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(
        body["message"],
        "invalid parameter `limit`: a whole number of 0 or more is expected"
    );
}

#[tokio::test]
async fn a_wrong_method_is_answered_with_the_allowed_ones() {
    let app = TestApp::spawn().await;
    for (method, path, allow) in [
        ("PUT", "/api/v1/uploads", "POST"),
        ("TRACE", "/health", "GET"),
        (
            "PATCH",
            "/api/v1/uploads/0190a0b0-0000-7000-8000-000000000000",
            "DELETE, GET",
        ),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let resp = app
            .client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .expect("request");
        assert_eq!(
            resp.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_eq!(resp.headers()["allow"], allow, "{method} {path}");
        assert_eq!(
            resp.json::<Value>().await.expect("JSON")["code"],
            "method_not_allowed"
        );
    }
}

#[tokio::test]
async fn unknown_and_invalid_ids_are_json_errors() {
    let app = TestApp::spawn().await;
    let unknown = uuid::Uuid::now_v7();
    for path in [
        format!("/api/v1/uploads/{unknown}"),
        "/api/v1/images/nobody/latest".to_owned(),
    ] {
        assert_eq!(
            error_code(app.get(&path).await).await,
            (StatusCode::NOT_FOUND, "not_found".to_owned()),
            "{path}"
        );
    }
    let (status, code) = error_code(app.confirm(&unknown.to_string()).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let (status, code) = error_code(app.get("/api/v1/uploads/not-a-uuid").await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_upload_id")
    );
    let (status, code) = error_code(app.get("/api/v1/images/bad.id").await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_image_id")
    );
    let (status, code) = error_code(app.get("/api/v1/images/someone?limit=0").await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let (status, code) = error_code(app.get("/api/v1/images/someone?limit=1001").await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let (status, code) = error_code(app.get("/api/v1/images/someone?cursor=zzz").await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_cursor")
    );
    let (status, code) = error_code(app.get("/no/such/route").await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
}

#[tokio::test]
async fn the_page_is_served_for_valid_ids_only() {
    let app = TestApp::spawn().await;
    let resp = app.get("/user123").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/html")
    );
    let html = resp.text().await.expect("html");
    assert!(html.contains("<html"));
    // Every asset the page names is served, with its type.
    for name in html
        .split("/static/")
        .skip(1)
        .filter_map(|r| r.split(['"', '\'']).next())
    {
        let asset = app.get(&format!("/static/{name}")).await;
        assert_eq!(asset.status(), StatusCode::OK, "{name}");
        let kind = asset.headers()["content-type"]
            .to_str()
            .expect("type")
            .to_owned();
        if name.ends_with(".js") {
            assert!(kind.contains("javascript"), "{name}: {kind}");
        } else if name.ends_with(".css") {
            assert!(kind.contains("css"), "{name}: {kind}");
        }
    }
    assert_eq!(
        app.get("/static/missing.js").await.status(),
        StatusCode::NOT_FOUND
    );

    let resp = app.get("/bad.id!").await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["success"], false);
    for reserved in ["api", "upload", "static"] {
        assert_eq!(
            app.get(&format!("/{reserved}")).await.status(),
            StatusCode::NOT_FOUND,
            "{reserved}"
        );
    }
    assert_eq!(app.get("/health").await.status(), StatusCode::OK);
    assert_eq!(app.get("/metrics").await.status(), StatusCode::OK);
    assert_eq!(app.get("/docs").await.status(), StatusCode::OK);
    let icon = app.get("/favicon.ico").await;
    assert_eq!(icon.status(), StatusCode::OK);
    assert_eq!(icon.headers()["content-type"], "image/svg+xml");
    // The root leads to the API documentation.
    let root = app.get("/").await;
    assert_eq!(root.status(), StatusCode::OK);
    assert_eq!(root.url().path(), "/docs");
}

/// The service's own names are refused for new uploads and links on every API, and stay
/// readable for lookups.
#[tokio::test]
async fn reserved_image_ids_are_refused_for_new_uploads() {
    let app = TestApp::spawn_with(&[
        ("API_KEYS", "key-alpha"),
        ("SECRET_KEY", "a-long-enough-secret-for-links"),
    ])
    .await;
    for name in [
        "api",
        "health",
        "docs",
        "upload",
        "metrics",
        "static",
        "admin",
        "upload-broker",
    ] {
        let resp = app.issue_as(Some("key-alpha"), name, PNG.len()).await;
        assert_eq!(
            error_code(resp).await,
            (StatusCode::BAD_REQUEST, "reserved_image_id".to_owned()),
            "{name}"
        );
        let resp = app
            .post_as(
                Some("key-alpha"),
                "/api/v1/links",
                &json!({"image_id": name}),
            )
            .await;
        assert_eq!(
            error_code(resp).await,
            (StatusCode::BAD_REQUEST, "reserved_image_id".to_owned()),
            "link for {name}"
        );
        let resp = app.legacy_post(name, "", Some("key-alpha")).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "legacy {name}");
        assert_eq!(
            resp.json::<Value>().await.expect("JSON")["error"],
            "Reserved image ID"
        );
        assert_eq!(
            app.get(&format!("/api/v1/images/{name}")).await.status(),
            StatusCode::OK,
            "lookups accept {name}"
        );
    }
    assert_eq!(app.count_rows().await, 0);
}
