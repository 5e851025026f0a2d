#!/usr/bin/env python3
"""Completion latency: from the end of a client's PUT to its upload being completed, with
no confirm call, when the store tells the service (two ways).

  a. The embedded store with AUTO_CONFIRM=true: it confirms a single PUT as it lands.
  b. moto's server as S3 and SQS (tests/support/moto.sh, as the test suite starts it): the
     bucket notifies a queue of s3:ObjectCreated:* and the service, given the queue in
     S3_EVENTS_QUEUE_URL, long-polls it and confirms the uploads the messages name.

Each run starts the release binary on loopback ports with SQLite in a temporary directory
(SWEEP_INTERVAL=0, no image variants) and makes --uploads uploads of a 4 KiB PNG from
--concurrency client threads: each issues an upload, PUTs it, notes the wall clock when
the PUT's answer has arrived, then polls GET /api/v1/uploads/{id} until the upload is
completed (for --timeout seconds at most). Its latency is the record's `uploaded_at` (the
moment the service completed it, RFC 3339) minus that PUT-end moment; the polling's own
pace does not enter it. A negative figure is an upload completed before its client had
read the PUT's answer. Prints the p50, p95 and largest latency, and how many uploads did
not complete in time, and writes them to bench/results/completion.md.

    python3 bench/completion.py [--uploads 300] [--concurrency 8] [--timeout 30]

Python 3 alone; the moto run installs moto into tests/support/moto/.venv on first use.
"""

import argparse
import datetime
import re
import threading
import time
import uuid

import common

COMMON_ENV = {"SWEEP_INTERVAL": "0", "IMAGE_VARIANTS": ""}
# moto's default account and region, which its queue ARNs carry.
MOTO_ACCOUNT, MOTO_REGION = "123456789012", "us-east-1"
MOTO_KEYS = ("testing", "testing")


def rfc3339(text):
    """Seconds since the epoch of an RFC 3339 timestamp, nanoseconds kept (as far as a
    float holds them)."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", text)
    if not match:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    whole, fraction, zone = match.groups()
    stamp = datetime.datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone))
    return stamp.timestamp() + (float(fraction) if fraction else 0.0)


def moto_env():
    """Starts moto (or reuses the one running), makes a bucket and a queue of this run's
    own with the bucket notifying the queue, and returns the service's settings for them."""
    endpoint = common.support("moto.sh")["TEST_MOTO_ENDPOINT"]
    name = f"ub-bench-{uuid.uuid4().hex[:12]}"
    access, secret = MOTO_KEYS

    def aws(method, url, service, body=b"", headers=None):
        status, data = common.aws_request(method, url, MOTO_REGION, service, access, secret,
                                          body, headers)
        assert status == 200, (method, url, status, data[:500])
        return data.decode()

    aws("PUT", f"{endpoint}/{name}", "s3")
    created = aws("POST", endpoint + "/", "sqs",
                  f"Action=CreateQueue&QueueName={name}&Version=2012-11-05".encode(),
                  {"Content-Type": "application/x-www-form-urlencoded"})
    queue_url = re.search(r"<QueueUrl>([^<]+)</QueueUrl>", created).group(1)
    notification = (
        '<NotificationConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        "<QueueConfiguration>"
        f"<Queue>arn:aws:sqs:{MOTO_REGION}:{MOTO_ACCOUNT}:{name}</Queue>"
        "<Event>s3:ObjectCreated:*</Event>"
        "</QueueConfiguration></NotificationConfiguration>").encode()
    aws("PUT", f"{endpoint}/{name}?notification", "s3", notification,
        {"Content-Type": "application/xml"})
    return {"AWS_BUCKET_NAME": name, "AWS_ENDPOINT_URL": endpoint,
            "AWS_ENDPOINT_URL_SQS": endpoint, "AWS_REGION": MOTO_REGION,
            "AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret,
            "S3_EVENTS_QUEUE_URL": queue_url,
            # As the test suite runs the service on moto: PUTs staged, without If-None-Match.
            "S3_CONDITIONAL_WRITES": "false"}


def measure(service, uploads, concurrency, timeout):
    """Returns (latencies in ms of the uploads that completed, ids of those that did not)."""
    png = common.png_bytes(4096)
    lock = threading.Lock()
    latencies, missing = [], []

    def one(client, n):
        issued = client.issue_and_put({
            "image_id": f"bench-completion-{n}", "filename": "a.png",
            "content_type": "image/png", "size": len(png)}, png)
        put_end = time.time()
        upload_id = issued["upload_id"]
        while True:
            status, record = client.api.json("GET", f"/api/v1/uploads/{upload_id}")
            assert status == 200, (status, record)
            if record["state"] == "completed":
                took = (rfc3339(record["uploaded_at"]) - put_end) * 1000
                with lock:
                    latencies.append(took)
                return
            assert record["state"] == "pending", record
            if time.time() - put_end > timeout:
                with lock:
                    missing.append(upload_id)
                return
            time.sleep(0.02)

    common.each_number("127.0.0.1", service.port, range(uploads), concurrency, one)
    return latencies, missing


def pct(values, p):
    """The p-th percentile (nearest rank) of `values`."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--uploads", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=30, help="seconds an upload may take")
    args = parser.parse_args()
    common.build()

    runs = [("embedded store, AUTO_CONFIRM=true", "the store confirms each PUT as it lands",
             lambda: {"AUTO_CONFIRM": "true"}),
            ("moto S3 + SQS, S3_EVENTS_QUEUE_URL", "bucket notification (s3:ObjectCreated:*) "
             "to an SQS queue the service long-polls", moto_env)]
    load_before = common.load()
    rows = []
    for name, how, env in runs:
        with common.Service(**COMMON_ENV, **env()) as service:
            started = time.time()
            latencies, missing = measure(service, args.uploads, args.concurrency, args.timeout)
            elapsed = time.time() - started
        row = (name, how, len(latencies), pct(latencies, 50), pct(latencies, 95),
               max(latencies, default=float("nan")), len(missing), elapsed)
        rows.append(row)
        print(f"{name}: {row[2]} completed, p50 {row[3]:.1f} ms, p95 {row[4]:.1f} ms, "
              f"max {row[5]:.1f} ms, {row[6]} not completed within {args.timeout:g} s "
              f"({elapsed:.1f} s)", flush=True)
    load_after = common.load()

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# Completion without a confirm call ({stamp})", "",
        f"Machine: {common.machine()}; load average {load_before} before, {load_after} after. "
        f"Release build, SQLite, everything on loopback; {args.uploads} uploads of a 4 KiB PNG "
        f"per store from {args.concurrency} client threads (issue, PUT, then poll the record "
        f"every 20 ms). Latency: the record's `uploaded_at` minus the moment the client had "
        f"the PUT's answer. Command: `python3 bench/completion.py --uploads {args.uploads} "
        f"--concurrency {args.concurrency} --timeout {args.timeout:g}`.", "",
        "| store | how it completes | completed | p50 ms | p95 ms | max ms | "
        f"not completed within {args.timeout:g} s | run s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, how, done, p50, p95, top, missing, elapsed in rows:
        lines.append(f"| {name} | {how} | {done} | {p50:.1f} | {p95:.1f} | {top:.1f} | "
                     f"{missing} | {elapsed:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    print(f"written: {common.write_result('completion.md', text)}")


if __name__ == "__main__":
    main()
