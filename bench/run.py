#!/usr/bin/env python3
"""The service's benchmark: every hot path under wrk at 64 connections (10 s after a
2 s warm-up), the legacy upload, and the process's peak RSS and CPU for each.

Builds the release binary and starts it with SQLite and the embedded store on loopback
ports (AUTO_CONFIRM=false, SWEEP_INTERVAL=0, no image variants), or points the same load
at a running service with --base-url (then without RSS and CPU, which need the process).
Prints one table and writes it, with an SVG chart of requests per second, to
bench/results/ (latest.md and latest.svg).

    python3 bench/run.py [--seconds 10] [--connections 64] [--base-url http://host:port]
                         [--admin-key KEY] [--no-peers] [--store embedded|garage]

The first-confirm row is wrk too: every request confirms, for the first time, an upload
prepared for it (issued and PUT, not yet confirmed), each upload once; a wrk thread that
runs out of them confirms the nil UUID instead, a 404 counted as an error. Afterwards the
run checks that wrk's count of requests matches the rise in completed uploads the admin
stats show (within the connections' requests in flight at the end). With --base-url that
check needs --admin-key, and the service must not confirm PUTs itself.

--store garage runs the same HTTP rows and the legacy upload against the service on a
loopback Garage (tests/support/garage.sh starts it, building it first when it is missing)
and writes latest-garage.md and latest-garage.svg instead; no peers then.

Unless --no-peers (or --base-url), the same run also measures the peers of bench/peers.py,
Uppy Companion and the Flask service, on the same embedded store, and prints the ratios
the project aims for beside the table.

Needs wrk (apt-get install wrk) and Python 3; the peers need Node.js with npm, and Flask,
boto3 and gunicorn (installed on first use).
"""

import argparse
import concurrent.futures
import datetime
import http.client
import json
import os
import secrets
import tempfile
import threading
import time
import urllib.parse

import common
import legacy_upload
import peers

FIRST_CONFIRM = "POST .../confirm (first, each upload once)"
NIL_UUID = "00000000-0000-0000-0000-000000000000"
WARM_UP = 2  # seconds of wrk before each measured row


class Target:
    """The service under load: a base URL, and its process when we started it."""

    def __init__(self, base, pid=None, admin_key=None):
        self.base = base.rstrip("/")
        parsed = urllib.parse.urlparse(self.base)
        self.host, self.port = parsed.hostname, parsed.port or 80
        self.pid = pid
        self.admin_key = admin_key

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        data = json.dumps(body).encode() if body is not None else None
        hdrs = {"Content-Type": "application/json"} if body is not None else {}
        hdrs.update(headers or {})
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        conn.close()
        return resp.status, (json.loads(raw) if raw and raw[:1] in b"{[" else raw)

    def measure(self, run):
        """Runs `run()` and returns its result with the process's peak RSS (MiB) and CPU
        (cores) over it, when the process is ours."""
        if self.pid is None:
            return run(), None, None
        legacy_upload.reset_peak(self.pid)
        cpu0, t0 = legacy_upload.cpu_seconds(self.pid), _now()
        result = run()
        cores = (legacy_upload.cpu_seconds(self.pid) - cpu0) / (_now() - t0)
        return result, legacy_upload.rss_kib(self.pid, "VmHWM") / 1024, cores


def _now():
    return datetime.datetime.now().timestamp()


def lua(text):
    path = tempfile.mkstemp(suffix=".lua")[1]
    with open(path, "w") as f:
        f.write(text)
    return path


def issue_body(image_id, size):
    return {"image_id": image_id, "filename": "a.png", "content_type": "image/png", "size": size}


