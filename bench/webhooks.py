#!/usr/bin/env python3
"""Webhook delivery benchmark: 10,000 completions, each delivered to a receiver that fails
30% of first attempts (HTTP 500), with the retry schedule 1,2,4,8,16.

Two runs of the release binary, each on SQLite and the embedded store in a temporary
directory, each under the same load: 10,000 legacy uploads (each a new upload, completed
at once: one upload.completed event each) from 8 client threads at --rate per second, and
beside them wrk issuing new uploads (POST /api/v1/uploads) at 64 connections for
--seconds.
  A: no webhooks configured.
  B: WEBHOOK_URL points at the receiver (examples/bench_receiver.rs: it checks every
     signature, and takes little CPU, so the service keeps the machine's two cores; the
     test suite's receiver checks with the official standardwebhooks library instead).
Reported for B: time from each event to its first attempt (the event's `timestamp`, taken
just before its transaction commits, to the moment the receiver got the request; p50 and
p95), the time to drain (from the first completion until every event was delivered, and
from the last completion), duplicate successful deliveries and lost events (events in the
database that the receiver never answered with a 2xx). And the issuing rate of B against
A's, over two rounds (A then B, B then A), since this machine is shared and noisy.

    python3 bench/webhooks.py [--completions 10000] [--rate 400] [--seconds 10] [--rounds 2]

Needs wrk and Python 3.
"""

import argparse
import calendar
import http.client
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import threading
import time

import common

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BOUNDARY = "bench-webhooks-boundary"


def form(filename, data):
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


RECEIVER = os.path.join(common.ROOT, "target", "release", "examples", "bench_receiver")


class Receiver:
    """examples/bench_receiver.rs: checks each signature, fails 30% of first attempts, logs."""

    def __init__(self):
        self.proc = subprocess.Popen([RECEIVER, "--secret", SECRET, "--fail-first-percent", "30"],
                                     stdout=subprocess.PIPE, text=True)
        self.port = json.loads(self.proc.stdout.readline())["port"]
        self.url = f"http://127.0.0.1:{self.port}/hook"

    def log(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        conn.request("GET", "/_log")
        data = conn.getresponse().read()
        conn.close()
        return json.loads(data)

    def stop(self):
        common.stop_process(self.proc)


def complete(service, count, threads, rate):
    """`count` legacy uploads, each a new completed upload, at `rate` per second in all (so
    both runs carry the same load); returns the threads, each upload's end time, failures."""
    body = form("a.png", common.png_bytes(4096))
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    times, lock = [], threading.Lock()
    failures = []

    def work(share, n0):
        conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=60)
        start, every = time.time(), threads / rate
        for n in range(share):
            wait = start + n * every - time.time()
            if wait > 0:
                time.sleep(wait)
            conn.request("POST", f"/upload/hook{(n0 + n) % 50}", body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                failures.append(resp.status)
            with lock:
                times.append(time.time())
        conn.close()

    per = count // threads
    workers = [threading.Thread(target=work, args=(per, i * per)) for i in range(threads)]
    for w in workers:
        w.start()
    return workers, times, failures


def issue_script():
    body = json.dumps({"image_id": "bench-issue", "filename": "a.png", "content_type": "image/png",
                       "size": 123456})
    path = tempfile.mkstemp(suffix=".lua")[1]
    with open(path, "w") as f:
        f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                f"wrk.body = '{body}'\n")
    return path


KEEP = []


def run(label, completions, rate, seconds, env):
    """One run: completions from 8 threads at `rate`, and wrk issuing beside them (from
    the third second). Returns figures."""
    # The data directory is removed at the end of the benchmark, not now: removing
    # thousands of files makes ext4 slower to create the next run's for a while.
    data_dir = tempfile.mkdtemp(prefix="upload-broker-bench-")
    KEEP.append(data_dir)
    with common.Service(data_dir=data_dir, **env) as service:
        started = time.time()
        workers, times, failures = complete(service, completions, 8, rate)
        time.sleep(3)
        rps, p50, p99, errors = common.wrk(service.base + "/api/v1/uploads", seconds, 64, issue_script())
        for w in workers:
            w.join()
        done = time.time()
        assert not failures, f"{label}: uploads refused: {failures[:5]}"
        assert errors == 0, f"{label}: {errors} issue requests failed"
        db = sqlite3.connect(os.path.join(service.dir, "images.db"))
        issued = db.execute("SELECT COUNT(*) FROM uploads WHERE state = 'pending'").fetchone()[0]
        completed = db.execute("SELECT COUNT(*) FROM uploads WHERE state = 'completed'").fetchone()[0]
        events = {}
        if env.get("WEBHOOK_URL"):
            # Wait for the outbox to empty.
            deadline = time.time() + 300
            while time.time() < deadline:
                pending = db.execute("SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'pending'").fetchone()[0]
                if pending == 0:
                    break
                time.sleep(0.2)
            events = {row[0]: row[1] for row in db.execute("SELECT id, payload FROM events")}
        db.close()
        return {
            "label": label, "issue_rps": rps, "issue_p50": p50, "issue_p99": p99,
            "issued": issued, "completed": completed, "started": started, "done": done,
            "first_completion": min(times), "last_completion": max(times),
            "completion_rps": len(times) / (max(times) - min(times)), "events": events,
        }


def unix_seconds(rfc3339):
    """`2026-12-04T15:29:22.418299142Z` as Unix seconds."""
    whole, _, fraction = rfc3339.rstrip("Z").partition(".")
    return calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) + float("0." + (fraction or "0"))


