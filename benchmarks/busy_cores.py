"""Where the cores wait in the filter phase: Refinery's run in this process, with Ray's own view.

    .venv/bin/python benchmarks/busy_cores.py --repeat 8 --files 2            # few large files
    .venv/bin/python benchmarks/busy_cores.py --repeat 2 --files 2000         # many small files
    .venv/bin/python benchmarks/busy_cores.py --repeat 8 --files 2 --commit-rows 128 --read-cpus 0.25

Input: crawl-sample concatenated K times and dealt round-robin by record into N files (as in
vs_datatrove.py), `benchmarks/parity.yaml`'s stages, a local Ray of `--workers` CPUs. Printed:
- Ray Data's per-operator stats of the filter phase (`ds.stats()`, logged by the pipeline at DEBUG);
- from Ray's timeline (`ray.timeline()`): how many tasks of each operator ran, their summed
  execution time, and the **slot occupancy**: the CPUs the running tasks held (their num_cpus),
  summed over time, over CPUs x the filter phase's wall time. It counts what Ray scheduled, so other
  jobs on the machine do not lower it; it is what a loaded shared machine can still measure;
- **CPU busy**: user + sys seconds of this process and its Ray workers during the phase over
  CPUs x wall time; on a machine with other load this is lower than what Refinery asked for.
`--commit-rows` and `--read-cpus` override the derived part size and the read tasks' CPU request.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vs_datatrove import CRAWL_SAMPLE, PARITY, TreeCpu, split_input, whole_file  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=8)
    parser.add_argument("--files", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--commit-rows", type=int, default=None)
    parser.add_argument("--read-cpus", type=float, default=None)
    parser.add_argument("--work", type=Path, default=Path(__file__).resolve().parents[1] / "out" / "busy-cores")
    args = parser.parse_args()
    print("reproduce: .venv/bin/python benchmarks/busy_cores.py " + " ".join(sys.argv[1:]))
    print(f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())} at start; {time.strftime('%Y-%m-%d %H:%M')}")

    import ray

    from refinery import pipeline
    from refinery.config import load_config

    files, records = split_input(whole_file(CRAWL_SAMPLE), args.repeat, args.files,
                                 args.work / f"x{args.repeat}-n{args.files}", f"{CRAWL_SAMPLE}:x{args.repeat}")
    if args.read_cpus is not None:
        pipeline.READ_CPUS = args.read_cpus
    overrides = {"input": [str(f) for f in files], "output": tempfile.mkdtemp(dir=args.work), "workers": args.workers}
    if args.commit_rows:
        overrides["commit_rows"] = args.commit_rows
    cfg = load_config(PARITY, overrides)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("refinery.pipeline").setLevel(logging.DEBUG)

    pipeline.start_ray(args.workers)  # as a run starts its local Ray; the phase follows at once, as in a run
    sampler = TreeCpu(os.getpid())
    sampler._sample()  # CPU spent before the phase is subtracted
    cpu_before = sum(sampler.seen.values())
    pipeline.configure_data_context()
    todo = pipeline.inputs_to_do(pipeline.Output(cfg.output), [str(f) for f in files], False)
    started_ns = time.time_ns()
    t0 = time.perf_counter()
    pipeline.filter_phase(cfg, todo, pipeline.Output(cfg.output))
    wall = time.perf_counter() - t0
    cpu = sampler.stop() - cpu_before
    ended_ns = time.time_ns()

    # the timeline: Chrome trace events, one "X" event per task execution (ts, dur in microseconds)
    events = ray.timeline()
    ops: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for e in events:
        if e.get("ph") != "X" or not str(e.get("cat", "")).startswith("task::MapBatches"):
            continue  # Ray Data's operators only (not its stats and autoscaling actors)
        start_us, dur = float(e["ts"]), float(e["dur"])
        if start_us * 1000 < started_ns or start_us * 1000 > ended_ns:
            continue
        ops[str(e["cat"]).removeprefix("task::")].append((start_us, dur))
    read_cpus = pipeline.READ_CPUS
    held = 0.0
    print(f"\nfilter phase: {records:,} records in {args.files} files, commit_rows {pipeline.commit_rows(cfg.commit_rows, cfg.read.batch_records, pipeline.console.input_bytes([str(f) for f in files]), args.workers, len(files))}, "
          f"read tasks {read_cpus} CPU; {wall:.1f} s wall, {records / wall:.1f} records/s; load average {os.getloadavg()[0]:.2f} at the end")
    for name, spans in sorted(ops.items()):
        cpus = read_cpus if "read_files" in name else 1.0
        busy = sum(d for _, d in spans) / 1e6
        held += cpus * busy
        print(f"  {name:<60} {len(spans):5d} tasks  {busy:8.1f} s executing  (x {cpus:g} CPU)")
    print(f"  slot occupancy (CPUs held by running tasks / {args.workers} CPUs x wall): {100 * held / (args.workers * wall):.1f}%")
    print(f"  stage tasks only (the 1-CPU tasks): "
          f"{100 * sum(d for n, s in ops.items() if 'read_files' not in n for _, d in s) / 1e6 / (args.workers * wall):.1f}%")
    stage = sorted((t, t + d) for n, s in ops.items() if "read_files" not in n for t, d in s)
    if stage:  # from the first stage task's start to the last one's end: Ray Data's planning and start-up left out
        first, last = stage[0][0], max(e for _, e in stage)
        print(f"  stage tasks, from the first one's start to the last one's end ({(last - first) / 1e6:.1f} s): "
              f"{100 * sum(e - t for t, e in stage) / (args.workers * (last - first)):.1f}%")
    print(f"  CPU busy (user+sys of this process tree / {args.workers} CPUs x wall): {100 * cpu / (args.workers * wall):.1f}%  ({cpu:.1f} CPU-s)")
    (args.work / "timeline.json").write_text(json.dumps(events))
    print(f"  timeline: {args.work / 'timeline.json'} (chrome://tracing)")
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
