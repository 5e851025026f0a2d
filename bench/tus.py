#!/usr/bin/env python3
"""tus benchmark: resumable uploads (tus 1.0.0) through upload-broker's /api/v1/tus, against
one presigned PUT of the same bytes and against the tus project's own Node server
(@tus/server with @tus/s3-store, bench/peers/tus-node).

  1. Embedded store: one presigned PUT of a --size-mib PNG (MULTIPART_THRESHOLD and
     MAX_UPLOAD_SIZE raised to 5 GiB so that it is a single PUT; issue, PUT, confirm), then
     one tus upload of the same file in --patch-mib PATCHes on the same service (POST
     /api/v1/tus, then the PATCHes; the last one verifies the image and completes the
     upload before it is answered). Throughput of both, and tus / PUT (target >= 0.6).
  2. Garage: upload-broker on one Garage and @tus/server on another (each its own
     tests/support/garage.sh instance, folder and ports): on upload-broker's, the same
     presigned PUT and tus upload as on the embedded store (the ratio again, on a store
     whose CompleteMultipartUpload only records the parts, as S3's does); then on each,
     the tus upload, and --concurrent tus uploads of a --concurrent-mib PNG at once (one
     thread and one keep-alive connection each). For every row the peak RSS of the
     server's process tree (VmRSS summed over the process and its children, sampled every
     20 ms; Garage is not counted); target for upload-broker under 8 x 200 MiB: under 64
     MiB and below the peer's. A single tus upload's row also gives its last PATCH alone:
     the store's completion and the verification come before that answer.
  3. Every upload is checked once it is timed: upload-broker's record (GET
     /api/v1/uploads/{id}) must be completed with file_size the file's size and an s3_url;
     the peer's HEAD must give Upload-Offset equal to the length.

The client is Python's http.client: one keep-alive connection per upload, each PATCH body
streamed from the file (never the whole file in memory), the same send block size for the
PUT. upload-broker runs with SWEEP_INTERVAL=0 and no image variants, so no background work
of one row runs under the next. Objects the run stored on the Garages are deleted
afterwards (the benchmark's buckets emptied, best effort).

    python3 bench/tus.py [--size-mib 1024] [--concurrent 8] [--concurrent-mib 200]
                         [--patch-mib 8] [--skip-peer | --peer-only]
                         [--peer-part-mib 16] [--peer-checksums when_supported|when_required]
                         [--garage-ports 23920,23930]

--peer-only measures the peer alone (no build, no upload-broker rows), --skip-peer
upload-broker alone. Prints a markdown table and writes it to bench/results/tus.md.

The two Garages default to S3 ports 23920 and 23930 (each also takes port+1 and port+3),
with folders upload-broker-bench-garage-<port> in the temporary directory: away from the
test suite's Garage (23900, which run.py --store garage shares). Like run.py, the run
leaves them running for the next. The peer's settings: --peer-part-mib (@tus/s3-store's
preferred part size, 16 MiB like upload-broker's PART_SIZE default; an 8 MiB PATCH is one
part either way) and --peer-checksums (the AWS SDK's CRC32 of every part, its default, or
only where S3 requires one).

Needs Python 3, Garage (tests/support/garage.sh builds it when missing) and, for the peer,
Node.js >= 20.19 with npm (npm ci in bench/peers/tus-node on first use).
"""

import argparse
import base64
import contextlib
import datetime
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from xml.etree import ElementTree

import common
import legacy_upload
import multipart
import peers
import run

TUS_NODE = os.path.join(peers.PEERS, "tus-node")
MIB = common.MIB
BLOCK = MIB  # bytes http.client reads from a body and sends at a time
WARM_MIB = 24  # a warm-up upload on each server before its measured rows
PEER_BUCKET = "tus-node-bench"
METADATA = {"image_id": "bench", "filename": "big.png", "filetype": "image/png"}
TUS = {"Tus-Resumable": "1.0.0"}


