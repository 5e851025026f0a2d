#!/usr/bin/env python3
"""Image variant benchmark: upload-broker's variant maker against vipsthumbnail, ImageMagick,
sharp and Pillow, each run as a whole process on the same input files in the same run.

Ours is examples/make_variants.rs, the service's pipeline (src/variants/pipeline.rs) as
one process: jpeg-decoder with DCT scaling to the smallest size of at least twice the
largest preset, fast_image_resize with Lanczos3, jpeg-encoder at quality 80 and the webp
crate (libwebp) at quality 80, no metadata. The peers, at the same settings (quality 80,
metadata stripped, fit inside the box, never enlarged, EXIF orientation applied):
  vipsthumbnail  (Debian's libvips-tools) `vipsthumbnail IN -s NxN> -o OUT[Q=80,strip]`:
                 libvips' shrink-on-load, then its default kernel, Lanczos3. One file per
                 process, so a job of four files is four runs.
  convert        (Debian's imagemagick, ImageMagick 6) `convert IN -auto-orient
                 -thumbnail NxN> -strip -quality 80 OUT`: decodes the JPEG whole, then its
                 default filter for shrinking, Lanczos. Also shown with the
                 `-define jpeg:size=WxH` hint (at least twice N on the longest side) that
                 lets libjpeg decode at the same DCT scale as ours.
  sharp          (npm, bench/peers/sharp/make.js): one node process, each file a pipeline
                 on a clone of the input, run at once on sharp's thread pool; its default
                 kernel, Lanczos3, with shrink-on-load; sharp's own libvips and mozjpeg (at
                 its defaults: 4:2:0, optimised Huffman tables, no trellis).
  Pillow         (bench/peers/pillow/thumbnail.py): Image.draft (libjpeg-turbo's DCT
                 scaling to at least twice the largest preset), ImageOps.exif_transpose,
                 Image.thumbnail with Resampling.LANCZOS (Lanczos3) and its reducing_gap 2.0.
All JPEGs are 4:2:0 (each tool's default below quality 90); all WebPs are lossy, method 4.

The inputs are made once and cached (bench/peers/pillow/make_inputs.py, numpy and Pillow):
a synthetic landscape (sky gradient and clouds, textured ridges, a furrowed field, houses
with windows, trees, a fence of thin posts, sensor noise), as a 6000x4000 JPEG at quality
90 and a 4000x3000 PNG.

Each row is the median wall time of --runs runs of the whole process (start to exit)
after one warm-up run, the tools taken in turn within each repetition, the order rotating
from one repetition to the next, since the machine is shared and noisy; ratios are between
medians of the same run. Peak RSS is ru_maxrss from wait4: the largest resident set of
any process in the tool's tree (each tool is one process). CPU is user + system time.
Prints the tables and writes them to bench/results/variants.md.

    python3 bench/variants.py [--runs 5] [--outputs DIR]

Builds examples/make_variants in $CARGO_TARGET_DIR (default target/) at nice 19, unless
BENCH_SKIP_BUILD is set. Installs what is missing, each step skipping itself when done:
the Pillow venv (bench/peers/pillow/.venv), sharp (npm ci), and ImageMagick and
libvips-tools (apt-get, as root). Needs Python 3, Node.js with npm, and cargo.
"""

import argparse
import datetime
import hashlib
import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import common

ROOT = common.ROOT
PEERS = os.path.join(ROOT, "bench", "peers")
RESULTS = os.path.join(ROOT, "bench", "results")
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
OURS = os.path.join(TARGET, "release", "examples", "make_variants")
PILLOW = os.path.join(PEERS, "pillow")
VENV_PYTHON = os.path.join(PILLOW, ".venv", "bin", "python")
SHARP = os.path.join(PEERS, "sharp")
CACHE = os.path.join(tempfile.gettempdir(), "upload-broker-bench-variants")
FULL = ("thumb:256,display:1280", "webp,jpeg")
FILES = ["thumb.jpeg", "thumb.webp", "display.jpeg", "display.webp"]
MIB = 1024 * 1024


# Building and installing: each step does nothing when already done.

