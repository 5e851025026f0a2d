#!/usr/bin/env python3
"""Admin API: search and stats latency on 100,000 and 1,000,000 uploads in mixed states,
on SQLite and on Postgres, with 4 clients asking at once.

Each backend starts the service on an empty database (it migrates), stops it, writes the
rows straight into the database in the service's own formats (60% completed, 15% pending,
8% failed, 10% expired, 4% aborted, 3% deleted; 10,000 image_ids; created over the last
30 days; half with a checksum_sha256), rebuilds `upload_counters` as the migration does,
and starts it again. The 1,000,000-row database is the 100,000-row one topped up. Four
query kinds, each timed on its own: every client thread (one keep-alive connection each)
makes --warmup untimed requests, then --requests timed ones, all threads at once:

  image_id   GET /api/v1/admin/uploads?image_id=<random seeded id>&limit=50
  state+day  GET /api/v1/admin/uploads?state=completed&since=&until=  (a random 1-day
             window inside the 30 days)&limit=50
  sha256     GET /api/v1/admin/uploads?sha256=<a random stored checksum>&limit=50
  stats      GET /api/v1/admin/stats

Reports p50 and p95 (ms, time to the whole answer) per kind, backend and size, the errors
(anything but 200), the mean rows per answer, and p95 at 1M over p95 at 100k. Targets:
each search p95 < 50 ms, stats p95 < 10 ms, p95 flat from 100k to 1M. Prints the table
and the query plans, and writes both to bench/results/admin.md.

    python3 bench/admin.py [--binary PATH] [--sizes 100000,1000000] [--backends sqlite,postgres]
                           [--clients 4] [--requests 250] [--warmup 20]

Release build (skipped when BENCH_SKIP_BUILD is set, or with another --binary), the
embedded store on loopback; Postgres from tests/support/postgres.sh (its psql too), in a
database `bench_admin` made afresh and dropped at the end. Python 3, stdlib only.
"""

import argparse
import base64
import datetime
import glob
import http.client
import json
import math
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid

import common

ADMIN_KEY = "bench-admin-key"
SERVICE_ENV = {"ADMIN_KEYS": ADMIN_KEY, "IMAGE_VARIANTS": "", "SWEEP_INTERVAL": "0",
               "LOG_LEVEL": "WARNING", "BIND_ADDR": "127.0.0.1"}
IMAGE_IDS = 10_000
DAYS = 30
# Cumulative shares of each state, in the order a uniform draw picks them.
STATES = [("completed", 0.60), ("pending", 0.75), ("failed", 0.83), ("expired", 0.93),
          ("aborted", 0.97), ("deleted", 1.0)]
FAILURES = ["size_mismatch", "type_mismatch", "invalid_image", "checksum_mismatch", "image_too_large"]
KINDS = ["image_id", "state+day", "sha256", "stats"]
TARGETS = {"image_id": 50.0, "state+day": 50.0, "sha256": 50.0, "stats": 10.0}
PG_DB = "bench_admin"
COLUMNS = ("id", "image_id", "state", "method", "object_key", "original_filename", "content_type",
           "declared_size", "file_size", "checksum_sha256", "etag", "width", "height", "s3_url",
           "failure_code", "created_at", "expires_at", "uploaded_at", "updated_at")
REBUILD_COUNTERS = (
    "DELETE FROM upload_counters; "
    "INSERT INTO upload_counters (state, shard, uploads, bytes) "
    "SELECT state, 0, COUNT(*), COALESCE(SUM(COALESCE(file_size, declared_size)), 0) "
    "FROM uploads GROUP BY state")


def image_name(n):
    return f"img{n % IMAGE_IDS:05d}"


def rfc3339(ns):
    """Nanoseconds since the epoch as the service writes them: 2026-01-01T00:00:00.123456789Z."""
    seconds, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{frac:09d}Z"


# SQLite: rows written with executemany in one transaction.

