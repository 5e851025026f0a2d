//! Nothing lost, nothing stray: overwrites, races, the sweeper, faults and hostile input.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use reqwest::StatusCode;
use serde_json::{Value, json};
use upload_broker::domain::ImageId;

use crate::helpers::*;

#[tokio::test]
async fn a_confirmed_object_cannot_be_replaced_through_its_url() {
    let app = TestApp::spawn().await;
    let issued = app.issue("keep", "a.png", "image/png", PNG).await;
    // The staged PUT cannot be replaced where the store honours If-None-Match (the suite
    // runs Garage, which ignores it, with S3_CONDITIONAL_WRITES=false).
    let no_overwrite = if on_external_store() {
        Value::Null
    } else {
        json!("*")
    };
    assert_eq!(issued["headers"]["If-None-Match"], no_overwrite);
    assert_eq!(app.put(&issued, PNG).await.status(), StatusCode::OK);
    let id = issued["upload_id"].as_str().expect("id");
    assert_eq!(app.confirm(id).await.status(), StatusCode::OK);

    let mut other = PNG.to_vec();
    other[40] ^= 0xff;
    // The URL writes only its staging key, never the key the object is served at.
    let _ = app.put(&issued, &other).await;
    let key = issued["key"].as_str().expect("key");
    assert_eq!(
        app.object(key).await.expect("object"),
        PNG,
        "the verified bytes stay"
    );
    assert_eq!(
        app.get_json(&format!("/api/v1/uploads/{id}")).await["file_size"],
        PNG.len()
    );
}

#[tokio::test]
async fn fifty_concurrent_confirms_give_one_record_and_identical_bodies() {
    let app = TestApp::spawn().await;
    let issued = app.issue("fifty", "a.png", "image/png", PNG).await;
    let id = issued["upload_id"].as_str().expect("id").to_owned();
    assert_eq!(app.put(&issued, PNG).await.status(), StatusCode::OK);
    let confirms = (0..50).map(|_| app.confirm(&id));
    let mut bodies = Vec::new();
    for resp in futures_util::future::join_all(confirms).await {
        assert_eq!(resp.status(), StatusCode::OK);
        bodies.push(resp.text().await.expect("body"));
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "50 identical bodies"
    );
    let row = app.row(&id).await.expect("row");
    assert_eq!(row.state, upload_broker::uploads::UploadState::Completed);
    assert_eq!(Some(row.updated_at), row.uploaded_at, "one state change");
}

#[tokio::test]
async fn the_sweeper_completes_uploads_nobody_confirmed_and_fails_bad_ones() {
    let big = png_of_size(6 * MIB);
    let app = TestApp::spawn_with(&[
        ("PRESIGN_EXPIRES", "3"),
        ("MULTIPART_EXPIRES", "3"),
        ("CLOCK_SKEW_MARGIN", "0"),
        ("MULTIPART_THRESHOLD", "5242880"),
        ("PART_SIZE", "5242880"),
    ])
    .await;
    // Its bytes landed, and the client went away before confirming.
    let good = app.issue("unconfirmed", "a.png", "image/png", PNG).await;
    assert_eq!(app.put(&good, PNG).await.status(), StatusCode::OK);
    // Bytes that are not the PNG they claim to be.
    let bad = app.issue("unconfirmed", "b.png", "image/png", PNG).await;
    let mut not_png = PNG.to_vec();
    not_png[1] = b'X';
    assert_eq!(app.put(&bad, &not_png).await.status(), StatusCode::OK);
    // Every planned part stored, never completed.
    let parts = app.issue_multipart("unconfirmed", &big, json!({})).await;
    let parts_id = parts["upload_id"].as_str().expect("id").to_owned();
    for (n, signed) in app.part_urls(&parts_id, &[1, 2]).await {
        let range = if n == 1 {
            0..5 * MIB
        } else {
            5 * MIB..big.len()
        };
        assert_eq!(
            app.put_part(&signed, &big[range]).await.status(),
            StatusCode::OK
        );
    }
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let report = app.uploads.sweep(Duration::ZERO).await.expect("sweep");
    assert_eq!(
        (report.completed, report.failed, report.expired),
        (2, 1, 0),
        "{report:?}"
    );

    let good_id = good["upload_id"].as_str().expect("id");
    let record = app.get_json(&format!("/api/v1/uploads/{good_id}")).await;
    assert_eq!(record["state"], "completed");
    assert_eq!(
        app.object(record["key"].as_str().expect("key"))
            .await
            .as_deref(),
        Some(PNG)
    );
    let record = app.get_json(&format!("/api/v1/uploads/{parts_id}")).await;
    assert_eq!(record["state"], "completed");
    assert!(
        app.object(record["key"].as_str().expect("key"))
            .await
            .expect("stored")
            == big
    );
    let bad_id = bad["upload_id"].as_str().expect("id");
    let record = app.get_json(&format!("/api/v1/uploads/{bad_id}")).await;
    assert_eq!(
        (record["state"].as_str(), record["failure_code"].as_str()),
        (Some("failed"), Some("invalid_image"))
    );
    let left = files_in_store(&app).await;
    assert!(
        left.iter().all(|f| !f.contains(bad_id)),
        "the refused bytes are gone: {left:?}"
    );
    // A client that confirms late gets the same record.
    let late = app.confirm(good_id).await;
    assert_eq!(late.status(), StatusCode::OK);
    assert_eq!(
        app.uploads.sweep(Duration::ZERO).await.expect("sweep"),
        upload_broker::uploads::SweepReport::default()
    );
}