# --- the client ------------------------------------------------------------------------


def send(conn, method, path, body=None, headers=None):
    """One request on a keep-alive http.client connection; returns (status, headers with
    lower-case names, body bytes). A body given is a file-like object with Content-Length
    among the headers, streamed BLOCK bytes at a time."""
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


def connect(host, port):
    return http.client.HTTPConnection(host, port, timeout=600, blocksize=BLOCK)


def upload_metadata():
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in METADATA.items())


def tus_upload(server, path, size, chunk, stopped=lambda: False):
    """Creates a tus upload of the file at `path` (`size` bytes) and sends it in PATCHes of
    `chunk` bytes on one keep-alive connection. Returns (the upload's URL, seconds from the
    POST to the last PATCH's answer, seconds of the last PATCH alone)."""
    conn = connect(server.host, server.port)
    try:
        started = time.perf_counter()
        status, hdrs, data = send(conn, "POST", server.create_path, headers=dict(
            TUS, **{"Upload-Length": str(size), "Upload-Metadata": upload_metadata()}))
        assert status == 201 and "location" in hdrs, (
            f"{server.name}: POST {server.create_path}: {status} {data[:300]!r}")
        location = urllib.parse.urljoin(f"http://{server.host}:{server.port}{server.create_path}",
                                        hdrs["location"])
        host, port, target = common.url_parts(location)
        if (host, port) != (server.host, server.port):
            conn.close()
            conn = connect(host, port)
        offset, last = 0, 0.0
        while offset < size:
            if stopped():
                raise RuntimeError("stopped: another upload failed")
            n = min(chunk, size - offset)
            sent = time.perf_counter()
            try:
                status, hdrs, data = send(conn, "PATCH", target, multipart.Slice(path, offset, n), dict(
                    TUS, **{"Upload-Offset": str(offset), "Content-Length": str(n),
                            "Content-Type": "application/offset+octet-stream"}))
            except OSError as e:
                raise RuntimeError(f"{server.name}: PATCH {target} at offset {offset}: {e!r}") from e
            assert status == 204 and hdrs.get("upload-offset") == str(offset + n), (
                f"{server.name}: PATCH {target} at offset {offset} (+{n}): {status} "
                f"Upload-Offset {hdrs.get('upload-offset')} {data[:300]!r}")
            offset += n
            last = time.perf_counter() - sent
        return location, time.perf_counter() - started, last
    finally:
        conn.close()


def put_upload(svc, path, size):
    """One presigned PUT: issue, PUT, confirm. Returns (upload id, seconds from the issue to
    the confirm's answer)."""
    started = time.perf_counter()
    issued = multipart.create(svc, size)
    assert issued["method"] == "PUT", issued
    host, port, target = common.url_parts(issued["url"])
    conn = connect(host, port)
    try:
        status, _, data = send(conn, "PUT", target, multipart.Slice(path, 0, size),
                               dict(issued["headers"], **{"Content-Length": str(size)}))
    finally:
        conn.close()
    assert status == 200, (status, data[:300])
    status, record = svc.request("POST", f"/api/v1/uploads/{issued['upload_id']}/confirm")
    assert status == 200, (status, record)
    return issued["upload_id"], time.perf_counter() - started


# --- the servers -----------------------------------------------------------------------


class Tree:
    """peers.Process's walk of a process tree, for a process started elsewhere."""

    pids = peers.Process.pids

    def __init__(self, proc):
        self.proc = proc


class PeakRss:
    """The largest sum of VmRSS over a process tree, sampled every `interval` seconds in a
    thread while the `with` block runs (the tree itself is listed again every 25 samples)."""

    def __init__(self, tree, interval=0.02):
        self.tree, self.interval = tree, interval
        self.peak_kib = 0

    def __enter__(self):
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        pids, n = [], 0
        while True:
            if n % 25 == 0:
                pids = self.tree.pids
            total = 0
            for pid in pids:
                try:
                    total += legacy_upload.rss_kib(pid, "VmRSS")
                except OSError:  # gone meanwhile
                    pass
            self.peak_kib = max(self.peak_kib, total)
            n += 1
            if self.done.wait(self.interval):
                return

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()

    @property
    def mib(self):
        return self.peak_kib / 1024


