#!/usr/bin/env python3
"""Scaling: issuing (POST /api/v1/uploads) and a lookup (GET /api/v1/images/{id}/latest)
under wrk at 1, 16, 64 and 256 connections, and both again at 64 connections on a
database that already holds 1,000,000 completed uploads.

    python3 bench/scaling.py [--seconds 10] [--rows 1000000]

Release build, SQLite and the embedded store on loopback; needs wrk and Python 3.
"""

import argparse
import json
import os
import shutil
import sqlite3
import tempfile
import time
import uuid

import common
from run import Target, _Reader, issue_body, lua


def prepare_lookup(target):
    png = common.png_bytes(4096)
    status, issued = target.request("POST", "/api/v1/uploads", issue_body("bench-lookup", len(png)))
    assert status == 201, (status, issued)
    assert common.put(issued["url"], issued["headers"], _Reader(png), len(png)) == 200
    assert target.request("POST", f"/api/v1/uploads/{issued['upload_id']}/confirm")[0] == 200


def measure(target, seconds, connections):
    script = lua('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                 "wrk.body = '" + json.dumps(issue_body("bench-issue", 123456)) + "'\n")
    rows = []
    for name, path, s in [("POST /api/v1/uploads", "/api/v1/uploads", script),
                          ("GET /api/v1/images/{id}/latest", "/api/v1/images/bench-lookup/latest", None)]:
        common.wrk(target.base + path, 2, connections, s)
        rps, p50, p99, errors = common.wrk(target.base + path, seconds, connections, s)
        rows.append((name, connections, rps, p50, p99, errors))
    os.unlink(script)
    return rows


def seed(db_path, count):
    """`count` completed uploads spread over 10,000 image_ids, written straight into the
    database in the service's own formats."""
    started = time.perf_counter()
    con = sqlite3.connect(db_path)
    stamp = "2026-01-01T00:00:00.123456789Z"
    columns = ("id, image_id, state, method, object_key, original_filename, content_type, "
               "declared_size, file_size, etag, width, height, created_at, expires_at, "
               "uploaded_at, updated_at")
    def rows():
        for n in range(count):
            image = f"seed{n % 10000}"
            key = uuid.uuid4()
            yield (key.bytes, image, "completed", "PUT", f"uploads/{image}/{key}.png", "a.png",
                   "image/png", 4096, 4096, '"etag"', 64, 48, stamp, stamp, stamp, stamp)
    with con:
        con.executemany(f"INSERT INTO uploads ({columns}) VALUES ({', '.join('?' * 16)})", rows())
    con.close()
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    common.build()

    results = []
    with common.Service() as svc:
        target = Target(svc.base, svc.proc.pid)
        prepare_lookup(target)
        for connections in (1, 16, 64, 256):
            results += [("empty database",) + r for r in measure(target, args.seconds, connections)]

    data_dir = tempfile.mkdtemp(prefix="upload-broker-bench-")
    try:
        common.Service(data_dir=data_dir).stop()  # creates the schema
        seconds = seed(os.path.join(data_dir, "images.db"), args.rows)
        with common.Service(data_dir=data_dir) as svc:
            target = Target(svc.base, svc.proc.pid)
            prepare_lookup(target)
            results += [(f"{args.rows:,} completed rows",) + r for r in measure(target, args.seconds, 64)]
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)

    lines = [f"upload-broker scaling, release build, SQLite + embedded store, wrk, {args.seconds} s each"
             f" ({args.rows:,} rows seeded in {seconds:.0f} s)", "",
             "| database | load | connections | requests/s | p50 ms | p99 ms | errors |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for db, name, conns, rps, p50, p99, errors in results:
        lines.append(f"| {db} | {name} | {conns} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {errors} |")
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(os.path.join(common.ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(common.ROOT, "bench", "results", "scaling.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
