//! `upload-broker upload`: the command-line uploader, run as a user runs it (the built
//! binary in a child process) against a service of the suite.

use std::path::Path;

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::*;

/// GETs a printed URL the way a browser would.
async fn fetch(url: &str) -> Vec<u8> {
    let resp = reqwest::get(url).await.expect("GET the URL");
    assert_eq!(resp.status(), StatusCode::OK, "{url}");
    resp.bytes().await.expect("body").to_vec()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write the file");
    path.to_str().expect("utf-8 path").to_owned()
}

fn varied_png(size: usize) -> Vec<u8> {
    png_with_padding(size, |i| (i % 253) as u8)
}

#[tokio::test]
async fn uploads_small_and_large_files_and_prints_their_urls_in_order() {
    let app = TestApp::spawn_with(&SMALL_PARTS).await;
    let files = tempfile::tempdir().expect("dir");
    let large = varied_png(12 * MIB + 7);
    let small = png_of_size(70_000);
    let large_path = write(files.path(), "large.png", &large);
    let small_path = write(files.path(), "small.png", &small);

    let run = app
        .cli(
            files.path(),
            &[
                &large_path,
                &small_path,
                "--image-id",
                "cli",
                "--parallel",
                "3",
            ],
        )
        .await;
    assert!(run.success, "stderr: {}", run.stderr);
    let urls: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(urls.len(), 2, "one URL a file: {}", run.stdout);
    assert_eq!(fetch(urls[0]).await, large, "the large file's URL");
    assert_eq!(fetch(urls[1]).await, small, "the small file's URL");

    let records = app.completed("cli").await;
    assert_eq!(records.len(), 2);
    for record in &records {
        let row = app
            .row(record["upload_id"].as_str().expect("id"))
            .await
            .expect("row");
        assert_eq!(row.state, upload_broker::uploads::UploadState::Completed);
        let bytes = if row.original_filename == "large.png" {
            assert_eq!(row.method, upload_broker::uploads::UploadMethod::Multipart);
            assert_eq!(row.part_count, Some(3));
            &large
        } else {
            assert_eq!(row.method, upload_broker::uploads::UploadMethod::Put);
            &small
        };
        assert_eq!(row.file_size, Some(bytes.len() as i64));
        assert_eq!(
            row.checksum_sha256.as_deref(),
            Some(sha256_b64(bytes).as_str())
        );
        assert_eq!(
            app.object(&row.object_key).await.as_deref(),
            Some(&bytes[..])
        );
    }
    let state = std::fs::read_to_string(files.path().join("upload-broker/uploads.json"))
        .expect("resume file");
    let state: Value = serde_json::from_str(&state).expect("json");
    assert_eq!(
        state["uploads"],
        json!({}),
        "finished uploads are forgotten"
    );
}

#[tokio::test]
async fn an_interrupted_multipart_upload_resumes_with_only_the_missing_parts() {
    let app = TestApp::spawn_with(&SMALL_PARTS).await;
    let files = tempfile::tempdir().expect("dir");
    let bytes = varied_png(22 * MIB);
    let path = write(files.path(), "resume.png", &bytes);
    let checksum = sha256_b64(&bytes);

    // An earlier run got parts 1 and 3 of 5 into the store, then stopped.
    let issued = app
        .issue_multipart(
            "resumed",
            &bytes,
            json!({ "filename": "resume.png", "checksum_sha256": checksum, "checksum_algorithm": "SHA256" }),
        )
        .await;
    let upload_id = issued["upload_id"].as_str().expect("id").to_owned();
    let part = |n: usize| &bytes[(n - 1) * 5 * MIB..(n * 5 * MIB).min(bytes.len())];
    for n in [1, 3] {
        let digest = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(part(n)));
        let resp = app
            .sign_parts(
                &upload_id,
                json!({ "part_numbers": [n], "checksums_sha256": { n.to_string(): digest } }),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let signed: Value = resp.json().await.expect("signed");
        let put = app.put_part(&signed["parts"][0], part(n)).await;
        assert_eq!(put.status(), StatusCode::OK);
    }
    let canonical = std::fs::canonicalize(&path).expect("canonical path");
    let key = format!(
        "{}|resumed|{}|{}|{checksum}",
        app.address,
        canonical.display(),
        bytes.len()
    );
    let state = json!({ "uploads": { key: {
        "upload_id": upload_id, "method": "MULTIPART", "part_size": 5 * MIB,
        "part_count": 5, "checksum_algorithm": "SHA256",
    } } });
    let state_dir = files.path().join("upload-broker");
    std::fs::create_dir_all(&state_dir).expect("state dir");
    std::fs::write(state_dir.join("uploads.json"), state.to_string()).expect("state");

    let run = app
        .cli(files.path(), &[&path, "--image-id", "resumed"])
        .await;
    assert!(run.success, "stderr: {}", run.stderr);
    assert!(
        run.stderr.contains("2 of 5 parts already stored"),
        "says what it resumed: {}",
        run.stderr
    );
    let records = app.completed("resumed").await;
    assert_eq!(records.len(), 1, "the same upload went on, no second one");
    assert_eq!(records[0]["upload_id"], upload_id.as_str());
    assert_eq!(fetch(run.stdout.trim()).await, bytes);

    // Run again: nothing left to resume, so it is a new upload of the same file.
    let again = app
        .cli(files.path(), &[&path, "--image-id", "resumed"])
        .await;
    assert!(again.success, "stderr: {}", again.stderr);
    assert!(!again.stderr.contains("resuming"), "{}", again.stderr);
    assert_eq!(app.completed("resumed").await.len(), 2);
}