class Ours:
    """upload-broker's tus endpoint on a running common.Service."""

    name = "upload-broker"
    create_path = "/api/v1/tus"

    def __init__(self, svc):
        self.svc = svc
        self.host, self.port = "127.0.0.1", svc.port
        self.tree = Tree(svc.proc)

    def check(self, location, size):
        """The upload (its tus URL or its id) is completed, `size` bytes, with an s3_url."""
        upload_id = location.rstrip("/").rsplit("/", 1)[-1]
        status, record = self.svc.request("GET", f"/api/v1/uploads/{upload_id}")
        assert status == 200 and record.get("state") == "completed" \
            and record.get("file_size") == size and record.get("s3_url"), (
                f"upload {upload_id} is not a completed upload of {size} bytes: {status} {record}")
        return "completed, file_size ok"


class Peer:
    """@tus/server (bench/peers/tus-node) on its own Garage."""

    name = "@tus/server"
    create_path = "/files/"

    def __init__(self, process):
        self.process = process
        self.host, self.port = "127.0.0.1", process.port
        self.tree = process

    def check(self, location, size):
        host, port, target = common.url_parts(location)
        conn = connect(host, port)
        try:
            status, hdrs, _ = send(conn, "HEAD", target, headers=TUS)
        finally:
            conn.close()
        assert status == 200 and hdrs.get("upload-offset") == str(size), (
            f"{location}: HEAD {status}, Upload-Offset {hdrs.get('upload-offset')}, not {size}")
        return "HEAD Upload-Offset ok"

    def log(self):
        self.process.log.seek(0)
        return self.process.log.read().decode(errors="replace")[-3000:]


@contextlib.contextmanager
def garage_at(port):
    """tests/support/garage.sh, run meanwhile, starts (or finds running) a Garage on S3 port
    `port` (and port+1, port+3) with a folder of its own in the temporary directory."""
    saved = {k: os.environ.get(k) for k in ("GARAGE_TEST_DIR", "GARAGE_TEST_PORT")}
    os.environ.update(GARAGE_TEST_DIR=os.path.join(tempfile.gettempdir(), f"upload-broker-bench-garage-{port}"),
                      GARAGE_TEST_PORT=str(port))
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def garage_service_env(port):
    """run.garage_env()'s service settings (its bucket made), on the Garage at `port`."""
    with garage_at(port):
        return run.garage_env()


def peer_store(port):
    """The peer's Garage at `port` with a bucket of its own; returns its S3 settings."""
    with garage_at(port):
        settings = common.support("garage.sh")
    endpoint, region = settings["TEST_S3_ENDPOINT"], settings["TEST_S3_REGION"]
    access, secret = settings["TEST_S3_ACCESS_KEY_ID"], settings["TEST_S3_SECRET_ACCESS_KEY"]
    status, body = common.aws_request("PUT", f"{endpoint}/{PEER_BUCKET}", region, "s3", access, secret)
    # 409 is the bucket an earlier run made.
    assert status in (200, 409), (status, body[:300])
    return {"endpoint": endpoint, "region": region, "bucket": PEER_BUCKET,
            "access_key": access, "secret_key": secret}


