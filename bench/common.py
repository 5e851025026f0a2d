"""Helpers shared by the benchmark scripts: build, start and stop the service.

BENCH_BINARY names a binary to run instead of target/release/upload-broker (one copied
aside, say, while the tree is rebuilt); with it nothing is built. BENCH_SKIP_BUILD=1 runs
target/release/upload-broker as it is, without building it first.
"""

import datetime
import hashlib
import hmac
import http.client
import json
import urllib.parse
import struct
import zlib
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.abspath(os.environ.get("BENCH_BINARY")
                         or os.path.join(ROOT, "target", "release", "upload-broker"))
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "sample.png")
MIB = 1024 * 1024


RESULTS = os.path.join(ROOT, "bench", "results")


def write_result(name, text):
    """Writes `text` to bench/results/`name`; returns that path as the repository names it."""
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, name)
    with open(path, "w") as f:
        f.write(text)
    return os.path.relpath(path, ROOT)


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
    if not os.environ.get("BENCH_SKIP_BUILD") and not os.environ.get("BENCH_BINARY"):
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


def wrk_threads(connections):
    """How many threads wrk runs with at `connections` connections."""
    return min(2, connections)


def wrk(url, seconds, connections, script=None):
    """Runs wrk and returns (requests/s, p50 ms, p99 ms, non-2xx or errors)."""
    return wrk_full(url, seconds, connections, script)[:4]


def wrk_full(url, seconds, connections, script=None):
    """Runs wrk and returns (requests/s, p50 ms, p99 ms, non-2xx or errors, requests): the
    last is wrk's total of answered requests ("N requests in ...")."""
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    threads = wrk_threads(connections)
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script:
        cmd += ["-s", script]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    rps = float(next(l.split()[1] for l in out.splitlines() if l.startswith("Requests/sec")))
    total = int(next(l.split()[0] for l in out.splitlines() if " requests in " in l))

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
    return rps, latency("50%"), latency("99%"), errors, total


