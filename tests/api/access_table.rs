//! Every route that takes an upload_id or an image_id, tried with every kind of credential:
//! none, a token that is no credential, an API key, an upload link for the image_id, and
//! one for another image_id. The expected answers are the table in ARCHITECTURE.md
//! ("Who may do what"). A 409 `not_uploaded` on confirm means the caller got past
//! authorization to an upload whose bytes are not there yet.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

const KEYS: &[(&str, &str)] = &[
    ("API_KEYS", "key-alpha"),
    ("SECRET_KEY", "a-long-enough-secret-for-links"),
    ("MULTIPART_THRESHOLD", "5242880"),
];

#[derive(Clone, Copy, Debug)]
enum Who {
    Nobody,
    Stranger,
    Key,
    Link,
    OtherLink,
}

const EVERYONE: [Who; 5] = [
    Who::Nobody,
    Who::Stranger,
    Who::Key,
    Who::Link,
    Who::OtherLink,
];

struct Tokens {
    link: String,
    other: String,
}

impl Tokens {
    fn of(&self, who: Who) -> Option<&str> {
        match who {
            Who::Nobody => None,
            Who::Stranger => Some("not-a-key"),
            Who::Key => Some("key-alpha"),
            Who::Link => Some(&self.link),
            Who::OtherLink => Some(&self.other),
        }
    }
}

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> StatusCode {
    let mut req = app.client.request(method, app.url(path));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(body);
    }
    req.send().await.expect("request").status()
}

/// A pending upload under `cat` made by `token`: a single PUT, or a multipart upload.
async fn pending(app: &TestApp, token: &str, multipart: bool) -> String {
    let size = if multipart { 6 * MIB } else { PNG.len() };
    let resp = app.issue_as(Some(token), "cat", size).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let issued: Value = resp.json().await.expect("issued");
    issued["upload_id"].as_str().expect("id").to_owned()
}

/// A completed upload under `cat` made by `token`.
async fn completed(app: &TestApp, token: &str) -> String {
    let resp = app.issue_as(Some(token), "cat", PNG.len()).await;
    let issued: Value = resp.json().await.expect("issued");
    assert_eq!(app.put(&issued, PNG).await.status(), StatusCode::OK);
    let id = issued["upload_id"].as_str().expect("id").to_owned();
    let confirm = format!("/api/v1/uploads/{id}/confirm");
    assert_eq!(
        app.post_as(Some(token), &confirm, &json!({}))
            .await
            .status(),
        StatusCode::OK
    );
    id
}

