//! Access control: with `API_KEYS` set, writes need a key or an upload link minted with one.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

const KEYS: &[(&str, &str)] = &[
    ("API_KEYS", "key-alpha, key-beta"),
    ("SECRET_KEY", "a-long-enough-secret-for-links"),
];

async fn refused(resp: reqwest::Response) -> (StatusCode, String) {
    let unauthorized = resp.status() == StatusCode::UNAUTHORIZED;
    if unauthorized {
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    }
    error_code(resp).await
}

#[tokio::test]
async fn api_keys_guard_every_write_and_reads_stay_open() {
    let app = TestApp::spawn_with(KEYS).await;
    assert_eq!(
        refused(app.issue_as(None, "cat", PNG.len()).await).await,
        (StatusCode::UNAUTHORIZED, "unauthorized".to_owned())
    );
    assert_eq!(
        refused(app.issue_as(Some("key-gamma"), "cat", PNG.len()).await).await,
        (StatusCode::UNAUTHORIZED, "invalid_token".to_owned())
    );
    let resp = app.issue_as(Some("key-beta"), "cat", PNG.len()).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let issued: Value = resp.json().await.expect("issued");
    let id = issued["upload_id"].as_str().expect("id").to_owned();
    assert_eq!(app.put(&issued, PNG).await.status(), StatusCode::OK);

    let confirm = format!("/api/v1/uploads/{id}/confirm");
    assert_eq!(
        refused(app.post_as(None, &confirm, &json!({})).await)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.row(&id).await.expect("row").state,
        upload_broker::uploads::UploadState::Pending
    );
    let resp = app.post_as(Some("key-alpha"), &confirm, &json!({})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    // Lookups need no credentials.
    assert_eq!(
        app.get(&format!("/api/v1/uploads/{id}")).await.status(),
        StatusCode::OK
    );
    assert_eq!(app.get("/api/url/cat").await.status(), StatusCode::OK);
    // Deleting needs them too.
    let resp = app
        .client
        .delete(app.url(&format!("/api/v1/uploads/{id}")))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.row(&id).await.expect("row").state,
        upload_broker::uploads::UploadState::Completed
    );

    // The legacy upload as well; a key works there.
    let resp = app.legacy_post("cat", "", None).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["success"], false);
    assert_eq!(
        app.legacy_post("cat", "", Some("key-alpha")).await.status(),
        StatusCode::OK
    );

    // The OpenAPI document describes the scheme, so Swagger UI's Authorize button works.
    let spec = app.get_json("/openapi.json").await;
    assert_eq!(
        spec["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(spec["paths"]["/api/v1/uploads"]["post"]["security"].is_array());
}

#[tokio::test]
async fn upload_links_are_bound_to_their_image_limits_and_lifetime() {
    let app = TestApp::spawn_with(KEYS).await;
    // Only a key mints links.
    let link_body = json!({"image_id": "cat", "max_uploads": 1, "max_size": PNG.len()});
    assert_eq!(
        refused(app.post_as(None, "/api/v1/links", &link_body).await)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let token = app.link(link_body.clone()).await;
    assert_eq!(
        refused(app.post_as(Some(&token), "/api/v1/links", &link_body).await).await,
        (StatusCode::FORBIDDEN, "api_key_required".to_owned())
    );

    assert_eq!(
        refused(app.issue_as(Some(&token), "dog", PNG.len()).await).await,
        (StatusCode::FORBIDDEN, "forbidden_image_id".to_owned())
    );
    assert_eq!(
        refused(app.issue_as(Some(&token), "cat", PNG.len() + 1).await).await,
        (StatusCode::FORBIDDEN, "link_size_exceeded".to_owned())
    );
    let resp = app.issue_as(Some(&token), "cat", PNG.len()).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let issued: Value = resp.json().await.expect("issued");
    let id = issued["upload_id"].as_str().expect("id").to_owned();
    assert_eq!(app.put(&issued, PNG).await.status(), StatusCode::OK);
    let confirm = format!("/api/v1/uploads/{id}/confirm");
    assert_eq!(
        app.post_as(Some(&token), &confirm, &json!({}))
            .await
            .status(),
        StatusCode::OK
    );
    let row = app.row(&id).await.expect("row");
    assert!(row.link_id.is_some(), "the upload remembers its link");
    // One upload was allowed.
    assert_eq!(
        refused(app.issue_as(Some(&token), "cat", PNG.len()).await).await,
        (StatusCode::FORBIDDEN, "link_exhausted".to_owned())
    );

    // A link for another image cannot touch this upload.
    let other = app.link(json!({"image_id": "dog"})).await;
    assert_eq!(
        refused(app.post_as(Some(&other), &confirm, &json!({})).await).await,
        (StatusCode::FORBIDDEN, "forbidden_image_id".to_owned())
    );
    let resp = app
        .client
        .delete(app.url(&format!("/api/v1/uploads/{id}")))
        .bearer_auth(&other)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        app.row(&id).await.expect("row").state,
        upload_broker::uploads::UploadState::Completed
    );

    // Altered by one character anywhere: refused.
    let mut altered = token.clone().into_bytes();
    let last = altered.len() - 5;
    altered[last] = if altered[last] == b'x' { b'y' } else { b'x' };
    let altered = String::from_utf8(altered).expect("ascii");
    assert_eq!(
        refused(app.issue_as(Some(&altered), "cat", PNG.len()).await).await,
        (StatusCode::UNAUTHORIZED, "invalid_token".to_owned())
    );

    // A link past its lifetime.
    let short = app.link(json!({"image_id": "cat", "expires_in": 1})).await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(
        refused(app.issue_as(Some(&short), "cat", PNG.len()).await).await,
        (StatusCode::UNAUTHORIZED, "token_expired".to_owned())
    );

    // The legacy upload takes a link as `?token=`, for its own image only.
    let legacy = app.link(json!({"image_id": "cat", "max_uploads": 5})).await;
    let resp = app
        .legacy_post("cat", &format!("?token={legacy}"), None)
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = app
        .legacy_post("dog", &format!("?token={legacy}"), None)
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["success"], false);

    // A bad link request is a 400.
    let resp = app
        .post_as(
            Some("key-alpha"),
            "/api/v1/links",
            &json!({"image_id": "cat", "expires_in": 0}),
        )
        .await;
    assert_eq!(
        error_code(resp).await,
        (StatusCode::BAD_REQUEST, "invalid_link".to_owned())
    );
}