def empty_bucket(endpoint, region, access, secret, bucket):
    """Deletes every object of a bucket of the benchmark's own and aborts its multipart
    uploads (the service's staged PUTs and the like included), so that runs do not fill
    the Garages' folders. Best effort: what fails is said on stderr."""
    def call(method, query_or_key):
        status, body = common.aws_request(method, f"{endpoint}/{bucket}{query_or_key}", region, "s3",
                                          access, secret)
        if status not in (200, 204):
            print(f"{method} {bucket}{query_or_key}: {status} {body[:200]!r}", file=sys.stderr)
            return None
        return ElementTree.fromstring(body) if body else None

    def found(tree, entry, *fields):
        for node in tree.iter():
            if node.tag.rsplit("}", 1)[-1] == entry:
                values = {c.tag.rsplit("}", 1)[-1]: c.text for c in node}
                yield tuple(values.get(f) for f in fields)

    for _ in range(100):  # 1,000 keys a listing
        listing = call("GET", "?list-type=2")
        keys = [key for key, in found(listing, "Contents", "Key")] if listing is not None else []
        if not keys:
            break
        for key in keys:
            call("DELETE", "/" + key)
    uploads = call("GET", "?uploads")
    for key, upload_id in (found(uploads, "Upload", "Key", "UploadId") if uploads is not None else ()):
        call("DELETE", f"/{key}?uploadId={upload_id}")


def install_tus_node():
    """npm ci in bench/peers/tus-node unless node_modules is newer than the lock file."""
    lock = os.path.join(TUS_NODE, "package-lock.json")
    installed = os.path.join(TUS_NODE, "node_modules", ".package-lock.json")
    if not os.path.exists(installed) or os.path.getmtime(installed) < os.path.getmtime(lock):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=TUS_NODE, check=True)


def start_tus_node(store, part_size, checksums):
    install_tus_node()
    port = common.free_port()
    env = {
        "PORT": str(port),
        "S3_ENDPOINT": store["endpoint"],
        "S3_BUCKET": store["bucket"],
        "S3_REGION": store["region"],
        "S3_ACCESS_KEY_ID": store["access_key"],
        "S3_SECRET_ACCESS_KEY": store["secret_key"],
        "PART_SIZE": str(part_size),
        # The AWS SDK's own settings: WHEN_SUPPORTED (its default) sends a CRC32 of every
        # part; WHEN_REQUIRED only where S3 requires one.
        "AWS_REQUEST_CHECKSUM_CALCULATION": checksums.upper(),
        "AWS_RESPONSE_CHECKSUM_VALIDATION": checksums.upper(),
        "NODE_ENV": "production",
    }
    process = peers.Process(["node", "server.js"], TUS_NODE, env, port)
    process.wait_ready("/files/", "@tus/server")
    return process


def versions():
    """The peer's and Garage's versions, for the results' header."""
    found = {}
    for name in ("@tus/server", "@tus/s3-store", "@aws-sdk/client-s3"):
        try:
            with open(os.path.join(TUS_NODE, "node_modules", name, "package.json")) as f:
                found[name] = json.load(f)["version"]
        except OSError:
            found[name] = "?"
    for name, cmd in (("node", ["node", "--version"]), ("garage", ["garage", "--version"])):
        binary = shutil.which(cmd[0]) or os.path.expanduser(f"~/.cargo/bin/{cmd[0]}")
        try:
            out = subprocess.run([binary] + cmd[1:], capture_output=True, text=True).stdout.split()
            found[name] = (out[1].split(":")[-1] if name == "garage" and len(out) > 1
                           else out[0] if out else "?")
        except OSError:
            found[name] = "?"
    return found


# --- the rows ----------------------------------------------------------------------------


class Row:
    def __init__(self, server, store, upload, count, size, wall, rss, check, slowest=None, last=None):
        self.server, self.store, self.upload, self.count = server, store, upload, count
        self.size, self.wall, self.rss, self.check, self.slowest = size, wall, rss, check, slowest
        # A single tus upload: its last PATCH alone (the store's completion and the
        # verification happen before its answer).
        self.last = last

    @property
    def mib_s(self):
        return self.count * self.size / MIB / self.wall


def one_tus(server, store, path, size, chunk):
    with PeakRss(server.tree) as rss:
        location, seconds, last = tus_upload(server, path, size, chunk)
    check = server.check(location, size)
    row = Row(server.name, store, f"tus {size // MIB} MiB, {chunk // MIB} MiB PATCHes", 1, size,
              seconds, rss.mib, check, last=last)
    report(row)
    return row


