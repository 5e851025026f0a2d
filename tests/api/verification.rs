//! What verification refuses end to end: a malformed header through the v1 flow and the
//! legacy upload, and, with `VERIFY_DECODE`, a well-formed header over undecodable pixels.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{JPEG, TestApp, error_code, files_in_store, png_of_size};

/// A PNG whose every chunk is well formed but whose pixel data does not inflate.
const PNG_CORRUPT_IDAT: &[u8] = include_bytes!("../fixtures/corrupt-idat.png");

/// The JPEG fixture with its frame header's length (and what follows) replaced.
fn jpeg_with_frame(at: usize, with: &[u8]) -> Vec<u8> {
    let sof = JPEG
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("a baseline frame header");
    let mut bytes = JPEG.to_vec();
    bytes[sof + at..sof + at + with.len()].copy_from_slice(with);
    bytes
}

/// The malformed frame headers of the issue: each was verified, or refused as too large.
fn malformed_jpegs() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("frame header length 2", jpeg_with_frame(2, &[0, 2])),
        (
            "frame header length 65535",
            jpeg_with_frame(2, &[0xFF, 0xFF]),
        ),
        ("no components", jpeg_with_frame(9, &[0])),
        (
            "length 2 before huge dimensions",
            jpeg_with_frame(2, &[0, 2, 8, 0xFF, 0xFF, 0xFF, 0xFF]),
        ),
    ]
}

/// Issues, PUTs and confirms; returns the confirm's status and error code.
async fn confirm_refusal(
    app: &TestApp,
    image_id: &str,
    filename: &str,
    mime: &str,
    bytes: &[u8],
) -> (StatusCode, String) {
    let issued = app.issue(image_id, filename, mime, bytes).await;
    assert_eq!(app.put(&issued, bytes).await.status(), StatusCode::OK);
    error_code(app.confirm(issued["upload_id"].as_str().expect("id")).await).await
}

/// A legacy upload's status and error, and that nothing was kept.
async fn legacy_refusal(
    app: &TestApp,
    image_id: &str,
    filename: &str,
    bytes: &[u8],
) -> (StatusCode, String) {
    let resp = app.legacy_upload(image_id, filename, bytes).await;
    let status = resp.status();
    let body: Value = resp.json().await.expect("JSON body");
    assert_eq!(body["success"], false);
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

async fn assert_nothing_kept(app: &TestApp, what: &str) {
    assert_eq!(
        files_in_store(app).await,
        Vec::<String>::new(),
        "{what}: nothing in the bucket"
    );
}

#[tokio::test]
async fn a_malformed_jpeg_frame_header_is_an_invalid_image_on_confirm() {
    let app = TestApp::spawn().await;
    for (what, bytes) in malformed_jpegs() {
        let refused = confirm_refusal(&app, "broken", "broken.jpg", "image/jpeg", &bytes).await;
        assert_eq!(
            refused,
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_image".to_owned()),
            "{what}"
        );
        assert_nothing_kept(&app, what).await;
    }
}

#[tokio::test]
async fn a_malformed_jpeg_frame_header_is_refused_by_the_legacy_upload() {
    let app = TestApp::spawn().await;
    for (what, bytes) in malformed_jpegs() {
        let refused = legacy_refusal(&app, "broken", "broken.jpg", &bytes).await;
        assert_eq!(
            refused,
            (
                StatusCode::BAD_REQUEST,
                "File is not a valid image".to_owned()
            ),
            "{what}"
        );
        assert_eq!(app.count_rows().await, 0, "{what}: no row");
        assert_nothing_kept(&app, what).await;
    }
}

/// Header checks alone pass a PNG whose pixel data is garbage; `VERIFY_DECODE` refuses it.
#[tokio::test]
async fn verify_decode_refuses_a_well_formed_header_over_undecodable_pixels() {
    let app = TestApp::spawn().await;
    let record = app
        .upload("lenient", "corrupt.png", "image/png", PNG_CORRUPT_IDAT)
        .await;
    assert_eq!(record["state"], "completed");

    let app = TestApp::spawn_with(&[("VERIFY_DECODE", "true")]).await;
    let refused =
        confirm_refusal(&app, "strict", "corrupt.png", "image/png", PNG_CORRUPT_IDAT).await;
    assert_eq!(
        refused,
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_image".to_owned())
    );
    let refused = legacy_refusal(&app, "strict", "corrupt.png", PNG_CORRUPT_IDAT).await;
    assert_eq!(
        refused,
        (
            StatusCode::BAD_REQUEST,
            "File is not a valid image".to_owned()
        )
    );
    assert_nothing_kept(&app, "decode").await;
    // Whole images still pass, also past the first bytes read and spooled to disk, and
    // larger files than VERIFY_DECODE_MAX_BYTES get the header
    // checks alone.
    app.upload("strict", "photo.jpg", "image/jpeg", JPEG).await;
    let large = png_of_size(300 * 1024);
    app.upload("strict", "large.png", "image/png", &large).await;
    app.legacy_stored("strict", "large.png", &large).await;
    let app = TestApp::spawn_with(&[
        ("VERIFY_DECODE", "true"),
        ("VERIFY_DECODE_MAX_BYTES", "100"),
    ])
    .await;
    app.upload("large", "corrupt.png", "image/png", PNG_CORRUPT_IDAT)
        .await;
    app.legacy_stored("large", "corrupt.png", PNG_CORRUPT_IDAT)
        .await;
}
