//! Image variants.

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
        assert_eq!(row.variants_state.as_deref(), Some("pending"));
    }
    let off = TestApp::spawn_with(&[("IMAGE_VARIANTS", "")]).await;
    off.upload("jobs", "a.png", "image/png", PNG).await;
    assert!(
        off.sql("SELECT upload_id FROM variant_jobs")
            .await
            .is_empty()
    );
}
