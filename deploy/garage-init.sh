#!/bin/sh
# One-shot setup of a single-node Garage for upload-broker: assigns the layout, imports the
# service's key and creates its bucket. Safe to run again. Needs the `garage` CLI and the
# server's config (GARAGE_CONFIG); the key and bucket come from the environment.
set -eu

config="${GARAGE_CONFIG:-/etc/garage.toml}"
bucket="${AWS_BUCKET_NAME:?set AWS_BUCKET_NAME}"
key_id="${AWS_ACCESS_KEY_ID:?set AWS_ACCESS_KEY_ID (GK followed by 24 hex digits)}"
secret="${AWS_SECRET_ACCESS_KEY:?set AWS_SECRET_ACCESS_KEY (64 hex digits)}"
g() { garage -c "$config" "$@"; }

tries=0
until g status >/dev/null 2>&1; do
    tries=$((tries + 1))
    [ "$tries" -gt 60 ] && { echo "garage did not answer" >&2; exit 1; }
    sleep 1
done

node=$(g status | awk '/^[0-9a-f]{16}/ { print $1; exit }')
if g layout show | grep -q "No nodes currently have a role"; then
    g layout assign -z dc1 -c 10G "$node"
    g layout apply --version 1
fi
g key info "$key_id" >/dev/null 2>&1 || g key import --yes -n upload-broker "$key_id" "$secret"
g bucket info "$bucket" >/dev/null 2>&1 || g bucket create "$bucket"
g bucket allow --read --write --owner "$bucket" --key "$key_id"
echo "garage ready: bucket $bucket, key $key_id"