class Connection:
    """One keep-alive HTTP/1.1 connection to host:port on a plain socket (much less client
    CPU per request than http.client, so that preparing many uploads does not take the
    machine's cores from the service), opened again when the server has closed it (the
    request is then sent once more). Answers with a body need Content-Length or chunked
    encoding."""

    def __init__(self, host, port, timeout=60):
        self.host, self.port, self.timeout = host, port, timeout
        self.sock, self.buf = None, b""

    def request(self, method, path, body=b"", headers=None):
        """Returns (status, response headers with lower-case names, body bytes)."""
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Length: {len(body)}\r\n"
        for name, value in (headers or {}).items():
            if name.lower() not in ("host", "content-length"):
                head += f"{name}: {value}\r\n"
        data = head.encode() + b"\r\n" + body
        for attempt in (1, 2):
            fresh = self.sock is None
            if fresh:
                self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.buf = b""
            try:
                self.sock.sendall(data)
                status, hdrs, payload = self._response()
            except (ConnectionError, EOFError):
                self.close()
                if fresh or attempt == 2:
                    raise
                continue
            if hdrs.get("connection", "").lower() == "close":
                self.close()
            return status, hdrs, payload

    def _read_until(self, mark):
        while mark not in self.buf:
            self._fill()
        before, _, self.buf = self.buf.partition(mark)
        return before

    def _read(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("the server closed the connection")
        self.buf += chunk

    def _response(self):
        lines = self._read_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            hdrs[name.strip().lower()] = value.strip()
        if "chunked" in hdrs.get("transfer-encoding", "").lower():
            parts = []
            while True:
                size = int(self._read_until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    self._read_until(b"\r\n")  # no trailers are sent to us
                    return status, hdrs, b"".join(parts)
                parts.append(self._read(size))
                self._read(2)
        return status, hdrs, self._read(int(hdrs.get("content-length", 0)))

    def json(self, method, path, body=None, headers=None):
        """A JSON request (when `body` is given); returns (status, parsed body or the raw
        bytes when it is no JSON)."""
        hdrs = dict(headers or {})
        data = b""
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        status, _, raw = self.request(method, path, data, hdrs)
        return status, (json.loads(raw) if raw[:1] in (b"{", b"[") else raw)

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock, self.buf = None, b""


def url_parts(url):
    """(host, port, path with query) of an http:// URL."""
    parsed = urllib.parse.urlsplit(url)
    path = parsed.path or "/"
    if parsed.query:
        path += "?" + parsed.query
    return parsed.hostname, parsed.port or 80, path


def aws_request(method, url, region, service, access_key, secret_key, body=b"", headers=None):
    """One request to an S3 or SQS API signed with AWS Signature Version 4 (the standard
    library alone, for the few set-up calls the benchmarks make to an external store).
    Returns (status, body bytes)."""
    parsed = urllib.parse.urlsplit(url)
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    payload_hash = hashlib.sha256(body).hexdigest()
    hdrs = {k.lower(): v for k, v in (headers or {}).items()}
    hdrs.update({"host": parsed.netloc, "x-amz-date": amz_date, "x-amz-content-sha256": payload_hash})
    # The canonical query: every name and value encoded, sorted ("?notification" is "notification=").
    pairs = urllib.parse.parse_qsl(parsed.query, keep_blank_values=True)
    query = "&".join(f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
                     for k, v in sorted(pairs))
    signed = sorted(hdrs)
    canonical = "\n".join([method, urllib.parse.quote(parsed.path or "/", safe="/-_.~"), query,
                           "".join(f"{k}:{str(hdrs[k]).strip()}\n" for k in signed),
                           ";".join(signed), payload_hash])
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + secret_key).encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    hdrs["authorization"] = (f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
                             f"SignedHeaders={';'.join(signed)}, Signature={signature}")
    host, port, path = url_parts(url)
    status, _, data = Connection(host, port).request(method, path, body, hdrs)
    return status, data


def support(script):
    """Runs one of tests/support/'s scripts (which start a store for the test suite) and
    returns the KEY=value settings it prints; what it says on stderr (much of it) goes to
    a log file in the temporary directory."""
    log = os.path.join(tempfile.gettempdir(), f"upload-broker-bench-{os.path.basename(script)}.log")
    with open(log, "w") as err:
        done = subprocess.run(["bash", os.path.join(ROOT, "tests", "support", script)],
                              stdout=subprocess.PIPE, stderr=err, text=True)
    if done.returncode != 0:
        sys.exit(f"tests/support/{script} failed (exit {done.returncode}); its output is in {log}")
    settings = {}
    for line in done.stdout.splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            settings[key.strip()] = value.strip()
    return settings


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


class Uploader:
    """One thread's keep-alive connections: to the service, and to each store a presigned
    URL names (the service's own origin, or another)."""

    def __init__(self, host, port):
        self.api = Connection(host, port)
        self.stores = {}

    def issue_and_put(self, body, data):
        """Issues `body` (which must be a single PUT) and PUTs `data` to its URL; returns
        the issued upload."""
        status, issued = self.api.json("POST", "/api/v1/uploads", body)
        assert status == 201 and issued["method"] == "PUT", (status, issued)
        host, port, path = url_parts(issued["url"])
        store = self.stores.get((host, port))
        if store is None:
            store = self.stores[(host, port)] = Connection(host, port)
        status, _, answer = store.request("PUT", path, data, issued["headers"])
        assert status == 200, (status, answer[:300])
        return issued

    def close(self):
        self.api.close()
        for store in self.stores.values():
            store.close()


def each_number(host, port, numbers, threads, handle):
    """Calls `handle(uploader, n)` for every n of `numbers`, from `threads` threads, each
    with an Uploader of its own (keep-alive connections to the service and its stores).
    The first failure stops them all and is raised here."""
    numbers, lock = iter(numbers), threading.Lock()

    def work(stopped):
        client = Uploader(host, port)
        try:
            while not stopped():
                with lock:
                    n = next(numbers, None)
                if n is None:
                    return
                handle(client, n)
        finally:
            client.close()

    in_threads(threads, work)


def in_threads(count, work):
    """Runs `work(stopped)` in `count` threads and waits for them all. `stopped()` turns
    true once one of them has failed; the first failure is raised here."""
    failures = []

    def run():
        try:
            work(lambda: bool(failures))
        except Exception as e:  # noqa: BLE001 - raised again below
            failures.append(e)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]

