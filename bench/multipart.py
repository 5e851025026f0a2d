#!/usr/bin/env python3
"""Multipart benchmark: part-signing requests per second at 64 connections (wrk), and the
end-to-end time of a 1 GiB upload through the embedded store in 16 MiB parts, 6 in
flight, against one presigned PUT of the same bytes.

    python3 bench/multipart.py [--seconds 10] [--size-mib 1024]
"""

import argparse
import os
import tempfile
import threading
import time

import common


class Slice:
    """A read-only window of a file, for http.client to stream."""

    def __init__(self, path, start, length):
        self.f = open(path, "rb")
        self.f.seek(start)
        self.left = length

    def read(self, n=-1):
        if self.left <= 0:
            return b""
        n = self.left if n < 0 else min(n, self.left)
        data = self.f.read(n)
        self.left -= len(data)
        return data


def make_file(size):
    path = tempfile.mkstemp(prefix="upload-broker-bench-", suffix=".png")[1]
    with open(path, "wb") as out:
        out.write(common.png_bytes(size, bytes(range(256))))
    return path


def create(svc, size):
    status, body = svc.request("POST", "/api/v1/uploads", {
        "image_id": "bench", "filename": "big.png", "content_type": "image/png", "size": size,
    })
    assert status == 201, (status, body)
    return body


def multipart_upload(svc, path, size, parallel):
    started = time.perf_counter()
    issued = create(svc, size)
    upload_id, count, part_size = issued["upload_id"], issued["part_count"], issued["part_size"]
    urls = {}
    for first in range(1, count + 1, 100):
        numbers = list(range(first, min(first + 100, count + 1)))
        status, body = svc.request("POST", f"/api/v1/uploads/{upload_id}/parts", {"part_numbers": numbers})
        assert status == 200, (status, body)
        urls.update({p["part_number"]: p for p in body["parts"]})
    queue = list(range(1, count + 1))
    lock = threading.Lock()
    failures = []

    def worker():
        while True:
            with lock:
                if not queue:
                    return
                n = queue.pop(0)
            signed = urls[n]
            status = common.put(signed["url"], signed["headers"], Slice(path, (n - 1) * part_size, signed["size"]), signed["size"])
            if status != 200:
                failures.append((n, status))

    threads = [threading.Thread(target=worker) for _ in range(parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures
    confirm_started = time.perf_counter()
    status, record = svc.request("POST", f"/api/v1/uploads/{upload_id}/confirm")
    assert status == 200 and record["file_size"] == size, (status, record)
    done = time.perf_counter()
    return done - started, done - confirm_started, count, part_size


def single_put(svc, path, size):
    started = time.perf_counter()
    issued = create(svc, size)
    assert issued["method"] == "PUT"
    status = common.put(issued["url"], issued["headers"], Slice(path, 0, size), size)
    assert status == 200, status
    status, record = svc.request("POST", f"/api/v1/uploads/{issued['upload_id']}/confirm")
    assert status == 200 and record["file_size"] == size, (status, record)
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--size-mib", type=int, default=1024)
    args = parser.parse_args()
    common.build()
    size = args.size_mib * common.MIB

    with common.Service() as svc:
        issued = create(svc, size)
        script = tempfile.mkstemp(suffix=".lua")[1]
        with open(script, "w") as f:
            f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                    'wrk.body = \'{"part_numbers":[1]}\'\n')
        path_url = f"{svc.base}/api/v1/uploads/{issued['upload_id']}/parts"
        common.wrk(path_url, 2, 64, script)  # warm-up
        sign = common.wrk(path_url, args.seconds, 64, script)
        os.unlink(script)

    path = make_file(size)
    warm = make_file(80 * common.MIB)
    try:
        with common.Service() as svc:
            multipart_upload(svc, warm, 80 * common.MIB, 6)  # warm-up
            mp_seconds, mp_confirm, count, part_size = multipart_upload(svc, path, size, 6)
        with common.Service(MULTIPART_THRESHOLD=5 * 1024 * common.MIB, MAX_UPLOAD_SIZE=5 * 1024 * common.MIB) as svc:
            put_seconds = single_put(svc, path, size)
    finally:
        os.unlink(path)
        os.unlink(warm)

    mib = size / common.MIB
    print("upload-broker multipart, release build, SQLite + embedded store on loopback")
    print(f"{'measure':<44} {'value':>12}")
    print(f"{'sign one part, 64 connections (req/s)':<44} {sign[0]:>12.0f}")
    print(f"{'  p50 / p99 latency (ms)':<44} {sign[1]:>5.2f} / {sign[2]:<5.2f}")
    print(f"{'  errors':<44} {sign[3]:>12}")
    print(f"{f'{mib:.0f} MiB multipart, {count} x {part_size // common.MIB} MiB parts, 6 in flight (s)':<44} {mp_seconds:>12.2f}")
    print(f"{f'  throughput (MiB/s)':<44} {mib / mp_seconds:>12.0f}")
    print(f"{'  of which confirm (store assembles parts) (s)':<44} {mp_confirm:>12.2f}")
    print(f"{f'{mib:.0f} MiB single presigned PUT (s)':<44} {put_seconds:>12.2f}")
    print(f"{f'  throughput (MiB/s)':<44} {mib / put_seconds:>12.0f}")
    print(f"{'multipart time / single PUT time':<44} {mp_seconds / put_seconds:>12.2f}")


if __name__ == "__main__":
    main()
