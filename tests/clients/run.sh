#!/usr/bin/env bash
# Checks the service from a client's side, using only its OpenAPI document:
#   1. a Python client generated with openapi-python-client, driven by pytest;
#   2. TypeScript types generated with openapi-typescript, type-checked with tsc and run
#      with openapi-fetch;
#   3. schemathesis fuzzing the running service from its /openapi.json;
# and its tus 1.0.0 endpoint (/api/v1/tus) through the tus project's own clients:
#   4. tuspy, driven by pytest (tus/test_tuspy.py);
#   5. tus-js-client in Node.js, with node --test (tus/tus-js-client.test.mjs).
# Every step runs even when an earlier one fails; the exit code is non-zero if any failed.
#
#   UPLOAD_BROKER_BIN=target/release/upload-broker tests/clients/run.sh
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
SPEC="$ROOT/openapi/openapi.json"
GEN="$HERE/generated"
VENV="$HERE/.venv"
PYTHON="${PYTHON:-python3}"

die() {
    echo "run.sh: $*" >&2
    exit 2
}

if [ -z "${UPLOAD_BROKER_BIN:-}" ]; then
    die "UPLOAD_BROKER_BIN is not set: point it at the upload-broker binary, e.g. UPLOAD_BROKER_BIN=target/release/upload-broker tests/clients/run.sh"
fi
BIN="$(cd "$(dirname "$UPLOAD_BROKER_BIN")" 2>/dev/null && pwd)/$(basename "$UPLOAD_BROKER_BIN")"
[ -f "$BIN" ] && [ -x "$BIN" ] || die "UPLOAD_BROKER_BIN=$UPLOAD_BROKER_BIN is not an executable file"
[ -f "$SPEC" ] || die "no OpenAPI document at $SPEC"
command -v "$PYTHON" >/dev/null || die "$PYTHON is required (3.10 or newer)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || die "$PYTHON is older than 3.10"
command -v npm >/dev/null || die "npm (Node.js 20 or newer) is required"

started=$(date +%s)

# --- services ---------------------------------------------------------------------------

PIDS=()
DIRS=()

stop_services() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || continue
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
    if [ "${#DIRS[@]}" -gt 0 ]; then
        rm -rf "${DIRS[@]}"
    fi
    DIRS=()
}
trap stop_services EXIT
trap 'exit 130' INT TERM

# Two free loopback ports (held together while picked, so they differ).
free_ports() {
    "$PYTHON" - <<'EOF'
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
EOF
}

# start_service NAME [VAR=value ...]: starts the binary with a clean environment, its own
# data directory and free ports, waits for GET /health to be 200, and sets SERVICE_URL.
start_service() {
    local name="$1"
    shift
    local dir port store_port
    dir="$(mktemp -d "${TMPDIR:-/tmp}/upload-broker-clients-$name-XXXXXX")"
    DIRS+=("$dir")
    read -r port store_port < <(free_ports)
    env -i PATH=/usr/bin:/bin HOME="$dir" DATA_DIR="$dir/data" PORT="$port" BIND_ADDR=127.0.0.1 \
        EMBEDDED_S3_PORT="$store_port" LOG_LEVEL=WARNING SHUTDOWN_GRACE=1 "$@" \
        "$BIN" >"$dir/service.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    SERVICE_URL="http://127.0.0.1:$port"
    if ! "$PYTHON" - "$SERVICE_URL/health" "$pid" <<'EOF'; then
import os, sys, time, urllib.request
url, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("the service exited at start")
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            if r.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)
sys.exit("GET /health was not 200 within 20 s")
EOF
        echo "--- $name service log:" >&2
        tail -n 40 "$dir/service.log" >&2
        die "the $name service did not start"
    fi
    echo "started $name service at $SERVICE_URL"
}

# --- steps ------------------------------------------------------------------------------

PASSED=()
FAILED=()

step() {
    local name="$1"
    shift
    echo
    echo "=== $name"
    local t0=$SECONDS
    if "$@"; then
        PASSED+=("$name")
        echo "=== $name: passed ($((SECONDS - t0)) s)"
    else
        FAILED+=("$name")
        echo "=== $name: FAILED ($((SECONDS - t0)) s)"
    fi
}

# --- tools ------------------------------------------------------------------------------

# The venv is (re)installed when requirements.txt or the interpreter changed.
stamp="$( (cat "$HERE/requirements.txt"; "$PYTHON" -c 'import sys; print(sys.version)') | sha256sum | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.requirements.stamp" 2>/dev/null)" != "$stamp" ]; then
    echo "installing Python packages into $VENV"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV" || die "could not create $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$HERE/requirements.txt" \
        || die "pip install failed"
    echo "$stamp" >"$VENV/.requirements.stamp"
