//! The committed OpenAPI document is what the code serves.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::TestApp;

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");
const REGENERATE: &str = "UPDATE_OPENAPI=1 cargo test --test api openapi";

#[tokio::test]
async fn openapi_document_matches_the_committed_file() {
    let app = TestApp::spawn().await;
    let resp = app.get("/openapi.json").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let served: Value = resp.json().await.expect("spec JSON");
    let pretty = serde_json::to_string_pretty(&served).expect("pretty") + "\n";
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(COMMITTED, &pretty).expect("write openapi/openapi.json");
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(
        committed == pretty,
        "openapi/openapi.json differs from what the service serves; regenerate it with `{REGENERATE}`"
    );
}

#[tokio::test]
async fn every_operation_has_an_id_and_a_contract_tag() {
    let app = TestApp::spawn().await;
    let spec: Value = app.get("/openapi.json").await.json().await.expect("spec");
    let tags = ["uploads", "images", "legacy", "system"];
    let mut ids = Vec::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("operations") {
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            ids.push(id.to_owned());
            let tag = op["tags"][0].as_str().expect("tag");
            assert!(tags.contains(&tag), "{method} {path} tag {tag}");
        }
    }
    for expected in [
        "create_upload",
        "confirm_upload",
        "get_upload",
        "delete_upload",
        "list_images",
        "latest_image",
        "health",
        "upload_page",
    ] {
        assert!(ids.iter().any(|id| id == expected), "{expected} missing");
    }
    assert!(spec["components"]["schemas"]["Error"].is_object());
    assert!(spec["components"]["schemas"]["Upload"].is_object());
    let docs = app.get("/docs").await;
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(docs.text().await.expect("html").contains("swagger"));
}