#[tokio::test]
async fn the_sweeper_expires_stale_uploads_and_removes_what_nobody_owns() {
    // Made first: the URLs below live five seconds, even on a busy machine.
    let big = png_of_size(6 * MIB);
    let app = TestApp::spawn_with(&[
        ("PRESIGN_EXPIRES", "5"),
        ("MULTIPART_EXPIRES", "5"),
        ("CLOCK_SKEW_MARGIN", "0"),
        ("MULTIPART_THRESHOLD", "5242880"),
        ("PART_SIZE", "5242880"),
    ])
    .await;
    let storage = &app.storage;
    // Issued, and its bytes never came.
    let unconfirmed = app.issue("sweep", "a.png", "image/png", PNG).await;
    // A multipart upload with one part of two.
    let resp = app
        .create_upload(&json!({"image_id": "sweep", "filename": "b.png", "content_type": "image/png", "size": big.len()}))
        .await;
    let multipart: Value = resp.json().await.expect("issued");
    let parts: Value = app
        .post_json(
            &format!(
                "/api/v1/uploads/{}/parts",
                multipart["upload_id"].as_str().expect("id")
            ),
            &json!({"part_numbers": [1]}),
        )
        .await
        .json()
        .await
        .expect("parts");
    let part = &parts["parts"][0];
    let put = app
        .client
        .put(part["url"].as_str().expect("url"))
        .body(big[..5 * MIB].to_vec());
    let put = with_signed_headers(put, part);
    assert_eq!(put.send().await.expect("PUT").status(), StatusCode::OK);
    // Completed: stays.
    let kept = app.issue("sweep", "c.png", "image/png", PNG).await;
    assert_eq!(app.put(&kept, PNG).await.status(), StatusCode::OK);
    assert_eq!(
        app.confirm(kept["upload_id"].as_str().expect("id"))
            .await
            .status(),
        StatusCode::OK
    );
    // A legacy upload whose process died after the object and before the row.
    let image_id = ImageId::parse("sweep").expect("id");
    let crashed = app
        .uploads
        .store_streamed(&image_id, "d.png", PNG, None, 10 * 1024 * 1024)
        .await
        .expect("stored");
    std::mem::forget(crashed);
    // A multipart upload nobody recorded, and an object that is not of the service's shape.
    let stray = "uploads/sweep/01a221a9-423f-7342-83e6-50dbb1b82320.png";
    storage
        .create_multipart(stray, "image/png", false)
        .await
        .expect("multipart");
    storage
        .put(
            "uploads/seed/abc123.jpg",
            "image/jpeg",
            JPEG.to_vec().into(),
        )
        .await
        .expect("foreign object");
    assert_eq!(app.count_rows().await, 3);

    tokio::time::sleep(Duration::from_millis(5500)).await;
    let report = app.uploads.sweep(Duration::ZERO).await.expect("sweep");
    assert_eq!(report.expired, 2, "{report:?}");
    assert_eq!(report.orphan_objects_deleted, 1, "{report:?}");
    assert_eq!(report.multipart_aborted, 1, "{report:?}");

    for issued in [&unconfirmed, &multipart] {
        let row = app
            .row(issued["upload_id"].as_str().expect("id"))
            .await
            .expect("row");
        assert_eq!(row.state, upload_broker::uploads::UploadState::Expired);
    }
    let kept_row = app
        .row(kept["upload_id"].as_str().expect("id"))
        .await
        .expect("row");
    assert_eq!(
        kept_row.state,
        upload_broker::uploads::UploadState::Completed
    );
    assert_eq!(app.object(&kept_row.object_key).await.expect("kept"), PNG);
    assert!(
        app.object("uploads/seed/abc123.jpg").await.is_some(),
        "foreign keys are left alone"
    );
    let mut left = files_in_store(&app).await;
    left.sort();
    assert_eq!(
        left.len(),
        2,
        "only the completed object and the foreign one: {left:?}"
    );
    assert_eq!(
        app.count_rows().await,
        3,
        "no row was made for the crashed upload"
    );
    // A second sweep (or another replica's) finds nothing to do.
    let again = app.uploads.sweep(Duration::ZERO).await.expect("sweep");
    assert_eq!(again, upload_broker::uploads::SweepReport::default());
}

