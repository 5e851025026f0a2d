//! Presigned multipart uploads against the embedded store, with 5 MiB parts.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

/// A PNG of `size` bytes whose bytes differ along its length, so misplaced parts show.
fn big_png(size: usize) -> Vec<u8> {
    png_with_padding(size, |i| (i % 251) as u8)
}

fn part(bytes: &[u8], number: i64) -> &[u8] {
    let start = (number as usize - 1) * 5 * MIB;
    &bytes[start..(start + 5 * MIB).min(bytes.len())]
}

#[tokio::test]
async fn a_40_mib_image_goes_up_in_parallel_parts_out_of_order() {
    let app = TestApp::spawn_with(&SMALL_PARTS).await;
    let bytes = big_png(40 * MIB);
    let issued = app.issue_multipart("large", &bytes, json!({})).await;
    assert_eq!(issued["part_size"], 5 * MIB);
    assert_eq!(issued["part_count"], 8);
    assert!(issued.get("url").is_none());
    let id = issued["upload_id"].as_str().expect("id");

    let urls = app.part_urls(id, &[8, 3, 1, 6, 2, 7, 5, 4]).await;
    assert_eq!(urls.len(), 8);
    assert_eq!(urls[&8]["size"], 5 * MIB);
    let puts = [8, 3, 1, 6, 2, 7, 5, 4].map(|n| app.put_part(&urls[&n], part(&bytes, n)));
    for resp in futures_util::future::join_all(puts).await {
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.headers().contains_key("etag"));
    }
    assert_eq!(app.listed_parts(id).await, (1..=8).collect::<Vec<_>>());

    let resp = app.confirm(id).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let record: Value = resp.json().await.expect("record");
    assert_eq!(record["state"], "completed");
    assert_eq!(record["file_size"], bytes.len());
    assert_eq!(
        (record["width"].as_i64(), record["height"].as_i64()),
        (Some(64), Some(48))
    );
    let stored = app
        .object(record["key"].as_str().expect("key"))
        .await
        .expect("object");
    assert!(stored == bytes, "the object is the file, byte for byte");
    let served = reqwest::get(record["s3_url"].as_str().expect("url"))
        .await
        .expect("GET");
    assert!(served.bytes().await.expect("bytes") == bytes);
    // Confirming again is harmless.
    assert_eq!(app.confirm(id).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn part_urls_are_exact_and_can_be_signed_again() {
    let app = TestApp::spawn_with(&SMALL_PARTS).await;
    let bytes = big_png(12 * MIB + 5);
    let issued = app.issue_multipart("resign", &bytes, json!({})).await;
    assert_eq!(issued["part_count"], 3);
    let id = issued["upload_id"].as_str().expect("id");

    // A part asked for twice is signed once.
    assert_eq!(app.part_urls(id, &[2, 2]).await.len(), 1);
    // Outside the plan, too many, none.
    for numbers in [
        json!([10001]),
        json!([0]),
        json!([4]),
        json!([]),
        json!((1..=101).collect::<Vec<_>>()),
    ] {
        let (status, code) =
            error_code(app.sign_parts(id, json!({ "part_numbers": numbers })).await).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::BAD_REQUEST, "invalid_parts"),
            "{numbers}"
        );
    }

    let first = app.part_urls(id, &[1, 2, 3]).await;
    assert_eq!(
        first[&3]["size"],
        2 * MIB + 5,
        "the last part is the remainder"
    );
    // A part of the wrong length is refused by the store itself.
    let mut short = part(&bytes, 1).to_vec();
    short.pop();
    assert!(
        app.put_part(&first[&1], &short)
            .await
            .status()
            .is_client_error()
    );
    assert!(
        app.put_part(&first[&3], part(&bytes, 1))
            .await
            .status()
            .is_client_error()
    );

    // A fresh URL for part 1 (as after an expiry) works; a second later it is newly dated.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let again = app.part_urls(id, &[1]).await;
    assert_ne!(again[&1]["url"], first[&1]["url"]);
    assert_eq!(
        app.put_part(&again[&1], part(&bytes, 1)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.put_part(&first[&2], part(&bytes, 2)).await.status(),
        StatusCode::OK
    );

    // Part 3 is missing: confirm names it and the upload stays pending.
    let resp = app.confirm(id).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    let body: Value = resp.json().await.expect("error");
    assert_eq!(body["code"], "incomplete_upload");
    assert_eq!(body["missing_parts"], json!([3]));
    assert_eq!(
        app.row(id).await.expect("row").state,
        upload_broker::uploads::UploadState::Pending
    );

    assert_eq!(
        app.put_part(&first[&3], part(&bytes, 3)).await.status(),
        StatusCode::OK
    );
    app.confirm_stored(id, &bytes).await;
}

