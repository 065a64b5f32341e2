"""Where a small run's time goes outside the stages: a whole `refinery run` process, step by step.

    .venv/bin/python benchmarks/fixed_cost.py --repeat 1 --files 2 --runs 3
    .venv/bin/python benchmarks/fixed_cost.py --repeat 1 --files 2 --runs 3 --source out/vs-datatrove/src-24d6b21

Input: crawl-sample concatenated K times and dealt into N files (as in vs_datatrove.py), run by
`refinery run benchmarks/parity.yaml --workers 2` in a child process whose driver steps are timed
from the process's start (the CLI's own code, wrapped here, not changed): imports, Ray's start,
the filter phase, folding, the final pass (compaction, publishing), the report, and what is left
between the CLI's return and the process's exit (Ray's shutdown at exit). `--source DIR` runs the
package unpacked in DIR (vs_datatrove.py's `refinery@REF`) to compare two versions in one run.
Printed per run, then the median of each step over the runs.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vs_datatrove import CRAWL_SAMPLE, PARITY, REPO, TreeCpu, split_input, whole_file  # noqa: E402

# Runs in the child: wraps the driver's steps with timers, then runs the CLI. Times are seconds
# from the process's start (its /proc start time), so the interpreter's own start counts too.
CHILD = r"""
import json, os, sys, time
def process_age():
    ticks = os.sysconf("SC_CLK_TCK")
    with open("/proc/self/stat") as f:
        started = int(f.read().rsplit(")", 1)[1].split()[19]) / ticks
    with open("/proc/uptime") as f:
        return float(f.read().split()[0]) - started
offset = process_age() - time.perf_counter()
now = lambda: time.perf_counter() + offset
steps = []
def wrap(module, name, label):
    f = getattr(module, name)
    def timed(*a, **k):
        t = now()
        try:
            return f(*a, **k)
        finally:
            steps.append((label, t, now()))
    setattr(module, name, timed)
t = now()
import refinery.cli as cli
import refinery.pipeline as pipeline
steps.append(("imports", t, now()))
for name, label in [("start_ray", "start Ray"), ("filter_phase", "filter phase"), ("fold_inputs", "fold inputs"),
                    ("compact", "compaction"), ("publish_shards", "publish shards"), ("write_report", "report")]:
    if hasattr(pipeline, name):
        wrap(pipeline, name, label)
import atexit
def dump():
    with open(os.environ["FIXED_COST_STEPS"], "w") as f:
        json.dump({"steps": steps, "cli_end": cli_end}, f)
cli_end = None
code = cli.main(sys.argv[1:])
cli_end = now()
atexit.register(dump)  # registered last, so it runs first: Ray's own exit handlers (shutdown) run after it
sys.exit(code)
"""


def run_once(files: list[Path], out: Path, source: Path | None, workers: int) -> dict:
    steps_file = out.parent / f"{out.name}.steps.json"
    env = os.environ.copy()
    env.pop("RAY_ADDRESS", None)
    env["FIXED_COST_STEPS"] = str(steps_file)
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-c", CHILD, "run", str(PARITY), "--workers", str(workers), "--output", str(out), "--overwrite",
           "--input", *map(str, files)]
    start = time.perf_counter()
    with (out.parent / f"{out.name}.log").open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=source or REPO)
        sampler = TreeCpu(proc.pid)
        code = proc.wait()
    wall = time.perf_counter() - start
    cpu = sampler.stop()
    if code != 0:
        sys.exit(f"run failed ({code}); see {out.parent / f'{out.name}.log'}")
    data = json.loads(steps_file.read_text())
    row: dict = {}
    for label, begin, end in data["steps"]:  # folding runs twice: summed
        row[label] = row.get(label, 0.0) + end - begin
    last_end = max(end for _, _, end in data["steps"])
    row["rest of the run"] = data["cli_end"] - last_end
    row["exit (Ray's shutdown)"] = wall - data["cli_end"]
    row["whole process"] = wall
    row["CPU s"] = cpu
    row["processes"] = len(sampler.seen)  # the process tree's: Ray's own, its workers and actors
    row["kept"] = json.loads((out / "stats.json").read_text())["kept"]["docs"]
    row["kept set"] = kept_set_digest(out)
    return row


def kept_set_digest(out: Path) -> str:
    """A digest of the shards' rows (id, text) in order: equal digests, identical outputs."""
    import pyarrow.parquet as pq

    digest = hashlib.sha1()
    for path in sorted((out / "shards").glob("*.parquet")):
        for rid, text in zip(*pq.read_table(path, columns=["id", "text"]).to_pydict().values()):
            digest.update(f"{rid}\0{text}\0".encode())
    return digest.hexdigest()[:12]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--files", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--source", type=Path, action="append", default=[],
                        help="also run the package unpacked in this folder (alternating with this checkout's)")
    parser.add_argument("--work", type=Path, default=REPO / "out" / "fixed-cost")
    args = parser.parse_args()
    print("reproduce: .venv/bin/python benchmarks/fixed_cost.py " + " ".join(sys.argv[1:]))
    print(f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())} at start; {time.strftime('%Y-%m-%d %H:%M')}", flush=True)
    files, records = split_input(whole_file(CRAWL_SAMPLE), args.repeat, args.files,
                                 args.work / f"x{args.repeat}-n{args.files}", f"{CRAWL_SAMPLE}:x{args.repeat}")
    arms = [("this checkout", None)] + [(str(s), s.resolve()) for s in args.source]
    rows: dict[str, list[dict]] = {name: [] for name, _ in arms}
    for i in range(args.runs):
        for name, source in arms:  # alternating, so the arms see the same load
            row = run_once(files, args.work / f"out-{len(rows[name])}-{abs(hash(name)) % 10**6}", source, args.workers)
            rows[name].append(row)
            print(f"run {i + 1} {name}: " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())
                  + f"; load {os.getloadavg()[0]:.2f}", flush=True)
    print(f"\n{records:,} records in {args.files} files; median of {args.runs} runs, seconds")
    labels = [k for k in rows[arms[0][0]][0] if k not in ("kept", "kept set")]
    print("| step | " + " | ".join(name for name, _ in arms) + " |")
    print("| --- |" + " ---: |" * len(arms))
    for label in labels:
        cells = [statistics.median(r.get(label, 0.0) for r in rows[name]) for name, _ in arms]
        print(f"| {label} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    for key in ("kept", "kept set"):
        print(f"| {key} | " + " | ".join(",".join(sorted({str(r[key]) for r in rows[name]})) for name, _ in arms) + " |")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
