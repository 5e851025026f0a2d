#!/usr/bin/env python3
"""Two builds of the service side by side: issuing (POST /api/v1/uploads) at 64
connections, then GET /health, on a fresh service of each binary in turn (A B, B A, A B,
...), so the machine's drift weighs on both alike. Prints one line per run.

    python3 bench/compare_binaries.py OLD_BINARY NEW_BINARY [--rounds 3] [--seconds 8]

For example, with an older commit built into its own target directory:
    git worktree add /tmp/old fb073e5 && (cd /tmp/old && cargo build --release)
    python3 bench/compare_binaries.py /tmp/old/target/release/upload-broker target/release/upload-broker
"""

import argparse

import common
import webhooks


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    args = parser.parse_args()
    binaries = {"old": args.old, "new": args.new}
    script = webhooks.issue_script()
    for n in range(args.rounds):
        for name in (["old", "new"] if n % 2 == 0 else ["new", "old"]):
            common.BINARY = binaries[name]
            with common.Service() as service:
                common.wrk(service.base + "/api/v1/uploads", 2, 64, script)
                rps, p50, p99, errors = common.wrk(service.base + "/api/v1/uploads", args.seconds, 64, script)
                health = common.wrk(service.base + "/health", 4, 64)[0]
                print(f"{name}: issuing {rps:,.0f} req/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
                      f"errors {errors} | /health {health:,.0f} req/s | issuing / health {rps / health:.2f}",
                      flush=True)


if __name__ == "__main__":
    main()