#[tokio::test]
async fn every_route_answers_every_credential_as_the_table_says() {
    use Who::*;
    use reqwest::Method;
    use reqwest::StatusCode as S;

    let app = TestApp::spawn_with(KEYS).await;
    let tokens = Tokens {
        link: app.link(json!({"image_id": "cat"})).await,
        other: app.link(json!({"image_id": "dog"})).await,
    };
    let by_key = pending(&app, "key-alpha", false).await;
    let by_link = pending(&app, &tokens.link, false).await;
    let parts_by_key = pending(&app, "key-alpha", true).await;
    let parts_by_link = pending(&app, &tokens.link, true).await;
    let done_by_key = completed(&app, "key-alpha").await;
    let done_by_link = completed(&app, &tokens.link).await;
    let new_upload = json!({"image_id": "cat", "filename": "a.png", "content_type": "image/png",
                            "size": PNG.len()});
    let one_part = json!({"part_numbers": [1]});
    let new_link = json!({"image_id": "cat"});

    let confirm = |id: &str| format!("/api/v1/uploads/{id}/confirm");
    let parts = |id: &str| format!("/api/v1/uploads/{id}/parts");
    let upload = |id: &str| format!("/api/v1/uploads/{id}");
    // (method, path, body, answers for Nobody, Stranger, Key, Link, OtherLink)
    let table: Vec<(Method, String, Option<&Value>, [S; 5])> = vec![
        (
            Method::POST,
            "/api/v1/uploads".into(),
            Some(&new_upload),
            [
                S::UNAUTHORIZED,
                S::UNAUTHORIZED,
                S::CREATED,
                S::CREATED,
                S::FORBIDDEN,
            ],
        ),
        (
            Method::POST,
            confirm(&by_key),
            None,
            [
                S::UNAUTHORIZED,
                S::UNAUTHORIZED,
                S::CONFLICT,
                S::FORBIDDEN,
                S::FORBIDDEN,
            ],
        ),
        (
            Method::POST,
            confirm(&by_link),
            None,
            [
                S::UNAUTHORIZED,
                S::UNAUTHORIZED,
                S::CONFLICT,
                S::CONFLICT,
                S::FORBIDDEN,
            ],
        ),
        (
            Method::POST,
            parts(&parts_by_key),
            Some(&one_part),
            [
                S::UNAUTHORIZED,
                S::UNAUTHORIZED,
                S::OK,
                S::FORBIDDEN,
                S::FORBIDDEN,
            ],
        ),
        (
            Method::POST,
            parts(&parts_by_link),
            Some(&one_part),
            [S::UNAUTHORIZED, S::UNAUTHORIZED, S::OK, S::OK, S::FORBIDDEN],
        ),
        (Method::GET, parts(&parts_by_key), None, [S::OK; 5]),
        (Method::GET, upload(&done_by_key), None, [S::OK; 5]),
        (Method::GET, "/api/v1/images/cat".into(), None, [S::OK; 5]),
        (
            Method::GET,
            "/api/v1/images/cat/latest".into(),
            None,
            [S::OK; 5],
        ),
        (Method::GET, "/api/url/cat".into(), None, [S::OK; 5]),
        (Method::GET, "/api/images/cat".into(), None, [S::OK; 5]),
        // A link may abort only the pending uploads it made: not a key's upload, not its
        // own completed one, and never another image_id's.
        (
            Method::DELETE,
            upload(&done_by_key),
            None,
            [
                S::UNAUTHORIZED,
                S::UNAUTHORIZED,
                S::NO_CONTENT,
                S::FORBIDDEN,
                S::FORBIDDEN,
            ],
        ),
        (
            Method::DELETE,
            upload(&done_by_link),
            None,
            [
                S::UNAUTHORIZED,
                S::UNAUTHORIZED,
                S::NO_CONTENT,
                S::FORBIDDEN,
                S::FORBIDDEN,
            ],
        ),
        (
            Method::DELETE,
            upload(&by_key),
            None,
            [
                S::UNAUTHORIZED,
                S::UNAUTHORIZED,
                S::NO_CONTENT,
                S::FORBIDDEN,
                S::FORBIDDEN,
            ],
        ),
        (
            Method::POST,
            "/api/v1/links".into(),
            Some(&new_link),
            [
                S::UNAUTHORIZED,
                S::UNAUTHORIZED,
                S::CREATED,
                S::FORBIDDEN,
                S::FORBIDDEN,
            ],
        ),
    ];
    for (method, path, body, answers) in &table {
        // The successful delete goes last, so the refusals before it meet the upload whole.
        let mut order: Vec<(Who, S)> = EVERYONE.into_iter().zip(*answers).collect();
        order.sort_by_key(|(who, _)| matches!(who, Key));
        for (who, expected) in order {
            let got = send(&app, method.clone(), path, tokens.of(who), *body).await;
            assert_eq!(got, expected, "{method} {path} as {who:?}");
        }
    }
    // The refused deletes changed nothing before the key's went through.
    assert_eq!(
        app.row(&done_by_link).await.expect("row").state,
        upload_broker::uploads::UploadState::Deleted
    );

    // A link aborts its own pending upload.
    let mine = pending(&app, &tokens.link, false).await;
    assert_eq!(
        send(
            &app,
            Method::DELETE,
            &upload(&mine),
            Some(&tokens.link),
            None
        )
        .await,
        S::NO_CONTENT
    );
    assert_eq!(
        app.row(&mine).await.expect("row").state,
        upload_broker::uploads::UploadState::Aborted
    );

    // The seed's upload takes a link as a bearer token or as `?token=`.
    for (who, expected) in [
        (Nobody, S::UNAUTHORIZED),
        (Stranger, S::UNAUTHORIZED),
        (Key, S::OK),
        (Link, S::OK),
        (OtherLink, S::FORBIDDEN),
    ] {
        let resp = app.legacy_post("cat", "", tokens.of(who)).await;
        assert_eq!(resp.status(), expected, "legacy upload as {who:?}");
    }
    let query = format!("?token={}", tokens.link);
    assert_eq!(app.legacy_post("cat", &query, None).await.status(), S::OK);
}

/// Authentication comes before the input is read: a caller without a valid credential
/// learns nothing about its input, and one with a key gets the input's error.
#[tokio::test]
async fn credentials_are_checked_before_the_input() {
    let app = TestApp::spawn_with(KEYS).await;
    let send_raw = |path: &str, token: Option<&'static str>, body: &'static str| {
        let mut req = app
            .client
            .post(app.url(path))
            .header("Content-Type", "application/json")
            .body(body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send()
    };
    for (path, body, with_key) in [
        ("/api/v1/uploads", "{not json", StatusCode::BAD_REQUEST),
        (
            "/api/v1/uploads",
            "{\"image_id\": 5}",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/uploads/not-a-uuid/confirm",
            "",
            StatusCode::BAD_REQUEST,
        ),
        ("/api/v1/links", "[]", StatusCode::BAD_REQUEST),
    ] {
        for token in [None, Some("not-a-key")] {
            let resp = send_raw(path, token, body).await.expect("POST");
            assert_eq!(
                resp.status(),
                StatusCode::UNAUTHORIZED,
                "{path} {body} {token:?}"
            );
        }
        let resp = send_raw(path, Some("key-alpha"), body).await.expect("POST");
        assert_eq!(resp.status(), with_key, "{path} {body}");
    }
    // The seed's upload: 401 before its image_id is looked at.
    let resp = app.legacy_post("bad.id", "", None).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.legacy_post("bad.id", "", Some("key-alpha"))
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );
}