#[tokio::test]
async fn without_keys_nothing_changes_and_links_cannot_be_made() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.issue_as(None, "cat", PNG.len()).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        app.issue_as(Some("anything"), "cat", PNG.len())
            .await
            .status(),
        StatusCode::CREATED
    );
    let resp = app
        .post_as(None, "/api/v1/links", &json!({"image_id": "cat"}))
        .await;
    assert_eq!(
        error_code(resp).await,
        (StatusCode::FORBIDDEN, "api_key_required".to_owned())
    );
}

/// The service's own log, at debug level, through a whole keyed flow: it names uploads and
/// images but never a key, the secret, a link's signature, a URL signature or the store's
/// secret key.
#[tokio::test]
async fn logs_carry_no_key_secret_or_signature() {
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let secret = "a-long-enough-secret-for-links";
    /// Stops the service even when an assertion fails first.
    struct Running(Option<std::process::Child>);
    impl Drop for Running {
        fn drop(&mut self) {
            if let Some(child) = self.0.as_mut() {
                let _ = child.kill();
            }
        }
    }
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_upload-broker"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATA_DIR", dir.path())
        .env("PORT", port.to_string())
        .env("BIND_ADDR", "127.0.0.1")
        .env("EMBEDDED_S3_PORT", "0")
        .env("LOG_LEVEL", "DEBUG")
        .env("API_KEYS", "key-alpha")
        .env("SECRET_KEY", secret)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("service starts");
    let mut running = Running(Some(child));
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if client.get(format!("{base}/health")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let post = |path: String, token: &str, body: Option<Value>| {
        let mut req = client.post(format!("{base}{path}")).bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send()
    };
    let link: Value = post(
        "/api/v1/links".into(),
        "key-alpha",
        Some(json!({"image_id": "logged"})),
    )
    .await
    .expect("link")
    .json()
    .await
    .expect("json");
    let token = link["token"].as_str().expect("token").to_owned();
    let body = json!({"image_id": "logged", "filename": "a.png", "content_type": "image/png",
                      "size": PNG.len(), "checksum_sha256": sha256_b64(PNG)});
    let issued: Value = post("/api/v1/uploads".into(), &token, Some(body))
        .await
        .expect("issue")
        .json()
        .await
        .expect("json");
    let url = issued["url"].as_str().expect("url").to_owned();
    let put = with_signed_headers(client.put(&url).body(PNG.to_vec()), &issued);
    assert_eq!(put.send().await.expect("PUT").status(), StatusCode::OK);
    let id = issued["upload_id"].as_str().expect("id");
    let confirm = format!("/api/v1/uploads/{id}/confirm");
    let confirmed = post(confirm.clone(), &token, None).await.expect("confirm");
    assert_eq!(confirmed.status(), StatusCode::OK);
    let bad_key = post(confirm, "key-wrong-but-secret", None)
        .await
        .expect("confirm");
    assert_eq!(bad_key.status(), StatusCode::UNAUTHORIZED);

    let mut child = running.0.take().expect("running");
    child.kill().expect("stop");
    let output = child.wait_with_output().expect("output");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(log.contains(id), "the log names the upload:\n{log}");
    let store_secret = std::fs::read_to_string(dir.path().join("s3.credentials"))
        .expect("store keys")
        .trim()
        .split_once(':')
        .expect("pair")
        .1
        .to_owned();
    let url_signature = url.split("X-Amz-Signature=").nth(1).expect("signed");
    let link_signature = token.rsplit('.').next().expect("signature");
    for (what, needle) in [
        ("the API key", "key-alpha"),
        ("a wrong key", "key-wrong-but-secret"),
        ("SECRET_KEY", secret),
        ("the link's signature", link_signature),
        ("the URL's signature", url_signature),
        ("X-Amz-Signature", "X-Amz-Signature"),
        ("the store's secret key", store_secret.as_str()),
    ] {
        assert!(!log.contains(needle), "{what} is in the log:\n{log}");
    }
}

