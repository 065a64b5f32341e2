"""A scale model of a crawl of many WARC files (issue 18): `refinery run` over thousands of small
inputs, locally and on S3 (moto's S3-compatible server), measuring what grows with the number of
inputs and parts: the driver's memory, the time, and the storage requests, per input and per part.

    python benchmarks/scale_model.py --cases 200x1,2000x1,2x1171 --storage local,s3 --strace 200x1 --work out/scale-model
    python benchmarks/scale_model.py --cases 200x1,2000x1 --storage local --trace-driver --work out/scale-model

Inputs: crawl-sample (`../shared/data/crawl-sample/real-pages.warc.gz`, 1,171 records, one gzip
member each) dealt into files at gzip-member boundaries: case NxR is N files of R records each,
record k of file i being member (i*R + k) mod 1,171. A member used a second time gets a new
WARC-Record-ID (the document id), so every document is distinct by id; its text is a copy, which
dedup removes as it would in a crawl. 2x1171 is crawl-sample twice: a few inputs of many parts
each, which separates what is paid per part from what is paid per input.

Each case runs `refinery run pipelines/cc.yaml --input ... --output ... --workers W` (the CLI, a
fresh process, with its own local Ray) and measures:
- the driver's peak RSS (the kernel's VmHWM at exit) and its RSS over time (sampled every 0.5 s);
- wall time, and the driver's own steps (listing, the resume check, the filter phase, reading the
  parts' counts, the final pass, publishing, clean-up), timed by wrapping those functions in the
  driver process only (observers: nothing else changes);
- storage requests. S3: every request moto answers, through a counting WSGI wrapper, by operation
  (GET, HEAD, PUT, COPY, DELETE, LIST, ...) and by folder of the output (`_parts/`, `_filtered/`,
  `_inputs/`, ...) or the inputs. Local (with --strace): the file system calls on the input and
  output folders (open, stat, rename, unlink, mkdir, directory reads) of the driver and every Ray
  process, by strace -f; a separate run, since tracing slows it down. A request is attributed
  to the driver step running when it was made; during the filter phase and the final pass the
  requests are the Ray tasks'.
With --trace-driver, tracemalloc in the driver gives its Python heap by file after the filter phase
and at the end, which tells Python objects from native (Ray core) memory.
Prints, per case, the requests by folder (per input, per part) and by driver step (with its time);
per storage, wall time fitted as a + b x inputs + c x records, and the driver's peak RSS per input.
Results also go to WORK/results.json (`--report WORK/results.json` prints them again).
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
import uuid
import zlib
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CRAWL_SAMPLE = REPO.parent / "shared" / "data" / "crawl-sample" / "real-pages.warc.gz"
CONFIG = REPO / "pipelines" / "cc.yaml"
BUCKET = "scale-model"
# the driver steps timed (functions of refinery.pipeline's namespace) and the storage calls of
# the driver between them (refinery.io.storage.Output methods); a request is attributed to the
# outermost one running when it was made
DRIVER_STEPS = ["list_inputs", "open_run", "discard_unfinished", "start_ray", "fold_inputs", "inputs_to_do", "filter_phase",
                "filter_counts", "compact", "dedup_phase", "publish_shards"]
OUTPUT_CALLS = ["read_json", "read_jsons", "iter_jsons", "read_json_if_exists", "write_json", "write_parquet", "list_files",
                "delete", "delete_files", "move", "move_files", "exists", "is_empty", "clear"]


# ---------------------------------------------------------------- inputs


def gzip_members(path: Path) -> list[bytes]:
    """The gzip members of a .warc.gz (one record each), as their compressed bytes."""
    data = path.read_bytes()
    members, pos = [], 0
    while pos < len(data):
        d = zlib.decompressobj(31)
        d.decompress(data[pos:])
        end = len(data) - len(d.unused_data)
        members.append(data[pos:end])
        pos = end
    return members


def renamed(member: bytes, tag: str) -> bytes:
    """The member's record with a new WARC-Record-ID (uuid5 of the old one and `tag`), recompressed."""
    record = gzip.decompress(member)
    head, sep, rest = record.partition(b"\r\n\r\n")
    old = re.search(rb"WARC-Record-ID: <urn:uuid:([0-9a-f-]+)>", head).group(1).decode()
    new = uuid.uuid5(uuid.UUID(old), tag)
    head = head.replace(old.encode(), str(new).encode())
    return gzip.compress(head + sep + rest, compresslevel=6, mtime=0)


