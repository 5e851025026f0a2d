//! The generated-client and schema-fuzzing suite (`tests/clients`: a Python client made by
//! openapi-python-client, TypeScript types from openapi-typescript, and schemathesis)
//! against the binary cargo built for this test run. Switched on by `CLIENT_TESTS=1`; when
//! on, it fails, never skips, if Python, Node or the packages cannot be had.

use std::process::Command;

use crate::helpers::run_outside_suite;

#[test]
fn generated_clients_and_schema_fuzzing_pass() {
    let mut bash = Command::new("bash");
    bash.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/run.sh"));
    run_outside_suite("CLIENT_TESTS", "client suite", bash);
}
