#!/usr/bin/env bash
# Starts the test webhook receiver (`--install-only`: just installs it), first installing its pinned verifier into a venv next to
# it (once; again when requirements.txt changes). Parallel starts wait for one install.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
VENV="$HERE/.venv"
PYTHON="${PYTHON:-python3}"
(
    flock 9
    if [ ! -x "$VENV/bin/python" ] || [ "$HERE/requirements.txt" -nt "$VENV/.installed" ]; then
        rm -rf "$VENV"
        "$PYTHON" -m venv "$VENV" >&2
        "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$HERE/requirements.txt" >&2
        touch "$VENV/.installed"
    fi
) 9>"$HERE/.install.lock"
if [ "${1:-}" = "--install-only" ]; then
    exit 0
fi
exec "$VENV/bin/python" "$HERE/receiver.py" "$@"
