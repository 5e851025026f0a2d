//! The browser suite (`tests/browser`: headless Chromium driven by playwright-core) against
//! the binary cargo built for this test run. Switched on by `BROWSER_TESTS=1`; when on, it
//! fails, never skips, if Node, the npm packages or Chromium are missing.

use std::process::Command;

#[test]
fn the_upload_page_works_in_chromium() {
    if std::env::var_os("BROWSER_TESTS").is_none() {
        eprintln!("browser suite not run: set BROWSER_TESTS=1 (see .ci/run for what it needs)");
        return;
    }
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");
    let status = Command::new("npm")
        .args(["test", "--silent"])
        .current_dir(dir)
        .env("UPLOAD_BROKER_BIN", env!("CARGO_BIN_EXE_upload-broker"))
        .status()
        .expect("npm runs (Node.js is needed for the browser suite)");
    assert!(status.success(), "the browser suite failed: {status}");
}