/// The embedded store's files directly in its root and in its part records, by name.
fn store_internals(app: &TestApp) -> BTreeSet<String> {
    let root = app.dir.path().join("s3");
    [root.clone(), root.with_extension("parts")]
        .iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flatten()
        .map(|entry| entry.expect("entry"))
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
        .map(|entry| entry.file_name().into_string().expect("name"))
        .collect()
}

/// Dates every file in the store's root and part records an hour back (but `young`).
fn age_store_files(app: &TestApp, young: &[&str]) {
    let root = app.dir.path().join("s3");
    let past = SystemTime::now() - Duration::from_secs(3600);
    for dir in [root.clone(), root.with_extension("parts")] {
        for entry in std::fs::read_dir(dir)
            .expect("dir")
            .map(|e| e.expect("entry"))
        {
            let name = entry.file_name().into_string().expect("name");
            if entry.file_type().expect("type").is_file() && !young.contains(&name.as_str()) {
                std::fs::File::options()
                    .write(true)
                    .open(entry.path())
                    .and_then(|f| f.set_modified(past))
                    .expect("set modified");
            }
        }
    }
}

#[tokio::test]
async fn the_sweep_and_a_restart_remove_what_a_killed_upload_left_in_the_embedded_store() {
    if on_external_store() {
        return; // Only the embedded store's own files are removed.
    }
    let vars = [SMALL_PARTS[0], SMALL_PARTS[1], ("CLOCK_SKEW_MARGIN", "0")];
    let app = TestApp::spawn_with(&vars).await;
    let storage = &app.storage;
    let root = app.dir.path().join("s3");
    let b64 = |s: &str| URL_SAFE_NO_PAD.encode(s);

    // A live multipart upload, one part of two in.
    let big = png_of_size(6 * MIB);
    let live = app.issue_multipart("live", &big, json!({})).await;
    let live_id = live["upload_id"].as_str().expect("id");
    let urls = app.part_urls(live_id, &[1, 2]).await;
    assert_eq!(
        app.put_part(&urls[&1], &big[..5 * MIB]).await.status(),
        StatusCode::OK
    );
    // A large legacy upload killed while s3s-fs completed it: the upload is no longer
    // open, its attributes already moved to the object's, the object half written.
    let dead_key = "uploads/dead/01a221a9-423f-7342-83e6-50dbb1b82320.png";
    let dead = storage
        .create_multipart(dead_key, "image/png", false)
        .await
        .expect("multipart");
    storage
        .upload_part(dead_key, &dead, 1, big[..5 * MIB].to_vec().into())
        .await
        .expect("part");
    let object_attributes = format!(
        ".bucket-{}.object-{}.metadata.json",
        b64("upload-broker"),
        b64(dead_key)
    );
    std::fs::rename(
        root.join(format!(
            ".bucket-{}.object-{}.upload-{dead}.metadata.json",
            b64("upload-broker"),
            b64(dead_key)
        )),
        root.join(&object_attributes),
    )
    .expect("attributes moved");
    std::fs::remove_file(root.join(format!(".upload-{dead}.json"))).expect("upload closed");
    // Numbered past what s3s-fs's own counter reaches in this test.
    std::fs::write(root.join(".tmp.9990.internal.part"), &big[..MIB]).expect("temp");
    // A multipart upload whose creation was killed before its attributes were written.
    let unanswered = uuid::Uuid::new_v4();
    std::fs::write(root.join(format!(".upload-{unanswered}.json")), "null").expect("marker");
    // A deleted object: s3s-fs keeps its attributes.
    let deleted = "other/deleted.png";
    storage
        .put(deleted, "image/png", PNG.to_vec().into())
        .await
        .expect("put");
    storage.delete(deleted).await.expect("delete");
    // An object that stays, with its attributes.
    let kept = "other/kept.png";
    storage
        .put(kept, "image/png", PNG.to_vec().into())
        .await
        .expect("put");
    // Writes in flight: young, whatever they look like.
    let young_part = format!(".upload_id-{}.part-1", uuid::Uuid::new_v4());
    std::fs::write(root.join(&young_part), b"part").expect("young part");
    std::fs::write(root.join(".tmp.9991.internal.part"), b"writing").expect("young temp");
    age_store_files(&app, &[&young_part, ".tmp.9991.internal.part"]);

    let before = store_internals(&app);
    let report = app.uploads.sweep(Duration::ZERO).await.expect("sweep");
    let removed: BTreeSet<String> = before.difference(&store_internals(&app)).cloned().collect();
    let expected: BTreeSet<String> = [
        format!(".upload_id-{dead}.part-1"),
        format!("{dead}.1"),
        object_attributes,
        ".tmp.9990.internal.part".to_owned(),
        format!(".upload-{unanswered}.json"),
        format!(
            ".bucket-{}.object-{}.metadata.json",
            b64("upload-broker"),
            b64(deleted)
        ),
        format!(
            ".bucket-{}.object-{}.internal.json",
            b64("upload-broker"),
            b64(deleted)
        ),
    ]
    .into();
    assert_eq!(removed, expected);
    assert_eq!(
        report.internal_leftovers_removed,
        expected.len(),
        "{report:?}"
    );
    assert_eq!(report.multipart_aborted, 0, "{report:?}");

    // The kept object reads as it was, with its type; the live upload completes.
    let head = storage.head(kept).await.expect("head").expect("kept");
    assert_eq!(head.content_type.as_deref(), Some("image/png"));
    assert_eq!(app.listed_parts(live_id).await, vec![1]);
    assert_eq!(
        app.put_part(&urls[&2], &big[5 * MIB..]).await.status(),
        StatusCode::OK
    );
    assert_eq!(app.confirm(live_id).await.status(), StatusCode::OK);

    // What a kill leaves goes at the next start too.
    let stray = format!(".upload_id-{}.part-2", uuid::Uuid::new_v4());
    std::fs::write(root.join(&stray), b"part").expect("stray part");
    age_store_files(&app, &[]);
    let app = app.restart(&vars).await;
    assert!(!store_internals(&app).contains(&stray), "removed at start");
    assert_eq!(app.object(kept).await.expect("kept"), PNG);
}