def sqlite_rows(start, count, now_ns):
    rng = random.Random(start)
    day_ns = 86_400 * 1_000_000_000
    for n in range(start, start + count):
        key = uuid.UUID(int=rng.getrandbits(128), version=4)
        image = image_name(n)
        draw = rng.random()
        state = next(name for name, upto in STATES if draw < upto)
        created = now_ns - int(rng.random() * DAYS * day_ns)
        size = rng.randint(1024, 4_000_000)
        done = state in ("completed", "deleted")
        object_key = f"uploads/{image}/{key}.png"
        checksum = base64.b64encode(rng.getrandbits(256).to_bytes(32, "big")).decode() \
            if rng.random() < 0.5 else None
        uploaded = created + 5_000_000_000 if done else None
        updated = {"pending": created, "completed": uploaded, "failed": created + 5_000_000_000,
                   "expired": created + 3_600_000_000_000, "aborted": created + 60_000_000_000,
                   "deleted": created + 7_200_000_000_000}[state]
        yield (key.bytes, image, state, "PUT", object_key, "photo.png", "image/png", size,
               size if done else None, checksum, f'"{key.hex}"' if done else None,
               640 if done else None, 480 if done else None,
               f"http://127.0.0.1:9000/upload-broker/{object_key}" if done else None,
               rng.choice(FAILURES) if state == "failed" else None,
               rfc3339(created), rfc3339(created + 3_600_000_000_000),
               rfc3339(uploaded) if done else None, rfc3339(updated))