def deal(members: list[bytes], n_inputs: int, per_input: int, folder: Path) -> Path:
    """N files of R records, at gzip-member boundaries (see the module's docstring)."""
    done = folder / ".complete"
    if done.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    m = len(members)
    for i in range(n_inputs):
        with open(folder / f"in-{i:05d}.warc.gz", "wb") as f:
            for k in range(per_input):
                j = i * per_input + k
                f.write(members[j % m] if j < m else renamed(members[j % m], f"copy-{j // m}"))
    done.touch()
    return folder


# ---------------------------------------------------------------- S3 with a request log


class CountingS3:
    """moto's S3 server on 127.0.0.1 (a free port), logging (time, method, path, query, copy?) per request."""

    def __init__(self):
        import logging

        from moto.server import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        app = DomainDispatcherApplication(create_backend_app)
        self.log: list[tuple] = []

        def counting(environ, start_response):
            self.log.append((time.time(), environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""),
                             environ.get("QUERY_STRING", ""), "HTTP_X_AMZ_COPY_SOURCE" in environ))
            return app(environ, start_response)

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
        self.server = make_server("127.0.0.1", 0, counting, threaded=True)
        self.endpoint = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent"}

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join()


def s3_op(method: str, key: str, query: str, copy: bool) -> str:
    q = query.split("&")
    if method == "GET" and not key:
        return "LIST"
    if method == "PUT":
        if copy:
            return "COPY"
        if any(x.startswith("partNumber=") for x in q):
            return "PUT_PART"
        return ("PUT_DIR" if key.endswith("/") else "PUT") if key else "CREATE_BUCKET"  # PUT_DIR: pyarrow's directory markers
    if method == "POST":
        if "delete" in q or "delete=" in q:
            return "DELETE_MANY"  # up to 1,000 keys a request
        return ("MPU_START" if "uploads" in q or "uploads=" in q else "MPU_END") if key else "POST"
    return method if key else f"{method}_BUCKET"


# ---------------------------------------------------------------- local file operations by strace

