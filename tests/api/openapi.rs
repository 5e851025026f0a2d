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
    let spec = app.get_json("/openapi.json").await;
    let tags = [
        "uploads", "images", "legacy", "system", "webhooks", "admin", "tus",
    ];
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
        "create_webhook",
        "list_deliveries",
        "retry_delivery",
        "admin_search_uploads",
        "admin_stats",
        "admin_reverify_upload",
        "admin_delete_upload",
        "admin_regenerate_variants",
        "admin_audit",
        "get_upload_variant",
        "latest_image_variant",
        "tus_options",
        "tus_create",
        "tus_status",
        "tus_append",
        "tus_terminate",
    ] {
        assert!(ids.iter().any(|id| id == expected), "{expected} missing");
    }
    assert!(spec["components"]["schemas"]["Error"].is_object());
    assert!(spec["components"]["schemas"]["Upload"].is_object());
    // Swagger UI's Authorize takes an admin key for the webhooks API.
    assert_eq!(
        spec["components"]["securitySchemes"]["admin"]["scheme"],
        "bearer"
    );
    assert_eq!(
        spec["paths"]["/api/v1/admin/stats"]["get"]["security"][0]
            .as_object()
            .map(|o| o.contains_key("admin")),
        Some(true)
    );
    assert_eq!(
        spec["paths"]["/api/v1/webhooks/deliveries"]["get"]["security"][0]
            .as_object()
            .map(|o| o.contains_key("admin")),
        Some(true)
    );
    let docs = app.get("/docs").await;
    assert_eq!(docs.status(), StatusCode::OK);
    let html = docs.text().await.expect("html");
    assert!(html.contains("swagger"));
    assert!(
        html.contains(r#""additionalProperties":false"#),
        "Swagger UI shows the served document"
    );
}

/// What generated clients rely on: nulls where the service sends them, and the rules the
/// handlers enforce.
#[tokio::test]
async fn the_document_states_nulls_and_the_checked_rules() {
    let app = TestApp::spawn().await;
    let spec = app.get_json("/openapi.json").await;
    let schemas = &spec["components"]["schemas"];
    let upload = &schemas["Upload"]["properties"];
    for field in [
        "s3_url",
        "file_size",
        "checksum_sha256",
        "etag",
        "width",
        "height",
        "metadata",
        "uploaded_at",
    ] {
        assert_eq!(upload[field]["nullable"], true, "Upload.{field}");
    }
    assert_eq!(
        schemas["ImageList"]["properties"]["next_cursor"]["nullable"],
        true
    );
    let create = &schemas["CreateUploadRequest"];
    assert_eq!(create["additionalProperties"], false);
    assert_eq!(create["properties"]["size"]["minimum"], 1);
    assert_eq!(
        create["properties"]["image_id"]["pattern"],
        "^[A-Za-z0-9_-]{1,100}$"
    );
    assert_eq!(
        schemas["SignPartsRequest"]["properties"]["part_numbers"]["maxItems"],
        100
    );
    for name in ["IssuedUpload", "UploadLink", "Readiness"] {
        assert!(schemas[name].is_object(), "{name}");
    }
    let get_upload = &spec["paths"]["/api/v1/uploads/{upload_id}"]["get"];
    assert_eq!(get_upload["parameters"][0]["schema"]["format"], "uuid");
    let latest = &spec["paths"]["/api/url/{image_id}"]["get"];
    assert_eq!(
        latest["parameters"][0]["schema"]["pattern"],
        "^[A-Za-z0-9_-]{1,100}$"
    );
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("operations") {
            for (status, resp) in op["responses"].as_object().expect("responses") {
                if status.starts_with('2') {
                    let text = resp["description"].as_str().unwrap_or_default();
                    assert!(
                        !text.is_empty(),
                        "{method} {path} {status} has no description"
                    );
                }
            }
        }
    }
}