class Sqlite:
    name = "SQLite"

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="upload-broker-bench-admin-")
        self.db = os.path.join(self.dir, "images.db")

    def service(self):
        return common.Service(data_dir=self.dir, **SERVICE_ENV)

    def seed(self, start, count):
        started = time.perf_counter()
        con = sqlite3.connect(self.db, isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=OFF")
        con.execute("PRAGMA cache_size=-1048576")
        sql = f"INSERT INTO uploads ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
        con.execute("BEGIN")
        con.executemany(sql, sqlite_rows(start, count, time.time_ns()))
        con.execute("COMMIT")
        con.executescript(f"BEGIN; {REBUILD_COUNTERS}; COMMIT;")
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.close()
        return time.perf_counter() - started

    def query(self, sql):
        con = sqlite3.connect(self.db)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()

    def explain(self, sql):
        return [row[3] for row in self.query("EXPLAIN QUERY PLAN " + sql)]

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


# Postgres: rows made by the server from generate_series, in batches.

PG_SEED = """
WITH s AS MATERIALIZED (
    SELECT n, gen_random_uuid() AS id, random() AS draw, random() < 0.5 AS has_sum,
           now() - random() * interval '{days} days' AS created,
           1024 + floor(random() * 3998977)::bigint AS size
    FROM generate_series({first}, {last}) AS n
), t AS MATERIALIZED (
    SELECT s.*, 'img' || lpad((n % {images})::text, 5, '0') AS image_id,
           CASE WHEN draw < 0.60 THEN 'completed' WHEN draw < 0.75 THEN 'pending'
                WHEN draw < 0.83 THEN 'failed' WHEN draw < 0.93 THEN 'expired'
                WHEN draw < 0.97 THEN 'aborted' ELSE 'deleted' END AS state
    FROM s
), u AS (
    SELECT t.*, state IN ('completed', 'deleted') AS done,
           'uploads/' || image_id || '/' || id || '.png' AS object_key
    FROM t
)
INSERT INTO uploads ({columns})
SELECT id, image_id, state, 'PUT', object_key, 'photo.png', 'image/png', size,
       CASE WHEN done THEN size END,
       CASE WHEN has_sum THEN encode(decode(md5(random()::text) || md5(random()::text), 'hex'),
                                     'base64') END,
       CASE WHEN done THEN '"' || md5(id::text) || '"' END,
       CASE WHEN done THEN 640 END, CASE WHEN done THEN 480 END,
       CASE WHEN done THEN 'http://127.0.0.1:9000/upload-broker/' || object_key END,
       CASE WHEN state = 'failed' THEN (ARRAY[{failures}])[1 + floor(random() * 5)::int] END,
       created, created + interval '1 hour',
       CASE WHEN done THEN created + interval '5 seconds' END,
       created + CASE state WHEN 'pending' THEN interval '0' WHEN 'expired' THEN interval '1 hour'
                            WHEN 'aborted' THEN interval '1 minute'
                            WHEN 'deleted' THEN interval '2 hours' ELSE interval '5 seconds' END
FROM u
"""


def find_psql():
    found = shutil.which("psql") or (sorted(glob.glob("/usr/lib/postgresql/*/bin/psql")) or [None])[-1]
    if not found:
        sys.exit("psql is needed (Debian's postgresql-client)")
    return found


class Postgres:
    name = "Postgres"
    batch = 100_000

    def __init__(self):
        script = os.path.join(common.ROOT, "tests", "support", "postgres.sh")
        admin_url = subprocess.run(["bash", script], capture_output=True, text=True,
                                   check=True).stdout.strip().splitlines()[-1]
        self.psql_bin = find_psql()
        self.admin_url = admin_url
        self.url = admin_url.rsplit("/", 1)[0] + "/" + PG_DB
        self.psql(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)", url=admin_url)
        self.psql(f"CREATE DATABASE {PG_DB}", url=admin_url)

    def psql(self, sql, url=None):
        out = subprocess.run([self.psql_bin, "-X", "-q", "-A", "-t", "-F", "|", "-v", "ON_ERROR_STOP=1",
                              "-d", url or self.url, "-c", sql], capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"psql failed: {out.stderr.strip()}")
        return out.stdout

    def service(self):
        return common.Service(DATABASE_URL=self.url, **SERVICE_ENV)

    def seed(self, start, count):
        started = time.perf_counter()
        failures = ", ".join(f"'{code}'" for code in FAILURES)
        for first in range(start, start + count, self.batch):
            last = min(first + self.batch, start + count) - 1
            self.psql(PG_SEED.format(days=DAYS, first=first, last=last, images=IMAGE_IDS,
                                     columns=", ".join(COLUMNS), failures=failures))
        self.psql(f"BEGIN; {REBUILD_COUNTERS}; COMMIT;")
        self.psql("ANALYZE uploads")
        return time.perf_counter() - started

    def query(self, sql):
        return [tuple(line.split("|")) for line in self.psql(sql).splitlines() if line]

    def explain(self, sql):
        plan = self.psql("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + sql)
        return [line.rstrip() for line in plan.splitlines() if line.strip()]

    def cleanup(self):
        self.psql(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)", url=self.admin_url)


# The database's side.

def state_counts(backend):
    return {state: int(n) for state, n in backend.query(
        "SELECT state, COUNT(*) FROM uploads GROUP BY state ORDER BY state")}


def check_stats(client, counts):
    """`/stats` against a COUNT(*) of the table; prints both."""
    status, body = client.get("/api/v1/admin/stats")
    assert status == 200, (status, body)
    served = {state: v["count"] for state, v in json.loads(body)["states"].items() if v["count"]}
    agree = served == counts
    print(f"  /stats {served}\n  COUNT(*) {counts}\n  agree: {agree}", flush=True)
    return agree


def sample_checksums(backend, k=2000):
    rows = backend.query("SELECT checksum_sha256 FROM uploads WHERE checksum_sha256 IS NOT NULL "
                         f"ORDER BY random() LIMIT {k}")
    return [row[0] for row in rows]


def plan_queries(sha256, now):
    """The searches as the service runs them (its columns and order), with literal values."""
    since = datetime.datetime.fromtimestamp(now - 10 * 86_400, datetime.timezone.utc)
    until = since + datetime.timedelta(days=1)
    window = (f"created_at >= '{since.strftime('%Y-%m-%dT%H:%M:%SZ')}' "
              f"AND created_at < '{until.strftime('%Y-%m-%dT%H:%M:%SZ')}'")
    order = "ORDER BY created_at DESC, id DESC LIMIT 51"
    return {"image_id": f"SELECT * FROM uploads WHERE image_id = '{image_name(42)}' {order}",
            "state+day": f"SELECT * FROM uploads WHERE state = 'completed' AND {window} {order}",
            "sha256": f"SELECT * FROM uploads WHERE checksum_sha256 = '{sha256}' {order}",
            "stats": "SELECT state, CAST(SUM(uploads) AS BIGINT), CAST(SUM(bytes) AS BIGINT) "
                     "FROM upload_counters GROUP BY state"}


# The clients.

class Client:
    """One keep-alive connection carrying the admin key."""

    def __init__(self, port):
        self.port = port
        self.conn = None

    def get(self, path):
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            self.conn.request("GET", path, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
            resp = self.conn.getresponse()
            return resp.status, resp.read()
        except (OSError, http.client.HTTPException) as e:
            self.conn.close()
            self.conn = None
            return None, str(e).encode()

    def close(self):
        if self.conn is not None:
            self.conn.close()


def stamp(seconds):
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def path_for(kind, rng, checksums, now):
    base = "/api/v1/admin/uploads?limit=50&"
    if kind == "image_id":
        return base + "image_id=" + image_name(rng.randrange(IMAGE_IDS))
    if kind == "state+day":
        since = now - DAYS * 86_400 + rng.random() * (DAYS - 1) * 86_400
        return base + urllib.parse.urlencode({"state": "completed", "since": stamp(since),
                                              "until": stamp(since + 86_400)})
    if kind == "sha256":
        return base + "sha256=" + urllib.parse.quote(rng.choice(checksums), safe="")
    return "/api/v1/admin/stats"


def client_thread(port, kind, seed, warmup, count, checksums, barrier, out):
    rng = random.Random(seed)
    client = Client(port)
    now = time.time()
    latencies, errors, rows = [], 0, 0
    for _ in range(warmup):
        client.get(path_for(kind, rng, checksums, now))
    barrier.wait()
    for _ in range(count):
        path = path_for(kind, rng, checksums, now)
        started = time.perf_counter()
        status, body = client.get(path)
        latencies.append((time.perf_counter() - started) * 1000)
        if status != 200:
            errors += 1
        elif kind != "stats":
            rows += body.count(b'"upload_id"')
    client.close()
    out.append((latencies, errors, rows))


def measure(port, kind, clients, warmup, count, checksums):
    barrier = threading.Barrier(clients)
    out = []
    threads = [threading.Thread(target=client_thread,
                                args=(port, kind, 1000 * i + KINDS.index(kind), warmup, count,
                                      checksums, barrier, out))
               for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies = sorted(x for lat, _, _ in out for x in lat)
    errors = sum(e for _, e, _ in out)
    rows = sum(r for _, _, r in out)
    return {"n": len(latencies), "p50": percentile(latencies, 0.50), "p95": percentile(latencies, 0.95),
            "errors": errors, "rows": rows / len(latencies) if kind != "stats" else None}


def percentile(sorted_values, q):
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


# One backend, both sizes.

def run_backend(backend, sizes, args):
    results, notes = {}, {}
    done = 0
    backend.service().stop()  # an empty database: the service migrates it
    for size in sizes:
        print(f"{backend.name}: seeding {size - done:,} rows (to {size:,})", flush=True)
        seconds = backend.seed(done, size - done)
        done = size
        counts = state_counts(backend)
        checksums = sample_checksums(backend)
        print(f"  seeded in {seconds:.1f} s", flush=True)
        with backend.service() as svc:
            agree = check_stats(Client(svc.port), counts)
            for kind in KINDS:
                results[(size, kind)] = measure(svc.port, kind, args.clients, args.warmup,
                                                args.requests, checksums)
                r = results[(size, kind)]
                print(f"  {kind:10} p50 {r['p50']:6.2f} ms  p95 {r['p95']:6.2f} ms  errors {r['errors']}",
                      flush=True)
        plans = {kind: backend.explain(sql) for kind, sql in plan_queries(checksums[0], time.time()).items()}
        notes[size] = {"seconds": seconds, "counts": counts, "agree": agree, "plans": plans}
    return results, notes


# The report.

def short(n):
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k"


def report(all_results, all_notes, sizes, args, loads, command):
    first, last = sizes[0], sizes[-1]
    lines = [f"# Admin API latency ({datetime.datetime.now().strftime('%Y-%m-%d %H:%M')})", "",
             f"{args.clients} clients at once (one keep-alive connection each), {args.warmup} untimed then "
             f"{args.requests} timed requests each per query kind; time to the whole answer. "
             f"Uploads in mixed states over {IMAGE_IDS:,} image_ids, created over the last {DAYS} days, "
             "written straight into the database; `upload_counters` rebuilt as the migration does.", "",
             f"Machine: {common.machine()}; load average {loads[0]} before, {loads[1]} after.", "",
             f"Command: `{command}`", "",
             f"| backend | rows | query | requests | errors | rows/answer | p50 ms | p95 ms "
             f"| p95 {short(last)}/{short(first)} | target p95 | met |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for backend, results in all_results.items():
        for size in sizes:
            for kind in KINDS:
                r = results[(size, kind)]
                ratio = f"{r['p95'] / results[(first, kind)]['p95']:.2f}" if size == last and size != first else ""
                met = "yes" if r["p95"] < TARGETS[kind] and r["errors"] == 0 else "**no**"
                rows = "" if r["rows"] is None else f"{r['rows']:.1f}"
                lines.append(f"| {backend} | {size:,} | {kind} | {r['n']:,} | {r['errors']} | {rows} | "
                             f"{r['p50']:.2f} | {r['p95']:.2f} | {ratio} | < {TARGETS[kind]:.0f} ms | {met} |")
    for kind in KINDS[:-1]:
        fills = [all_results[b][(s, kind)]["rows"] for b in all_results for s in (first, last)]
        if first != last and max(fills) > 1.1 * min(fills):
            lines += ["", f"The {kind} answers hold {min(fills):.0f} to {max(fills):.0f} rows (each of the "
                      f"{IMAGE_IDS:,} image_ids has rows/{IMAGE_IDS:,} uploads), so its p95 ratio also "
                      "counts the larger page, not only the larger table."]
    lines += ["", "Seeding (rows written straight into the database, with the counters rebuilt; "
              "Postgres also ANALYZE):", ""]
    for backend, notes in all_notes.items():
        previous = 0
        for size in sizes:
            n = notes[size]
            lines.append(f"- {backend}, {previous:,} to {size:,} rows: {n['seconds']:.1f} s; "
                         f"/stats agrees with COUNT(*): {'yes' if n['agree'] else '**no**'}; "
                         + ", ".join(f"{s} {c:,}" for s, c in sorted(n["counts"].items(), key=lambda x: -x[1])))
            previous = size
    lines += ["", f"Query plans at {last:,} rows (the service's searches with literal values; "
              "SQLite EXPLAIN QUERY PLAN, Postgres EXPLAIN ANALYZE):", ""]
    for backend, notes in all_notes.items():
        for kind, plan in notes[last]["plans"].items():
            lines += [f"{backend}, {kind}:", "", "```", *plan, "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--binary", default=common.BINARY)
    parser.add_argument("--sizes", default="100000,1000000", help="row counts, ascending, comma-separated")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=250, help="timed requests per client and kind")
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests per client and kind")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    if os.path.abspath(args.binary) == common.BINARY:
        common.build()
    common.BINARY = os.path.abspath(args.binary)
    command = " ".join(["python3", "bench/admin.py"] + sys.argv[1:])
    if os.environ.get("BENCH_SKIP_BUILD"):
        command = "BENCH_SKIP_BUILD=1 " + command

    loads = [common.load()]
    all_results, all_notes = {}, {}
    for name in args.backends.split(","):
        backend = {"sqlite": Sqlite, "postgres": Postgres}[name]()
        try:
            all_results[backend.name], all_notes[backend.name] = run_backend(backend, sizes, args)
        finally:
            backend.cleanup()
    loads.append(common.load())

    text = report(all_results, all_notes, sizes, args, loads, command)
    print("\n" + text)
    os.makedirs(os.path.join(common.ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(common.ROOT, "bench", "results", "admin.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