def many_tus(server, store, path, size, chunk, count):
    """`count` tus uploads at once, a thread and a connection each; the wall time runs
    from their start to the last one's final PATCH answer."""
    locations, slowest, finished, lock = [], [0.0], [], threading.Lock()

    def work(stopped):
        location, seconds, _ = tus_upload(server, path, size, chunk, stopped)
        with lock:
            locations.append(location)
            finished.append(time.perf_counter())
            slowest[0] = max(slowest[0], seconds)

    with PeakRss(server.tree) as rss:
        started = time.perf_counter()
        common.in_threads(count, work)
    wall = max(finished) - started
    check = {server.check(location, size) for location in locations}
    row = Row(server.name, store, f"tus {count} x {size // MIB} MiB at once, {chunk // MIB} MiB PATCHes",
              count, size, wall, rss.mib, f"{len(locations)} x " + ", ".join(sorted(check)), slowest[0])
    report(row)
    return row


def report(row):
    extra = f", slowest upload {row.slowest:.2f} s" if row.slowest else ""
    extra += f", last PATCH {row.last:.2f} s" if row.last is not None else ""
    print(f"{row.server} on {row.store}: {row.upload}: {row.wall:.2f} s, {row.mib_s:.0f} MiB/s"
          f"{extra}, peak RSS {row.rss:.1f} MiB; {row.check}", flush=True)


def warm_up(server, warm, chunk):
    location, _, _ = tus_upload(server, warm, WARM_MIB * MIB, chunk)
    server.check(location, WARM_MIB * MIB)


OUR_ENV = {"SWEEP_INTERVAL": "0", "IMAGE_VARIANTS": ""}


# A 1 GiB file as one presigned PUT: the multipart threshold (and the size cap) raised.
ONE_PUT_ENV = {"MULTIPART_THRESHOLD": 5 * 1024 * MIB, "MAX_UPLOAD_SIZE": 5 * 1024 * MIB}


def put_row(server, store, files):
    """The presigned PUT of the big file (after a small one), as a row."""
    path, size = files["big"]
    put_upload(server.svc, files["warm"][0], files["warm"][1])  # warm-up
    with PeakRss(server.tree) as rss:
        upload_id, seconds = put_upload(server.svc, path, size)
    check = server.check(upload_id, size)
    row = Row(server.name, store, f"presigned PUT {size // MIB} MiB (issue, PUT, confirm)",
              1, size, seconds, rss.mib, check)
    report(row)
    return row


def embedded_rows(files, chunk):
    with common.Service(**ONE_PUT_ENV, **OUR_ENV) as svc:
        server = Ours(svc)
        store = "embedded store"
        warm_up(server, files["warm"][0], chunk)
        return [put_row(server, store, files), one_tus(server, store, *files["big"], chunk)]


def garage_rows(files, chunk, count, port, cleanups):
    store_env = garage_service_env(port)
    cleanups.append(lambda: empty_bucket(
        store_env["AWS_ENDPOINT_URL"], store_env["AWS_REGION"], store_env["AWS_ACCESS_KEY_ID"],
        store_env["AWS_SECRET_ACCESS_KEY"], store_env["AWS_BUCKET_NAME"]))
    rows = []
    with common.Service(**ONE_PUT_ENV, **OUR_ENV, **store_env) as svc:
        server = Ours(svc)
        warm_up(server, files["warm"][0], chunk)
        rows.append(put_row(server, "Garage", files))
        rows.append(one_tus(server, "Garage", *files["big"], chunk))
        rows.append(many_tus(server, "Garage", *files["many"], chunk, count))
    return rows


