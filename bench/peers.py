"""The peers the benchmark measures beside upload-broker, on the same S3 server (the
service's embedded store) in the same run: Uppy Companion 6.2.2 in its standalone mode
(bench/peers/companion, from npm) and a re-creation of the Flask service it replaces
(bench/peers/flask: Flask, boto3, gunicorn with 2 workers, as the seed deploys it).

Each peer is installed on first use (npm ci; pip install) and started on a loopback port.
"""

import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import time

import common
import legacy_upload

PEERS = os.path.join(common.ROOT, "bench", "peers")


class Process:
    """A peer's process tree: RSS and CPU are summed over it (gunicorn's master and
    workers, node and its children)."""

    def __init__(self, cmd, cwd, env, port):
        self.port = port
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=dict(os.environ, **env),
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, path, what):
        for _ in range(300):
            if self.proc.poll() is not None:
                break
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", path)
                conn.getresponse().read()
                return
            except OSError:
                time.sleep(0.1)
        self.log.seek(0)
        sys.exit(f"{what} did not start:\n{self.log.read().decode(errors='replace')[-2000:]}")

    @property
    def pids(self):
        tree, frontier = [self.proc.pid], [self.proc.pid]
        children = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                    children.setdefault(ppid, []).append(int(entry))
                except OSError:
                    pass
        while frontier:
            frontier = [c for p in frontier for c in children.get(p, [])]
            tree += frontier
        return tree

    def stop(self):
        common.stop_process(self.proc)


def measure(process, run):
    """`run()`'s result, the tree's peak RSS in MiB (sum of each process's peak) and the
    CPU cores it used meanwhile."""
    pids = process.pids
    for pid in pids:
        legacy_upload.reset_peak(pid)
    cpu0, t0 = sum(legacy_upload.cpu_seconds(p) for p in pids), time.perf_counter()
    result = run()
    cpu = sum(legacy_upload.cpu_seconds(p) for p in pids) - cpu0
    rss = sum(legacy_upload.rss_kib(p, "VmHWM") for p in pids) / 1024
    return result, rss, cpu / (time.perf_counter() - t0)


def start_companion(store):
    home = os.path.join(PEERS, "companion")
    binary = os.path.join(home, "node_modules", ".bin", "companion")
    if not os.path.exists(binary):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=home, check=True)
    port = common.free_port()
    env = {
        "COMPANION_PORT": str(port),
        "COMPANION_DOMAIN": f"127.0.0.1:{port}",
        "COMPANION_PROTOCOL": "http",
        "COMPANION_SECRET": "bench-secret",
        "COMPANION_DATADIR": tempfile.mkdtemp(prefix="companion-"),
        "COMPANION_CLIENT_ORIGINS": "true",
        "COMPANION_UPLOAD_URLS": "http://127\\.0\\.0\\.1:.*",
        "COMPANION_PREAUTH_SECRET": "bench-preauth-secret",
        "COMPANION_AWS_KEY": store["access_key"],
        "COMPANION_AWS_SECRET": store["secret_key"],
        "COMPANION_AWS_BUCKET": store["bucket"],
        "COMPANION_AWS_REGION": "us-east-1",
        "COMPANION_AWS_ENDPOINT": store["endpoint"],
        "COMPANION_AWS_FORCE_PATH_STYLE": "true",
        "NODE_ENV": "production",
    }
    process = Process(["node", binary], home, env, port)
    process.wait_ready("/", "Companion")
    return process


def start_flask(store):
    home = os.path.join(PEERS, "flask")
    if shutil.which("gunicorn") is None:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r", "requirements.txt"],
                       cwd=home, check=True)
    port = common.free_port()
    env = {
        "AWS_ENDPOINT_URL": store["endpoint"],
        "AWS_BUCKET_NAME": store["bucket"],
        "AWS_ACCESS_KEY_ID": store["access_key"],
        "AWS_SECRET_ACCESS_KEY": store["secret_key"],
        "AWS_REGION": "us-east-1",
        "DATABASE_PATH": os.path.join(tempfile.mkdtemp(prefix="flask-"), "images.db"),
    }
    process = Process(["gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}", "--log-level", "warning",
                       "app:app"], home, env, port)
    process.wait_ready("/health", "the Flask service")
    return process


def companion_rows(process, seconds, connections):
    base = f"http://127.0.0.1:{process.port}"
    loads = [
        ("Companion GET /s3/params", "/s3/params?filename=a.png&type=image%2Fpng"),
        ("Companion GET /s3/multipart/{id}/{n} (sign part)",
         "/s3/multipart/bench-upload/7?key=uploads%2Fbench%2Fa.png"),
    ]
    rows = []
    for name, path in loads:
        common.wrk(base + path, 2, connections)  # warm-up
        (rps, p50, p99, errors), rss, cpu = measure(
            process, lambda: common.wrk(base + path, seconds, connections))
        rows.append((name, connections, rps, p50, p99, errors, rss, cpu))
    return rows


def flask_rows(process, seconds, connections):
    base = f"http://127.0.0.1:{process.port}"
    one = legacy_upload.form("one.png", common.png_bytes(common.MIB))
    big = legacy_upload.form("big.png", common.png_bytes(9 * common.MIB))
    conn = http.client.HTTPConnection("127.0.0.1", process.port, timeout=60)
    status, _ = legacy_upload.post(conn, "bench-lookup", one)
    conn.close()
    assert status == 200, status
    rows = []
    path = "/api/url/bench-lookup"
    common.wrk(base + path, 2, connections)
    (rps, p50, p99, errors), rss, cpu = measure(
        process, lambda: common.wrk(base + path, seconds, connections))
    rows.append(("Flask GET /api/url/{id}", connections, rps, p50, p99, errors, rss, cpu))
    (results, elapsed), rss, cpu = measure(
        process, lambda: legacy_upload.concurrent_once(process.port, 8, big))
    lat = [e for _, e in results]
    rows.append(("Flask upload 9 MiB x8 at once", 8, 8 / elapsed, legacy_upload.pct(lat, 50),
                 legacy_upload.pct(lat, 99), sum(1 for s, _ in results if s != 200), rss, cpu))
    (lat, errors, elapsed), rss, cpu = measure(
        process, lambda: legacy_upload.sustained(process.port, 16, one, seconds))
    rows.append(("Flask upload 1 MiB", 16, len(lat) / elapsed, legacy_upload.pct(lat, 50),
                 legacy_upload.pct(lat, 99), errors, rss, cpu))
    return rows
