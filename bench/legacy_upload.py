#!/usr/bin/env python3
"""Legacy upload benchmark: peak RSS while 8 clients each stream a 9 MiB PNG through
POST /upload/{image_id}, and upload throughput of 1 MiB files (1 client and 16 clients).

Builds the release binary, starts it on loopback ports with SQLite and the embedded store
in a temporary directory, and prints one table. Only the Python standard library is used.

    python3 bench/legacy_upload.py [--seconds 10]
"""

import argparse
import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import common

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "sample.png")
MIB = 1024 * 1024
BOUNDARY = "bench-boundary-7d1f"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def png_of_size(size):
    return common.png_bytes(size)


def form(filename, data):
    head = (
        f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def post(conn, image_id, body):
    started = time.perf_counter()
    conn.request(
        "POST",
        f"/upload/{image_id}",
        body=body,
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    resp = conn.getresponse()
    resp.read()
    return resp.status, time.perf_counter() - started


def rss_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def reset_peak(pid):
    # Writing 5 to clear_refs resets the peak resident set size (VmHWM).
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def concurrent_once(port, clients, body):
    results = []
    lock = threading.Lock()

    def run(n):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        status, elapsed = post(conn, f"bench-big-{n}", body)
        with lock:
            results.append((status, elapsed))
        conn.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, time.perf_counter() - started


def sustained(port, clients, body, seconds):
    latencies, errors = [], 0
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def run(n):
        nonlocal errors
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine, bad = [], 0
        while time.perf_counter() < deadline:
            status, elapsed = post(conn, f"bench-{n}", body)
            mine.append(elapsed)
            bad += status != 200
        conn.close()
        with lock:
            latencies.extend(mine)
            errors += bad

    threads = [threading.Thread(target=run, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors, time.perf_counter() - started


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))] * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "upload-broker"))
    args = parser.parse_args()

    if not os.environ.get("BENCH_SKIP_BUILD"):
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)

    data_dir = tempfile.mkdtemp(prefix="upload-broker-bench-")
    port = free_port()
    env = dict(os.environ, DATA_DIR=data_dir, PORT=str(port), BIND_ADDR="127.0.0.1",
               EMBEDDED_S3_PORT=str(free_port()), LOG_LEVEL="WARNING")
    server = subprocess.Popen([args.binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        else:
            sys.exit("service did not start")

        big = form("big.png", png_of_size(9 * MIB))
        one = form("one.png", png_of_size(1 * MIB))
        # Warm up: one upload of each size.
        warm = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        post(warm, "warm", big)
        post(warm, "warm", one)
        warm.close()

        idle_rss = rss_kib(server.pid, "VmRSS")
        reset_peak(server.pid)
        cpu0 = cpu_seconds(server.pid)
        results, elapsed = concurrent_once(port, 8, big)
        cpu_big = cpu_seconds(server.pid) - cpu0
        peak_big = rss_kib(server.pid, "VmHWM")
        big_ok = sum(1 for s, _ in results if s == 200)

        rows = []
        rows.append(("8 x 9 MiB at once", 8 / elapsed, pct([e for _, e in results], 50),
                     pct([e for _, e in results], 99), 8 - big_ok, peak_big, cpu_big / elapsed))
        for clients in (1, 16):
            reset_peak(server.pid)
            cpu0 = cpu_seconds(server.pid)
            lat, errors, elapsed = sustained(port, clients, one, args.seconds)
            cpu = (cpu_seconds(server.pid) - cpu0) / elapsed
            rows.append((f"1 MiB, {clients} client{'s' if clients > 1 else ''}", len(lat) / elapsed,
                         pct(lat, 50), pct(lat, 99), errors, rss_kib(server.pid, "VmHWM"), cpu))

        print(f"upload-broker legacy upload, release build, SQLite + embedded store, idle RSS {idle_rss / 1024:.1f} MiB")
        print(f"{'load':<20} {'uploads/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'errors':>7} {'peak RSS MiB':>13} {'CPU cores':>10}")
        for name, rate, p50, p99, errors, peak, cpu in rows:
            print(f"{name:<20} {rate:>10.1f} {p50:>9.1f} {p99:>9.1f} {errors:>7} {peak / 1024:>13.1f} {cpu:>10.2f}")
        one_client = rows[1]
        print(f"1 client: {one_client[1] * 1:.1f} MiB/s of 1 MiB files")
    finally:
        server.terminate()
        server.wait(timeout=15)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