def peer_rows(files, chunk, count, port, part_size, checksums, cleanups):
    store = peer_store(port)
    cleanups.append(lambda: empty_bucket(store["endpoint"], store["region"], store["access_key"],
                                         store["secret_key"], store["bucket"]))
    process = start_tus_node(store, part_size, checksums)
    server = Peer(process)
    rows = []
    try:
        warm_up(server, files["warm"][0], chunk)
        rows.append(one_tus(server, "Garage", *files["big"], chunk))
        rows.append(many_tus(server, "Garage", *files["many"], chunk, count))
    except BaseException:
        print(f"@tus/server's log ends:\n{server.log()}", file=sys.stderr)
        raise
    finally:
        process.stop()
    return rows


# --- the report --------------------------------------------------------------------------


def goals(rows):
    by = {(r.server, r.store, r.count > 1, r.upload.startswith("tus")): r for r in rows}
    pairs = [(store, by.get(("upload-broker", store, False, False)), by.get(("upload-broker", store, False, True)))
             for store in ("embedded store", "Garage")]
    ours_one, ours_many = by.get(("upload-broker", "Garage", False, True)), by.get(("upload-broker", "Garage", True, True))
    peer_one, peer_many = by.get(("@tus/server", "Garage", False, True)), by.get(("@tus/server", "Garage", True, True))
    yes = lambda ok: "yes" if ok else "no"
    lines = ["| goal | value | target | met |", "|---|---:|---:|---|"]
    for store, put, tus in pairs:
        if put and tus:
            ratio = tus.mib_s / put.mib_s
            lines.append(f"| tus / presigned PUT throughput, {tus.size // MIB} MiB, {store} | "
                         f"{ratio:.2f} | >= 0.6 | {yes(ratio >= 0.6)} |")
    if ours_many:
        lines.append(f"| upload-broker peak RSS, {ours_many.upload.split(',')[0]} on Garage | "
                     f"{ours_many.rss:.1f} MiB | < 64 MiB | {yes(ours_many.rss < 64)} |")
    if ours_many and peer_many:
        lines.append(f"| the same, against @tus/server's {peer_many.rss:.1f} MiB | "
                     f"{ours_many.rss / peer_many.rss:.2f} x | < 1 x | {yes(ours_many.rss < peer_many.rss)} |")
    if ours_one and peer_one:
        lines.append(f"| tus {ours_one.size // MIB} MiB throughput on Garage, upload-broker / @tus/server | "
                     f"{ours_one.mib_s / peer_one.mib_s:.2f} | – | – |")
    if ours_many and peer_many:
        lines.append(f"| {ours_many.upload.split(',')[0]} wall time on Garage, upload-broker / @tus/server | "
                     f"{ours_many.wall / peer_many.wall:.2f} | – | – |")
    return "\n".join(lines) + "\n" if len(lines) > 2 else ""


