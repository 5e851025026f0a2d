"""Helpers shared by the benchmark scripts: build, start and stop the service."""

import http.client
import json
import struct
import zlib
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "target", "release", "upload-broker")
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "sample.png")
MIB = 1024 * 1024


def png_bytes(size, pattern=b"\0"):
    """A valid PNG of exactly `size` bytes: the test fixture with an ancillary chunk of
    padding (repeating `pattern`) before its end chunk, so the file still ends with IEND."""
    with open(FIXTURE, "rb") as f:
        png = f.read()
    body, iend = png[:-12], png[-12:]
    data_len = size - len(png) - 12
    data = (pattern * (data_len // len(pattern) + 1))[:data_len]
    chunk = b"ubPd" + data
    return body + struct.pack(">I", data_len) + chunk + struct.pack(">I", zlib.crc32(chunk)) + iend


def build():
    if not os.environ.get("BENCH_SKIP_BUILD"):
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """The release binary on loopback ports, with SQLite and the embedded store in a
    temporary directory."""

    def __init__(self, data_dir=None, **env):
        # A given data directory is kept (to start again on it); a temporary one is removed.
        self.keep = data_dir is not None
        self.dir = data_dir or tempfile.mkdtemp(prefix="upload-broker-bench-")
        self.port = free_port()
        self.store_port = free_port()
        full_env = dict(os.environ, DATA_DIR=self.dir, PORT=str(self.port), BIND_ADDR="127.0.0.1",
                        EMBEDDED_S3_PORT=str(self.store_port), LOG_LEVEL="WARNING")
        full_env.update({k: str(v) for k, v in env.items()})
        self.proc = subprocess.Popen([BINARY], env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                status, _ = self.request("GET", "/health")
                if status == 200:
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        sys.exit("service did not start")

    def store_settings(self):
        """The embedded store's endpoint, bucket and key pair, for peers to share it."""
        with open(os.path.join(self.dir, "s3.credentials")) as f:
            access, secret = f.read().strip().split(":", 1)
        return {"endpoint": f"http://127.0.0.1:{self.store_port}", "bucket": "upload-broker",
                "access_key": access, "secret_key": secret}

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    def request(self, method, path, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        headers = {}
        if body is not None:
            body = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp.status, (json.loads(data) if data else None)

    def stop(self):
        stop_process(self.proc)
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def stop_process(proc):
    """Asks a process to stop, then makes it."""
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def put(url, headers, body_reader, length):
    """PUT `length` bytes from a file-like object to a presigned URL; returns status."""
    rest = url.split("://", 1)[1]
    hostport, path = rest.split("/", 1)
    host, port = hostport.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=600)
    all_headers = dict(headers)
    all_headers["Content-Length"] = str(length)
    conn.request("PUT", "/" + path, body=body_reader, headers=all_headers)
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp.status


def wrk(url, seconds, connections, script=None):
    """Runs wrk and returns (requests/s, p50 ms, p99 ms, non-2xx or errors)."""
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    threads = min(2, connections)
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script:
        cmd += ["-s", script]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    rps = float(next(l.split()[1] for l in out.splitlines() if l.startswith("Requests/sec")))

    def latency(label):
        for line in out.splitlines():
            parts = line.split()
            if parts[:1] == [label]:
                value = parts[1]
                for unit, scale in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
                    if value.endswith(unit):
                        return float(value[: -len(unit)]) * scale
        return float("nan")

    errors = 0
    for line in out.splitlines():
        if "Non-2xx" in line:
            errors += int(line.split()[-1])
        if line.strip().startswith("Socket errors"):
            errors += sum(int(x.strip(",")) for x in line.split()[3::2])
    return rps, latency("50%"), latency("99%"), errors


def load():
    """The load averages, as /proc/loadavg gives them."""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def machine():
    """One line on the machine: cores, CPU model, memory and kernel."""
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) / 1024 / 1024
    return f"nproc {os.cpu_count()}, {model}, {mem:.0f} GiB, Linux {platform.release()}"