/// Without `API_KEYS` every route is open, and links cannot be made.
#[tokio::test]
async fn without_keys_every_route_is_open() {
    let app = TestApp::spawn_with(&[("MULTIPART_THRESHOLD", "5242880")]).await;
    let issued = app.issue("cat", "a.png", "image/png", PNG).await;
    let id = issued["upload_id"].as_str().expect("id").to_owned();
    assert_eq!(app.confirm(&id).await.status(), StatusCode::CONFLICT);
    assert_eq!(app.delete(&id).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.legacy_post("cat", "", None).await.status(),
        StatusCode::OK
    );
    let resp = app
        .post_as(None, "/api/v1/links", &json!({"image_id": "cat"}))
        .await;
    assert_eq!(
        error_code(resp).await,
        (StatusCode::FORBIDDEN, "api_key_required".to_owned())
    );
}

/// The tus routes, in the same table: a 409 `offset_mismatch` means the caller got past
/// authorization to the upload.
#[tokio::test]
async fn tus_routes_answer_every_credential_as_the_table_says() {
    use reqwest::Method;
    use reqwest::StatusCode as S;

    let app = TestApp::spawn_with(KEYS).await;
    let tokens = Tokens {
        link: app.link(json!({"image_id": "cat"})).await,
        other: app.link(json!({"image_id": "dog"})).await,
    };
    let metadata = "image_id Y2F0,filename YS5wbmc=";
    let tus = |method: Method, path: &str, token: Option<&str>| {
        let mut req = app
            .client
            .request(method, app.url(path))
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Length", PNG.len().to_string())
            .header("Upload-Metadata", metadata)
            .header("Upload-Offset", "999")
            .header("Content-Type", "application/offset+octet-stream")
            .body(&b"0123456789"[..]);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send()
    };
    let mut made = Vec::new();
    for token in ["key-alpha", tokens.link.as_str()] {
        let resp = tus(Method::POST, "/api/v1/tus", Some(token))
            .await
            .expect("POST");
        assert_eq!(resp.status(), S::CREATED);
        let location = resp.headers()["location"].to_str().expect("location");
        made.push(location.rsplit_once("/api/v1").expect("path").1.to_owned());
    }
    let (by_key, by_link) = (format!("/api/v1{}", made[0]), format!("/api/v1{}", made[1]));
    let refused = [S::UNAUTHORIZED, S::UNAUTHORIZED];
    let table: Vec<(Method, &str, [S; 5])> = vec![
        (
            Method::POST,
            "/api/v1/tus",
            [refused[0], refused[1], S::CREATED, S::CREATED, S::FORBIDDEN],
        ),
        (
            Method::PATCH,
            &by_key,
            [
                refused[0],
                refused[1],
                S::CONFLICT,
                S::FORBIDDEN,
                S::FORBIDDEN,
            ],
        ),
        (
            Method::PATCH,
            &by_link,
            [
                refused[0],
                refused[1],
                S::CONFLICT,
                S::CONFLICT,
                S::FORBIDDEN,
            ],
        ),
        (Method::HEAD, &by_key, [S::OK; 5]),
        (Method::OPTIONS, "/api/v1/tus", [S::NO_CONTENT; 5]),
        (
            Method::DELETE,
            &by_link,
            [
                refused[0],
                refused[1],
                S::NO_CONTENT,
                S::NO_CONTENT,
                S::FORBIDDEN,
            ],
        ),
        (
            Method::DELETE,
            &by_key,
            [
                refused[0],
                refused[1],
                S::NO_CONTENT,
                S::FORBIDDEN,
                S::FORBIDDEN,
            ],
        ),
    ];
    for (method, path, answers) in &table {
        let mut order: Vec<(Who, S)> = EVERYONE.into_iter().zip(*answers).collect();
        order.sort_by_key(|(who, _)| matches!(who, Who::Key));
        for (who, expected) in order {
            let got = tus(method.clone(), path, tokens.of(who))
                .await
                .expect("request")
                .status();
            assert_eq!(got, expected, "{method} {path} as {who:?}");
        }
    }
}