def prepare_uploaded(target, count, image_ids=1, processes=2, threads=8):
    """`count` uploads whose bytes are in the store but not yet confirmed: 4 KiB PNGs,
    issued for `image_ids` image ids in turn, from `processes` processes of `threads`
    threads, each thread with keep-alive connections to the service and the store."""
    shares = [count // processes + (1 if n < count % processes else 0) for n in range(processes)]
    jobs = [(target.host, target.port, share, n, processes, image_ids, threads)
            for n, share in enumerate(shares) if share]
    with concurrent.futures.ProcessPoolExecutor(len(jobs)) as pool:
        parts = list(pool.map(_prepare_some, *zip(*jobs)))
    return [upload_id for part in parts for upload_id in part]


def _prepare_some(host, port, count, offset, stride, image_ids, threads):
    """One process's share of prepare_uploaded: the uploads numbered offset, offset +
    stride, ... (the number picks the image id)."""
    png = common.png_bytes(4096)
    ids, lock = [], threading.Lock()

    def one(client, n):
        issued = client.issue_and_put(issue_body(f"bench-confirm-{n % image_ids}", len(png)), png)
        with lock:
            ids.append(issued["upload_id"])

    common.each_number(host, port, range(offset, offset + count * stride, stride), threads, one)
    return ids


def first_confirms(target, ids, threads):
    """Confirms every id in `ids` exactly once, from `threads` keep-alive connections (to
    complete the uploads the repeat row confirms again). Returns (requests/s, p50 ms,
    p99 ms, errors)."""
    pending, lock = list(ids), threading.Lock()
    latencies, errors = [], [0]

    def work():
        conn = http.client.HTTPConnection(target.host, target.port, timeout=60)
        while True:
            with lock:
                if not pending:
                    break
                upload_id = pending.pop()
            started = _now()
            conn.request("POST", f"/api/v1/uploads/{upload_id}/confirm")
            resp = conn.getresponse()
            body = json.loads(resp.read())
            took = _now() - started
            with lock:
                latencies.append(took)
                if resp.status != 200 or body.get("state") != "completed":
                    errors[0] += 1
        conn.close()

    started = _now()
    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = _now() - started
    return (len(latencies) / elapsed, legacy_upload.pct(latencies, 50),
            legacy_upload.pct(latencies, 99), errors[0])


class _Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def read(self, n=-1):
        chunk = self.data[self.pos:] if n < 0 else self.data[self.pos:self.pos + n]
        self.pos += len(chunk)
        return chunk


def completed_count(target):
    """How many uploads are completed, from the admin stats, once the count has stopped
    moving (confirms still running when a load ended finish first)."""
    def read():
        status, stats = target.request("GET", "/api/v1/admin/stats",
                                       headers={"Authorization": f"Bearer {target.admin_key}"})
        assert status == 200, (status, stats)
        return stats["states"].get("completed", {}).get("count", 0)

    last = read()
    for _ in range(50):
        time.sleep(0.3)
        now = read()
        if now == last:
            return now
        last = now
    return last


def ids_script(ids, threads):
    """A wrk script confirming each of `ids` once: setup() numbers the threads, each
    thread's init() takes every `threads`-th id from its own offset (disjoint slices), and
    request() hands them out in turn; a thread that has run out confirms the nil UUID, a
    404 that wrk counts as an error, so an exhausted run never passes for a good one."""
    path = tempfile.mkstemp(suffix=".txt")[1]
    with open(path, "w") as f:
        f.write("\n".join(ids) + "\n")
    return lua(f"""local ids_file, threads = "{path}", {threads}
local counter = 0
function setup(thread)
  thread:set("index", counter)
  counter = counter + 1
end
local ids, next_id = {{}}, 1
function init(args)
  local n = 0
  for line in io.lines(ids_file) do
    if line ~= "" then
      if n % threads == index then ids[#ids + 1] = line end
      n = n + 1
    end
  end
end
function request()
  local id = ids[next_id]
  if id then
    next_id = next_id + 1
  else
    id = "{NIL_UUID}"
  end
  return wrk.format("POST", "/api/v1/uploads/" .. id .. "/confirm")
end
"""), path


def first_confirm_row(target, seconds, connections, rate):
    """The first-confirm row: wrk at `connections` over uploads prepared for `rate`
    confirms a second (warm-up and measured run each with ids of their own). Returns the
    row and (wrk's requests, the rise in completed uploads), the latter None without an
    admin key."""
    threads = common.wrk_threads(connections)
    # Distinct uploads spread over many image ids, as real traffic is.
    warm = prepare_uploaded(target, rate * WARM_UP, image_ids=1000)
    measured = prepare_uploaded(target, rate * seconds, image_ids=1000)
    warm_script, warm_ids = ids_script(warm, threads)
    script, ids_path = ids_script(measured, threads)
    try:
        common.wrk(target.base + "/", WARM_UP, connections, warm_script)
        before = completed_count(target) if target.admin_key else None
        (rps, p50, p99, errors, requests), rss, cpu = target.measure(
            lambda: common.wrk_full(target.base + "/", seconds, connections, script))
        after = completed_count(target) if target.admin_key else None
    finally:
        for path in (warm_script, warm_ids, script, ids_path):
            os.unlink(path)
    row = (FIRST_CONFIRM, connections, rps, p50, p99, errors, rss, cpu)
    risen = None if before is None else after - before
    print(f"first confirms: wrk counted {requests} requests; completed uploads rose by "
          + ("? (no admin key)" if risen is None else f"{risen}")
          + f"; {len(measured)} uploads were prepared", flush=True)
    assert requests > 0, "first confirms: wrk had no answer at all"
    if risen is not None:
        assert abs(risen - requests) <= connections, (
            f"first confirms: wrk counted {requests} requests but completed uploads rose by "
            f"{risen} (more than {connections} apart): not every request was a first confirm")
    assert requests < len(measured), (
        f"first confirms: {requests} requests used up the {len(measured)} prepared uploads")
    return row, (requests, risen, len(measured))


def http_rows(target, seconds, connections, rate):
    png = common.png_bytes(4096)
    # A completed upload to look up.
    status, issued = target.request("POST", "/api/v1/uploads", issue_body("bench-lookup", len(png)))
    assert status == 201, (status, issued)
    assert common.put(issued["url"], issued["headers"], _Reader(png), len(png)) == 200
    assert target.request("POST", f"/api/v1/uploads/{issued['upload_id']}/confirm")[0] == 200
    # A multipart upload to sign parts of.
    status, multipart = target.request("POST", "/api/v1/uploads", issue_body("bench-parts", 1 << 30))
    assert status == 201 and multipart["method"] == "MULTIPART", (status, multipart)
    # The repeat row's uploads are each confirmed once first, so that every request of
    # that row is a repeat (first confirms are measured on their own below).
    confirm_ids = prepare_uploaded(target, 4000)
    done = first_confirms(target, confirm_ids, 16)
    assert done[3] == 0, f"first confirms failed: {done}"
    ids_file = tempfile.mkstemp(suffix=".txt")[1]
    with open(ids_file, "w") as f:
        f.write("\n".join(confirm_ids) + "\n")

    post = 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
    loads = [
        ("GET /health", "/health", None),
        ("POST /api/v1/uploads", "/api/v1/uploads",
         lua(post + "wrk.body = '" + json.dumps(issue_body("bench-issue", 123456)) + "'\n")),
        ("POST .../parts (sign one part)", f"/api/v1/uploads/{multipart['upload_id']}/parts",
         lua(post + "wrk.body = '{\"part_numbers\":[7]}'\n")),
        ("POST .../confirm (repeat: already completed)", "/",
         lua('local ids = {}\nfor line in io.lines("' + ids_file + '") do ids[#ids + 1] = line end\n'
             'math.randomseed(os.time())\n'
             'request = function()\n'
             '  return wrk.format("POST", "/api/v1/uploads/" .. ids[math.random(#ids)] .. "/confirm")\n'
             'end\n')),
        ("GET /api/url/{id}", "/api/url/bench-lookup", None),
        ("GET /api/v1/images/{id}/latest", "/api/v1/images/bench-lookup/latest", None),
    ]
    rows = []
    for name, path, script in loads:
        common.wrk(target.base + path, WARM_UP, connections, script)  # warm-up
        (rps, p50, p99, errors), rss, cpu = target.measure(
            lambda: common.wrk(target.base + path, seconds, connections, script))
        rows.append((name, connections, rps, p50, p99, errors, rss, cpu))
    for path in [ids_file] + [script for _, _, script in loads if script]:
        os.unlink(path)
    # The wrk row above only repeats confirms of completed uploads; here every request is
    # a first confirm, each upload confirmed once.
    row, check = first_confirm_row(target, seconds, connections, rate)
    rows.append(row)
    return rows, check


def legacy_rows(target, seconds):
    big = legacy_upload.form("big.png", common.png_bytes(9 * common.MIB))
    one = legacy_upload.form("one.png", common.png_bytes(common.MIB))
    rows = []
    (results, elapsed), rss, cpu = target.measure(
        lambda: legacy_upload.concurrent_once(target.port, 8, big))
    lat = [e for _, e in results]
    rows.append(("legacy upload 9 MiB x8 at once", 8, 8 / elapsed, legacy_upload.pct(lat, 50),
                 legacy_upload.pct(lat, 99), sum(1 for s, _ in results if s != 200), rss, cpu))
    (lat, errors, elapsed), rss, cpu = target.measure(
        lambda: legacy_upload.sustained(target.port, 16, one, seconds))
    rows.append(("legacy upload 1 MiB", 16, len(lat) / elapsed, legacy_upload.pct(lat, 50),
                 legacy_upload.pct(lat, 99), errors, rss, cpu))
    return rows


def table(rows, title):
    lines = [title, "",
             "| load | connections | requests/s | p50 ms | p99 ms | errors | peak RSS MiB | CPU cores |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    fmt = lambda v, spec: "–" if v is None else format(v, spec)
    for name, conns, rps, p50, p99, errors, rss, cpu in rows:
        lines.append(f"| {name} | {conns} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {errors} | "
                     f"{fmt(rss, '.1f')} | {fmt(cpu, '.2f')} |")
    return "\n".join(lines) + "\n"


def chart(rows, title):
    """A horizontal bar chart of requests per second, as plain SVG."""
    width, bar_h, gap, left = 760, 22, 10, 250
    top = 40
    height = top + len(rows) * (bar_h + gap) + 20
    peak = max(r[2] for r in rows) or 1
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="12">',
             f'<text x="10" y="22" font-size="14" font-weight="bold">{title}</text>']
    for i, (name, _, rps, *_rest) in enumerate(rows):
        y = top + i * (bar_h + gap)
        w = max(1, (width - left - 90) * rps / peak)
        parts.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">{name}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="#2f6fde"/>')
        parts.append(f'<text x="{left + w + 6:.1f}" y="{y + 15}">{rps:,.0f}/s</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


# (what, numerator row, denominator row, at least)
TARGETS = [
    ("issue vs Companion /s3/params", "POST /api/v1/uploads", "Companion GET /s3/params", 15),
    ("issue vs own /health", "POST /api/v1/uploads", "GET /health", 0.40),
    ("part signing vs Companion sign-part", "POST .../parts (sign one part)",
     "Companion GET /s3/multipart/{id}/{n} (sign part)", 25),
    ("/api/url vs own /health", "GET /api/url/{id}", "GET /health", 0.60),
    ("/latest vs own /health", "GET /api/v1/images/{id}/latest", "GET /health", 0.60),
    ("/api/url vs Flask /api/url", "GET /api/url/{id}", "Flask GET /api/url/{id}", 10),
    ("first confirm vs issue (same run)", FIRST_CONFIRM, "POST /api/v1/uploads", 0.25),
]


def ratios(rows):
    """The project's goals as ratios of this run's figures: one line each."""
    by_name = {r[0]: r for r in rows}
    lines = ["| goal | ratio | target | met |", "|---|---:|---:|---|"]
    for what, num, den, target in TARGETS:
        if num not in by_name or den not in by_name:
            continue
        value = by_name[num][2] / max(by_name[den][2], 1e-9)
        lines.append(f"| {what} | {value:.2f} | >= {target} | {'yes' if value >= target else 'no'} |")
    issue = by_name.get("POST /api/v1/uploads")
    if issue:
        lines.append(f"| issue p99 at {issue[1]} connections | {issue[4]:.1f} ms | < 25 ms | "
                     f"{'yes' if issue[4] < 25 else 'no'} |")
    first = by_name.get(FIRST_CONFIRM)
    if first:
        lines.append(f"| first confirm p99 | {first[4]:.1f} ms | < 50 ms | "
                     f"{'yes' if first[4] < 50 else 'no'} |")
    big = by_name.get("legacy upload 9 MiB x8 at once")
    if big and big[6] is not None:
        flask = by_name.get("Flask upload 9 MiB x8 at once")
        vs = f" (Flask: {flask[6]:.0f} MiB)" if flask else ""
        lines.append(f"| peak RSS, 8 x 9 MiB legacy uploads{vs} | {big[6]:.1f} MiB | < 64 MiB | "
                     f"{'yes' if big[6] < 64 else 'no'} |")
    errors = sum(r[5] for r in rows if not r[0].startswith(("Companion", "Flask")))
    lines.append(f"| upload-broker errors over every load | {errors} | 0 | "
                 f"{'yes' if errors == 0 else 'no'} |")
    return "\n".join(lines) + "\n"


def garage_env():
    """The service's settings for a loopback Garage (started, and built when missing, by
    tests/support/garage.sh) and a bucket of the benchmark's own there, as the test suite
    sets a service up on it."""
    garage = common.support("garage.sh")
    endpoint, region = garage["TEST_S3_ENDPOINT"], garage["TEST_S3_REGION"]
    access, secret = garage["TEST_S3_ACCESS_KEY_ID"], garage["TEST_S3_SECRET_ACCESS_KEY"]
    bucket = "upload-broker-bench"
    status, body = common.aws_request("PUT", f"{endpoint}/{bucket}", region, "s3", access, secret)
    # 409 is a bucket this key made in an earlier run.
    assert status in (200, 409), (status, body[:300])
    return {"AWS_BUCKET_NAME": bucket, "AWS_ENDPOINT_URL": endpoint, "AWS_REGION": region,
            "AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret,
            "S3_FORCE_PATH_STYLE": "true",
            # Garage ignores If-None-Match, and has no anonymous reads.
            "S3_CONDITIONAL_WRITES": "false", "PRIVATE_BUCKET": "true"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--base-url", help="load a running service instead of starting one")
    parser.add_argument("--admin-key", help="with --base-url: an ADMIN_KEYS key, for the "
                        "first-confirm row's check against the admin stats")
    parser.add_argument("--no-peers", action="store_true", help="skip Companion and Flask")
    parser.add_argument("--store", choices=("embedded", "garage"), default="embedded",
                        help="the store the service we start uses (default: its embedded one)")
    parser.add_argument("--first-rate", type=int, default=12000,
                        help="first confirms a second to prepare uploads for (default 12000)")
    args = parser.parse_args()

    if args.base_url:
        target, service = Target(args.base_url, admin_key=args.admin_key), None
    else:
        common.build()
        store_env = garage_env() if args.store == "garage" else {}
        admin_key = secrets.token_hex(16)
        # Every confirm measured does the work: the embedded store does not confirm the
        # prepared PUTs itself, and no sweep runs meanwhile. No variants are made, so no
        # background work of earlier rows runs under later ones.
        service = common.Service(AUTO_CONFIRM="false", SWEEP_INTERVAL="0", IMAGE_VARIANTS="",
                                 ADMIN_KEYS=admin_key, **store_env)
        target = Target(service.base, service.proc.pid, admin_key)
    try:
        rows, (requests, risen, prepared) = http_rows(target, args.seconds, args.connections,
                                                      args.first_rate)
        rows += legacy_rows(target, args.seconds)
        if service and args.store == "embedded" and not args.no_peers:
            store = service.store_settings()
            companion = peers.start_companion(store)
            try:
                rows += peers.companion_rows(companion, args.seconds, args.connections)
            finally:
                companion.stop()
            flask = peers.start_flask(store)
            try:
                rows += peers.flask_rows(flask, args.seconds, args.connections)
            finally:
                flask.stop()
    finally:
        if service:
            service.stop()

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    store_name = {"embedded": "embedded store", "garage": "Garage"}[args.store]
    where = args.base_url or f"release build, SQLite + {store_name}, loopback"
    title = f"upload-broker, {where}, wrk {args.connections} connections, {args.seconds} s ({stamp})"
    check = (f"First confirms: wrk answered {requests:,} requests; completed uploads rose by "
             + ("? (no admin key)" if risen is None else f"{risen:,}")
             + f" (of {prepared:,} uploads prepared for the run).\n")
    text = table(rows, title) + "\n" + check + "\n" + ratios(rows)
    print(text)
    name = "latest" if args.store == "embedded" else f"latest-{args.store}"
    table_path = common.write_result(f"{name}.md", text)
    chart_path = common.write_result(f"{name}.svg", chart(rows, "requests per second (" + stamp + ")"))
    print(f"written: {table_path} and {chart_path}")


if __name__ == "__main__":
    main()