#[tokio::test]
async fn an_aborted_upload_cannot_be_confirmed() {
    let app = TestApp::spawn_with(&SMALL_PARTS).await;
    let bytes = big_png(11 * MIB);
    let issued = app.issue_multipart("abort", &bytes, json!({})).await;
    let id = issued["upload_id"].as_str().expect("id");
    let urls = app.part_urls(id, &[1, 2, 3]).await;
    assert_eq!(
        app.put_part(&urls[&1], part(&bytes, 1)).await.status(),
        StatusCode::OK
    );

    assert_eq!(app.delete(id).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.delete(id).await.status(),
        StatusCode::NO_CONTENT,
        "again is harmless"
    );
    let (status, code) = error_code(app.confirm(id).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::GONE, "aborted"));
    // The store dropped the upload: its URLs no longer take parts, and no part file stays.
    assert!(
        app.put_part(&urls[&2], part(&bytes, 2))
            .await
            .status()
            .is_client_error()
    );
    assert_eq!(files_in_store(&app).await, Vec::<String>::new());
    let (status, code) = error_code(app.sign_parts(id, json!({"part_numbers": [2]})).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::GONE, "aborted"));
}

#[tokio::test]
async fn an_upload_resumes_from_the_parts_the_store_lists() {
    let app = TestApp::spawn_with(&SMALL_PARTS).await;
    let bytes = big_png(20 * MIB);
    let issued = app.issue_multipart("resume", &bytes, json!({})).await;
    let id = issued["upload_id"].as_str().expect("id");
    let urls = app.part_urls(id, &[1, 2]).await;
    for n in [1, 2] {
        assert_eq!(
            app.put_part(&urls[&n], part(&bytes, n)).await.status(),
            StatusCode::OK
        );
    }
    // After a reload the client only knows the upload_id: it asks what is there.
    let have = app.listed_parts(id).await;
    assert_eq!(have, vec![1, 2]);
    let rest: Vec<i32> = (1..=4).filter(|n| !have.contains(&i64::from(*n))).collect();
    let urls = app.part_urls(id, &rest).await;
    for n in rest {
        let n = i64::from(n);
        assert_eq!(
            app.put_part(&urls[&n], part(&bytes, n)).await.status(),
            StatusCode::OK
        );
    }
    app.confirm_stored(id, &bytes).await;
}

#[tokio::test]
async fn an_upload_survives_a_restart_of_the_service() {
    let (port, store_port) = (free_port().to_string(), free_port().to_string());
    let vars = [
        SMALL_PARTS[0],
        SMALL_PARTS[1],
        ("PORT", port.as_str()),
        ("EMBEDDED_S3_PORT", store_port.as_str()),
    ];
    let first = TestApp::spawn_with(&vars).await;
    let bytes = big_png(15 * MIB);
    let issued = first.issue_multipart("restart", &bytes, json!({})).await;
    let id = issued["upload_id"].as_str().expect("id").to_owned();
    let urls = first.part_urls(&id, &[1, 2, 3]).await;
    assert_eq!(
        first.put_part(&urls[&1], part(&bytes, 1)).await.status(),
        StatusCode::OK
    );
    let second = first.restart(&vars).await;
    assert_eq!(second.listed_parts(&id).await, vec![1]);
    // URLs signed before the restart still work, and so do new ones.
    assert_eq!(
        second.put_part(&urls[&2], part(&bytes, 2)).await.status(),
        StatusCode::OK
    );
    let fresh = second.part_urls(&id, &[3]).await;
    assert_eq!(
        second.put_part(&fresh[&3], part(&bytes, 3)).await.status(),
        StatusCode::OK
    );
    second.confirm_stored(&id, &bytes).await;
}