/// A TCP port that accepts connections and never answers.
async fn silent_endpoint() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    (format!("http://{addr}"), task)
}

#[tokio::test]
async fn storage_that_refuses_or_hangs_gives_503_within_the_timeout() {
    let (silent, _task) = silent_endpoint().await;
    for endpoint in [closed_endpoint(), silent] {
        let app = TestApp::spawn_with(&[
            ("AWS_BUCKET_NAME", "media"),
            ("AWS_ENDPOINT_URL", &endpoint),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("S3_CONNECT_TIMEOUT", "1"),
            ("S3_OPERATION_TIMEOUT", "1"),
            ("MULTIPART_THRESHOLD", "5242880"),
        ])
        .await;
        // Signing a single PUT is local and still works.
        let issued = app.issue("down", "a.png", "image/png", PNG).await;
        let id = issued["upload_id"].as_str().expect("id");

        let started = Instant::now();
        let resp = app.confirm(id).await;
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "{endpoint}: {:?}",
            started.elapsed()
        );
        assert!(resp.headers().contains_key("retry-after"));
        assert_eq!(
            error_code(resp).await,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable".to_owned()
            )
        );
        assert_eq!(
            app.row(id).await.expect("row").state,
            upload_broker::uploads::UploadState::Pending,
            "nothing completed"
        );

        let started = Instant::now();
        let resp = app
            .create_upload(&json!({"image_id": "down", "filename": "b.png", "content_type": "image/png", "size": 6 * MIB}))
            .await;
        assert!(started.elapsed() < Duration::from_secs(6));
        assert_eq!(
            error_code(resp).await,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable".to_owned()
            )
        );

        let started = Instant::now();
        let (content_type, body) = form_body(&[("file", Some("a.png"), PNG)]);
        let resp = app
            .client
            .post(app.url("/upload/down"))
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .expect("POST");
        assert!(started.elapsed() < Duration::from_secs(6));
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.json::<Value>().await.expect("JSON")["success"], false);
        assert_eq!(app.count_rows().await, 1, "only the pending single upload");
    }
}

#[tokio::test]
async fn a_locked_database_gives_503_then_works_and_loses_nothing() {
    use sea_orm::{ConnectOptions, ConnectionTrait, Database};
    if on_postgres() {
        return; // SQLite's single writer lock is what this test is about.
    }
    let app = TestApp::spawn_with(&[("DB_TIMEOUT", "1")]).await;
    let path = app.dir.path().join("images.db");
    let mut options = ConnectOptions::new(format!("sqlite://{}", path.display()));
    options.max_connections(1).min_connections(1);
    let locker = Database::connect(options).await.expect("second connection");
    locker
        .execute_unprepared("BEGIN IMMEDIATE")
        .await
        .expect("write lock");

    let body =
        json!({"image_id": "locked", "filename": "a.png", "content_type": "image/png", "size": 10});
    let started = Instant::now();
    let resp = app.create_upload(&body).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(
        error_code(resp).await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable".to_owned()
        )
    );

    locker.execute_unprepared("COMMIT").await.expect("release");
    assert_eq!(app.create_upload(&body).await.status(), StatusCode::CREATED);
    assert_eq!(
        app.count_rows().await,
        1,
        "the refused request wrote nothing"
    );
}

