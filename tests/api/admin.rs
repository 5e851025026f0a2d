//! The operators' API: who may call it, search and its pages, stats against a count of the
//! table, the audit log, and how the database plans each search.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::{Value, json};
use upload_broker::db::admin::{UploadFilter, search_query};

use crate::helpers::*;

const ENDPOINTS: [(&str, &str); 6] = [
    ("GET", "/api/v1/admin/uploads"),
    ("GET", "/api/v1/admin/stats"),
    ("GET", "/api/v1/admin/audit"),
    (
        "POST",
        "/api/v1/admin/uploads/01a2425e-2a03-73a1-8270-35004c54fae5/reverify",
    ),
    (
        "DELETE",
        "/api/v1/admin/uploads/01a2425e-2a03-73a1-8270-35004c54fae5",
    ),
    (
        "POST",
        "/api/v1/admin/uploads/01a2425e-2a03-73a1-8270-35004c54fae5/variants",
    ),
];

async fn send(app: &TestApp, method: &str, path: &str, token: Option<&str>) -> reqwest::Response {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = app.client.request(method, app.url(path));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.expect("answer")
}

#[tokio::test]
async fn only_an_admin_key_opens_the_admin_api() {
    let off = TestApp::spawn().await;
    for (method, path) in ENDPOINTS {
        let resp = send(&off, method, path, Some(ADMIN)).await;
        assert_eq!(
            error_code(resp).await,
            (StatusCode::FORBIDDEN, "admin_disabled".into()),
            "{method} {path}"
        );
    }
    let app = TestApp::spawn_with(&[
        ("ADMIN_KEYS", ADMIN),
        ("API_KEYS", "an-api-key"),
        ("SECRET_KEY", "a-secret-key-of-the-tests"),
    ])
    .await;
    for (method, path) in ENDPOINTS {
        for token in [None, Some("wrong"), Some("an-api-key")] {
            let resp = send(&app, method, path, token).await;
            assert_eq!(
                resp.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {path} {token:?}"
            );
            assert!(
                resp.headers()["www-authenticate"]
                    .to_str()
                    .expect("header")
                    .starts_with("Bearer")
            );
        }
    }
    // The console itself needs no key.
    let page = app.get("/admin").await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.expect("html").contains("<title>"));
}

