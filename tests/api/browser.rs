//! The browser suite (`tests/browser`: headless Chromium driven by playwright-core) against
//! the binary cargo built for this test run. Switched on by `BROWSER_TESTS=1`; when on, it
//! fails, never skips, if Node, the npm packages or Chromium are missing.

use std::process::Command;

use crate::helpers::run_outside_suite;

#[test]
fn the_upload_page_works_in_chromium() {
    let mut npm = Command::new("npm");
    npm.args(["test", "--silent"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser"));
    run_outside_suite("BROWSER_TESTS", "browser suite", npm);
}
