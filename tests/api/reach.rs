//! The embedded store on the service's own origin: URLs name the origin the client reached
//! (its `Host`, `X-Forwarded-*` only from `TRUSTED_PROXIES`, or `PUBLIC_URL`), and with
//! `ALLOWED_HOSTS` no other host is answered, so a forged `Host` cannot send a browser's
//! bytes elsewhere.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

fn body() -> Value {
    json!({"image_id": "reach", "filename": "a.png", "content_type": "image/png", "size": PNG.len()})
}

/// Issues an upload with `headers` on the request; the answer.
async fn issue_with(app: &TestApp, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = app.client.post(app.url("/api/v1/uploads")).json(&body());
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.send().await.expect("POST")
}

/// Issues an upload with `headers` on the request, which must be created with its URL at
/// `prefix`; the answer.
async fn issued_at(app: &TestApp, headers: &[(&str, &str)], prefix: &str) -> Value {
    let resp = issue_with(app, headers).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let issued: Value = resp.json().await.expect("JSON");
    let url = issued["url"].as_str().expect("url");
    assert!(url.starts_with(prefix), "{url} is not at {prefix}");
    issued
}

/// PUTs `bytes` to `url` over the loopback connection, with the `Host` the URL names (as a
/// client that resolved that name to this machine would).
async fn put_by_name(app: &TestApp, issued: &Value, bytes: &[u8]) -> reqwest::Response {
    let url = reqwest::Url::parse(issued["url"].as_str().expect("url")).expect("URL");
    let host = match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().expect("host")),
        None => url.host_str().expect("host").to_owned(),
    };
    let mut target = url.clone();
    target.set_host(Some("127.0.0.1")).expect("host");
    target.set_port(Some(app.port())).expect("port");
    target.set_scheme("http").expect("scheme");
    let req = app
        .client
        .put(target)
        .header("Host", host)
        .body(bytes.to_vec());
    with_signed_headers(req, issued).send().await.expect("PUT")
}

#[tokio::test]
async fn urls_name_the_host_the_client_reached_and_the_upload_goes_through_it() {
    if on_external_store() {
        return; // Only the embedded store is served on the service's origin.
    }
    let app = TestApp::spawn().await;
    let port = app.port();
    let host = format!("photos.lan:{port}");
    let issued = issued_at(
        &app,
        &[("Host", &host)],
        &format!("http://{host}/upload-broker/staging/reach/"),
    )
    .await;
    // The bytes go to the service's listener under that name, and land.
    assert_eq!(
        put_by_name(&app, &issued, PNG).await.status(),
        StatusCode::OK
    );
    let upload_id = issued["upload_id"].as_str().expect("id");
    let resp = app
        .client
        .post(app.url(&format!("/api/v1/uploads/{upload_id}/confirm")))
        .header("Host", &host)
        .send()
        .await
        .expect("confirm");
    assert_eq!(resp.status(), StatusCode::OK);
    let record: Value = resp.json().await.expect("JSON");
    assert_eq!(record["state"], "completed");
    let s3_url = record["s3_url"].as_str().expect("s3_url");
    assert!(
        s3_url.starts_with(&format!("http://{host}/upload-broker/uploads/reach/")),
        "{s3_url}"
    );
    // The same URL, read under that name: the bytes that were sent.
    let read = get_by_name(&app, s3_url, &host).await;
    assert_eq!(read, PNG);
    // A URL signed for one name does not work under another: the host is signed.
    let resp = app
        .client
        .get(app.url(s3_url.split_once(&host).expect("path").1))
        .header("Host", format!("other.lan:{port}"))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // The event others read names the service's own store, never the request's host.
    let events = app.sql("SELECT payload FROM events").await;
    assert!(!events.is_empty());
    for event in events {
        let payload: String = event.try_get("", "payload").expect("payload");
        assert!(!payload.contains("photos.lan"), "{payload}");
    }
}

