//! Image variants.

use entity::VariantsState;
use reqwest::StatusCode;

use crate::helpers::*;

#[tokio::test]
async fn each_completion_records_its_variants_job_and_nothing_else_does() {
    let app = TestApp::spawn().await;
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
        assert_eq!(row.variants_state, Some(VariantsState::Pending));
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