def build():
    if not os.environ.get("BENCH_SKIP_BUILD"):
        subprocess.run(["nice", "-n", "19", "cargo", "build", "--release", "--quiet", "--example",
                        "make_variants"], cwd=ROOT, check=True)
    if not os.path.exists(OURS):
        sys.exit(f"{OURS} is missing: build it, or unset BENCH_SKIP_BUILD")


def install_pillow():
    """The venv with the pinned Pillow and numpy; the requirements it holds are stamped in it."""
    with open(os.path.join(PILLOW, "requirements.txt")) as f:
        wanted = f.read()
    stamp = os.path.join(PILLOW, ".venv", "installed-requirements.txt")
    if not os.path.exists(VENV_PYTHON):
        subprocess.run([sys.executable, "-m", "venv", os.path.join(PILLOW, ".venv")], check=True)
    if not os.path.exists(stamp) or open(stamp).read() != wanted:
        subprocess.run([VENV_PYTHON, "-m", "pip", "install", "-q", "-r", "requirements.txt"],
                       cwd=PILLOW, check=True)
        with open(stamp, "w") as f:
            f.write(wanted)


def install_sharp():
    if not os.path.exists(os.path.join(SHARP, "node_modules", "sharp", "package.json")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=SHARP, check=True)


def apt_install(package):
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        sys.exit(f"{package} is needed: apt-get install {package}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", package]
    if subprocess.run(cmd, env=env).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True)
        subprocess.run(cmd, env=env, check=True)


def imagemagick():
    """ImageMagick's convert: Debian's own binary first (a `convert` earlier on PATH may be
    something else, such as a wrapper or GraphicsMagick), installed when missing."""
    for _ in range(2):
        for name in ("convert-im6.q16", "magick", "convert"):
            path = shutil.which(name)
            if path and version_line([path, "-version"]).startswith("Version: ImageMagick"):
                return [path]
        apt_install("imagemagick")
    sys.exit("ImageMagick's convert was not found after installing it")


def vipsthumbnail():
    if shutil.which("vipsthumbnail") is None:
        apt_install("libvips-tools")
    return shutil.which("vipsthumbnail")


def version_line(cmd, cwd=None):
    try:
        out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60)
    except OSError:
        return ""
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else ""


# The inputs.

def inputs():
    """The cached inputs, made when missing; their names carry a digest of the generator."""
    script = os.path.join(PILLOW, "make_inputs.py")
    with open(script, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:10]
    os.makedirs(CACHE, exist_ok=True)
    made = {}
    for key, name, w, h, seed in (("jpeg", "scene-6000x4000.jpg", 6000, 4000, 7),
                                  ("png", "scene-4000x3000.png", 4000, 3000, 11)):
        path = os.path.join(CACHE, f"{digest}-{name}")
        if not os.path.exists(path):
            print(f"making {path}", flush=True)
            partial = path + ".partial" + os.path.splitext(path)[1]
            subprocess.run([VENV_PYTHON, script, partial, str(w), str(h), str(seed)], check=True)
            os.replace(partial, path)
        made[key] = path
    return made


# The tools: each makes a list of commands (one process each) for an input, an output
# directory, presets ("name:px,...") and formats ("webp,jpeg").

def each_file(presets, formats):
    for preset in presets.split(","):
        name, px = preset.split(":")
        for fmt in formats.split(","):
            yield name, int(px), fmt