fi
export PATH="$VENV/bin:$HERE/node_modules/.bin:$PATH"

if [ ! -f "$HERE/node_modules/.package-lock.json" ] \
    || [ "$HERE/package-lock.json" -nt "$HERE/node_modules/.package-lock.json" ]; then
    echo "installing npm packages"
    (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed"
fi

# --- generated code ---------------------------------------------------------------------

rm -rf "$GEN"
mkdir -p "$GEN"

generate_python() {
    local log="$GEN/openapi-python-client.log"
    openapi-python-client generate --path "$SPEC" --meta none --overwrite \
        --config "$HERE/openapi-python-client.yaml" \
        --output-path "$GEN/python/upload_broker_client" >"$log" 2>&1
    local rc=$?
    cat "$log"
    [ "$rc" -eq 0 ] || return 1
    # Warnings mean the document made parts of the client awkward or missing.
    if grep -qi "warning" "$log"; then
        echo "openapi-python-client printed warnings (above)"
        return 1
    fi
}

generate_ts() {
    openapi-typescript "$SPEC" --output "$GEN/ts/api.d.ts"
}

step "generate Python client" generate_python
step "generate TypeScript types" generate_ts

# --- suites -----------------------------------------------------------------------------

start_service default
DEFAULT_URL="$SERVICE_URL"
start_service multipart MULTIPART_THRESHOLD=5242880 PART_SIZE=5242880
MULTIPART_URL="$SERVICE_URL"
start_service keys API_KEYS=client-suite-key SECRET_KEY=client-suite-secret-long-enough-for-links
KEYS_URL="$SERVICE_URL"
export UB_BASE_URL="$DEFAULT_URL" UB_MULTIPART_BASE_URL="$MULTIPART_URL" UB_KEYS_BASE_URL="$KEYS_URL"
export UB_FIXTURES_DIR="$ROOT/tests/fixtures"

run_pytest() {
    (cd "$HERE" && PYTHONPATH="$GEN/python:$HERE/python" python -m pytest -c "$HERE/pytest.ini" --rootdir "$HERE")
}

run_ts() {
    (cd "$HERE" && tsc -p tsconfig.json && node --test "$GEN/ts-build/ts/flow.test.js")
}

step "pytest (generated Python client)" run_pytest
step "tsc --noEmit (TypeScript flow)" bash -c "cd '$HERE' && tsc --noEmit -p tsconfig.json"
step "node --test (openapi-fetch flow)" run_ts
step "tsc --noEmit (null in generated types)" bash -c "cd '$HERE' && tsc --noEmit -p tsconfig.nullable.json"

# The tus clients get a service of their own with 5 MiB parts, so a 12 MiB file spans
# three. They need nothing generated: they speak the protocol, not the OpenAPI document.
start_service tus PART_SIZE=5242880
export UB_TUS_BASE_URL="$SERVICE_URL"

run_tuspy() {
    (cd "$HERE" && python -m pytest -c "$HERE/pytest.ini" --rootdir "$HERE" "$HERE/tus")
}

run_tus_js_client() {
    (cd "$HERE" && node --test "$HERE/tus/tus-js-client.test.mjs")
}

step "pytest (tuspy)" run_tuspy
step "node --test (tus-js-client)" run_tus_js_client

# The fuzzer gets a service of its own, so what it creates stays out of the tests' way.
# With an admin key, so the webhooks and admin APIs are fuzzed past their authentication
# too (the uploads API, open here, ignores the header); its checks still send requests
# without it. Storage events are on (with another token), so a request without one is the
# documented 401.
start_service fuzz ADMIN_KEYS=client-suite-admin-key STORAGE_EVENTS_TOKEN=client-suite-storage-token
run_schemathesis() {
    (cd "$GEN" && SCHEMATHESIS_HOOKS="$HERE/schemathesis_hooks.py" \
        schemathesis --config-file "$HERE/schemathesis.toml" run "$SERVICE_URL/openapi.json" \
        -H "Authorization: Bearer client-suite-admin-key" \
        --report junit,ndjson --report-dir "$GEN/schemathesis-report")
}
step "schemathesis" run_schemathesis

stop_services

echo
echo "=== summary ($(( $(date +%s) - started )) s)"
for name in "${PASSED[@]}"; do echo "  passed  $name"; done
for name in "${FAILED[@]}"; do echo "  FAILED  $name"; done
echo "steps: ${#PASSED[@]} passed, ${#FAILED[@]} failed"
[ "${#FAILED[@]}" -eq 0 ]