#[tokio::test]
async fn part_checksums_are_signed_and_whole_file_checksums_checked() {
    let app = TestApp::spawn_with(&SMALL_PARTS).await;
    let bytes = big_png(10 * MIB + 1);
    let issued = app
        .issue_multipart(
            "sums",
            &bytes,
            json!({ "checksum_algorithm": "SHA256", "checksum_sha256": sha256_b64(&bytes) }),
        )
        .await;
    assert_eq!(issued["checksum_algorithm"], "SHA256");
    let id = issued["upload_id"].as_str().expect("id");
    let (status, code) = error_code(app.sign_parts(id, json!({"part_numbers": [1]})).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_parts"),
        "checksum required"
    );

    let sums: BTreeMap<String, String> = (1..=3)
        .map(|n| (n.to_string(), sha256_b64(part(&bytes, n))))
        .collect();
    let resp = app
        .sign_parts(
            id,
            json!({"part_numbers": [1, 2, 3], "checksums_sha256": sums}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.expect("parts");
    let signed: Vec<Value> = body["parts"].as_array().expect("parts").clone();
    assert_eq!(
        signed[0]["headers"]["x-amz-checksum-sha256"],
        sha256_b64(part(&bytes, 1)).as_str()
    );
    // Other bytes of the same length are refused by the store.
    let mut wrong = part(&bytes, 2).to_vec();
    wrong[100] ^= 1;
    assert!(
        app.put_part(&signed[1], &wrong)
            .await
            .status()
            .is_client_error()
    );
    for (i, n) in [1, 2, 3].into_iter().enumerate() {
        assert_eq!(
            app.put_part(&signed[i], part(&bytes, n)).await.status(),
            StatusCode::OK
        );
    }
    let record: Value = app.confirm(id).await.json().await.expect("record");
    assert_eq!(record["state"], "completed");
    assert_eq!(record["checksum_sha256"], sha256_b64(&bytes).as_str());
}

#[tokio::test]
async fn a_multipart_upload_of_other_bytes_fails_verification() {
    let app = TestApp::spawn_with(&SMALL_PARTS).await;
    let bytes = vec![b'x'; 6 * MIB];
    let issued = app.issue_multipart("liar", &bytes, json!({})).await;
    let id = issued["upload_id"].as_str().expect("id");
    let urls = app.part_urls(id, &[1, 2]).await;
    for n in [1, 2] {
        assert_eq!(
            app.put_part(&urls[&n], part(&bytes, n)).await.status(),
            StatusCode::OK
        );
    }
    let (status, code) = error_code(app.confirm(id).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_image")
    );
    assert_eq!(
        app.row(id).await.expect("row").state,
        upload_broker::uploads::UploadState::Failed
    );
    assert_eq!(
        files_in_store(&app).await,
        Vec::<String>::new(),
        "object deleted"
    );
}

#[tokio::test]
async fn racing_confirms_complete_a_multipart_upload_once() {
    let app = TestApp::spawn_with(&SMALL_PARTS).await;
    let bytes = big_png(11 * MIB);
    let issued = app.issue_multipart("race", &bytes, json!({})).await;
    let id = issued["upload_id"].as_str().expect("id").to_owned();
    let urls = app.part_urls(&id, &[1, 2, 3]).await;
    for n in [1, 2, 3] {
        assert_eq!(
            app.put_part(&urls[&n], part(&bytes, n)).await.status(),
            StatusCode::OK
        );
    }
    let confirms = (0..20).map(|_| app.confirm(&id));
    let mut uploaded_at = Vec::new();
    for resp in futures_util::future::join_all(confirms).await {
        assert_eq!(resp.status(), StatusCode::OK);
        let body: Value = resp.json().await.expect("record");
        uploaded_at.push(body["uploaded_at"].clone());
    }
    assert!(uploaded_at.windows(2).all(|w| w[0] == w[1]));
    assert!(
        app.object(&format!("uploads/race/{id}.png"))
            .await
            .expect("object")
            == bytes
    );
}