/// GETs `url` (named by `host`) over the loopback connection; its bytes.
async fn get_by_name(app: &TestApp, url: &str, host: &str) -> Vec<u8> {
    let path = url.split_once(host).expect("path").1;
    let resp = app
        .client
        .get(app.url(path))
        .header("Host", host)
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), StatusCode::OK);
    resp.bytes().await.expect("bytes").to_vec()
}

#[tokio::test]
async fn a_forged_host_gets_no_url_that_points_elsewhere() {
    if on_external_store() {
        return;
    }
    // PUBLIC_URL: whatever the request says, URLs name it.
    let app = TestApp::spawn_with(&[("PUBLIC_URL", "https://uploads.example.com")]).await;
    for headers in [
        vec![("Host", "evil.example")],
        vec![
            ("Host", "evil.example"),
            ("X-Forwarded-Host", "evil.example"),
        ],
    ] {
        issued_at(
            &app,
            &headers,
            "https://uploads.example.com/upload-broker/staging/",
        )
        .await;
    }

    // ALLOWED_HOSTS: another host is refused before anything is made.
    let app = TestApp::spawn_with(&[("ALLOWED_HOSTS", "photos.lan, 127.0.0.1")]).await;
    let port = app.port();
    let resp = issue_with(&app, &[("Host", "evil.example")]).await;
    let (status, code) = error_code(resp).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "unknown_host")
    );
    assert_eq!(app.count_rows().await, 0);
    // The seed's routes answer in the seed's shape.
    let resp = app
        .client
        .get(app.url("/api/url/reach"))
        .header("Host", "evil.example")
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let legacy: Value = resp.json().await.expect("JSON");
    assert_eq!(legacy["success"], false, "{legacy}");
    // Health checks ask by address and still get their answer.
    let resp = app
        .client
        .get(app.url("/health"))
        .header("Host", "10.1.2.3:5000")
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), StatusCode::OK);
    // An allowed host on any port; a forwarded host from a peer that is not a trusted proxy
    // is ignored.
    let host = format!("photos.lan:{port}");
    let issued = issued_at(
        &app,
        &[("Host", &host), ("X-Forwarded-Host", "evil.example")],
        &format!("http://{host}/upload-broker/"),
    )
    .await;
    assert_eq!(
        put_by_name(&app, &issued, PNG).await.status(),
        StatusCode::OK
    );

    // Behind a trusted proxy, its X-Forwarded-Host and -Proto name the origin, and are held
    // to ALLOWED_HOSTS like a Host.
    let app = TestApp::spawn_with(&[
        ("ALLOWED_HOSTS", "photos.example.com"),
        ("TRUSTED_PROXIES", "127.0.0.0/8"),
    ])
    .await;
    issued_at(
        &app,
        &[
            ("Host", "internal:8080"),
            ("X-Forwarded-Host", "photos.example.com"),
            ("X-Forwarded-Proto", "https"),
        ],
        "https://photos.example.com/upload-broker/",
    )
    .await;
    let resp = issue_with(
        &app,
        &[
            ("Host", "photos.example.com"),
            ("X-Forwarded-Host", "evil.example"),
        ],
    )
    .await;
    let (status, code) = error_code(resp).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "unknown_host")
    );
}

#[tokio::test]
async fn settings_that_are_not_an_origin_or_hosts_are_refused_at_start() {
    for (name, value) in [
        ("PUBLIC_URL", "https://uploads.example.com/app"),
        ("PUBLIC_URL", "uploads.example.com"),
        ("ALLOWED_HOSTS", "photos.lan/x"),
        ("ALLOWED_HOSTS", "user@photos.lan"),
    ] {
        let vars = std::collections::HashMap::from([(name.to_owned(), value.to_owned())]);
        let err = upload_broker::config::Config::from_map(&vars).expect_err(value);
        assert!(err.to_string().contains(name), "{err}");
    }
}