_STRACE = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(\w+)\((.*)$")
_PATH = re.compile(r'"((?:[^"\\]|\\.)*)"')


def local_op(syscall: str, args: str) -> str:
    if syscall in ("openat", "open", "creat", "openat2"):
        if "O_DIRECTORY" in args:
            return "open_dir"
        return "open_write" if re.search(r"O_WRONLY|O_RDWR|O_CREAT", args) else "open_read"
    if syscall in ("stat", "lstat", "newfstatat", "statx", "access", "faccessat", "faccessat2", "readlink", "readlinkat"):
        return "stat"
    if syscall.startswith("rename"):
        return "rename"
    if syscall.startswith("unlink"):
        return "rmdir" if "AT_REMOVEDIR" in args else "unlink"
    if syscall.startswith("mkdir"):
        return "mkdir"
    return syscall


def strace_events(log: Path, roots: dict[str, str]) -> list[tuple[float, str, str, str]]:
    """(time, op, root label, path under the root) of every traced call on a path under a root."""
    out = []
    with open(log, errors="replace") as f:
        for line in f:
            m = _STRACE.match(line)
            if not m:
                continue
            _, t, syscall, args = m.groups()
            p = _PATH.search(args)
            if not p:
                continue
            path = p.group(1)
            for label, root in roots.items():
                if path == root or path.startswith(root + "/"):
                    out.append((float(t), local_op(syscall, args), label, path[len(root) + 1:]))
                    break
    return out


# ---------------------------------------------------------------- the driver, observed


def driver(events_path: str, argv: list[str]) -> int:
    """`refinery ARGV` in this process, with its steps timed and its RSS sampled; writes EVENTS_PATH."""
    from refinery import cli, pipeline
    from refinery.io import storage

    events: list[dict] = []
    depth = [0]

    def observed(fn, name, label_arg: bool):
        def wrapper(*args, **kwargs):
            top = depth[0] == 0
            depth[0] += 1
            t0 = time.time()
            try:
                return fn(*args, **kwargs)
            finally:
                depth[0] -= 1
                if top:
                    label = name
                    if label_arg and len(args) > 1:
                        rel = args[1][0] if isinstance(args[1], list) and args[1] else args[1]
                        label += f"({folder_of(rel) if isinstance(rel, str) else ''})"
                    events.append({"step": label, "t0": t0, "t1": time.time()})
        return wrapper

    for name in DRIVER_STEPS:
        setattr(pipeline, name, observed(getattr(pipeline, name), name, False))
    for name in OUTPUT_CALLS:
        setattr(storage.Output, name, observed(getattr(storage.Output, name), name, True))

    samples: list[tuple[float, int, int, int]] = []
    stop = threading.Event()

    def sample():
        """(time, RSS, its anonymous part, its shared-memory part: object-store pages the driver mapped)"""
        while not stop.is_set():
            with open("/proc/self/status") as f:
                kb = {k: int(v.split()[0]) * 1024 for k, _, v in (line.partition(":") for line in f) if k in ("VmRSS", "RssAnon", "RssShmem")}
            samples.append((time.time(), kb["VmRSS"], kb["RssAnon"], kb["RssShmem"]))
            stop.wait(0.5)

    threading.Thread(target=sample, daemon=True).start()
    trace: dict[str, dict] = {}
    if os.environ.get("SCALE_MODEL_TRACE"):
        import tracemalloc

        tracemalloc.start(1)

        def heap(when: str) -> None:
            stats = tracemalloc.take_snapshot().statistics("filename")
            trace[when] = {"total": sum(s.size for s in stats),
                           "by_file": [[s.traceback[0].filename.split("site-packages/")[-1], s.size / 1024, s.count] for s in stats[:12]]}

        phase = pipeline.filter_phase

        def filter_phase_then_heap(*args, **kwargs):
            try:
                return phase(*args, **kwargs)
            finally:
                heap("after the filter phase")

        pipeline.filter_phase = filter_phase_then_heap
    started = time.time()
    rc = cli.main(argv)
    ended = time.time()
    stop.set()
    if trace:
        heap("at the end of the run")
    with open("/proc/self/status") as f:
        hwm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    Path(events_path).write_text(json.dumps({"rc": rc, "started": started, "ended": ended, "peak_rss": hwm,
                                             "rss": samples, "events": events, "trace": trace}))
    return rc


def folder_of(rel: str) -> str:
    """`_parts/x.json` -> `_parts`; a file at the top -> its name."""
    top = re.sub(r"\.tmp-\d+$", "", rel.strip("/").split("/", 1)[0])  # a local write's temporary name
    return top or "(root)"


# ---------------------------------------------------------------- one case


def run_case(case: str, storage: str, inputs: Path, work: Path, workers: int, s3: CountingS3 | None, strace: bool,
             trace: bool = False) -> dict:
    n_inputs, per_input = map(int, case.split("x"))
    tag = f"{storage}{'-strace' if strace else ''}{'-trace' if trace else ''}-{case}"
    events_file = work / f"events-{tag}.json"
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    if trace:
        env["SCALE_MODEL_TRACE"] = "1"
    if storage == "local":
        out_dir = work / f"out-{tag}"
        shutil.rmtree(out_dir, ignore_errors=True)
        input_arg, output_arg = f"{inputs}/*.warc.gz", str(out_dir)
    else:
        prefix = f"in-{case}"
        client = s3.client()
        listed = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/", MaxKeys=1)
        if not listed.get("KeyCount"):
            for p in sorted(inputs.glob("*.warc.gz")):
                client.upload_file(str(p), BUCKET, f"{prefix}/{p.name}")
        input_arg, output_arg = f"s3://{BUCKET}/{prefix}/*.warc.gz", f"s3://{BUCKET}/out-{tag}"
        env |= s3.env()
    argv = ["run", str(CONFIG), "--input", input_arg, "--output", output_arg, "--workers", str(workers)]
    command = [sys.executable, str(Path(__file__).resolve()), "--driver", str(events_file), "--", *argv]
    trace_log = work / f"strace-{tag}.log"
    if strace:
        command = ["strace", "-f", "-qq", "-ttt", "--seccomp-bpf", "-e", "trace=%file", "-o", str(trace_log), *command]
    first_request = len(s3.log) if s3 else 0
    t0 = time.monotonic()
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{tag}: refinery run failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    observed = json.loads(events_file.read_text())
    requests = []  # (time, op, folder)
    if storage == "s3":
        out_key = output_arg.removeprefix(f"s3://{BUCKET}/")
        for t, method, path, query, copy in s3.log[first_request:]:
            key = unquote(path.lstrip("/").removeprefix(BUCKET).lstrip("/"))
            op = s3_op(method, key, query, copy)
            if op == "LIST":  # a listing names its folder in `prefix=`
                key = unquote(next((x.split("=", 1)[1] for x in query.split("&") if x.startswith("prefix=")), ""))
            requests.append((t, op, place(key, out_key, "in-")))
        stats = json.loads(s3.client().get_object(Bucket=BUCKET, Key=f"{out_key}/stats.json")["Body"].read())
        client = s3.client()
        keys = [o["Key"] for p in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{out_key}/_")
                for o in p.get("Contents", [])]
        parts = count_parts([json.loads(client.get_object(Bucket=BUCKET, Key=k)["Body"].read()) for k in keys if "/_manifests/" in k],
                            sum("/_parts/" in k for k in keys))
    else:
        if strace:
            roots = {"out": str(out_dir), "in": str(inputs)}
            for t, op, root, rel in strace_events(trace_log, roots):
                requests.append((t, op, "input" if root == "in" else folder_of(rel)))
            trace_log.unlink()
        stats = json.loads((out_dir / "stats.json").read_text())
        parts = count_parts([json.loads(f.read_text()) for f in (out_dir / "_manifests").glob("*.json")],
                            len(list((out_dir / "_parts").rglob("*.json"))))
    steps = observed["events"]

    def step_at(t: float) -> str:
        for e in steps:
            if e["t0"] <= t <= e["t1"]:
                return e["step"]
        return "other"

    by = Counter((step_at(t), folder, op) for t, op, folder in requests)
    filter_end = next((e["t1"] for e in steps if e["step"] == "filter_phase"), observed["ended"])
    rss_filter = max((r for t, r, *_ in observed["rss"] if t <= filter_end), default=0)
    rss_after = max((r for t, r, *_ in observed["rss"] if t > filter_end), default=0)
    anon = max((a for _, _, a, _ in observed["rss"]), default=0)
    shmem = max((m for *_, m in observed["rss"]), default=0)
    step_seconds = Counter()
    for e in steps:
        step_seconds[e["step"]] += e["t1"] - e["t0"]
    return {
        "case": case, "storage": storage, "strace": strace, "inputs": n_inputs, "records": n_inputs * per_input,
        "parts": parts, "kept": stats["kept"]["docs"], "records_read": stats["records_read"],
        "wall_s": wall, "driver_s": observed["ended"] - observed["started"], "stats_seconds": stats.get("seconds", {}),
        "step_seconds": dict(step_seconds), "peak_rss": observed["peak_rss"], "rss_filter_phase": rss_filter,
        "rss_after_filter_phase": rss_after, "peak_anon": anon, "peak_shmem": shmem, "requests": len(requests),
        "by": [[s, f, o, n] for (s, f, o), n in sorted(by.items())],
        "command": shlex.join(["refinery", *argv]), "trace": observed["trace"],
    }


def count_parts(manifests: list[dict], loose: int) -> int:
    """The filter phase's parts: those folded into the inputs' manifests and those left loose
    (before issue 18's manifests, every part was a loose `_parts/` file)."""
    return sum(len(m["parts"]) for m in manifests) + loose


def place(key: str, out_key: str, input_prefix: str) -> str:
    """Where an S3 key is: `input`, or the output's folder (`_parts`, `shards`, ...)."""
    if key.startswith(input_prefix):
        return "input"
    if key.startswith("$extremelyunlikelytoexist$"):
        return "(S3FileSystem init)"  # pyarrow's probe when a process makes its S3 filesystem
    if key == out_key or key.startswith(out_key + "/"):
        return folder_of(key[len(out_key) + 1:]) if key.strip("/") != out_key else "(root)"
    return "other"


# ---------------------------------------------------------------- report


def fit(cases: list[dict], y: str, x: str = "records") -> tuple[float, float, float] | None:
    """y = a + b*inputs + c*x by least squares over the cases (None with fewer than 3)."""
    if len(cases) < 3:
        return None
    X = np.array([[1.0, c["inputs"], c[x]] for c in cases])
    Y = np.array([float(c[y]) for c in cases])
    coef, *_ = np.linalg.lstsq(X, Y, rcond=None)
    return tuple(coef)


def table(rows: list[list], header: list[str]) -> str:
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) + " |"
    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells[1:])])


