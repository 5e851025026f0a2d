//! The v1 single-PUT flow against the embedded store, end to end.

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

#[tokio::test]
async fn png_and_jpeg_go_from_signed_url_to_verified_record() {
    let app = TestApp::spawn().await;
    for (bytes, name, mime) in [
        (PNG, "cat.png", "image/png"),
        (JPEG, "photo.JPEG", "image/jpeg"),
    ] {
        let issued = app.issue("user123", name, mime, bytes).await;
        assert_eq!(issued["state"], "pending");
        assert_eq!(issued["method"], "PUT");
        assert_eq!(issued["headers"]["Content-Type"], mime);
        let id = issued["upload_id"].as_str().expect("upload_id").to_owned();
        let key = issued["key"].as_str().expect("key");
        let ext = if mime == "image/png" { "png" } else { "jpg" };
        assert_eq!(key, format!("uploads/user123/{id}.{ext}"));
        assert_eq!(
            app.row(&id).await.expect("pending row").state,
            upload_broker::uploads::UploadState::Pending
        );
        // The 201 shows what was stored, to the last digit.
        let pending = app.get_json(&format!("/api/v1/uploads/{id}")).await;
        assert_eq!(pending["state"], "pending");
        assert_eq!(pending["expires_at"], issued["expires_at"]);

        let put = app.put(&issued, bytes).await;
        assert_eq!(put.status(), StatusCode::OK);
        let confirmed = app.confirm(&id).await;
        assert_eq!(confirmed.status(), StatusCode::OK);
        let record: Value = confirmed.json().await.expect("record");
        assert_eq!(record["state"], "completed");
        assert_eq!(record["upload_id"], id.as_str());
        assert_eq!(record["original_filename"], name);
        assert_eq!(record["content_type"], mime);
        assert_eq!(record["file_size"], bytes.len());
        assert_eq!(
            (record["width"].as_i64(), record["height"].as_i64()),
            (Some(64), Some(48))
        );
        assert!(record["etag"].as_str().is_some());
        assert!(record["uploaded_at"].as_str().is_some());

        // The record's URL serves the exact bytes to a plain GET.
        let s3_url = record["s3_url"].as_str().expect("s3_url");
        let served = reqwest::get(s3_url).await.expect("GET s3_url");
        assert_eq!(served.status(), StatusCode::OK);
        assert_eq!(served.bytes().await.expect("bytes").as_ref(), bytes);
        assert_eq!(app.object(key).await.expect("object in bucket"), bytes);

        let row = app.row(&id).await.expect("row");
        assert_eq!(row.state, upload_broker::uploads::UploadState::Completed);
        assert_eq!(row.file_size, Some(bytes.len() as i64));

        let fetched = app.get_json(&format!("/api/v1/uploads/{id}")).await;
        assert_eq!(fetched["state"], "completed");
        assert_eq!(fetched["key"], key);
        let latest = app.get_json("/api/v1/images/user123/latest").await;
        assert_eq!(latest["upload_id"], id.as_str());
    }
    let list = app.get_json("/api/v1/images/user123").await;
    let images = list["images"].as_array().expect("images");
    assert_eq!(images.len(), 2);
    assert_eq!(images[0]["content_type"], "image/jpeg", "newest first");
    assert_eq!(list["next_cursor"], Value::Null);
}

#[tokio::test]
async fn every_allowed_format_is_verified_with_its_dimensions() {
    let app = TestApp::spawn().await;
    for (bytes, name, mime) in [
        (GIF, "a.gif", "image/gif"),
        (WEBP, "a.webp", "image/webp"),
        (BMP, "a.bmp", "image/bmp"),
        (TIFF, "a.TIF", "image/tiff"),
    ] {
        let record = app.upload("formats", name, mime, bytes).await;
        assert_eq!(record["content_type"], mime, "{name}");
        assert_eq!(record["width"], 64, "{name}");
        assert_eq!(record["height"], 48, "{name}");
    }
}

#[tokio::test]
async fn the_store_refuses_a_body_of_another_length_or_type() {
    let app = TestApp::spawn().await;
    let issued = app.issue("strict", "cat.png", "image/png", PNG).await;
    let key = issued["key"].as_str().expect("key");

    let mut longer = PNG.to_vec();
    longer.push(0);
    let put = app.put(&issued, &longer).await;
    assert!(
        put.status().is_client_error(),
        "longer body: {}",
        put.status()
    );

    let mut wrong_type = issued.clone();
    wrong_type["headers"]["Content-Type"] = json!("image/gif");
    let put = app.put(&wrong_type, PNG).await;
    assert!(
        put.status().is_client_error(),
        "other type: {}",
        put.status()
    );

    let mut tampered = issued.clone();
    let url = issued["url"]
        .as_str()
        .expect("url")
        .replace("X-Amz-Expires=900", "X-Amz-Expires=9000");
    tampered["url"] = json!(url);
    assert!(
        app.put(&tampered, PNG).await.status().is_client_error(),
        "tampered expiry"
    );

    assert!(app.object(key).await.is_none(), "nothing stored");
    let (status, code) =
        error_code(app.confirm(issued["upload_id"].as_str().expect("id")).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::CONFLICT, "not_uploaded")
    );
}

