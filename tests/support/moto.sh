#!/usr/bin/env bash
# Starts moto's server on loopback as the suite's S3 and SQS (AWS's event notifications
# from a bucket to a queue included), installing its pinned version into a venv beside
# this script first (once; again when requirements.txt changes), and prints the suite's
# setting as a KEY=value line. Idempotent: a server already answering is reused.
set -euo pipefail
here="$(cd "$(dirname "$0")/moto" && pwd)"
venv="$here/.venv"
port="${MOTO_TEST_PORT:-23950}"
(
    flock 9
    if [ ! -x "$venv/bin/moto_server" ] || [ "$here/requirements.txt" -nt "$venv/.installed" ]; then
        rm -rf "$venv"
        python3 -m venv "$venv" >&2
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt" >&2
        touch "$venv/.installed"
    fi
) 9>"$here/.install.lock"
answers() {
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/moto-api/")" != 000 ]
}
# A server is reused only if it is this venv's: one left by another checkout (its venv
# since removed) answers, but fails every request.
if answers && ! pgrep -f -- "$venv/bin/moto_server -H 127.0.0.1 -p $port" >/dev/null; then
    pkill -f -- "moto_server -H 127.0.0.1 -p $port" || true
    sleep 1
fi
if ! answers; then
    nohup "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$here/server.log" 2>&1 &
    for _ in $(seq 1 100); do
        answers && break
        sleep 0.2
    done
fi
answers || { echo "moto did not start on port $port" >&2; exit 1; }
echo "TEST_MOTO_ENDPOINT=http://127.0.0.1:$port"