def tools(convert, vips):
    def ours(src, out, presets, formats):
        return [[OURS, src, out, presets, formats]]

    def vipsthumb(src, out, presets, formats):
        return [[vips, src, "-s", f"{px}x{px}>", "-o", os.path.join(out, f"{name}.{fmt}") + "[Q=80,strip]"]
                for name, px, fmt in each_file(presets, formats)]

    def magick(src, out, presets, formats, hint=False):
        def at_least(px):
            # libjpeg's scale is chosen so that both sides stay at least this large.
            w, h = dimensions(src)
            longest = max(w, h, 1)
            return ["-define", f"jpeg:size={-(-2 * px * w // longest)}x{-(-2 * px * h // longest)}"]

        return [convert + (at_least(px) if hint else [])
                + [src, "-auto-orient", "-thumbnail", f"{px}x{px}>", "-strip", "-quality", "80",
                   os.path.join(out, f"{name}.{fmt}")]
                for name, px, fmt in each_file(presets, formats)]

    def magick_hint(src, out, presets, formats):
        return magick(src, out, presets, formats, hint=True)

    def sharp(src, out, presets, formats):
        return [["node", os.path.join(SHARP, "make.js"), src, out, presets, formats]]

    def pillow(src, out, presets, formats):
        return [[VENV_PYTHON, os.path.join(PILLOW, "thumbnail.py"), src, out, presets, formats]]

    return {"ours": ours, "vipsthumbnail": vipsthumb, "convert": magick,
            "convert + jpeg:size": magick_hint, "sharp": sharp, "Pillow": pillow}


# Running and timing.

def run_once(commands):
    """Runs the commands one after another; returns (wall seconds, CPU seconds, peak RSS in
    bytes), summed over the commands (the RSS: the largest)."""
    wall = cpu = 0.0
    rss = 0
    for cmd in commands:
        with tempfile.TemporaryFile() as err:
            start = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
            _, status, usage = os.wait4(proc.pid, 0)
            wall += time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode != 0:
                err.seek(0)
                sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err.read().decode(errors='replace')}")
        cpu += usage.ru_utime + usage.ru_stime
        rss = max(rss, usage.ru_maxrss * 1024)
    return wall, cpu, rss


def measure(row, makers, work, runs):
    """One row: a warm-up run of each tool, then `runs` repetitions taking the tools in
    turn (the order rotating). Returns {tool: {wall, cpu, rss lists, out}}."""
    src, presets, formats, names = row["input"], row["presets"], row["formats"], row["tools"]
    results = {}
    for name in names:
        out = os.path.join(work, row["id"], re.sub(r"[^a-z0-9]+", "-", name.lower()))
        os.makedirs(out, exist_ok=True)
        results[name] = {"out": out, "cmds": makers[name](src, out, presets, formats),
                         "wall": [], "cpu": [], "rss": []}
        run_once(results[name]["cmds"])
        for fname, _, fmt in each_file(presets, formats):
            path = os.path.join(out, f"{fname}.{fmt}")
            if not os.path.getsize(path):
                sys.exit(f"{name} made no {path}")
    for rep in range(runs):
        order = names[rep % len(names):] + names[:rep % len(names)]
        for name in order:
            wall, cpu, rss = run_once(results[name]["cmds"])
            results[name]["wall"].append(wall)
            results[name]["cpu"].append(cpu)
            results[name]["rss"].append(rss)
    return results


# Reading the outputs.