def hyphenated(raw):
    """The UUID text of an id as SQLite stores it (16 bytes) or as text."""
    if isinstance(raw, bytes):
        h = raw.hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    return raw


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--completions", type=int, default=10000)
    parser.add_argument("--rate", type=int, default=400, help="completions per second")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2, choices=[1, 2],
                        help="1: A then B; 2: also B then A")
    args = parser.parse_args()
    common.build()
    if not os.environ.get("BENCH_SKIP_BUILD"):
        subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "bench_receiver"],
                       cwd=common.ROOT, check=True)

    receiver = Receiver()
    hook_env = {"WEBHOOK_URL": receiver.url, "WEBHOOK_SECRET": SECRET,
                "WEBHOOK_RETRY_SCHEDULE": "1,2,4,8,16"}
    # A, B, then B, A: what a run leaves on the machine weighs on both sides alike.
    plains, hookeds = [], []
    try:
        for order in [("A", "B"), ("B", "A")][:args.rounds]:
            for side in order:
                if side == "A":
                    plains.append(run("A: no webhooks", args.completions, args.rate, args.seconds, {}))
                else:
                    hookeds.append(run("B: webhooks", args.completions, args.rate, args.seconds, hook_env))
                    hookeds[-1]["log"] = receiver.log()
                    receiver.stop()
                    receiver = Receiver()
                    hook_env["WEBHOOK_URL"] = receiver.url
    finally:
        receiver.stop()
        for path in KEEP:
            shutil.rmtree(path, ignore_errors=True)
    # The delivery figures are the first B run's; the issuing ratio is over every round.
    hooked, plain = hookeds[0], plains[0]
    log = hooked["log"]

    bad = [e for e in log if not e["verified"]]
    assert not bad, f"{len(bad)} requests failed verification: {bad[:2]}"
    events = {hyphenated(k): json.loads(v) for k, v in hooked["events"].items()}
    first_attempt, successes = {}, {}
    for entry in log:
        if entry["attempt"] == 1:
            first_attempt[entry["id"]] = entry["started"]
        if entry["answer"] == 204:
            successes.setdefault(entry["id"], []).append(entry["ended"])
    failed_first = sum(1 for e in log if e["attempt"] == 1 and e["answer"] != 204)
    lost = [i for i in events if i not in successes]
    duplicates = sum(len(v) - 1 for v in successes.values())
    delays = []
    for event_id, body in events.items():
        if event_id in first_attempt:
            delays.append((first_attempt[event_id] - unix_seconds(body["timestamp"])) * 1000)
    delays.sort()
    last_delivery = max(min(v) for v in successes.values())
    p50 = statistics.median(delays)
    p95 = delays[int(len(delays) * 0.95) - 1]
    ratio = sum(h["issue_rps"] for h in hookeds) / sum(p["issue_rps"] for p in plains)
    rounds = " ".join(f"{h['issue_rps'] / p['issue_rps']:.2f}" for p, h in zip(plains, hookeds))

    lines = [
        f"# Webhook delivery ({time.strftime('%Y-%m-%d %H:%M')})",
        "",
        f"{args.completions:,} completions (legacy uploads from 8 threads, {args.rate}/s) with wrk "
        f"issuing at 64 connections for {args.seconds} s beside them; the receiver fails 30% of "
        "first attempts; WEBHOOK_RETRY_SCHEDULE=1,2,4,8,16. Command: "
        f"`python3 bench/webhooks.py --completions {args.completions} --rate {args.rate} "
        f"--seconds {args.seconds} --rounds {args.rounds}`.",
        "",
        "| figure | value | target |",
        "| --- | --- | --- |",
        f"| events recorded (run B) | {len(events):,} | {args.completions:,} |",
        f"| first attempts answered 500 | {failed_first:,} ({failed_first / max(len(first_attempt), 1):.0%}) | 30% |",
        f"| event to first attempt, p50 | {p50:.1f} ms | |",
        f"| event to first attempt, p95 | {p95:.1f} ms | < 250 ms |",
        f"| drain: first completion to last delivery | {last_delivery - hooked['first_completion']:.1f} s | |",
        f"| drain: last completion to last delivery | {last_delivery - hooked['last_completion']:.1f} s | |",
        f"| duplicate successful deliveries | {duplicates} | 0 |",
        f"| lost events | {len(lost)} | 0 |",
        f"| completions/s, A / B | {plain['completion_rps']:.0f} / {hooked['completion_rps']:.0f} | |",
        "| issuing (POST /api/v1/uploads) req/s, A: no webhooks | "
        + ", ".join(f"{p['issue_rps']:,.0f} (p99 {p['issue_p99']:.0f} ms)" for p in plains) + " | |",
        "| issuing req/s, B: webhooks draining | "
        + ", ".join(f"{h['issue_rps']:,.0f} (p99 {h['issue_p99']:.0f} ms)" for h in hookeds) + " | |",
        f"| B / A, each round | {rounds} | |",
        f"| B / A, all rounds | {ratio:.2f} | >= 0.90 |",
        "",
        f"Rows checked: run A holds {plain['completed']:,} completed and {plain['issued']:,} pending "
        f"uploads, run B {hooked['completed']:,} and {hooked['issued']:,}: each completion and "
        "each issue request made a new upload.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    common.write_result("webhooks.md", text)


if __name__ == "__main__":
    main()
