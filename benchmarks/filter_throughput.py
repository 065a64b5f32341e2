"""Docs/s of Refinery's filter phase on Ray vs a bare trafilatura loop, same pages, one run.

    python benchmarks/filter_throughput.py                        # crawl-sample, --workers 1 2
    python benchmarks/filter_throughput.py --workers 2 --repeat 4 # 4x the input, 2 Ray CPUs

Pipeline: `refinery.pipeline.run` with pipelines/cc.yaml's filter stages (URL filter,
extraction, lid.176, Gopher filters, line corrections, Parquet shards) and its dedup stages
turned off (`dedup: []`; --with-dedup keeps them), `workers` = Ray CPUs. Ray is started first
and its start-up is reported on its own line; by default a short untimed run (--warmup-records)
then loads the workers' imports and models, so the timed run measures steady work.
Bare loop: `trafilatura.extract(html)` with trafilatura's defaults, one process, over the HTML
of every record of the same WARC, decoded as the pipeline decodes it; reading and decoding are
timed apart. The pipeline does more than extraction, so the ratio is the whole phase's cost
relative to extraction alone. Docs are the HTML documents (HTTP 200 HTML responses: every
record of crawl-sample), the pages the bare loop gets.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import trafilatura

from refinery.config import load_config
from refinery.io.warc import ReadParams, read_warc

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
CRAWL_SAMPLE = DATA / "crawl-sample" / "real-pages.warc.gz"
CONFIG = REPO / "pipelines" / "cc.yaml"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, default=CRAWL_SAMPLE, help="a WARC file (default: crawl-sample)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Ray CPUs, one timed run each")
    parser.add_argument("--repeat", type=int, default=1, help="concatenate the WARC this many times")
    parser.add_argument("--warmup-records", type=int, default=256, help="untimed run first; 0 to skip")
    parser.add_argument("--with-dedup", action="store_true", help="time cc.yaml's dedup phase too")
    return parser.parse_args()


def repeated_warc(path: Path, k: int, tmp: Path) -> Path:
    """The WARC K times in one file: gzip members (one per record) concatenate cleanly."""
    if k == 1:
        return path
    data = path.read_bytes()
    out = tmp / f"repeat{k}-{path.name}"
    with out.open("wb") as f:
        for _ in range(k):
            f.write(data)
    return out


def read_pages(path: Path) -> tuple[int, list[str]]:
    """(records, HTML of the live documents), decoded exactly as the pipeline's reader does."""
    records, pages = 0, []
    with path.open("rb") as stream:
        for table in read_warc(stream, str(path), ReadParams()):
            records += table.num_rows
            pages += [h for h in table.column("html").to_pylist() if h is not None]
    return records, pages


def bare_trafilatura(pages: list[str]) -> float:
    """Seconds for trafilatura alone over the pages."""
    start = time.perf_counter()
    for html in pages:
        trafilatura.extract(html)
    return time.perf_counter() - start


def config(warc: Path, output: Path, workers: int, with_dedup: bool, limit: int | None = None):
    overrides = {"input": [str(warc)], "output": str(output), "workers": workers, "limit": limit}
    if not with_dedup:
        overrides["dedup"] = []
    return load_config(CONFIG, overrides)


def time_pipeline(warc: Path, workers: int, tmp: Path, args: argparse.Namespace) -> tuple[float, float, dict]:
    """(Ray start-up seconds, pipeline seconds, stats) for one local Ray of `workers` CPUs."""
    import ray
    import ray.data

    from refinery import pipeline

    start = time.perf_counter()
    pipeline.start_ray(workers)
    startup = time.perf_counter() - start
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        if args.warmup_records:
            warm = config(warc, tmp / "warmup", workers, args.with_dedup, limit=args.warmup_records)
            pipeline.run(warm, overwrite=True)
        cfg = config(warc, tmp / f"out-w{workers}", workers, args.with_dedup)
        start = time.perf_counter()
        stats = pipeline.run(cfg, overwrite=True)
        return startup, time.perf_counter() - start, stats
    finally:
        ray.shutdown()


def main() -> int:
    args = parse_args()
    print("reproduce: python " + shlex.join([os.path.relpath(__file__, REPO), *sys.argv[1:]]) + f"   (cwd {REPO})")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    if not args.input.is_file():
        print(f"input {args.input} not found", file=sys.stderr)
        return 2
    os.environ.pop("RAY_ADDRESS", None)  # a local Ray of --workers CPUs, never a shared cluster
    with tempfile.TemporaryDirectory(prefix="filter-throughput-") as tmp_name:
        tmp = Path(tmp_name)
        warc = repeated_warc(args.input, args.repeat, tmp)
        print(f"input: {args.input} x{args.repeat}")

        start = time.perf_counter()
        records, pages = read_pages(warc)
        read_s = time.perf_counter() - start
        bare_s = bare_trafilatura(pages)
        bare_rate = len(pages) / bare_s
        print(f"\nbare trafilatura, 1 process: {len(pages):,} pages in {bare_s:.1f} s = {bare_rate:.1f} docs/s "
              f"(reading + decoding the WARC beforehand: {read_s:.1f} s, not counted)")

        print(f"\n{'workers':>7} {'ray start s':>11} {'run s':>7} {'docs/s':>8} {'docs/s/core':>11} "
              f"{'vs bare':>8} {'per core vs bare':>16} {'kept':>6}")
        for workers in args.workers:
            startup, run_s, stats = time_pipeline(warc, workers, tmp, args)
            rate = stats["documents"] / run_s
            print(f"{workers:>7} {startup:>11.1f} {run_s:>7.1f} {rate:>8.1f} {rate / workers:>11.1f} "
                  f"{rate / bare_rate:>8.2f} {rate / workers / bare_rate:>16.2f} {stats['kept']['docs']:>6,}",
                  flush=True)
        if len(pages) != stats["documents"] or records != stats["records_read"]:
            print(f"note: pipeline {stats['documents']:,} docs of {stats['records_read']:,} records, "
                  f"bare loop {len(pages):,} of {records:,}")
    warm = f"after an untimed {args.warmup_records}-record warm-up run" if args.warmup_records else "cold workers"
    phases = "filter + dedup phases" if args.with_dedup else "filter phase only"
    print(f"\ndocs = HTML documents; run s = `pipeline.run` wall time, {phases} ({warm}); Ray start-up excluded.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
