//! The seed's API: streamed multipart uploads and the legacy lookups.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

fn assert_seed_timestamp(value: &Value) {
    let ts = value.as_str().expect("uploaded_at");
    assert_eq!(ts.len(), 26, "{ts}");
    assert!(
        time::PrimitiveDateTime::parse(
            ts,
            time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]"
            )
        )
        .is_ok(),
        "{ts}"
    );
}

fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value.as_object().expect("object").keys().cloned().collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn legacy_upload_and_lookups_keep_the_seed_shapes() {
    let app = TestApp::spawn().await;
    let resp = app.legacy_upload("user123", "photo.JPG", JPEG).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(
        keys(&body),
        ["image_id", "message", "s3_url", "success", "uploaded_at"]
    );
    assert_eq!(body["success"], true);
    assert_eq!(body["message"], "Image uploaded successfully");
    assert_eq!(body["image_id"], "user123");
    assert_seed_timestamp(&body["uploaded_at"]);
    let served = reqwest::get(body["s3_url"].as_str().expect("s3_url"))
        .await
        .expect("GET");
    assert_eq!(served.bytes().await.expect("bytes").as_ref(), JPEG);

    let latest = app.get_json("/api/url/user123").await;
    assert_eq!(
        keys(&latest),
        [
            "content_type",
            "file_size",
            "image_id",
            "original_filename",
            "s3_url",
            "success",
            "uploaded_at"
        ]
    );
    assert_eq!(latest["original_filename"], "photo.JPG");
    assert_eq!(latest["content_type"], "image/jpeg");
    assert_eq!(latest["file_size"], JPEG.len());
    assert_seed_timestamp(&latest["uploaded_at"]);

    // A v1 upload shows up in the legacy lookups, and the legacy one in v1.
    app.upload("user123", "cat.png", "image/png", PNG).await;
    let list = app.get_json("/api/images/user123").await;
    assert_eq!(keys(&list), ["count", "image_id", "images", "success"]);
    assert_eq!(list["count"], 2);
    let images = list["images"].as_array().expect("images");
    assert_eq!(
        keys(&images[0]),
        [
            "content_type",
            "file_size",
            "original_filename",
            "s3_url",
            "uploaded_at"
        ]
    );
    assert_eq!(images[0]["original_filename"], "cat.png", "newest first");
    assert_eq!(images[1]["original_filename"], "photo.JPG");
    let latest = app.get_json("/api/url/user123").await;
    assert_eq!(latest["original_filename"], "cat.png");
    let v1 = app.get_json("/api/v1/images/user123").await;
    let v1_images = v1["images"].as_array().expect("images");
    assert_eq!(v1_images.len(), 2);
    assert_eq!(v1_images[1]["original_filename"], "photo.JPG");
    assert_eq!(v1_images[1]["width"], 64);
    assert_eq!(v1_images[1]["checksum_sha256"], sha256_b64(JPEG).as_str());

    let rows = app
        .sql("SELECT id, COUNT(*) as count FROM images GROUP BY id;")
        .await;
    assert_eq!(rows[0].try_get::<i64>("", "count").expect("count"), 2);
    assert_eq!(app.sql("SELECT * FROM images;").await.len(), 2);
}