def table(rows):
    lines = ["| server | store | upload | wall s | MiB/s | last PATCH s | slowest upload s | peak RSS MiB | checked |",
             "|---|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        slowest = f"{r.slowest:.2f}" if r.slowest else "–"
        last = f"{r.last:.2f}" if r.last is not None else "–"
        lines.append(f"| {r.server} | {r.store} | {r.upload} | {r.wall:.2f} | {r.mib_s:.0f} | {last} | {slowest} | "
                     f"{r.rss:.1f} | {r.check} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="the single upload's size")
    parser.add_argument("--concurrent", type=int, default=8, help="uploads at once")
    parser.add_argument("--concurrent-mib", type=int, default=200, help="each concurrent upload's size")
    parser.add_argument("--patch-mib", type=int, default=8, help="bytes per PATCH")
    parser.add_argument("--peer-part-mib", type=int, default=16,
                        help="@tus/s3-store's preferred part size (default: upload-broker's PART_SIZE default)")
    parser.add_argument("--peer-checksums", choices=("when_supported", "when_required"),
                        default="when_supported", help="the peer's AWS SDK checksums: its default, "
                        "a CRC32 of every part (when_supported), or only where required")
    parser.add_argument("--garage-ports", default="23920,23930",
                        help="S3 ports of upload-broker's Garage and the peer's (each uses port+1 and port+3 too)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--skip-peer", action="store_true", help="upload-broker's rows alone")
    which.add_argument("--peer-only", action="store_true", help="the peer's rows alone (no build)")
    args = parser.parse_args()
    # The PNG's padding is one chunk, whose length field stops below 2 GiB.
    if not 0 < args.size_mib < 2048 or not 0 < args.concurrent_mib < 2048:
        sys.exit("--size-mib and --concurrent-mib must be between 1 and 2047")
    ours_port, peer_port = (int(p) for p in args.garage_ports.split(","))
    if abs(ours_port - peer_port) < 4:
        sys.exit("--garage-ports: each Garage uses port, port+1 and port+3; keep them 4 or more apart")
    if not args.peer_only:
        common.build()
    chunk = args.patch_mib * MIB

    sizes = {"big": args.size_mib * MIB, "many": args.concurrent_mib * MIB, "warm": WARM_MIB * MIB}
    files = {}
    # The Garages' buckets are emptied once every row has run, so that no deletion work of
    # one Garage runs under another's rows.
    cleanups = []
    load_before = common.load()
    rows = []
    try:
        for name, size in sizes.items():
            files[name] = (multipart.make_file(size), size)
        if not args.peer_only:
            rows += embedded_rows(files, chunk)
            rows += garage_rows(files, chunk, args.concurrent, ours_port, cleanups)
        if not args.skip_peer:
            rows += peer_rows(files, chunk, args.concurrent, peer_port, args.peer_part_mib * MIB,
                              args.peer_checksums, cleanups)
    finally:
        for path, _ in files.values():
            os.unlink(path)
        for cleanup in cleanups:
            cleanup()
    load_after = common.load()

    found = versions()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = " ".join(["python3 bench/tus.py"] + sys.argv[1:])
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=common.ROOT,
                          capture_output=True, text=True).stdout.strip() or "?"
    binary = (f"the binary BENCH_BINARY names (work tree at {head})" if os.environ.get("BENCH_BINARY")
              else f"the release build of the work tree at {head}")
    ours = ("" if args.peer_only else
            f"upload-broker is {binary} with SQLite (SWEEP_INTERVAL=0, no image variants), on its "
            f"embedded store or on a Garage of its own; its final PATCH verifies the image before "
            f"its answer. ")
    peer = ("" if args.skip_peer else
            f"The peer is @tus/server {found['@tus/server']} with @tus/s3-store {found['@tus/s3-store']} "
            f"(@aws-sdk/client-s3 {found['@aws-sdk/client-s3']}, Node {found['node']}, preferred part "
            f"size {args.peer_part_mib} MiB, SDK checksums {args.peer_checksums}) on a Garage of its own; it "
            f"stores the bytes only. ")
    only = (" Peer only (--peer-only): upload-broker's rows were not run." if args.peer_only else
            " upload-broker only (--skip-peer)." if args.skip_peer else "")
    text = "\n".join([
        f"# tus uploads: upload-broker and @tus/server ({stamp})", "",
        f"Machine: {common.machine()}; load average {load_before} before, {load_after} after. "
        f"Everything on loopback, Garage {found['garage']} single-node. {ours}{peer}"
        f"Client: Python http.client, one keep-alive connection per upload, each PATCH streamed "
        f"from a PNG file (metadata image_id bench, filename big.png, filetype image/png); a "
        f"{WARM_MIB} MiB warm-up upload on each server first. Wall s: from the POST (the "
        f"issue, for the PUT) to the last answer (the final PATCH's; the confirm's); peak RSS: "
        f"VmRSS summed over the server's process tree, sampled every 20 ms (Garage not "
        f"counted).{only} Command: `{command}`.", "",
        table(rows), goals(rows)]).rstrip() + "\n"
    print(text)
    print(f"written: {common.write_result('tus.md', text)}")


if __name__ == "__main__":
    main()