#[tokio::test]
async fn shutdown_with_a_streamed_upload_in_flight_leaves_nothing_behind() {
    let app = TestApp::spawn().await;
    let (content_type, body) = form_body(&[("file", Some("slow.png"), &png_of_size(8 * MIB))]);
    // Send the first 6 MiB, then stall: the service holds most of the file when we stop.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let (sent_tx, sent) = tokio::sync::oneshot::channel();
    let first = body[..6 * MIB].to_vec();
    tokio::spawn(async move {
        for chunk in first.chunks(256 * 1024) {
            if tx.send(Ok(chunk.to_vec())).await.is_err() {
                return;
            }
        }
        let _ = sent_tx.send(());
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    let request = app
        .client
        .post(app.url("/upload/stopping"))
        .header("Content-Type", content_type)
        .body(reqwest::Body::wrap_stream(tokio_stream_from(rx)))
        .send();
    let pending = tokio::spawn(request);
    tokio::time::timeout(Duration::from_secs(10), sent)
        .await
        .expect("the first 6 MiB are sent")
        .expect("sender");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let dir = app.dir.clone();
    drop(app);
    let answer = tokio::time::timeout(Duration::from_secs(12), pending)
        .await
        .expect("request ends");
    if let Ok(Ok(resp)) = answer {
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    // Started again on the same data: nothing is in the store, open or whole, and no row.
    let again = TestApp::spawn_again(dir, &[]).await;
    assert_eq!(files_in_store(&again).await, Vec::<String>::new());
    assert_eq!(again.count_rows().await, 0);
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn hostile_input_is_refused_and_leaves_nothing() {
    let app = TestApp::spawn().await;
    let req = |image_id: Value, filename: &str, content_type: &str, size: Value| json!({"image_id": image_id, "filename": filename, "content_type": content_type, "size": size});
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            req(json!("../../etc/passwd"), "a.png", "image/png", json!(10)),
            StatusCode::BAD_REQUEST,
            "invalid_image_id",
        ),
        (
            req(json!("%2e%2e%2f"), "a.png", "image/png", json!(10)),
            StatusCode::BAD_REQUEST,
            "invalid_image_id",
        ),
        (
            req(json!("a\u{0}b"), "a.png", "image/png", json!(10)),
            StatusCode::BAD_REQUEST,
            "invalid_image_id",
        ),
        (
            req(json!("abc\u{202e}gnp"), "a.png", "image/png", json!(10)),
            StatusCode::BAD_REQUEST,
            "invalid_image_id",
        ),
        (
            req(json!("ab\u{200b}c"), "a.png", "image/png", json!(10)),
            StatusCode::BAD_REQUEST,
            "invalid_image_id",
        ),
        (
            req(json!(""), "a.png", "image/png", json!(10)),
            StatusCode::BAD_REQUEST,
            "invalid_image_id",
        ),
        (
            req(json!("ok"), "x.png.php", "image/png", json!(10)),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_type",
        ),
        (
            req(json!("ok"), "x.heic", "image/heic", json!(10)),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_type",
        ),
        (
            req(json!("ok"), "x.png", "text/html", json!(10)),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_type",
        ),
        (
            req(json!("ok"), "x.png", "image/png\r\nX-Evil: 1", json!(10)),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_type",
        ),
        (
            req(
                json!("ok"),
                "x.png",
                "image/png",
                json!(9_223_372_036_854_775_808u64),
            ),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            req(json!("ok"), "x.png", "image/png", json!(1.5)),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            req(json!("ok"), "x.png", "image/png", json!("10")),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            req(
                json!("x".repeat(1024 * 1024)),
                "a.png",
                "image/png",
                json!(10),
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
        (
            json!({"image_id": "ok", "filename": "a.png", "content_type": "image/png", "size": 10, "checksum_sha265": "typo"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (body, status, code) in cases {
        let shown: String = body.to_string().chars().take(120).collect();
        assert_eq!(
            error_code(app.create_upload(&body).await).await,
            (status, code.to_owned()),
            "{shown}"
        );
    }
    // Ten megabytes of JSON, announced or streamed.
    let huge = format!("{{\"image_id\": \"{}\"}}", "y".repeat(10 * MIB));
    let resp = app
        .client
        .post(app.url("/api/v1/uploads"))
        .header("Content-Type", "application/json")
        .body(huge.clone())
        .send()
        .await
        .expect("POST");
    assert_eq!(
        error_code(resp).await,
        (StatusCode::PAYLOAD_TOO_LARGE, "too_large".to_owned())
    );
    let resp = app
        .client
        .post(app.url("/api/v1/uploads"))
        .header("Content-Type", "application/json")
        .body(chunked_body(huge.as_bytes()))
        .send()
        .await
        .expect("POST");
    assert_eq!(
        error_code(resp).await,
        (StatusCode::PAYLOAD_TOO_LARGE, "too_large".to_owned())
    );
    assert_eq!(app.count_rows().await, 0);

    // Any case of an allowed extension is fine, and a name like x.php.png is just a name.
    for (name, mime, bytes) in [
        ("UP.PNG", "image/png", PNG),
        ("x.JpEg", "image/jpeg", JPEG),
        ("x.php.png", "image/png", PNG),
    ] {
        let record = app.upload("names", name, mime, bytes).await;
        assert_eq!(record["original_filename"], name);
    }

    // Bytes that lie, each refused at confirm with its object deleted.
    let mut huge_header = PNG.to_vec();
    huge_header[16..20].copy_from_slice(&60_000u32.to_be_bytes());
    huge_header[20..24].copy_from_slice(&60_000u32.to_be_bytes());
    // A well-formed header, CRC and all: only its dimensions are too large.
    let crc = crc32(&huge_header[12..29]);
    huge_header[29..33].copy_from_slice(&crc.to_be_bytes());
    let truncated = PNG[..PNG.len() - 20].to_vec();
    let mut polyglot = PNG.to_vec();
    polyglot.extend_from_slice(b"PK\x03\x04 a zip archive would follow here");
    for (bytes, code) in [
        (&huge_header, "image_too_large"),
        (&truncated, "invalid_image"),
        (&polyglot, "invalid_image"),
        (&b"just text, named .png".to_vec(), "invalid_image"),
        (&JPEG.to_vec(), "type_mismatch"),
    ] {
        let issued = app.issue("liars", "x.png", "image/png", bytes).await;
        assert_eq!(app.put(&issued, bytes).await.status(), StatusCode::OK);
        let (status, got) =
            error_code(app.confirm(issued["upload_id"].as_str().expect("id")).await).await;
        assert_eq!(
            (status, got.as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, code)
        );
        assert!(
            app.object(issued["key"].as_str().expect("key"))
                .await
                .is_none(),
            "{code}: deleted"
        );
    }

    // Declared 1 KiB, then 512 bytes or 2 KiB sent: the store refuses both.
    let kib = png_of_size(1024);
    let issued = app.issue("sizes", "x.png", "image/png", &kib).await;
    assert!(
        app.put(&issued, &kib[..512])
            .await
            .status()
            .is_client_error()
    );
    assert!(
        app.put(&issued, &png_of_size(2048))
            .await
            .status()
            .is_client_error()
    );
    let (status, code) =
        error_code(app.confirm(issued["upload_id"].as_str().expect("id")).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::CONFLICT, "not_uploaded")
    );

    // The same refusals on the legacy path.
    for (name, bytes) in [
        ("x.png", &huge_header),
        ("x.png", &truncated),
        ("x.png", &polyglot),
    ] {
        let (content_type, body) = form_body(&[("file", Some(name), bytes)]);
        let resp = app
            .client
            .post(app.url("/upload/liars"))
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .expect("POST");
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert_eq!(resp.json::<Value>().await.expect("JSON")["success"], false);
    }
    let completed = app.completed_rows("liars").await;
    assert!(completed.is_empty());
    let left = files_in_store(&app).await;
    assert_eq!(left.len(), 3, "only the three accepted names: {left:?}");
}

#[tokio::test]
async fn five_hundred_flows_at_64_at_a_time_all_hold() {
    let app = TestApp::spawn().await;
    five_hundred_flows_hold(|_| (&app, &app), &app).await;
}

/// A TCP proxy to a real store that can be switched off: off, it drops every connection,
/// open ones included.
struct SwitchableProxy {
    addr: std::net::SocketAddr,
    up: tokio::sync::watch::Sender<bool>,
}

impl SwitchableProxy {
    async fn start(target: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (up, watch) = tokio::sync::watch::channel(true);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut watch = watch.clone();
                if !*watch.borrow() {
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = watch.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Self { addr, up }
    }

    fn set(&self, up: bool) {
        self.up.send_replace(up);
    }
}

#[tokio::test]
async fn when_storage_comes_back_the_next_sweep_leaves_nothing_stuck() {
    // A real store (another service's embedded one), reached through a proxy we can cut.
    let store_owner = TestApp::spawn().await;
    let proxy = SwitchableProxy::start(store_owner.store_addr()).await;
    let endpoint = format!("http://{}", proxy.addr);
    let mut settings = store_owner.s3_settings().await;
    settings.retain(|(k, _)| k != "AWS_ENDPOINT_URL");
    settings.push(("AWS_ENDPOINT_URL".into(), endpoint));
    for (k, v) in [
        ("S3_CONNECT_TIMEOUT", "1"),
        ("S3_OPERATION_TIMEOUT", "1"),
        ("PRESIGN_EXPIRES", "2"),
        ("CLOCK_SKEW_MARGIN", "0"),
    ] {
        settings.push((k.into(), v.into()));
    }
    let vars: Vec<(&str, &str)> = settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let app = TestApp::spawn_with(&vars).await;

    let issued = app.issue("outage", "a.png", "image/png", PNG).await;
    assert_eq!(app.put(&issued, PNG).await.status(), StatusCode::OK);
    let id = issued["upload_id"].as_str().expect("id");
    let key = issued["key"].as_str().expect("key");
    let landing = store_owner.landing(key);

    proxy.set(false);
    let (status, code) = error_code(app.confirm(id).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable")
    );
    assert_eq!(
        app.get("/health").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // Its bytes may be in storage: nothing is decided while storage cannot be asked.
    assert!(
        app.uploads.sweep(Duration::ZERO).await.is_err(),
        "the sweep cannot reach storage"
    );
    assert_eq!(
        app.row(id).await.expect("row").state,
        upload_broker::uploads::UploadState::Pending
    );

    // Back: the next sweep finds the bytes, verifies them and completes the upload.
    proxy.set(true);
    assert_eq!(app.get("/health").await.status(), StatusCode::OK);
    let report = app.uploads.sweep(Duration::ZERO).await.expect("sweep");
    assert_eq!((report.completed, report.expired), (1, 0), "{report:?}");
    assert_eq!(
        store_owner.object(key).await.as_deref(),
        Some(PNG),
        "served at its key"
    );
    if landing != key {
        assert!(
            store_owner.object(&landing).await.is_none(),
            "the staged copy is gone"
        );
    }
    let resp = app.confirm(id).await;
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "a late confirm gets the record"
    );
}

#[tokio::test]
async fn without_conditional_writes_puts_are_staged_and_copied_on_confirm() {
    // As for stores that ignore If-None-Match (Garage): the URL writes a staging key.
    let app = TestApp::spawn_with(&[
        ("S3_CONDITIONAL_WRITES", "false"),
        ("PRESIGN_EXPIRES", "2"),
        ("CLOCK_SKEW_MARGIN", "0"),
    ])
    .await;
    let issued = app.issue("staged", "a.png", "image/png", PNG).await;
    let key = issued["key"].as_str().expect("key").to_owned();
    let staged = upload_broker::uploads::staging_key(&key);
    assert!(issued["url"].as_str().expect("url").contains(&staged));
    assert_eq!(app.put(&issued, PNG).await.status(), StatusCode::OK);
    let id = issued["upload_id"].as_str().expect("id");
    let record: Value = app.confirm(id).await.json().await.expect("record");
    assert_eq!(record["state"], "completed");
    assert_eq!(app.object(&key).await.expect("object"), PNG);
    // The staged copy goes soon after, in a batch off the confirm's path.
    let started = std::time::Instant::now();
    while app.object(&staged).await.is_some() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the staged copy is gone"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The URL can only write the staging key again; the verified object stays.
    let mut other = PNG.to_vec();
    other[40] ^= 0xff;
    let _ = app.put(&issued, &other).await;
    assert_eq!(app.object(&key).await.expect("object"), PNG);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let report = app.uploads.sweep(Duration::ZERO).await.expect("sweep");
    assert_eq!(report.orphan_objects_deleted, 1, "{report:?}");
    assert!(app.object(&staged).await.is_none());
    assert_eq!(app.object(&key).await.expect("object"), PNG);

    // Failed verification removes the staged bytes.
    let liar = app.issue("staged", "b.png", "image/png", JPEG).await;
    assert_eq!(app.put(&liar, JPEG).await.status(), StatusCode::OK);
    let (status, code) =
        error_code(app.confirm(liar["upload_id"].as_str().expect("id")).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "type_mismatch")
    );
    let liar_key = liar["key"].as_str().expect("key");
    assert!(
        app.object(&upload_broker::uploads::staging_key(liar_key))
            .await
            .is_none()
    );
    assert!(app.object(liar_key).await.is_none());
}

/// `S3_OPERATION_TIMEOUT` bounds all of a request's waiting on storage, retries included:
/// against a store that never answers, every route that needs storage gives its 503 with
/// `Retry-After` within the timeout (and a little for the answer to travel).
#[tokio::test]
async fn a_silent_store_is_waited_on_for_the_timeout_at_most() {
    let (silent, _task) = silent_endpoint().await;
    let app = TestApp::spawn_with(&[
        ("AWS_BUCKET_NAME", "media"),
        ("AWS_ENDPOINT_URL", &silent),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("S3_CONNECT_TIMEOUT", "1"),
        ("S3_OPERATION_TIMEOUT", "2"),
        ("MULTIPART_THRESHOLD", "5242880"),
    ])
    .await;
    let bound = Duration::from_millis(2900);
    let issued = app.issue("down", "a.png", "image/png", PNG).await;
    let id = issued["upload_id"].as_str().expect("id").to_owned();
    let (content_type, form) = form_body(&[("file", Some("a.png"), PNG)]);
    let requests = [
        (
            "confirm",
            app.client
                .post(app.url(&format!("/api/v1/uploads/{id}/confirm"))),
        ),
        (
            "multipart upload",
            app.client.post(app.url("/api/v1/uploads")).json(
                &json!({"image_id": "down", "filename": "b.png", "content_type": "image/png",
                        "size": 6 * MIB}),
            ),
        ),
        (
            "legacy upload",
            app.client
                .post(app.url("/upload/down"))
                .header("Content-Type", content_type)
                .body(form),
        ),
        (
            "delete",
            app.client.delete(app.url(&format!("/api/v1/uploads/{id}"))),
        ),
    ];
    for (what, request) in requests {
        let started = Instant::now();
        let resp = request.send().await.expect("request");
        let took = started.elapsed();
        assert!(took < bound, "{what} took {took:?}");
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE, "{what}");
        assert!(resp.headers().contains_key("retry-after"), "{what}");
        let body: Value = resp.json().await.expect("JSON");
        let code = body["code"].as_str().map(str::to_owned);
        assert!(
            code.as_deref() == Some("storage_unavailable") || body["success"] == false,
            "{what}: {body}"
        );
    }
}

/// A signed PUT URL outlives the upload it was made for. After a delete, an abort, a
/// failure or an expiry, whatever it still writes is never served at the object's key,
/// never counted, and gone after the sweep that follows the URL's lifetime.
#[tokio::test]
async fn an_old_put_url_writes_nothing_that_is_served_or_kept() {
    let app = TestApp::spawn_with(&[("PRESIGN_EXPIRES", "3"), ("CLOCK_SKEW_MARGIN", "0")]).await;
    let forged = vec![b'A'; PNG.len()];

    // Deleted after it completed.
    let deleted = app.issue("reuse", "a.png", "image/png", PNG).await;
    assert_eq!(app.put(&deleted, PNG).await.status(), StatusCode::OK);
    let record = app
        .confirm_stored(deleted["upload_id"].as_str().expect("id"), PNG)
        .await;
    let s3_url = record["s3_url"].as_str().expect("s3_url").to_owned();
    assert_eq!(
        app.delete(deleted["upload_id"].as_str().expect("id"))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    // Aborted while pending.
    let aborted = app.issue("reuse", "b.png", "image/png", PNG).await;
    assert_eq!(
        app.delete(aborted["upload_id"].as_str().expect("id"))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    // Failed verification.
    let failed = app.issue("reuse", "c.png", "image/png", PNG).await;
    assert_eq!(app.put(&failed, &forged).await.status(), StatusCode::OK);
    assert_eq!(
        app.confirm(failed["upload_id"].as_str().expect("id"))
            .await
            .status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );

    for (what, issued) in [
        ("deleted", &deleted),
        ("aborted", &aborted),
        ("failed", &failed),
    ] {
        // The URL still works for a while; it may write, but only its staging key.
        let _ = app.put(issued, &forged).await;
        let key = issued["key"].as_str().expect("key");
        assert!(
            app.object(key).await.is_none(),
            "{what}: nothing at the key"
        );
        let id = issued["upload_id"].as_str().expect("id");
        assert_ne!(app.confirm(id).await.status(), StatusCode::OK, "{what}");
        assert_ne!(
            app.row(id).await.expect("row").state,
            upload_broker::uploads::UploadState::Completed,
            "{what}"
        );
    }
    let served = app.client.get(&s3_url).send().await.expect("GET");
    assert_ne!(
        served.status(),
        StatusCode::OK,
        "the deleted upload's URL serves nothing"
    );
    assert!(
        app.get_json("/api/v1/images/reuse").await["images"]
            .as_array()
            .expect("images")
            .is_empty()
    );

    // Expired: its URL has run out, and the sweep takes whatever the URLs wrote.
    let expired = app.issue("reuse", "d.png", "image/png", PNG).await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_ne!(app.put(&expired, &forged).await.status(), StatusCode::OK);
    let report = app.uploads.sweep(Duration::ZERO).await.expect("sweep");
    assert_eq!(report.expired, 1, "{report:?}");
    assert_eq!(
        files_in_store(&app).await,
        Vec::<String>::new(),
        "nothing the old URLs wrote is left"
    );
}
