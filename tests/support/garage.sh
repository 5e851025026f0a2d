#!/usr/bin/env bash
# Starts a single-node Garage on loopback for the test suite (building it from crates.io
# when it is missing, about 9 minutes on 2 cores), sets it up with deploy/garage-init.sh
# and a key that may create buckets, and prints the suite's settings as KEY=value lines.
# Idempotent: a Garage already answering on the port is reused. The ports sit below the
# kernel's ephemeral range, so no client socket of an earlier suite can hold them.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
dir="${GARAGE_TEST_DIR:-/tmp/upload-broker-garage}"
s3_port="${GARAGE_TEST_PORT:-23900}"
rpc_port=$((s3_port + 1))
admin_port=$((s3_port + 3))
key_id="GK0a1b2c3d4e5f60718293a4b5"
secret="5c0ffee5c0ffee5c0ffee5c0ffee5c0ffee5c0ffee5c0ffee5c0ffee5c0ffee0"

garage=$(command -v garage || true)
[ -z "$garage" ] && [ -x "$HOME/.cargo/bin/garage" ] && garage="$HOME/.cargo/bin/garage"
if [ -z "$garage" ]; then
    cargo install garage --locked >&2
    garage="$HOME/.cargo/bin/garage"
fi

mkdir -p "$dir/meta" "$dir/data"
# The secret is kept so a server started earlier from this folder stays reachable; the
# config is written every time, so its ports are always the ones asked for here.
[ -s "$dir/rpc_secret" ] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/rpc_secret"
config="$dir/garage.toml"
cat > "$config" <<TOML
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$(cat "$dir/rpc_secret")"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3_port"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin_port"
TOML

s3_answers() {
    # Any HTTP status (403 without credentials) means the S3 API is listening.
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$s3_port/")" != 000 ]
}

if ! "$garage" -c "$config" status >/dev/null 2>&1 || ! s3_answers; then
    # A server of this folder that lost its S3 listener (or its ports) is started afresh.
    pkill -f -- "-c $config server" 2>/dev/null && sleep 1
    nohup "$garage" -c "$config" server >"$dir/server.log" 2>&1 &
fi

PATH="$(dirname "$garage"):$PATH" GARAGE_CONFIG="$config" AWS_BUCKET_NAME=upload-broker-tests \
    AWS_ACCESS_KEY_ID="$key_id" AWS_SECRET_ACCESS_KEY="$secret" \
    sh "$root/deploy/garage-init.sh" >&2
# Each test makes a bucket of its own.
"$garage" -c "$config" key allow --create-bucket "$key_id" >&2

tries=0
until s3_answers; do
    tries=$((tries + 1))
    if [ "$tries" -gt 60 ]; then
        echo "garage's S3 API does not answer on 127.0.0.1:$s3_port; its log ends:" >&2
        tail -n 40 "$dir/server.log" >&2 || true
        exit 1
    fi
    sleep 1
done

echo "TEST_S3_ENDPOINT=http://127.0.0.1:$s3_port"
echo "TEST_S3_ACCESS_KEY_ID=$key_id"
echo "TEST_S3_SECRET_ACCESS_KEY=$secret"
echo "TEST_S3_REGION=garage"