def report(results: list[dict]) -> None:
    mb = lambda b: f"{b / 2**20:.0f}"
    print("\n## Cases\n")
    rows = []
    for r in results:
        rows.append([f"{r['storage']}{' (strace)' if r['strace'] else ''}", r["case"], r["inputs"], r["records"], r["parts"],
                     f"{r['wall_s']:.1f}", f"{r['stats_seconds'].get('filter_phase', 0):.1f}", mb(r["peak_rss"]),
                     mb(r["rss_filter_phase"]), mb(r["rss_after_filter_phase"]),
                     f"{mb(r['peak_anon'])} / {mb(r['peak_shmem'])}" if "peak_anon" in r else "-", r["requests"] or "-",
                     f"{r['requests'] / r['parts']:.1f}" if r["requests"] else "-"])
    print(table(rows, ["storage", "case", "inputs", "records", "parts", "wall s", "filter phase s", "driver peak MB",
                       "peak in filter phase", "peak after", "anon / shm MB", "requests", "requests/part"]))
    for r in results:
        if not r["requests"]:
            continue
        name = f"{r['storage']}{' (strace)' if r['strace'] else ''} {r['case']}"
        print(f"\n### {name}: requests by folder ({r['inputs']} inputs, {r['parts']} parts)\n")
        folders: dict[str, Counter] = {}
        for _, f, o, n in r["by"]:
            folders.setdefault(f, Counter())[o] += n
        rows = [[f, sum(c.values()), f"{sum(c.values()) / r['inputs']:.2f}", f"{sum(c.values()) / r['parts']:.2f}",
                 ", ".join(f"{o} {n}" for o, n in c.most_common())] for f, c in sorted(folders.items(), key=lambda kv: -sum(kv[1].values()))]
        print(table(rows, ["folder", "requests", "per input", "per part", "by operation"]))
        per_step = Counter()
        for s, _, _, n in r["by"]:
            per_step[s] += n
        steps = sorted(set(per_step) | set(r["step_seconds"]), key=lambda k: -r["step_seconds"].get(k, 0))
        print(f"\n{name}: the driver's steps (requests made while each ran; in filter_phase and dedup_phase/compact, mostly the Ray tasks')\n")
        print(table([[k, per_step[k], f"{r['step_seconds'].get(k, 0):.2f}"] for k in steps], ["driver step", "requests", "seconds"]))
    for r in results:
        if r.get("trace"):
            print(f"\n### {r['storage']} {r['case']}: the driver's Python heap (tracemalloc) at the end of the filter phase and of the run\n")
            for when, t in r["trace"].items():
                print(f"{when}: {t['total'] / 2**20:.1f} MB traced; largest by file:")
                print(table([[f, f"{kb:,.0f}", n] for f, kb, n in t["by_file"]], ["file", "KB", "blocks"]))
    for storage in sorted({r["storage"] for r in results}):
        cases = [r for r in results if r["storage"] == storage and not r["strace"] and not r.get("trace")]
        c = fit(cases, "wall_s")
        print(f"\n## {storage}: constants")
        if c:
            print(f"- wall time = a + b x inputs + c x records over {len(cases)} cases: a {c[0]:.1f} s, b {c[1] * 1000:.1f} ms per input,"
                  f" c {c[2] * 1000:.1f} ms per record (an input costs {c[1] / c[2]:.2f} records' processing)")
        small = sorted((r for r in cases if r["records"] == r["inputs"]), key=lambda r: r["inputs"])
        if len(small) >= 2:
            a, b = small[0], small[-1]
            d = b["inputs"] - a["inputs"]
            print(f"- driver peak RSS {mb(a['peak_rss'])} MB at {a['inputs']} inputs, {mb(b['peak_rss'])} MB at {b['inputs']}:"
                  f" {(b['peak_rss'] - a['peak_rss']) / d / 1024:.1f} KB per input")
        for r in cases:
            if r["records"] != r["inputs"]:
                print(f"- driver peak RSS {mb(r['peak_rss'])} MB at {r['inputs']} inputs of {r['records']} records in {r['parts']} parts")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="200x1,2000x1,2x1171", help="NxR: N inputs of R records each")
    parser.add_argument("--storage", default="local,s3", help="local, s3 (moto), or both")
    parser.add_argument("--strace", default="", help="cases to run locally a second time under strace (local file operations)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", type=Path, default=REPO / "out" / "scale-model")
    parser.add_argument("--trace-driver", action="store_true",
                        help="tracemalloc in the driver (slower): its Python heap by file after the filter phase and at the end")
    parser.add_argument("--report", type=Path, help="print the report of a results.json again, run nothing")
    parser.add_argument("--driver", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.driver:
        return driver(args.driver, rest[1:] if rest[:1] == ["--"] else rest)
    if args.report:
        report(json.loads(args.report.read_text()))
        return 0
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    cases = args.cases.split(",")
    storages = args.storage.split(",")
    members = gzip_members(CRAWL_SAMPLE)
    folders = {c: deal(members, *map(int, c.split("x")), work / f"inputs-{c}") for c in cases}
    s3 = None
    if "s3" in storages:
        s3 = CountingS3()
        s3.client().create_bucket(Bucket=BUCKET)
    results = []
    try:
        plan = [(c, s, False) for s in storages for c in cases] + [(c, "local", True) for c in args.strace.split(",") if c]
        for case, storage, strace in plan:
            print(f"running {storage}{' under strace' if strace else ''} {case} ...", flush=True)
            results.append(run_case(case, storage, folders[case], work, args.workers, s3, strace, args.trace_driver))
            r = results[-1]
            print(f"  {r['wall_s']:.1f} s, {r['parts']} parts, driver peak {r['peak_rss'] / 2**20:.0f} MB, {r['requests']} requests", flush=True)
            (work / f"results{'-trace' if args.trace_driver else ''}.json").write_text(json.dumps(results, indent=1))
    finally:
        if s3:
            s3.stop()
    report(results)
    print("\nreproduce: python benchmarks/scale_model.py " + shlex.join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