#[tokio::test]
async fn legacy_lookups_answer_404_and_400_in_the_seed_shape() {
    let app = TestApp::spawn().await;
    let resp = app.get("/api/url/nobody").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(keys(&body), ["error", "success"]);
    assert_eq!(body["success"], false);

    let list = app.get_json("/api/images/nobody").await;
    assert_eq!(list["count"], 0);
    assert_eq!(list["images"], serde_json::json!([]));

    for path in [
        "/api/url/bad.id",
        "/api/images/bad.id",
        &format!("/api/url/{}", "a".repeat(101)),
    ] {
        let resp = app.get(path).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{path}");
        let body: Value = resp.json().await.expect("JSON");
        assert_eq!(body["success"], false, "{path}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
}

#[tokio::test]
async fn a_file_of_exactly_max_file_size_is_stored_in_one_put() {
    let app = TestApp::spawn().await;
    let exact = png_of_size(10 * MIB);
    let latest = app.legacy_stored("big", "big.png", &exact).await;
    let etag = latest["etag"].as_str().expect("etag");
    assert!(!etag.contains('-'), "a single PutObject's ETag: {etag}");
}

/// Over `MULTIPART_THRESHOLD` the file goes up in `PART_SIZE` parts (the same settings as
/// direct uploads), read back from its temporary file.
#[tokio::test]
async fn a_file_over_the_multipart_threshold_is_stored_in_parts() {
    let app = TestApp::spawn_with(&[
        ("MAX_FILE_SIZE", "25165824"),
        ("MULTIPART_THRESHOLD", "16777216"),
        ("PART_SIZE", "8388608"),
    ])
    .await;
    let big = png_with_padding(17 * MIB + 5, |i| (i * 7 % 251) as u8);
    let latest = app.legacy_stored("huge", "huge.png", &big).await;
    let etag = latest["etag"].as_str().expect("etag");
    assert!(etag.trim_matches('"').ends_with("-3"), "3 parts: {etag}");
}

/// A JPEG's frame header (its dimensions) can sit far behind the first bytes, after large
/// EXIF or ICC blocks: the upload still succeeds, with the right dimensions.
#[tokio::test]
async fn a_jpeg_with_its_dimensions_past_the_first_bytes_is_stored() {
    let app = TestApp::spawn().await;
    let padded = jpeg_with_app_blocks(6);
    assert!(padded.len() > 384 * 1024);
    let latest = app.legacy_stored("exif", "exif.jpg", &padded).await;
    let plain = app.legacy_stored("plain", "plain.jpg", JPEG).await;
    assert_eq!(latest["width"], plain["width"]);
    assert_eq!(latest["height"], plain["height"]);
    assert!(latest["width"].as_u64().is_some_and(|w| w > 0), "{latest}");
}

/// Each bad upload: the JSON error, and nothing in the bucket or the database.
#[tokio::test]
async fn bad_legacy_uploads_leave_nothing_behind() {
    let app = TestApp::spawn().await;
    let php = b"\x89PNG<?php system($_GET['c']); ?>".to_vec();
    let text = b"just some text, not an image".to_vec();
    let too_big = png_of_size(10 * MIB + 1);
    let long_name = format!("{}.png", "x".repeat(10_000));
    let long_id = "a".repeat(101);
    let one_file = |name: &str, bytes: &[u8]| form_body(&[("file", Some(name), bytes)]);
    type Case<'a> = (&'a str, &'a str, (String, Vec<u8>), StatusCode);
    let cases: Vec<Case> = vec![
        (
            "no file field",
            "ok",
            form_body(&[("other", None, b"x")]),
            StatusCode::BAD_REQUEST,
        ),
        (
            "empty file",
            "ok",
            one_file("a.png", b""),
            StatusCode::BAD_REQUEST,
        ),
        (
            "empty file name",
            "ok",
            one_file("", PNG),
            StatusCode::BAD_REQUEST,
        ),
        (
            "one byte too many",
            "ok",
            one_file("a.png", &too_big),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "two file parts",
            "ok",
            form_body(&[("file", Some("a.png"), PNG), ("file", Some("b.png"), PNG)]),
            StatusCode::BAD_REQUEST,
        ),
        (
            "svg",
            "ok",
            one_file("a.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "text named png",
            "ok",
            one_file("a.png", &text),
            StatusCode::BAD_REQUEST,
        ),
        (
            "jpeg named png",
            "ok",
            one_file("a.png", JPEG),
            StatusCode::BAD_REQUEST,
        ),
        (
            "php in a.php.png",
            "ok",
            one_file("a.php.png", &php),
            StatusCode::BAD_REQUEST,
        ),
        (
            "id with ../",
            "..%2F..%2Fetc",
            one_file("a.png", PNG),
            StatusCode::BAD_REQUEST,
        ),
        (
            "id of 101 characters",
            &long_id,
            one_file("a.png", PNG),
            StatusCode::BAD_REQUEST,
        ),
        (
            "file name of 10,000 characters",
            "ok",
            one_file(&long_name, PNG),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (what, image_id, (content_type, body), status) in cases {
        let resp = app.post_form(image_id, &content_type, body).await;
        assert_eq!(resp.status(), status, "{what}");
        let body: Value = resp
            .json()
            .await
            .unwrap_or_else(|_| panic!("{what}: JSON body"));
        assert_eq!(body["success"], false, "{what}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what}: {body}"
        );
        assert_eq!(app.count_rows().await, 0, "{what}: no row");
        assert_eq!(
            files_in_store(&app).await,
            Vec::<String>::new(),
            "{what}: nothing in the bucket"
        );
    }
    // Not multipart at all.
    let resp = app
        .client
        .post(app.url("/upload/ok"))
        .header("Content-Type", "image/png")
        .body(PNG.to_vec())
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(resp.json::<Value>().await.expect("JSON")["success"], false);
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_stopped_by_counting() {
    let app = TestApp::spawn_with(&[("MAX_FILE_SIZE", "6000000")]).await;
    let (content_type, body) = form_body(&[("file", Some("big.png"), &png_of_size(8 * MIB))]);
    // A stream body: no Content-Length, chunked transfer encoding.
    let resp = app
        .client
        .post(app.url("/upload/chunky"))
        .header("Content-Type", content_type)
        .body(chunked_body(&body))
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(resp.json::<Value>().await.expect("JSON")["success"], false);
    assert_eq!(app.count_rows().await, 0);
    assert_eq!(files_in_store(&app).await, Vec::<String>::new());

    // Under the limit, chunked works.
    let (content_type, body) = form_body(&[("file", Some("ok.png"), &png_of_size(5 * MIB + 7))]);
    let resp = app
        .client
        .post(app.url("/upload/chunky"))
        .header("Content-Type", content_type)
        .body(chunked_body(&body))
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_truncated_multipart_body_stores_nothing() {
    let app = TestApp::spawn().await;
    let (content_type, body) = form_body(&[("file", Some("a.png"), &png_of_size(6 * MIB))]);
    let truncated = body[..body.len() - 1024].to_vec();
    let resp = app.post_form("cut", &content_type, truncated).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(resp.json::<Value>().await.expect("JSON")["success"], false);
    assert_eq!(app.count_rows().await, 0);
    assert_eq!(files_in_store(&app).await, Vec::<String>::new());
}

#[tokio::test]
async fn health_is_unhealthy_when_the_bucket_cannot_be_reached() {
    // A bucket behind a port nobody listens on.
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let app = TestApp::spawn_with(&[
        ("AWS_BUCKET_NAME", "unreachable"),
        ("AWS_ENDPOINT_URL", &endpoint),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ])
    .await;
    let started = std::time::Instant::now();
    let resp = app.get("/health").await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "bounded time"
    );
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(body["status"], "unhealthy");

    let resp = app.legacy_upload("down", "a.png", PNG).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(resp.json::<Value>().await.expect("JSON")["success"], false);
    assert_eq!(app.count_rows().await, 0);
}

#[tokio::test]
async fn a_database_of_the_flask_service_is_taken_over() {
    use sea_orm::{ConnectionTrait, Database};
    if on_postgres() {
        return; // The Flask service's database is an SQLite file.
    }
    let dir = std::sync::Arc::new(tempfile::tempdir().expect("temp dir"));
    let path = dir.path().join("images.db");
    let seed = Database::connect(format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .expect("seed db");
    // The seed's schema and two of its rows, as its README documents them.
    seed.execute_unprepared(
        "CREATE TABLE images (id TEXT, s3_url TEXT, s3_key TEXT, original_filename TEXT, \
         file_size INTEGER, content_type TEXT, uploaded_at TIMESTAMP, metadata TEXT); \
         INSERT INTO images VALUES ('user123', 'https://bucket.s3.us-east-1.amazonaws.com/uploads/user123/abc.jpg', \
         'uploads/user123/abc.jpg', 'photo.jpg', 524288, 'image/jpeg', '2025-10-26 10:30:00.000000', '{}'); \
         INSERT INTO images VALUES ('user123', 'https://bucket.s3.us-east-1.amazonaws.com/uploads/user123/def.png', \
         'uploads/user123/def.png', 'later.png', 1000, 'image/png', '2025-10-27 08:00:00.250000', NULL);",
    )
    .await
    .expect("seed rows");
    seed.close().await.expect("close");

    let db_path = path.display().to_string();
    let app = TestApp::spawn_in(dir, &[("DATABASE_PATH", &db_path)]).await;
    let list = app.get_json("/api/images/user123").await;
    assert_eq!(list["count"], 2);
    assert_eq!(list["images"][0]["original_filename"], "later.png");
    assert_eq!(
        list["images"][0]["uploaded_at"],
        "2025-10-27T08:00:00.250000"
    );
    assert_eq!(
        list["images"][1]["uploaded_at"],
        "2025-10-26T10:30:00.000000"
    );
    assert_eq!(app.sql("SELECT * FROM images;").await.len(), 2);
    assert_eq!(
        app.sql("SELECT * FROM images_seed;").await.len(),
        2,
        "the old table is kept"
    );
    // New uploads join the imported ones.
    app.legacy_upload("user123", "new.png", PNG).await;
    let counts = app
        .sql("SELECT id, COUNT(*) as count FROM images GROUP BY id;")
        .await;
    assert_eq!(counts[0].try_get::<i64>("", "count").expect("count"), 3);
}

/// Lookups are answered from memory on SQLite; every write that changes an image_id's
/// newest upload must show in the very next lookup (all of this runs well inside the
/// second an answer may be kept).
#[tokio::test]
async fn lookups_show_each_change_at_once() {
    let app = TestApp::spawn().await;
    let url_of = |body: &Value| body["s3_url"].as_str().map(str::to_owned);
    let lookup = || async {
        let resp = app.get("/api/url/fresh").await;
        let status = resp.status();
        (status, resp.json::<Value>().await.expect("json"))
    };
    let (status, _) = lookup().await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let first = app.upload("fresh", "a.png", "image/png", PNG).await;
    let (status, body) = lookup().await;
    assert_eq!(status, StatusCode::OK, "a confirmed upload shows at once");
    let first_key = first["key"].as_str().expect("key");
    assert!(url_of(&body).expect("url").contains(first_key), "{body}");

    let resp = app.legacy_upload("fresh", "b.png", PNG).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let streamed = resp.json::<Value>().await.expect("json");
    let (_, body) = lookup().await;
    assert_eq!(
        url_of(&body),
        url_of(&streamed),
        "a streamed upload shows at once"
    );

    let list = app
        .get("/api/v1/images/fresh")
        .await
        .json::<Value>()
        .await
        .expect("json");
    assert_eq!(list["images"][0]["original_filename"], "b.png", "{list}");
    let newest = list["images"][0]["upload_id"].as_str().expect("id");
    assert_eq!(app.delete(newest).await.status(), StatusCode::NO_CONTENT);
    let (_, body) = lookup().await;
    assert!(
        url_of(&body).expect("url").contains(first_key),
        "a deleted upload is gone at once: {body}"
    );
}