#[tokio::test]
async fn refusals_are_reported_per_file_and_the_rest_still_upload() {
    let app = TestApp::spawn_with(&[("MAX_UPLOAD_SIZE", "100000")]).await;
    let files = tempfile::tempdir().expect("dir");
    let good = write(files.path(), "good.png", &png_of_size(5_000));
    let fake = write(files.path(), "fake.png", JPEG);
    let large = write(files.path(), "large.png", &png_of_size(200_000));
    let text = write(files.path(), "notes.txt", b"hello");

    let run = app
        .cli(
            files.path(),
            &[&good, &fake, &large, &text, "--image-id", "mixed"],
        )
        .await;
    assert!(!run.success, "a failed file fails the run");
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
    assert!(
        run.stderr
            .contains("fake.png: the bytes are not a PNG image"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("large.png:"), "{}", run.stderr);
    assert!(
        run.stderr.contains("(too_large, HTTP 413)"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("notes.txt: the name must end in"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("3 of 4 uploads failed"),
        "{}",
        run.stderr
    );
    let records = app.completed("mixed").await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["original_filename"], "good.png");
}

#[tokio::test]
async fn with_api_keys_it_needs_one() {
    let app = TestApp::spawn_with(&[
        ("API_KEYS", "key-alpha"),
        ("SECRET_KEY", "a-long-enough-secret-for-links"),
    ])
    .await;
    let files = tempfile::tempdir().expect("dir");
    let file = write(files.path(), "a.png", PNG);

    let refused = app.cli(files.path(), &[&file, "--image-id", "keyed"]).await;
    assert!(!refused.success);
    assert!(refused.stderr.contains("HTTP 401"), "{}", refused.stderr);

    let run = app
        .cli(
            files.path(),
            &[&file, "--image-id", "keyed", "--api-key", "key-alpha"],
        )
        .await;
    assert!(run.success, "stderr: {}", run.stderr);
    assert_eq!(fetch(run.stdout.trim()).await, PNG);
}

/// What `upload-broker ARGS...` did, run in an empty directory of its own.
struct Answer {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    /// What the run left in its working directory.
    left: Vec<String>,
}

/// Runs the binary with `args` in an empty directory. Were it to serve instead, it would
/// serve on a free loopback port and be stopped by the time limit, which fails the test.
async fn answer(args: &[&str]) -> Answer {
    let dir = tempfile::tempdir().expect("dir");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_upload-broker"))
        .args(args)
        .current_dir(dir.path())
        .env_remove("DATA_DIR")
        .env_remove("DATABASE_URL")
        .env("PORT", free_port().to_string())
        .env("BIND_ADDR", "127.0.0.1")
        .env("EMBEDDED_S3_PORT", "0")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary runs");
    let output = tokio::time::timeout(std::time::Duration::from_secs(10), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("`upload-broker {}` returns promptly", args.join(" ")))
        .expect("the binary runs");
    let left = std::fs::read_dir(dir.path())
        .expect("read the directory")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    Answer {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        left,
    }
}

#[tokio::test]
async fn help_and_version_answer_at_every_level() {
    let version = env!("CARGO_PKG_VERSION");
    let cases: [(&[&str], &[&str]); 10] = [
        (
            &["--help"],
            &[
                "Usage: upload-broker [COMMAND]",
                "serve",
                "upload",
                "healthcheck",
            ],
        ),
        (
            &["-h"],
            &["Usage: upload-broker [COMMAND]", "upload", "healthcheck"],
        ),
        (
            &["help"],
            &["Usage: upload-broker [COMMAND]", "upload", "healthcheck"],
        ),
        (&["--version"], &["upload-broker "]),
        (&["-V"], &["upload-broker "]),
        (
            &["upload", "--help"],
            &["Usage: upload-broker upload", "--image-id", "--parallel"],
        ),
        (
            &["help", "upload"],
            &["Usage: upload-broker upload", "--image-id"],
        ),
        (&["upload", "--version"], &["upload-broker upload "]),
        (
            &["healthcheck", "--help"],
            &["Usage: upload-broker healthcheck", "PORT"],
        ),
        (&["serve", "-h"], &["Usage: upload-broker serve"]),
    ];
    for (args, expected) in cases {
        let run = answer(args).await;
        assert_eq!(run.code, Some(0), "{args:?}: {}", run.stderr);
        for text in expected {
            assert!(
                run.stdout.contains(text),
                "{args:?} says {text:?}: {}",
                run.stdout
            );
        }
        if args
            .iter()
            .any(|a| a.starts_with("-V") || a.ends_with("version"))
        {
            assert!(run.stdout.trim_end().ends_with(version), "{}", run.stdout);
        }
        assert_eq!(run.stderr, "", "{args:?}");
        assert!(run.left.is_empty(), "{args:?} left {:?}", run.left);
    }
}

#[tokio::test]
async fn unknown_arguments_are_usage_errors_and_never_serve() {
    for args in [
        &["--bogus"][..],
        &["frobnicate"],
        &["serve", "--bogus"],
        &["healthcheck", "extra"],
        &["upload", "a.png", "--image-id", "x", "--bogus"],
    ] {
        let run = answer(args).await;
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
        let usage =
            run.stderr.starts_with("error: ") && run.stderr.contains("Usage: upload-broker");
        assert!(usage, "{args:?}: {}", run.stderr);
        assert_eq!(run.stdout, "", "{args:?}");
        assert!(run.left.is_empty(), "{args:?} left {:?}", run.left);
    }
}

#[tokio::test]
async fn json_prints_each_whole_record() {
    let app = TestApp::spawn().await;
    let files = tempfile::tempdir().expect("dir");
    let file = write(files.path(), "a.png", PNG);

    let run = app
        .cli(files.path(), &[&file, "--image-id", "as-json", "--json"])
        .await;
    assert!(run.success, "stderr: {}", run.stderr);
    let printed: Value = serde_json::from_str(run.stdout.trim()).expect("one JSON line");
    let records = app.completed("as-json").await;
    assert_eq!(records.len(), 1);
    assert_eq!(printed, records[0], "the record the service keeps");
}

/// The CLI reaching the service as `photos.test`, a name that is not `localhost`: its HTTP
/// proxy setting sends every request for that name to this machine (as DNS would on a
/// network), with the name in its `Host`. The URLs it is handed name `photos.test` too, so
/// its bytes go back the same way, and the upload completes.
#[tokio::test]
async fn uploads_through_the_name_it_reached_the_service_by() {
    if on_external_store() {
        return; // Only the embedded store is served on the service's origin.
    }
    let app = TestApp::spawn_with(&SMALL_PARTS).await;
    let files = tempfile::tempdir().expect("dir");
    let large = varied_png(12 * MIB + 3);
    let small = png_of_size(70_000);
    let large_path = write(files.path(), "large.png", &large);
    let small_path = write(files.path(), "small.png", &small);
    let port = app.port();
    let server = format!("http://photos.test:{port}");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_upload-broker"))
        .args(["upload", &large_path, &small_path, "--image-id", "named"])
        .args(["--server", &server])
        .env("XDG_STATE_HOME", files.path())
        .env_remove("UPLOAD_BROKER_API_KEY")
        .env_remove("UPLOAD_BROKER_SERVER")
        .env("HTTP_PROXY", format!("http://127.0.0.1:{port}"))
        .env_remove("http_proxy")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .await
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let urls: Vec<&str> = stdout.lines().collect();
    assert_eq!(urls.len(), 2, "{stdout}");
    assert!(
        urls.iter()
            .all(|url| url.starts_with(&format!("{server}/upload-broker/uploads/named/"))),
        "{stdout}"
    );
    let records = app.completed("named").await;
    assert_eq!(records.len(), 2);
    for record in &records {
        let bytes = if record["file_size"] == large.len() {
            &large
        } else {
            &small
        };
        let key = record["key"].as_str().expect("key");
        let stored = app.object(key).await.expect("stored");
        assert!(stored == *bytes, "{key} holds other bytes than the file's");
    }
}