#[tokio::test]
async fn confirm_before_the_put_is_409_and_stays_pending() {
    let app = TestApp::spawn().await;
    let issued = app.issue("early", "cat.png", "image/png", PNG).await;
    let id = issued["upload_id"].as_str().expect("id");
    let (status, code) = error_code(app.confirm(id).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::CONFLICT, "not_uploaded")
    );
    assert_eq!(
        app.row(id).await.expect("row").state,
        upload_broker::uploads::UploadState::Pending
    );
    let record = app.get_json(&format!("/api/v1/uploads/{id}")).await;
    assert_eq!(record["state"], "pending");
    assert_eq!(record["s3_url"], Value::Null);
    // The upload can still finish.
    assert_eq!(app.put(&issued, PNG).await.status(), StatusCode::OK);
    assert_eq!(app.confirm(id).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn bytes_that_are_not_the_declared_image_fail_and_are_deleted() {
    let app = TestApp::spawn().await;
    let not_an_image = b"<?php echo 'hello'; ?> this is not a PNG at all".to_vec();
    let cases: [(&[u8], &str); 2] = [(&not_an_image, "invalid_image"), (JPEG, "type_mismatch")];
    for (bytes, expected) in cases {
        let issued = app.issue("liar", "fake.png", "image/png", bytes).await;
        let id = issued["upload_id"].as_str().expect("id");
        let key = issued["key"].as_str().expect("key");
        assert_eq!(app.put(&issued, bytes).await.status(), StatusCode::OK);
        assert!(app.object(&app.landing(key)).await.is_some());

        let (status, code) = error_code(app.confirm(id).await).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, expected)
        );
        assert!(app.object(key).await.is_none(), "object deleted");
        let row = app.row(id).await.expect("row");
        assert_eq!(row.state, upload_broker::uploads::UploadState::Failed);
        assert_eq!(row.failure_code.as_deref(), Some(expected));
        // Asking again gives the same answer.
        let (status, code) = error_code(app.confirm(id).await).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, expected)
        );
    }
    let list = app.get_json("/api/v1/images/liar").await;
    assert_eq!(list["images"], json!([]));
}

#[tokio::test]
async fn an_image_beyond_the_dimension_limit_is_refused() {
    let app = TestApp::spawn_with(&[("MAX_IMAGE_DIMENSION", "50")]).await;
    let issued = app.issue("huge", "wide.png", "image/png", PNG).await;
    let id = issued["upload_id"].as_str().expect("id");
    assert_eq!(app.put(&issued, PNG).await.status(), StatusCode::OK);
    let (status, code) = error_code(app.confirm(id).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "image_too_large")
    );
    assert!(
        app.object(issued["key"].as_str().expect("key"))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn a_declared_checksum_is_signed_into_the_url_and_checked() {
    let app = TestApp::spawn().await;
    let good = sha256_b64(PNG);
    let resp = app
        .create_upload(&json!({
            "image_id": "sums", "filename": "a.png", "content_type": "image/png",
            "size": PNG.len(), "checksum_sha256": good,
        }))
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let issued: Value = resp.json().await.expect("issued");
    assert_eq!(issued["headers"]["x-amz-checksum-sha256"], good.as_str());
    assert!(
        issued["url"]
            .as_str()
            .expect("url")
            .contains("x-amz-checksum-sha256")
    );
    assert_eq!(app.put(&issued, PNG).await.status(), StatusCode::OK);
    let record: Value = app
        .confirm(issued["upload_id"].as_str().expect("id"))
        .await
        .json()
        .await
        .expect("record");
    assert_eq!(record["state"], "completed");
    assert_eq!(record["checksum_sha256"], good.as_str());

    // Same length, other bytes: the store refuses them, and nothing is completed.
    let mut other = PNG.to_vec();
    let last = other.len() - 1;
    other[last] ^= 0xff;
    let resp = app
        .create_upload(&json!({
            "image_id": "sums", "filename": "b.png", "content_type": "image/png",
            "size": PNG.len(), "checksum_sha256": good,
        }))
        .await;
    let issued: Value = resp.json().await.expect("issued");
    let put = app.put(&issued, &other).await;
    assert!(
        put.status().is_client_error(),
        "mismatching body: {}",
        put.status()
    );
    assert!(
        app.object(issued["key"].as_str().expect("key"))
            .await
            .is_none()
    );
    let (status, code) =
        error_code(app.confirm(issued["upload_id"].as_str().expect("id")).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::CONFLICT, "not_uploaded")
    );
}

