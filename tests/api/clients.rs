//! The generated-client and schema-fuzzing suite (`tests/clients`: a Python client made by
//! openapi-python-client, TypeScript types from openapi-typescript, and schemathesis)
//! against the binary cargo built for this test run. Switched on by `CLIENT_TESTS=1`; when
//! on, it fails, never skips, if Python, Node or the packages cannot be had.

use std::process::Command;

#[test]
fn generated_clients_and_schema_fuzzing_pass() {
    if std::env::var_os("CLIENT_TESTS").is_none() {
        eprintln!("client suite not run: set CLIENT_TESTS=1 (see .ci/run for what it needs)");
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/run.sh");
    let status = Command::new("bash")
        .arg(script)
        .env("UPLOAD_BROKER_BIN", env!("CARGO_BIN_EXE_upload-broker"))
        .status()
        .expect("bash runs");
    assert!(status.success(), "the client suite failed: {status}");
}
