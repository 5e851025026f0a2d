//! Image variants.

use std::time::Duration;

use entity::VariantsState;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn each_completion_records_its_variants_job_and_nothing_else_does() {
    let app = TestApp::spawn_with(&[("IMAGE_VARIANTS", "thumb:256,display:1280")]).await;
    let put = app.upload("jobs", "a.png", "image/png", PNG).await;
    let legacy = app.legacy_stored("jobs", "b.png", PNG).await;
    let pending = app.issue("jobs", "c.png", "image/png", PNG).await;
    assert_eq!(
        app.delete(pending["upload_id"].as_str().expect("id"))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let jobs = app.sql("SELECT upload_id FROM variant_jobs").await;
    assert_eq!(jobs.len(), 2, "one job per completion");
    for record in [&put, &legacy] {
        let row = app
            .row(record["upload_id"].as_str().expect("id"))
            .await
            .expect("row");
        // Made already, or waiting to be.
        assert!(
            matches!(
                row.variants_state,
                Some(VariantsState::Pending | VariantsState::Ready)
            ),
            "{:?}",
            row.variants_state
        );
    }
    let off = TestApp::spawn_with(&[("IMAGE_VARIANTS", "")]).await;
    off.upload("jobs", "a.png", "image/png", PNG).await;
    assert!(
        off.sql("SELECT upload_id FROM variant_jobs")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_completed_upload_gets_every_preset_in_every_format() {
    let app = TestApp::spawn_with(&[("IMAGE_VARIANTS", "thumb:16,display:1280")]).await;
    let record = app.upload("made", "a.jpg", "image/jpeg", JPEG).await;
    let id = record["upload_id"].as_str().expect("id").to_owned();
    let started = std::time::Instant::now();
    let row = loop {
        let row = app.row(&id).await.expect("row");
        if row.variants_state != Some(VariantsState::Pending) {
            break row;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "still pending"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(
        row.variants_state,
        Some(VariantsState::Ready),
        "{:?}",
        row.variants
    );
    let variants: serde_json::Value =
        serde_json::from_str(row.variants.as_deref().expect("variants")).expect("JSON");
    let original = image::load_from_memory(JPEG).expect("fixture");
    for preset in ["thumb", "display"] {
        for format in ["webp", "jpeg"] {
            let made = &variants[preset][format];
            let key = made["key"].as_str().expect("key");
            assert_eq!(key, format!("variants/made/{id}/{preset}.{format}"));
            let bytes = app.object(key).await.expect("stored");
            assert_eq!(made["size"], bytes.len());
            let decoded = image::load_from_memory(&bytes).expect("decodes");
            assert_eq!(made["width"], decoded.width());
            assert_eq!(made["height"], decoded.height());
            let longest = decoded.width().max(decoded.height());
            let expected = if preset == "thumb" {
                16
            } else {
                original.width().max(original.height()).min(1280)
            };
            assert_eq!(longest, expected, "{preset}.{format}");
        }
    }
}

/// Two presets small enough that every test image is reduced by one and kept by the other.
const PRESETS: (&str, &str) = ("IMAGE_VARIANTS", "thumb:64,display:1280");

/// The record once its variants are no longer pending.
async fn settled(app: &TestApp, upload_id: &str) -> Value {
    let started = std::time::Instant::now();
    loop {
        let record = app.get_json(&format!("/api/v1/uploads/{upload_id}")).await;
        if record["variants_state"] != "pending" {
            return record;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "still pending");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A GET of a URL the service handed out, as a browser makes it.
async fn fetch(url: &str) -> reqwest::Response {
    let resp = reqwest::get(url).await.expect("GET");
    assert_eq!(resp.status(), StatusCode::OK, "{url}");
    resp
}

/// A client that shows redirects instead of following them.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// What an independent EXIF reader finds in `bytes`.
fn exif_of(bytes: &[u8]) -> Option<exif::Exif> {
    exif::Reader::new()
        .read_from_container(&mut std::io::Cursor::new(bytes))
        .ok()
}

/// The left half red, the right half blue.
fn halves(w: u32, h: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, _| {
        if x < w / 2 {
            image::Rgb([230, 20, 20])
        } else {
            image::Rgb([20, 20, 230])
        }
    })
}

fn encoded(image: image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, format).expect("encode");
    out.into_inner()
}

/// A JPEG of `image` whose EXIF says orientation 6 (shown turned 90 degrees clockwise) and
/// carries a GPS latitude, as a phone writes it.
fn phone_jpeg(image: &image::RgbImage) -> Vec<u8> {
    let mut tiff = b"II*\0\x08\0\0\0".to_vec();
    let entry = |out: &mut Vec<u8>, tag: u16, kind: u16, count: u32, value: [u8; 4]| {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&value);
    };
    // IFD0 at 8: Orientation and the GPS IFD's offset (8 + 2 + 2 * 12 + 4 = 38).
    tiff.extend_from_slice(&2u16.to_le_bytes());
    entry(&mut tiff, 0x0112, 3, 1, [6, 0, 0, 0]);
    entry(&mut tiff, 0x8825, 4, 1, 38u32.to_le_bytes());
    tiff.extend_from_slice(&0u32.to_le_bytes());
    // The GPS IFD: GPSLatitudeRef "N".
    tiff.extend_from_slice(&1u16.to_le_bytes());
    entry(&mut tiff, 0x0001, 2, 2, *b"N\0\0\0");
    tiff.extend_from_slice(&0u32.to_le_bytes());
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, 90);
    encoder.add_app_segment(1, app1).expect("APP1");
    encoder
        .encode(
            image.as_raw(),
            image.width() as u16,
            image.height() as u16,
            jpeg_encoder::ColorType::Rgb,
        )
        .expect("jpeg");
    out
}

#[tokio::test]
async fn every_format_gets_upright_variants_of_the_right_size_without_metadata() {
    use image::{DynamicImage, ImageFormat};
    let app = TestApp::spawn_with(&[PRESETS]).await;
    let phone = phone_jpeg(&halves(400, 200));
    let found = exif_of(&phone).expect("the original has EXIF");
    let orientation = found
        .get_field(exif::Tag::Orientation, exif::In::PRIMARY)
        .and_then(|f| f.value.get_uint(0));
    assert_eq!(orientation, Some(6));
    assert!(
        found
            .get_field(exif::Tag::GPSLatitudeRef, exif::In::PRIMARY)
            .is_some()
    );
    let wide = |format| {
        (
            encoded(DynamicImage::ImageRgb8(halves(300, 200)), format),
            (300, 200),
        )
    };
    // Name, type, bytes, and the size it is shown at (the phone photo upright: 200 x 400).
    type Shown = (Vec<u8>, (u32, u32));
    let mut files: Vec<(&str, &str, Shown)> = vec![("b.jpg", "image/jpeg", (phone, (200, 400)))];
    for (name, mime, format) in [
        ("a.png", "image/png", ImageFormat::Png),
        ("c.gif", "image/gif", ImageFormat::Gif),
        ("d.webp", "image/webp", ImageFormat::WebP),
        ("e.tiff", "image/tiff", ImageFormat::Tiff),
        ("f.bmp", "image/bmp", ImageFormat::Bmp),
    ] {
        files.push((name, mime, wide(format)));
    }
    for (name, mime, (bytes, (w, h))) in files {
        let record = app.upload("formats", name, mime, &bytes).await;
        let id = record["upload_id"].as_str().expect("id");
        assert_eq!(record["variants_state"], "pending", "{name}");
        let record = settled(&app, id).await;
        assert_eq!(record["variants_state"], "ready", "{name}: {record}");
        assert_eq!(record["variants_failure_code"], Value::Null);
        for (preset, longest) in [("thumb", 64), ("display", 1280)] {
            for (format, mime) in [("webp", "image/webp"), ("jpeg", "image/jpeg")] {
                let made = &record["variants"][preset][format];
                let resp = fetch(made["url"].as_str().expect("url")).await;
                assert_eq!(resp.headers()["content-type"], mime);
                let bytes = resp.bytes().await.expect("bytes");
                assert_eq!(made["size"], bytes.len());
                let key = format!("variants/formats/{id}/{preset}.{format}");
                assert_eq!(app.object(&key).await.as_deref(), Some(&bytes[..]));
                let decoded = image::load_from_memory(&bytes).expect("a variant decodes");
                let (vw, vh) = (decoded.width(), decoded.height());
                assert_eq!(
                    (made["width"].clone(), made["height"].clone()),
                    (json!(vw), json!(vh))
                );
                // Fit inside, never enlarged, the aspect ratio kept (to a pixel's rounding).
                assert_eq!(
                    vw.max(vh),
                    longest.min(w.max(h)),
                    "{name} {preset}.{format}"
                );
                assert!(
                    (u64::from(vw) * u64::from(h)).abs_diff(u64::from(vh) * u64::from(w))
                        <= u64::from(w.max(h)),
                    "{name} {preset}.{format}: {vw}x{vh} from {w}x{h}"
                );
                assert!(
                    exif_of(&bytes).is_none(),
                    "{name} {preset}.{format} has EXIF"
                );
                assert!(!bytes.windows(4).any(|s| s == b"Exif" || s == b"XMP "));
                // Red on the left; upright, the phone photo's red half is on top.
                let rgb = decoded.to_rgb8();
                let (first, second) = if name == "b.jpg" {
                    (
                        rgb.get_pixel(vw / 2, vh / 8),
                        rgb.get_pixel(vw / 2, vh * 7 / 8),
                    )
                } else {
                    (
                        rgb.get_pixel(vw / 8, vh / 2),
                        rgb.get_pixel(vw * 7 / 8, vh / 2),
                    )
                };
                assert!(
                    first[0] > 150 && first[2] < 100,
                    "{name}: red first, {first:?}"
                );
                assert!(
                    second[2] > 150 && second[0] < 100,
                    "{name}: blue second, {second:?}"
                );
            }
        }
    }
    // Each settled job recorded its variants.ready event, with the record as it now reads.
    let events = app
        .sql("SELECT payload FROM events WHERE event_type = 'variants.ready'")
        .await;
    assert_eq!(events.len(), 6);
    for row in events {
        let payload: String = row.try_get("", "payload").expect("payload");
        let body: Value = serde_json::from_str(&payload).expect("JSON");
        assert_eq!(body["type"], "variants.ready");
        assert_eq!(body["data"]["variants_state"], "ready");
        assert!(body["data"]["variants"]["thumb"]["webp"]["url"].is_string());
    }
}

/// A PNG whose header declares `side` x `side` pixels, in a few hundred bytes.
fn declared_png(side: u32) -> Vec<u8> {
    let chunk = |out: &mut Vec<u8>, kind: &[u8], data: &[u8]| {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    };
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = side.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    // A deflate stream of a few zero rows: far too short for the declared size.
    chunk(
        &mut png,
        b"IDAT",
        &[
            0x78, 0x9c, 0x63, 0x60, 0x18, 0x05, 0x00, 0x00, 0x00, 0x00, 0x01,
        ],
    );
    chunk(&mut png, b"IEND", &[]);
    png
}

#[tokio::test]
async fn a_decompression_bomb_is_refused_before_it_is_decoded() {
    let app = TestApp::spawn_with(&[PRESETS]).await;
    // 100 MP: within confirm's default MAX_IMAGE_PIXELS, above VARIANT_MAX_PIXELS.
    let bomb = declared_png(10_000);
    let record = app.upload("bomb", "bomb.png", "image/png", &bomb).await;
    assert_eq!(record["state"], "completed");
    let id = record["upload_id"].as_str().expect("id");
    let record = settled(&app, id).await;
    assert_eq!(record["variants_state"], "failed");
    assert_eq!(record["variants_failure_code"], "image_too_large");
    assert_eq!(record["variants"], Value::Null);
    let resp = app
        .get(&format!("/api/v1/uploads/{id}/variants/thumb.webp"))
        .await;
    assert_eq!(
        error_code(resp).await,
        (StatusCode::UNPROCESSABLE_ENTITY, "image_too_large".into())
    );
    assert_eq!(
        jobs(&app).await,
        [("failed".to_owned(), 1)],
        "never retried"
    );
    assert!(
        files_in_store(&app)
            .await
            .iter()
            .all(|f| !f.contains("variants/"))
    );
}

#[tokio::test]
async fn fifty_requests_for_a_missing_variant_make_it_once() {
    // Uploaded while variants were off: no job, nothing made.
    let before = TestApp::spawn_with(&[("IMAGE_VARIANTS", "")]).await;
    let record = before.upload("ondemand", "a.jpg", "image/jpeg", JPEG).await;
    assert_eq!(record["variants_state"], "none");
    let id = record["upload_id"].as_str().expect("id").to_owned();
    let app = before.restart(&[PRESETS]).await;
    assert_eq!(
        app.get_json(&format!("/api/v1/uploads/{id}")).await["variants_state"],
        "none"
    );

    let client = no_redirects();
    let asks = (0..50).map(|n| {
        let path = if n % 5 == 0 {
            "/api/v1/images/ondemand/latest/variants/thumb.webp".to_owned()
        } else {
            format!("/api/v1/uploads/{id}/variants/thumb.webp")
        };
        client.get(app.url(&path)).send()
    });
    let mut locations = std::collections::BTreeSet::new();
    for resp in futures_util::future::join_all(asks).await {
        let resp = resp.expect("answer");
        assert_eq!(resp.status(), StatusCode::FOUND);
        locations.insert(
            resp.headers()["location"]
                .to_str()
                .expect("location")
                .to_owned(),
        );
    }
    assert_eq!(locations.len(), 1, "{locations:?}");
    assert_eq!(jobs(&app).await, [("done".to_owned(), 1)], "made once");
    let mut stored: Vec<String> = files_in_store(&app)
        .await
        .into_iter()
        .filter(|f| f.contains("variants/"))
        .collect();
    stored.sort();
    assert_eq!(
        stored.len(),
        4,
        "each preset in each format, once: {stored:?}"
    );
    let thumb = fetch(locations.first().expect("one"))
        .await
        .bytes()
        .await
        .expect("bytes");
    let decoded = image::load_from_memory(&thumb).expect("webp");
    assert_eq!(decoded.width().max(decoded.height()), 64);
    let record = app.get_json(&format!("/api/v1/uploads/{id}")).await;
    assert_eq!(record["variants_state"], "ready");
    // Asked again, it is found, not made.
    let again = client
        .get(app.url(&format!("/api/v1/uploads/{id}/variants/display.jpeg")))
        .send()
        .await
        .expect("answer");
    assert_eq!(again.status(), StatusCode::FOUND);
    assert_eq!(again.headers()["cache-control"], "private, max-age=300");
    assert_eq!(jobs(&app).await, [("done".to_owned(), 1)], "not made again");
}

#[tokio::test]
async fn variant_requests_get_clear_errors() {
    let app = TestApp::spawn_with(&[PRESETS]).await;
    let done = app.upload("asks", "a.png", "image/png", PNG).await;
    let done = done["upload_id"].as_str().expect("id").to_owned();
    let pending = app.issue("asks", "b.png", "image/png", PNG).await;
    let pending = pending["upload_id"].as_str().expect("id").to_owned();
    let cases = [
        (
            format!("/api/v1/uploads/{done}/variants/huge.webp"),
            404,
            "unknown_preset",
        ),
        (
            format!("/api/v1/uploads/{done}/variants/thumb"),
            415,
            "unsupported_format",
        ),
        (
            format!("/api/v1/uploads/{done}/variants/thumb.png"),
            415,
            "unsupported_format",
        ),
        (
            format!("/api/v1/uploads/{pending}/variants/thumb.webp"),
            409,
            "not_completed",
        ),
        (
            format!(
                "/api/v1/uploads/{}/variants/thumb.webp",
                uuid::Uuid::now_v7()
            ),
            404,
            "not_found",
        ),
        (
            "/api/v1/uploads/nope/variants/thumb.webp".to_owned(),
            400,
            "invalid_upload_id",
        ),
        (
            "/api/v1/images/nobody/latest/variants/thumb.webp".to_owned(),
            404,
            "not_found",
        ),
        (
            "/api/v1/images/asks/latest/variants/other.webp".to_owned(),
            404,
            "unknown_preset",
        ),
        (
            "/api/v1/images/bad%20id/latest/variants/thumb.webp".to_owned(),
            400,
            "invalid_image_id",
        ),
    ];
    for (path, status, code) in cases {
        let (got, got_code) = error_code(app.get(&path).await).await;
        assert_eq!((got.as_u16(), got_code.as_str()), (status, code), "{path}");
    }
    let latest = no_redirects()
        .get(app.url("/api/v1/images/asks/latest/variants/thumb.jpeg"))
        .send()
        .await
        .expect("answer");
    assert_eq!(latest.status(), StatusCode::FOUND);
    assert_eq!(latest.headers()["cache-control"], "no-cache");
    let off = TestApp::spawn_with(&[("IMAGE_VARIANTS", "")]).await;
    let record = off.upload("off", "a.png", "image/png", PNG).await;
    let id = record["upload_id"].as_str().expect("id");
    let resp = off
        .get(&format!("/api/v1/uploads/{id}/variants/thumb.webp"))
        .await;
    assert_eq!(
        error_code(resp).await,
        (StatusCode::NOT_FOUND, "unknown_preset".into())
    );
}

#[tokio::test]
async fn legacy_and_multipart_uploads_get_variants_too() {
    let mut vars = vec![PRESETS];
    vars.extend(SMALL_PARTS);
    let app = TestApp::spawn_with(&vars).await;
    let legacy = app.legacy_stored("paths", "a.png", PNG).await;
    let big = png_with_padding(12 * MIB, |i| (i % 251) as u8);
    let issued = app.issue_multipart("paths", &big, json!({})).await;
    let id = issued["upload_id"].as_str().expect("id").to_owned();
    let count = issued["part_count"].as_i64().expect("parts") as i32;
    let part_size = issued["part_size"].as_u64().expect("size") as usize;
    let numbers: Vec<i32> = (1..=count).collect();
    for (n, signed) in app.part_urls(&id, &numbers).await {
        let start = (n as usize - 1) * part_size;
        let end = (start + part_size).min(big.len());
        assert_eq!(
            app.put_part(&signed, &big[start..end]).await.status(),
            StatusCode::OK
        );
    }
    app.confirm_stored(&id, &big).await;
    let legacy_id = app
        .completed_rows("paths")
        .await
        .into_iter()
        .find(|r| r.id != uuid::Uuid::parse_str(&id).expect("id"))
        .expect("legacy row")
        .id;
    let _ = legacy;
    for upload in [legacy_id.to_string(), id] {
        let record = settled(&app, &upload).await;
        assert_eq!(record["variants_state"], "ready", "{record}");
        let url = record["variants"]["thumb"]["webp"]["url"]
            .as_str()
            .expect("url");
        let bytes = fetch(url).await.bytes().await.expect("bytes");
        image::load_from_memory(&bytes).expect("decodes");
    }
}

#[tokio::test]
async fn deleting_an_upload_deletes_its_variants_and_the_sweeper_takes_orphans() {
    let app = TestApp::spawn_with(&[PRESETS]).await;
    let kept = app.upload("gone", "a.png", "image/png", PNG).await;
    let kept = kept["upload_id"].as_str().expect("id").to_owned();
    let deleted = app.upload("gone", "b.png", "image/png", PNG).await;
    let deleted = deleted["upload_id"].as_str().expect("id").to_owned();
    for id in [&kept, &deleted] {
        assert_eq!(settled(&app, id).await["variants_state"], "ready");
    }
    let of = |id: &str| format!("variants/gone/{id}/");
    let variants_of =
        |files: &[String], id: &str| files.iter().filter(|f| f.contains(&of(id))).count();
    assert_eq!(variants_of(&files_in_store(&app).await, &deleted), 4);
    assert_eq!(app.delete(&deleted).await.status(), StatusCode::NO_CONTENT);
    let files = files_in_store(&app).await;
    assert_eq!(variants_of(&files, &deleted), 0, "{files:?}");
    assert_eq!(variants_of(&files, &kept), 4);

    // Variants whose upload is gone (a job that finished after its delete): swept.
    let orphan = format!("variants/gone/{}/thumb.webp", uuid::Uuid::now_v7());
    app.storage
        .put_immutable(&orphan, "image/webp", bytes::Bytes::from_static(b"stale"))
        .await
        .expect("put");
    let report = app.uploads.sweep(Duration::ZERO).await.expect("sweep");
    assert!(report.orphan_objects_deleted >= 1);
    assert!(app.object(&orphan).await.is_none());
    assert_eq!(
        variants_of(&files_in_store(&app).await, &kept),
        4,
        "live variants stay"
    );
}

/// Each variants job's state and attempts, in the database `conn` reaches.
async fn jobs_in(conn: &impl sea_orm::ConnectionTrait) -> Vec<(String, i32)> {
    let query = "SELECT state, attempts FROM variant_jobs";
    conn.query_all_raw(sea_orm::Statement::from_string(
        conn.get_database_backend(),
        query,
    ))
    .await
    .expect("jobs")
    .iter()
    .map(|row| {
        (
            row.try_get("", "state").expect("state"),
            row.try_get("", "attempts").expect("attempts"),
        )
    })
    .collect()
}

async fn jobs(app: &TestApp) -> Vec<(String, i32)> {
    jobs_in(app.db().writer()).await
}

/// A photo-sized JPEG (4000 x 3000) with gradients and edges: a job on it takes a while
/// in a debug build.
fn large_jpeg() -> Vec<u8> {
    let image = image::RgbImage::from_fn(4000, 3000, |x, y| {
        let stripe = if (x / 97 + y / 89) % 2 == 0 { 40 } else { 0 };
        image::Rgb([(x / 16) as u8, (y / 12) as u8, 100 + stripe])
    });
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 85)
        .encode(image.as_raw(), 4000, 3000, jpeg_encoder::ColorType::Rgb)
        .expect("jpeg");
    out
}

#[tokio::test]
async fn a_job_cut_short_by_a_kill_is_finished_after_a_restart() {
    let (env, _dir) = service_process_env(&[PRESETS]).await;
    let database_url = env
        .iter()
        .find(|(k, _)| k == "DATABASE_URL")
        .map(|(_, v)| v.clone())
        .expect("database");
    let db = sea_orm::Database::connect(database_url)
        .await
        .expect("database");
    let query = |sql: &str| {
        sea_orm::Statement::from_string(sea_orm::ConnectionTrait::get_database_backend(&db), sql)
    };
    let first = start_process(&env, free_port()).await;
    first
        .legacy_upload_file("killed", "big.jpg", &large_jpeg())
        .await;
    // Killed as soon as its worker holds the job.
    let started = std::time::Instant::now();
    let upload_id = loop {
        let rows = sea_orm::ConnectionTrait::query_all_raw(
            &db,
            query("SELECT upload_id, state FROM variant_jobs WHERE lease IS NOT NULL"),
        )
        .await
        .expect("jobs");
        if let Some(row) = rows.first() {
            let state: String = row.try_get("", "state").expect("state");
            assert_eq!(state, "pending", "the job finished before the kill");
            break row.try_get::<uuid::Uuid>("", "upload_id").expect("id");
        }
        assert!(started.elapsed() < Duration::from_secs(30), "never claimed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    drop(first);
    assert_eq!(jobs_in(&db).await, [("pending".to_owned(), 0)]);

    // The dead worker's lease runs out (JOB_LEASE, 15 s) and the next process takes it.
    let second = start_process(&env, free_port()).await;
    let started = std::time::Instant::now();
    let record = loop {
        let record: Value = second
            .client
            .get(format!(
                "http://127.0.0.1:{}/api/v1/uploads/{upload_id}",
                second.port
            ))
            .send()
            .await
            .expect("record")
            .json()
            .await
            .expect("JSON");
        if record["variants_state"] != "pending" {
            break record;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "never finished"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(record["variants_state"], "ready", "{record}");
    assert_eq!(
        jobs_in(&db).await,
        [("done".to_owned(), 1)],
        "the killed attempt was never recorded"
    );
    let display = &record["variants"]["display"]["jpeg"];
    assert_eq!(
        (display["width"].clone(), display["height"].clone()),
        (json!(1280), json!(960))
    );
    let bytes = fetch(display["url"].as_str().expect("url"))
        .await
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(
        image::load_from_memory(&bytes).expect("decodes").width(),
        1280
    );
}

#[tokio::test]
async fn a_preset_added_later_is_made_when_first_asked_for() {
    let before = TestApp::spawn_with(&[("IMAGE_VARIANTS", "thumb:64")]).await;
    let record = before.upload("added", "a.jpg", "image/jpeg", JPEG).await;
    let id = record["upload_id"].as_str().expect("id").to_owned();
    assert_eq!(settled(&before, &id).await["variants_state"], "ready");
    let app = before.restart(&[PRESETS]).await;
    let resp = no_redirects()
        .get(app.url(&format!("/api/v1/uploads/{id}/variants/display.webp")))
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::FOUND);
    let record = app.get_json(&format!("/api/v1/uploads/{id}")).await;
    assert_eq!(record["variants_state"], "ready");
    assert!(record["variants"]["display"]["webp"]["url"].is_string());
    assert_eq!(
        jobs(&app).await,
        [("done".to_owned(), 2)],
        "made again, once"
    );
}