#[tokio::test]
async fn confirming_twice_or_concurrently_returns_the_same_record() {
    let app = TestApp::spawn().await;
    let issued = app.issue("twice", "a.png", "image/png", PNG).await;
    let id = issued["upload_id"].as_str().expect("id").to_owned();
    assert_eq!(app.put(&issued, PNG).await.status(), StatusCode::OK);

    let confirms = (0..10).map(|_| app.confirm(&id));
    let mut bodies = Vec::new();
    for resp in futures_util::future::join_all(confirms).await {
        assert_eq!(resp.status(), StatusCode::OK);
        let mut body: Value = resp.json().await.expect("record");
        // The presigned s3_url is made per response; the rest must be identical.
        body["s3_url"] = Value::Null;
        bodies.push(body);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "identical records");
    let again: Value = app.confirm(&id).await.json().await.expect("record");
    assert_eq!(again["uploaded_at"], bodies[0]["uploaded_at"]);
    let rows = app.completed_rows("twice").await;
    assert_eq!(rows.len(), 1);
}

#[tokio::test]
async fn delete_aborts_pending_and_removes_completed_uploads() {
    let app = TestApp::spawn().await;
    let pending = app.issue("gone", "a.png", "image/png", PNG).await;
    let pending_id = pending["upload_id"].as_str().expect("id");
    assert_eq!(
        app.delete(pending_id).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.row(pending_id).await.expect("row").state,
        upload_broker::uploads::UploadState::Aborted
    );
    let (status, code) = error_code(app.confirm(pending_id).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::GONE, "aborted"));

    let record = app.upload("gone", "b.png", "image/png", PNG).await;
    let id = record["upload_id"].as_str().expect("id");
    let key = record["key"].as_str().expect("key");
    assert_eq!(app.delete(id).await.status(), StatusCode::NO_CONTENT);
    assert!(app.object(key).await.is_none());
    assert_eq!(
        app.row(id).await.expect("row").state,
        upload_broker::uploads::UploadState::Deleted
    );
    assert_eq!(
        app.get("/api/v1/images/gone/latest").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.delete(id).await.status(),
        StatusCode::NO_CONTENT,
        "repeat is harmless"
    );
    let unknown = uuid::Uuid::now_v7();
    assert_eq!(
        app.delete(&unknown.to_string()).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn an_expired_upload_is_gone_and_its_url_refused() {
    let app = TestApp::spawn_with(&[("PRESIGN_EXPIRES", "1")]).await;
    let issued = app.issue("late", "a.png", "image/png", PNG).await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let put = app.put(&issued, PNG).await;
    assert!(
        put.status().is_client_error(),
        "expired URL: {}",
        put.status()
    );
    let id = issued["upload_id"].as_str().expect("id");
    let (status, code) = error_code(app.confirm(id).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::GONE, "expired"));
    assert_eq!(
        app.row(id).await.expect("row").state,
        upload_broker::uploads::UploadState::Expired
    );
}