/// A link's `max_uploads` holds under parallel requests: of 20 at once, exactly 5 get
/// through, on the v1 API and on the seed's upload; a use comes back when an upload is
/// aborted.
#[tokio::test]
async fn a_links_upload_limit_holds_under_parallel_requests() {
    use futures_util::StreamExt;
    let app = TestApp::spawn_with(KEYS).await;
    let link = app.link(json!({"image_id": "cat", "max_uploads": 5})).await;
    let statuses: Vec<StatusCode> = futures_util::stream::iter(0..20)
        .map(|_| async { app.issue_as(Some(&link), "cat", PNG.len()).await.status() })
        .buffer_unordered(20)
        .collect()
        .await;
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::FORBIDDEN)
        .count();
    assert_eq!((created, refused), (5, 15), "{statuses:?}");

    let legacy = app.link(json!({"image_id": "cat", "max_uploads": 5})).await;
    let statuses: Vec<StatusCode> = futures_util::stream::iter(0..20)
        .map(|_| async { app.legacy_post("cat", "", Some(&legacy)).await.status() })
        .buffer_unordered(20)
        .collect()
        .await;
    let stored = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!(stored, 5, "{statuses:?}");
    assert_eq!(app.completed("cat").await.len(), 5);

    // An aborted upload gives its use back; a refused file never takes one.
    let again = app.link(json!({"image_id": "cat", "max_uploads": 1})).await;
    let resp = app.issue_as(Some(&again), "cat", PNG.len()).await;
    let issued: Value = resp.json().await.expect("issued");
    let id = issued["upload_id"].as_str().expect("id");
    assert_eq!(
        app.issue_as(Some(&again), "cat", PNG.len()).await.status(),
        StatusCode::FORBIDDEN
    );
    let resp = app
        .client
        .delete(app.url(&format!("/api/v1/uploads/{id}")))
        .bearer_auth(&again)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let (content_type, body) = form_body(&[("file", Some("a.png"), b"not a png")]);
    let resp = app
        .client
        .post(app.url("/upload/cat"))
        .bearer_auth(&again)
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        app.issue_as(Some(&again), "cat", PNG.len()).await.status(),
        StatusCode::CREATED
    );
}
