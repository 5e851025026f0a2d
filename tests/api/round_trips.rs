//! How many storage requests a confirm makes, counted by the service's own S3 metrics. The
//! service runs as a process of its own (the metrics registry of this test process is
//! shared by every test in it), with `AUTO_CONFIRM=false` and `SWEEP_INTERVAL=0`, so each
//! confirm does the work and nothing else talks to the store meanwhile.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

/// The `upload_broker_s3_requests_total` samples of `operation`, summed; with `None`, of
/// every operation but `DeleteObjects` (the batched removal of staged copies, counted on
/// its own).
fn storage_requests(metrics: &str, operation: Option<&str>) -> f64 {
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix("upload_broker_s3_requests_total{"))
        .filter(|line| match operation {
            Some(op) => line.starts_with(&format!("operation=\"{op}\"")),
            None => !line.starts_with("operation=\"DeleteObjects\""),
        })
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// A GIF of at least `size` bytes: the fixture with comment blocks before its trailer.
fn gif_of_size(size: usize) -> Vec<u8> {
    let mut bytes = GIF[..GIF.len() - 1].to_vec();
    while bytes.len() + 260 < size {
        bytes.extend_from_slice(&[0x21, 0xFE, 0xFF]);
        bytes.extend(std::iter::repeat_n(b'c', 0xFF));
        bytes.push(0);
    }
    bytes.push(0x3B);
    bytes
}

struct Service {
    process: Process,
}

impl Service {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.process.port)
    }

    async fn metrics(&self) -> String {
        let resp = self
            .process
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET");
        resp.text().await.expect("metrics")
    }

    /// Issues an upload of `bytes` and PUTs them; its upload_id.
    async fn uploaded(&self, content_type: &str, filename: &str, bytes: &[u8]) -> Value {
        let issued: Value = self
            .process
            .client
            .post(self.url("/api/v1/uploads"))
            .json(&json!({
                "image_id": "round-trips",
                "filename": filename,
                "content_type": content_type,
                "size": bytes.len(),
            }))
            .send()
            .await
            .expect("issue")
            .json()
            .await
            .expect("JSON");
        let put = self
            .process
            .client
            .put(issued["url"].as_str().expect("url"))
            .body(bytes.to_vec());
        let put = with_signed_headers(put, &issued);
        assert_eq!(put.send().await.expect("PUT").status(), StatusCode::OK);
        issued
    }
}

#[tokio::test]
async fn a_single_put_confirm_makes_two_storage_requests_and_more_only_where_a_format_needs_them() {
    let (env, _dir) = service_process_env(&[]).await;
    let service = Service {
        process: start_process(&env, free_port()).await,
    };
    let jpeg_with_trailer = {
        // Cameras write data after the end marker; a JPEG is judged by its first bytes.
        let mut bytes = JPEG.to_vec();
        bytes.extend(std::iter::repeat_n(0u8, 200 * 1024));
        bytes
    };
    let cases: Vec<(&str, &str, &str, Vec<u8>, f64)> = vec![
        (
            "a small PNG, whole in the first read",
            "image/png",
            "a.png",
            PNG.to_vec(),
            2.0,
        ),
        ("a small JPEG", "image/jpeg", "a.jpg", JPEG.to_vec(), 2.0),
        ("a small WebP", "image/webp", "a.webp", WEBP.to_vec(), 2.0),
        ("a small GIF", "image/gif", "a.gif", GIF.to_vec(), 2.0),
        (
            "a 200 KiB JPEG",
            "image/jpeg",
            "b.jpg",
            jpeg_with_trailer,
            2.0,
        ),
        (
            "a 200 KiB PNG: its last bytes are read",
            "image/png",
            "b.png",
            png_of_size(200 * 1024),
            3.0,
        ),
        (
            "a 200 KiB GIF: its last byte is read",
            "image/gif",
            "b.gif",
            gif_of_size(200 * 1024),
            3.0,
        ),
        (
            "a JPEG whose frame header lies past the first read",
            "image/jpeg",
            "c.jpg",
            jpeg_with_app_blocks(2),
            3.0,
        ),
    ];
    for (what, content_type, filename, bytes, expected) in &cases {
        let issued = service.uploaded(content_type, filename, bytes).await;
        let before = service.metrics().await;
        let resp = service
            .process
            .client
            .post(service.url(&format!(
                "/api/v1/uploads/{}/confirm",
                issued["upload_id"].as_str().expect("id")
            )))
            .send()
            .await
            .expect("confirm");
        assert_eq!(resp.status(), StatusCode::OK, "{what}");
        let record: Value = resp.json().await.expect("JSON");
        assert_eq!(record["state"], "completed", "{what}: {record}");
        let after = service.metrics().await;
        let made = storage_requests(&after, None) - storage_requests(&before, None);
        assert_eq!(made, *expected, "{what}: storage requests\n{after}");
        // What the client sees: the bytes it sent, at the URL it was given.
        let stored = service
            .process
            .client
            .get(record["s3_url"].as_str().expect("s3_url"))
            .send()
            .await
            .expect("GET");
        assert_eq!(stored.status(), StatusCode::OK, "{what}");
        assert_eq!(
            &stored.bytes().await.expect("bytes")[..],
            &bytes[..],
            "{what}"
        );
    }
    let metrics = service.metrics().await;
    assert_eq!(
        storage_requests(&metrics, Some("HeadObject")),
        0.0,
        "no confirm asked for a HeadObject\n{metrics}"
    );

    // The staged copies go in batches, off the confirms' path: far fewer DeleteObjects than
    // confirms, and none of the copies left (looked at on disk in the embedded store).
    if on_external_store() {
        return;
    }
    let dir = env
        .iter()
        .find(|(k, _)| k == "DATA_DIR")
        .map(|(_, v)| std::path::PathBuf::from(v))
        .expect("DATA_DIR");
    let staging = dir
        .join("s3")
        .join(upload_broker::storage::embedded::EMBEDDED_BUCKET)
        .join("staging");
    let mut left = usize::MAX;
    for _ in 0..50 {
        left = count_files(&staging);
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "staged copies left in {}", staging.display());
    let batches = storage_requests(&service.metrics().await, Some("DeleteObjects"));
    assert!(
        (1.0..=cases.len() as f64).contains(&batches),
        "{batches} DeleteObjects for {} confirms",
        cases.len()
    );
}

fn count_files(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| {
            let path = entry.path();
            if path.is_dir() { count_files(&path) } else { 1 }
        })
        .sum()
}