#[tokio::test]
async fn image_lists_are_paginated_newest_first() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let record = app
            .upload("pages", &format!("{n}.png"), "image/png", PNG)
            .await;
        ids.push(record["upload_id"].clone());
    }
    let first = app.get_json("/api/v1/images/pages?limit=2").await;
    let images = first["images"].as_array().expect("images");
    assert_eq!(
        images
            .iter()
            .map(|i| i["upload_id"].clone())
            .collect::<Vec<_>>(),
        vec![ids[2].clone(), ids[1].clone()]
    );
    let cursor = first["next_cursor"].as_str().expect("cursor");
    let second = app
        .get_json(&format!("/api/v1/images/pages?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(second["images"].as_array().expect("images").len(), 1);
    assert_eq!(second["images"][0]["upload_id"], ids[0]);
    assert_eq!(second["next_cursor"], Value::Null);
}

#[tokio::test]
async fn many_concurrent_issues_all_commit() {
    let app = TestApp::spawn().await;
    let bodies: Vec<Value> = (0..64)
        .map(|n| {
            json!({
                "image_id": format!("busy{}", n % 4), "filename": "a.png",
                "content_type": "image/png", "size": 10,
            })
        })
        .collect();
    let requests = bodies.iter().map(|body| app.create_upload(body));
    for resp in futures_util::future::join_all(requests).await {
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    assert_eq!(app.count_rows().await, 64);
}

#[tokio::test]
async fn the_seed_operator_queries_work_on_the_images_view() {
    let app = TestApp::spawn().await;
    app.upload("ops1", "a.png", "image/png", PNG).await;
    app.upload("ops1", "b.jpg", "image/jpeg", JPEG).await;
    app.upload("ops2", "c.png", "image/png", PNG).await;
    app.issue("ops3", "pending.png", "image/png", PNG).await;

    let rows = app.sql("SELECT * FROM images;").await;
    assert_eq!(rows.len(), 3, "completed uploads only");
    for row in &rows {
        for column in [
            "id",
            "s3_url",
            "s3_key",
            "original_filename",
            "content_type",
        ] {
            assert!(row.try_get::<String>("", column).is_ok(), "column {column}");
        }
        assert!(row.try_get::<i64>("", "file_size").is_ok());
    }
    let counts = app
        .sql("SELECT id, COUNT(*) as count FROM images GROUP BY id;")
        .await;
    let mut counts: Vec<(String, i64)> = counts
        .iter()
        .map(|r| {
            (
                r.try_get("", "id").expect("id"),
                r.try_get("", "count").expect("count"),
            )
        })
        .collect();
    counts.sort();
    assert_eq!(counts, vec![("ops1".to_owned(), 2), ("ops2".to_owned(), 1)]);
}

#[tokio::test]
async fn health_reports_the_seed_shape() {
    let app = TestApp::spawn().await;
    let resp = app.get("/health").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.expect("health");
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["environment"], "test");
    let ts = body["timestamp"].as_str().expect("timestamp");
    assert_eq!(ts.len(), "2025-10-26T10:30:00.000000".len(), "{ts}");
    assert_eq!(&ts[10..11], "T");
    assert_eq!(body.as_object().expect("object").len(), 3);
}

#[tokio::test]
async fn a_restarted_service_keeps_uploads_and_signed_urls() {
    // The service (which serves the store) keeps its port, and the store its key pair,
    // across the restart, so the URL stays valid.
    let (port, store_port) = (free_port().to_string(), free_port().to_string());
    let vars = [
        ("PORT", port.as_str()),
        ("EMBEDDED_S3_PORT", store_port.as_str()),
    ];
    let first = TestApp::spawn_with(&vars).await;
    let issued = first.issue("restart", "a.png", "image/png", PNG).await;
    let second = first.restart(&vars).await;
    assert_eq!(
        second.put(&issued, PNG).await.status(),
        StatusCode::OK,
        "URL signed before the restart"
    );
    let resp = second
        .confirm(issued["upload_id"].as_str().expect("id"))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
}

/// The hot lookups read SQLite on the calling thread; they must see exactly the row the
/// ORM sees, every column, for pending, multipart and completed uploads alike.
#[tokio::test]
async fn direct_reads_return_the_rows_the_orm_reads() {
    let app = TestApp::spawn_with(&[("MULTIPART_THRESHOLD", "5242880")]).await;
    let resp = app
        .post_json(
            "/api/v1/uploads",
            &json!({
                "image_id": "direct-1", "filename": "a.png", "content_type": "image/png",
                "size": PNG.len(), "checksum_sha256": sha256_b64(PNG),
                "metadata": {"album": "summer", "note": "ünïcode"}
            }),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let issued: Value = resp.json().await.expect("issued");
    let single = issued["upload_id"].as_str().expect("id").to_owned();
    let resp = app
        .post_json(
            "/api/v1/uploads",
            &json!({"image_id": "direct-1", "filename": "big.png", "content_type": "image/png",
                    "size": 12 * 1024 * 1024}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let multipart: Value = resp.json().await.expect("issued");
    let multipart = multipart["upload_id"].as_str().expect("id").to_owned();

    let db = app.db();
    for id in [&single, &multipart] {
        let id = Uuid::parse_str(id).expect("uuid");
        assert_eq!(
            db.find(id).await.expect("find"),
            db.find_fresh(id).await.expect("orm")
        );
    }
    assert_eq!(db.latest_completed("direct-1").await.expect("latest"), None);

    assert_eq!(app.put(&issued, PNG).await.status(), StatusCode::OK);
    app.confirm_stored(&single, PNG).await;
    let id = Uuid::parse_str(&single).expect("uuid");
    let orm = db.find_fresh(id).await.expect("orm").expect("row");
    assert_eq!(orm.state, upload_broker::uploads::UploadState::Completed);
    assert!(orm.uploaded_at.is_some() && orm.width.is_some() && orm.metadata.is_some());
    assert_eq!(db.find(id).await.expect("find").as_ref(), Some(&orm));
    assert_eq!(
        db.latest_completed("direct-1").await.expect("latest"),
        Some(orm)
    );
    assert_eq!(db.find(Uuid::now_v7()).await.expect("find"), None);
}