def dimensions(path):
    """(width, height) of a JPEG or WebP file, read from its header."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            marker, length = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])[0]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                h, w = struct.unpack(">HH", data[i + 5:i + 9])
                return w, h
            i += 2 + length
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        chunk = data[12:16]
        if chunk == b"VP8 ":
            w, h = struct.unpack("<HH", data[26:30])
            return w & 0x3FFF, h & 0x3FFF
        if chunk == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if chunk == b"VP8X":
            return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return 0, 0


# The report.

def versions(convert, vips):
    lock = open(os.path.join(ROOT, "Cargo.lock")).read()

    def crate(name):
        m = re.search(rf'name = "{re.escape(name)}"\nversion = "([^"]+)"', lock)
        return m.group(1) if m else "?"

    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                         text=True).stdout.strip()
    sharp = version_line(["node", "-e", "const v = require('sharp').versions; console.log("
                          "`sharp ${v.sharp} (libvips ${v.vips}, mozjpeg ${v.mozjpeg}, libwebp ${v.webp})`)"],
                         cwd=SHARP)
    pillow = version_line([VENV_PYTHON, "-c", "import PIL, numpy; from PIL import features; print("
                           "f'Pillow {PIL.__version__} (libjpeg-turbo {features.version(\"libjpeg_turbo\")}, "
                           "libwebp {features.version(\"webp\")}), numpy {numpy.__version__}, "
                           "Python ' + __import__('platform').python_version())"])
    return [
        f"ours: make_variants at {rev}: jpeg-decoder {crate('jpeg-decoder')}, fast_image_resize "
        f"{crate('fast_image_resize')}, jpeg-encoder {crate('jpeg-encoder')}, webp {crate('webp')} "
        f"(libwebp-sys {crate('libwebp-sys')})",
        f"vipsthumbnail: {version_line([vips, '--vips-version'])}",
        f"convert: {version_line(convert + ['-version'])}",
        f"sharp: {sharp}, Node.js {version_line(['node', '--version'])}",
        f"Pillow: {pillow}",
    ]


def ms(seconds):
    return f"{seconds * 1000:,.0f} ms"


def row_table(row, results):
    ours = statistics.median(results["ours"]["wall"])
    lines = [f"### {row['title']}", "",
             "| tool | median wall | min – max | median CPU | peak RSS | time / ours |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name in row["tools"]:
        r = results[name]
        wall = statistics.median(r["wall"])
        label = name if len(r["cmds"]) == 1 else f"{name} (sum of {len(r['cmds'])} runs)"
        lines.append(f"| {label} | {ms(wall)} | {ms(min(r['wall']))} – {ms(max(r['wall']))} | "
                     f"{ms(statistics.median(r['cpu']))} | {max(r['rss']) / MIB:.0f} MiB | "
                     f"{wall / ours:.2f} |")
    return lines


def ratio(results, a, b):
    return statistics.median(results[a]["wall"]) / statistics.median(results[b]["wall"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each tool in each row")
    parser.add_argument("--outputs", help="keep every tool's files here (default: a temporary "
                        "directory, removed at the end)")
    args = parser.parse_args()

    build()
    install_pillow()
    install_sharp()
    convert, vips = imagemagick(), vipsthumbnail()
    files = inputs()
    makers = tools(convert, vips)
    work = args.outputs or tempfile.mkdtemp(prefix="upload-broker-bench-variants-")
    os.makedirs(work, exist_ok=True)

    single = ["ours", "vipsthumbnail", "convert", "sharp", "Pillow"]
    hinted = single[:3] + ["convert + jpeg:size"] + single[3:]
    job = ["ours", "vipsthumbnail", "sharp", "Pillow"]
    rows = [
        {"id": "jpeg-thumb", "title": "24 MP JPEG → thumb 256 JPEG", "input": files["jpeg"],
         "presets": "thumb:256", "formats": "jpeg", "tools": hinted},
        {"id": "jpeg-display", "title": "24 MP JPEG → display 1280 WebP", "input": files["jpeg"],
         "presets": "display:1280", "formats": "webp", "tools": hinted},
        {"id": "jpeg-job", "title": "24 MP JPEG → full job: thumb 256 and display 1280, WebP and JPEG",
         "input": files["jpeg"], "presets": FULL[0], "formats": FULL[1], "tools": job},
        {"id": "png-thumb", "title": "4000x3000 PNG → thumb 256 JPEG", "input": files["png"],
         "presets": "thumb:256", "formats": "jpeg", "tools": single},
        {"id": "png-job", "title": "4000x3000 PNG → full job: thumb 256 and display 1280, WebP and JPEG",
         "input": files["png"], "presets": FULL[0], "formats": FULL[1], "tools": job},
    ]
    started, load_before = time.time(), common.load()
    measured = {}
    for row in rows:
        print(f"{row['title']} ...", flush=True)
        measured[row["id"]] = measure(row, makers, work, args.runs)
    # ImageMagick's four files of each input, untimed, for the table of sizes.
    for key in ("jpeg", "png"):
        out = os.path.join(work, f"{key}-sizes", "convert")
        os.makedirs(out, exist_ok=True)
        run_once(makers["convert"](files[key], out, *FULL))
    elapsed, load_after = time.time() - started, common.load()

    thumb, job_row = measured["jpeg-thumb"], measured["jpeg-job"]
    ours_rss = max(job_row["ours"]["rss"]) / MIB
    targets = [
        ("thumb from the 24 MP JPEG: ours / vipsthumbnail", ratio(thumb, "ours", "vipsthumbnail"), "≤ 1.00",
         lambda v: v <= 1.0, "{:.2f}"),
        ("thumb from the 24 MP JPEG: convert / ours", ratio(thumb, "convert", "ours"), "≥ 5.0",
         lambda v: v >= 5.0, "{:.1f}"),
        ("peak RSS of one full job on the 24 MP JPEG (ours)", ours_rss, "< 150 MiB",
         lambda v: v < 150, "{:.0f} MiB"),
        ("full job on the 24 MP JPEG: ours / sum of the four vipsthumbnail runs",
         ratio(job_row, "ours", "vipsthumbnail"), "≤ 1.00", lambda v: v <= 1.0, "{:.2f}"),
    ]
    lines = [
        f"# Image variants ({datetime.datetime.now().strftime('%Y-%m-%d %H:%M')})",
        "",
        f"Machine: {common.machine()}; load average {load_before} before measuring, {load_after} "
        f"after (the machine is shared). Command: `python3 bench/variants.py --runs {args.runs}` "
        f"({elapsed:.0f} s of measuring).",
        "",
        f"Inputs (synthetic landscapes, bench/peers/pillow/make_inputs.py): a 6000x4000 JPEG at quality 90 "
        f"({os.path.getsize(files['jpeg']) / MIB:.1f} MiB) and a 4000x3000 RGB PNG "
        f"({os.path.getsize(files['png']) / MIB:.1f} MiB). Each figure: the median of {args.runs} runs "
        "of the whole process after a warm-up run, the tools taken in turn in each repetition "
        "(the order rotating); peak RSS is the largest ru_maxrss (wait4) of the runs; CPU is user "
        "+ system time. Settings: quality 80, metadata stripped, fit inside the box; each tool's "
        "own Lanczos3 (ImageMagick: its default Lanczos); see the docstring of bench/variants.py.",
        "",
        "## Targets",
        "",
        "| target | measured | aim | met |",
        "| --- | --- | --- | --- |",
    ]
    for label, value, aim, ok, fmt in targets:
        lines.append(f"| {label} | {fmt.format(value)} | {aim} | {'yes' if ok(value) else 'no'} |")
    lines += ["", "## Times", ""]
    for row in rows:
        lines += row_table(row, measured[row["id"]]) + [""]
        if row["id"] == "jpeg-thumb":
            lines += [f"Ours / vipsthumbnail {ratio(thumb, 'ours', 'vipsthumbnail'):.2f}; "
                      f"convert / ours {ratio(thumb, 'convert', 'ours'):.1f}; "
                      f"convert with the jpeg:size hint / ours {ratio(thumb, 'convert + jpeg:size', 'ours'):.1f}.",
                      ""]
        if row["id"] == "png-thumb":
            png = measured["png-thumb"]
            lines += [f"Ours / vipsthumbnail {ratio(png, 'ours', 'vipsthumbnail'):.2f}; "
                      f"convert / ours {ratio(png, 'convert', 'ours'):.1f}.", ""]

    lines += ["## Output sizes", "",
              "Each tool's files at the settings above (KiB, and width x height).", "",
              "| input | file | ours | vipsthumbnail | convert | sharp | Pillow |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for key, job_id in (("jpeg", "jpeg-job"), ("png", "png-job")):
        dirs = {name: measured[job_id][name]["out"] for name in job}
        dirs["convert"] = os.path.join(work, f"{key}-sizes", "convert")
        for fname in FILES:
            cells = []
            for name in ["ours", "vipsthumbnail", "convert", "sharp", "Pillow"]:
                path = os.path.join(dirs[name], fname)
                w, h = dimensions(path)
                cells.append(f"{os.path.getsize(path) / 1024:.1f} ({w}x{h})")
            label = "24 MP JPEG" if key == "jpeg" else "4000x3000 PNG"
            lines.append(f"| {label} | {fname} | " + " | ".join(cells) + " |")
    lines += ["", "## Tools", ""] + [f"- {v}" for v in versions(convert, vips)]
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "variants.md"), "w") as f:
        f.write(text)
    if args.outputs:
        print(f"outputs kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