/// Completed, failed, aborted and pending uploads under three image_ids; their ids by kind.
async fn mixed(app: &TestApp) -> Vec<(String, &'static str, String)> {
    let mut made = Vec::new();
    for (n, image_id) in ["ops-a", "ops-b", "ops-a", "ops-c", "ops-a"]
        .iter()
        .enumerate()
    {
        let record = app.upload(image_id, "a.png", "image/png", PNG).await;
        made.push((
            record["upload_id"].as_str().expect("id").to_owned(),
            "completed",
            (*image_id).to_owned(),
        ));
        if n == 1 {
            let issued = app.issue(image_id, "b.png", "image/png", PNG).await;
            made.push((
                issued["upload_id"].as_str().expect("id").to_owned(),
                "pending",
                (*image_id).to_owned(),
            ));
        }
    }
    let issued = app.issue("ops-b", "c.png", "image/png", PNG).await;
    let mut not_png = PNG.to_vec();
    not_png[1] = b'X';
    assert_eq!(app.put(&issued, &not_png).await.status(), StatusCode::OK);
    let failed = issued["upload_id"].as_str().expect("id").to_owned();
    assert_eq!(
        app.confirm(&failed).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    made.push((failed, "failed", "ops-b".to_owned()));
    let issued = app.issue("ops-c", "d.png", "image/png", PNG).await;
    let aborted = issued["upload_id"].as_str().expect("id").to_owned();
    assert_eq!(app.delete(&aborted).await.status(), StatusCode::NO_CONTENT);
    made.push((aborted, "aborted", "ops-c".to_owned()));
    made
}

/// Every upload a search finds, page by page (`limit` each).
async fn search_all(app: &TestApp, query: &str, limit: u32) -> Vec<Value> {
    let mut found = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/admin/uploads?limit={limit}{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = admin_get(app, &path).await;
        let uploads = page["uploads"].as_array().expect("uploads");
        assert!(uploads.len() <= limit as usize);
        found.extend(uploads.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return found,
        }
    }
}

fn ids(uploads: &[Value]) -> Vec<String> {
    uploads
        .iter()
        .map(|u| u["upload_id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn search_filters_every_state_newest_first_page_by_page() {
    let app = TestApp::spawn_with(&[("ADMIN_KEYS", ADMIN)]).await;
    let made = mixed(&app).await;
    let all = search_all(&app, "", 2).await;
    assert_eq!(all.len(), made.len());
    let created: Vec<&str> = all
        .iter()
        .map(|u| u["created_at"].as_str().expect("at"))
        .collect();
    assert!(created.windows(2).all(|w| w[0] >= w[1]), "newest first");
    let want = |keep: &dyn Fn(&(String, &str, String)) -> bool| -> BTreeSet<String> {
        made.iter()
            .filter(|m| keep(m))
            .map(|m| m.0.clone())
            .collect()
    };
    let found = |uploads: Vec<Value>| ids(&uploads).into_iter().collect::<BTreeSet<_>>();
    assert_eq!(
        found(search_all(&app, "&image_id=ops-a", 2).await),
        want(&|m| m.2 == "ops-a")
    );
    for state in ["completed", "pending", "failed", "aborted"] {
        let got = search_all(&app, &format!("&state={state}"), 3).await;
        assert!(got.iter().all(|u| u["state"] == state));
        assert_eq!(found(got), want(&|m| m.1 == state), "{state}");
    }
    assert_eq!(
        found(search_all(&app, "&image_id=ops-b&state=completed", 5).await),
        want(&|m| m.2 == "ops-b" && m.1 == "completed")
    );
    // The declared checksum: one upload declares it.
    let declared = sha256_b64(JPEG);
    let resp = app
        .create_upload(
            &json!({"image_id": "ops-d", "filename": "p.jpg", "content_type": "image/jpeg",
            "size": JPEG.len(), "checksum_sha256": declared}),
        )
        .await;
    let with_sum: Value = resp.json().await.expect("issued");
    let query = format!("&sha256={}", urlencode(&declared));
    assert_eq!(
        ids(&search_all(&app, &query, 5).await),
        [with_sum["upload_id"].as_str().expect("id")]
    );
    // A time range: since inclusive, until exclusive.
    let middle = all[all.len() / 2]["created_at"]
        .as_str()
        .expect("at")
        .to_owned();
    let newer = search_all(&app, &format!("&since={}", urlencode(&middle)), 4).await;
    assert!(
        newer
            .iter()
            .all(|u| u["created_at"].as_str().expect("at") >= middle.as_str())
    );
    let older = search_all(&app, &format!("&until={}", urlencode(&middle)), 4).await;
    assert!(
        older
            .iter()
            .all(|u| u["created_at"].as_str().expect("at") < middle.as_str())
    );
    assert_eq!(newer.len() + older.len(), made.len() + 1);
    for (query, code) in [
        ("state=lost", "invalid_state"),
        ("since=yesterday", "invalid_date"),
        ("until=", "invalid_date"),
        ("state=", "invalid_state"),
        ("image_id=a%20b", "invalid_image_id"),
        ("cursor=nope", "invalid_cursor"),
    ] {
        let resp = send(
            &app,
            "GET",
            &format!("/api/v1/admin/uploads?{query}"),
            Some(ADMIN),
        )
        .await;
        assert_eq!(
            error_code(resp).await,
            (StatusCode::BAD_REQUEST, code.into()),
            "{query}"
        );
    }
}

fn urlencode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test]
async fn pages_neither_skip_nor_repeat_while_uploads_complete() {
    let app = TestApp::spawn_with(&[("ADMIN_KEYS", ADMIN)]).await;
    let mut pending = Vec::new();
    for n in 0..24 {
        let issued = app
            .issue(&format!("pages-{}", n % 3), "a.png", "image/png", PNG)
            .await;
        assert_eq!(app.put(&issued, PNG).await.status(), StatusCode::OK);
        pending.push(issued["upload_id"].as_str().expect("id").to_owned());
    }
    let existing: BTreeSet<String> = pending.iter().cloned().collect();
    // Confirms and new uploads run while the pages are read.
    let confirming = {
        let (app_url, ids) = (app.url(""), pending.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            for id in ids {
                let resp = client
                    .post(format!("{app_url}/api/v1/uploads/{id}/confirm"))
                    .send()
                    .await;
                assert_eq!(resp.expect("confirm").status(), StatusCode::OK);
            }
        })
    };
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/api/v1/admin/uploads?limit=3".to_owned();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = admin_get(&app, &path).await;
        seen.extend(ids(page["uploads"].as_array().expect("uploads")));
        app.issue("pages-new", "n.png", "image/png", PNG).await;
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    confirming.await.expect("confirms");
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no upload twice");
    // Uploads made after the first page are newer than the cursor: every one that existed
    // when paging began is there.
    assert!(existing.is_subset(&unique), "none skipped");
}

#[tokio::test]
async fn stats_agree_with_a_count_of_the_table() {
    let app = TestApp::spawn_with(&[
        ("ADMIN_KEYS", ADMIN),
        // Long enough for the uploads that complete to PUT in time on a busy machine,
        // short enough for the one left pending to expire below.
        ("PRESIGN_EXPIRES", "4"),
        ("CLOCK_SKEW_MARGIN", "0"),
    ])
    .await;
    mixed(&app).await;
    app.legacy_stored("ops-e", "l.png", PNG).await;
    let done = app.upload("ops-e", "x.png", "image/png", PNG).await;
    assert_eq!(
        app.delete(done["upload_id"].as_str().expect("id"))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    app.issue("ops-e", "late.png", "image/png", PNG).await;
    tokio::time::sleep(std::time::Duration::from_millis(4500)).await;
    let report = app
        .uploads
        .sweep(std::time::Duration::ZERO)
        .await
        .expect("sweep");
    assert!(report.expired >= 1);
    let stats = admin_get(&app, "/api/v1/admin/stats").await;
    let counted = app
        .sql("SELECT state, COUNT(*) AS n, CAST(SUM(COALESCE(file_size, declared_size)) AS BIGINT) AS bytes FROM uploads GROUP BY state")
        .await;
    let mut total = 0;
    for row in &counted {
        let state: String = row.try_get("", "state").expect("state");
        let n: i64 = row.try_get("", "n").expect("n");
        let bytes: i64 = row.try_get("", "bytes").expect("bytes");
        assert_eq!(
            stats["states"][&state],
            json!({"count": n, "bytes": bytes}),
            "{state}"
        );
        total += n;
    }
    let in_stats: i64 = stats["states"]
        .as_object()
        .expect("states")
        .values()
        .map(|s| s["count"].as_i64().expect("n"))
        .sum();
    assert_eq!(in_stats, total);
    assert_eq!(
        stats["states"].as_object().expect("states").len(),
        6,
        "every state listed"
    );
    let completed_today = app
        .sql("SELECT COUNT(*) AS n FROM uploads WHERE uploaded_at IS NOT NULL")
        .await;
    let n: i64 = completed_today[0].try_get("", "n").expect("n");
    assert_eq!(stats["last_24h"]["completed"], n);
    assert_eq!(stats["last_24h"]["failed"], 1);
}

#[tokio::test]
async fn every_action_is_audited_with_a_fingerprint_of_its_key() {
    let app = TestApp::spawn_with(&[
        ("ADMIN_KEYS", ADMIN),
        ("IMAGE_VARIANTS", "thumb:32"),
        ("WEBHOOK_URL", "http://127.0.0.1:9/hook"),
        ("WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        ("WEBHOOK_RETRY_SCHEDULE", ""),
        ("WEBHOOK_ALLOW_PRIVATE", "true"),
    ])
    .await;
    let kept = app.upload("audited", "a.png", "image/png", PNG).await;
    let kept = kept["upload_id"].as_str().expect("id").to_owned();
    let gone = app.upload("audited", "b.png", "image/png", PNG).await;
    let gone = gone["upload_id"].as_str().expect("id").to_owned();

    // Re-verify: passes; then the stored object is replaced and it no longer does, and
    // still nothing changes.
    let resp = admin_post(
        &app,
        &format!("/api/v1/admin/uploads/{kept}/reverify"),
        None,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(body["reverify"], json!({"ok": true, "code": null}));
    assert_eq!(body["upload_id"], kept.as_str());
    assert_eq!(body["state"], "completed");
    let key = body["key"].as_str().expect("key").to_owned();
    let longer = png_of_size(PNG.len() + 100);
    app.storage
        .put(&key, "image/png", bytes::Bytes::from(longer.clone()).into())
        .await
        .expect("replace");
    let resp = admin_post(
        &app,
        &format!("/api/v1/admin/uploads/{kept}/reverify"),
        None,
    )
    .await;
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(
        body["reverify"],
        json!({"ok": false, "code": "size_mismatch"})
    );
    assert_eq!(body["state"], "completed", "the state is not changed");
    assert_eq!(
        app.object(&key).await.as_deref(),
        Some(&longer[..]),
        "nothing deleted"
    );

    let resp = send(
        &app,
        "DELETE",
        &format!("/api/v1/admin/uploads/{gone}"),
        Some(ADMIN),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get_json(&format!("/api/v1/uploads/{gone}")).await["state"],
        "deleted"
    );
    // Through the seam, as any delete: its event is recorded.
    let deliveries = admin_get(
        &app,
        &format!("/api/v1/webhooks/deliveries?upload_id={gone}"),
    )
    .await;
    let types: Vec<&str> = deliveries["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .map(|d| d["event_type"].as_str().expect("type"))
        .collect();
    assert!(types.contains(&"upload.deleted"), "{types:?}");

    let resp = admin_post(
        &app,
        &format!("/api/v1/admin/uploads/{kept}/variants"),
        None,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);

    let deliveries = admin_get(&app, "/api/v1/webhooks/deliveries?limit=1").await;
    let delivery = deliveries["deliveries"][0]["id"]
        .as_str()
        .expect("a delivery")
        .to_owned();
    let resp = admin_post(
        &app,
        &format!("/api/v1/webhooks/deliveries/{delivery}/retry"),
        None,
    )
    .await;
    assert!(resp.status().is_success(), "{}", resp.status());

    let resp = admin_post(
        &app,
        "/api/v1/webhooks",
        Some(json!({"url": "http://127.0.0.1:9/other"})),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let endpoint: Value = resp.json().await.expect("JSON");
    let endpoint = endpoint["id"].as_str().expect("id").to_owned();
    let resp = admin_post(&app, &format!("/api/v1/webhooks/{endpoint}/enable"), None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = send(
        &app,
        "DELETE",
        &format!("/api/v1/webhooks/{endpoint}"),
        Some(ADMIN),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);

    let log = admin_get(&app, "/api/v1/admin/audit?limit=2").await;
    let mut entries: Vec<Value> = log["entries"].as_array().expect("entries").clone();
    let next = log["next_cursor"].as_str().expect("more").to_owned();
    let rest = admin_get(&app, &format!("/api/v1/admin/audit?cursor={next}")).await;
    entries.extend(rest["entries"].as_array().expect("entries").iter().cloned());
    let actions: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().expect("action"),
                e["target"].as_str().expect("target"),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("remove_webhook", endpoint.as_str()),
            ("enable_webhook", endpoint.as_str()),
            ("register_webhook", endpoint.as_str()),
            ("replay_delivery", delivery.as_str()),
            ("regenerate_variants", kept.as_str()),
            ("delete", gone.as_str()),
            ("reverify", kept.as_str()),
            ("reverify", kept.as_str()),
        ]
    );
    let actor = entries[0]["actor"].as_str().expect("actor");
    assert!(actor.starts_with("key-") && actor.len() == 16, "{actor}");
    assert!(entries.iter().all(|e| e["actor"] == actor));
    assert!(
        !serde_json::to_string(&entries)
            .expect("json")
            .contains(ADMIN)
    );
}

/// How the database plans `filter`'s search (a first page and a later one).
async fn plans(app: &TestApp, filter: &UploadFilter) -> Vec<String> {
    let conn = app.db().writer();
    let backend = conn.get_database_backend();
    let mut out = Vec::new();
    for after in [
        None,
        Some((time::OffsetDateTime::now_utc(), uuid::Uuid::now_v7())),
    ] {
        let query = sea_orm::QueryTrait::build(&search_query(filter, after, 50), backend);
        let text = match backend {
            DbBackend::Postgres => {
                // A tiny table is cheaper to scan whole: ask whether an index serves it.
                conn.execute_unprepared("SET enable_seqscan = off")
                    .await
                    .expect("set");
                let rows = conn
                    .query_all_raw(Statement::from_sql_and_values(
                        backend,
                        format!("EXPLAIN {}", query.sql),
                        query.values.clone().map_or_else(Vec::new, |v| v.0),
                    ))
                    .await
                    .expect("explain");
                conn.execute_unprepared("RESET enable_seqscan")
                    .await
                    .expect("reset");
                rows.iter()
                    .map(|r| r.try_get_by_index::<String>(0).expect("line"))
                    .collect::<Vec<_>>()
                    .join("\n")
            }
            _ => {
                let rows = conn
                    .query_all_raw(Statement::from_sql_and_values(
                        backend,
                        format!("EXPLAIN QUERY PLAN {}", query.sql),
                        query.values.clone().map_or_else(Vec::new, |v| v.0),
                    ))
                    .await
                    .expect("explain");
                rows.iter()
                    .map(|r| r.try_get::<String>("", "detail").expect("detail"))
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        };
        out.push(text);
    }
    out
}

#[tokio::test]
async fn every_search_is_an_index_range_scan() {
    let app = TestApp::spawn_with(&[("ADMIN_KEYS", ADMIN)]).await;
    let now = time::OffsetDateTime::now_utc();
    let day = time::Duration::days(1);
    let completed = Some(upload_broker::uploads::UploadState::Completed);
    let filters = [
        (
            "image_id",
            UploadFilter {
                image_id: Some("a".into()),
                ..Default::default()
            },
        ),
        (
            "state",
            UploadFilter {
                state: completed,
                ..Default::default()
            },
        ),
        (
            "sha256",
            UploadFilter {
                sha256: Some("x".into()),
                ..Default::default()
            },
        ),
        (
            "date range",
            UploadFilter {
                since: Some(now - day),
                until: Some(now),
                ..Default::default()
            },
        ),
        (
            "image_id and state",
            UploadFilter {
                image_id: Some("a".into()),
                state: completed,
                ..Default::default()
            },
        ),
        (
            "state and date range",
            UploadFilter {
                state: completed,
                since: Some(now - day),
                until: Some(now),
                ..Default::default()
            },
        ),
    ];
    for (name, filter) in filters {
        for plan in plans(&app, &filter).await {
            if on_postgres() {
                assert!(
                    plan.contains("Index Scan")
                        || plan.contains("Index Only Scan")
                        || plan.contains("Bitmap Index Scan"),
                    "{name}: {plan}"
                );
                assert!(!plan.contains("Seq Scan"), "{name}: {plan}");
            } else {
                assert!(plan.contains("SEARCH uploads USING"), "{name}: {plan}");
                assert!(plan.contains("INDEX"), "{name}: {plan}");
            }
        }
    }
}
