#!/usr/bin/env bash
# Starts a single-node Garage on loopback for the test suite (building it from crates.io
# when it is missing, about 9 minutes on 2 cores), sets it up with deploy/garage-init.sh
# and a key that may create buckets, and prints the suite's settings as KEY=value lines.
# Idempotent: a Garage already answering on the port is reused.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
dir="${GARAGE_TEST_DIR:-/tmp/upload-broker-garage}"
s3_port="${GARAGE_TEST_PORT:-39000}"
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
config="$dir/garage.toml"
if [ ! -f "$config" ]; then
    cat > "$config" <<TOML
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3_port"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin_port"
TOML
fi

if ! "$garage" -c "$config" status >/dev/null 2>&1; then
    nohup "$garage" -c "$config" server >"$dir/server.log" 2>&1 &
fi

PATH="$(dirname "$garage"):$PATH" GARAGE_CONFIG="$config" AWS_BUCKET_NAME=upload-broker-tests \
    AWS_ACCESS_KEY_ID="$key_id" AWS_SECRET_ACCESS_KEY="$secret" \
    sh "$root/deploy/garage-init.sh" >&2
# Each test makes a bucket of its own.
"$garage" -c "$config" key allow --create-bucket "$key_id" >&2

echo "TEST_S3_ENDPOINT=http://127.0.0.1:$s3_port"
echo "TEST_S3_ACCESS_KEY_ID=$key_id"
echo "TEST_S3_SECRET_ACCESS_KEY=$secret"
echo "TEST_S3_REGION=garage"
