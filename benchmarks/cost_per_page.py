"""CPU per page of Refinery's filter-phase stages, one process, no Ray: the code at several git
refs in one run, rounds alternating, so a change's effect on the cost of a record is read as a
same-run ratio. Each arm is a fresh subprocess with that ref's `refinery` first on PYTHONPATH.

    .venv/bin/python benchmarks/cost_per_page.py --refs main HEAD
    .venv/bin/python benchmarks/cost_per_page.py --refs main 17dc3b9 HEAD --rounds 3 --config pipelines/cc.yaml

Inputs: crawl-sample (1,171 pages, ~70% not English) and the English-heavy input's records
(benchmarks/vs_datatrove.py --english: crawl-sample's English pages plus the English files of
warc-samples), read once with this checkout's reader; the stages get the same Arrow batches of
128 rows in every arm. Prints per-stage CPU seconds (median over rounds), the kept documents
(which must agree across arms for a change that claims the same output) and each arm's total
against the first arm's."""
from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import vs_datatrove  # noqa: E402  (the English-heavy input and `git archive` of a ref)


def measure(pages_file: str, config: str) -> None:
    """Arm body (runs under the ref's code): per-stage CPU seconds and kept ids, as JSON."""
    import pyarrow as pa

    from refinery.config import load_config
    from refinery.schema import ROW
    from refinery.stages import apply_stage

    cfg = load_config(config, {"input": ["unused"], "output": "unused"})
    result = {}
    for corpus, rows in pickle.loads(Path(pages_file).read_bytes()).items():
        batches = [pa.Table.from_pylist(rows[i : i + 128], schema=ROW) for i in range(0, len(rows), 128)]
        warm = batches[0].slice(0, 4)
        for p in cfg.stages:  # load fastText and trafilatura untimed
            warm = apply_stage(warm, p)
        seconds = dict.fromkeys((p.stage for p in cfg.stages), 0.0)
        kept = []
        for batch in batches:
            for p in cfg.stages:
                start = time.process_time()
                batch = apply_stage(batch, p)
                seconds[p.stage] += time.process_time() - start
            kept += [r["id"] for r in batch.select(["id", "removed_by"]).to_pylist() if r["removed_by"] is None]
        result[corpus] = {"pages": len(rows), "seconds": seconds, "kept": sorted(kept)}
    print(json.dumps(result))


def read_pages(work: Path) -> Path:
    """The live HTML rows of both inputs, pickled once per work dir."""
    out = work / "pages.pkl"
    if out.exists():
        return out
    from refinery.io.warc import ReadParams, read_warc

    def rows(path: Path) -> list[dict]:
        with path.open("rb") as stream:
            return [r for b in read_warc(stream, str(path), ReadParams()) for r in b.to_pylist() if r["html"] and r["removed_by"] is None]

    crawl = vs_datatrove.CRAWL_SAMPLE
    english = vs_datatrove.english_members(crawl, work / "english-pages.json")
    files, _ = vs_datatrove.split_input(english, 1, 1, work / "en-x1", f"{crawl}:en-x1")
    work.mkdir(parents=True, exist_ok=True)
    out.write_bytes(pickle.dumps({"crawl-sample": rows(crawl), "english": rows(files[0])}))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--refs", nargs="+", default=["main", "HEAD"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--config", default="benchmarks/parity.yaml")
    parser.add_argument("--work", type=Path, default=REPO / "out" / "cost-per-page")
    parser.add_argument("--arm", nargs=2, metavar=("PAGES", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        measure(*args.arm)
        return 0
    print(f"reproduce: .venv/bin/python benchmarks/cost_per_page.py --refs {' '.join(args.refs)} --rounds {args.rounds} --config {args.config}")
    print(f"load average {os.getloadavg()[0]:.2f} at start; {time.strftime('%Y-%m-%d %H:%M')}")
    pages = read_pages(args.work)
    sources = {ref: vs_datatrove.source_at(ref, args.work) for ref in args.refs}
    runs: dict[str, list[dict]] = {ref: [] for ref in args.refs}
    for _ in range(args.rounds):
        for ref in args.refs:
            env = {**os.environ, "PYTHONPATH": str(sources[ref])}
            out = subprocess.run([sys.executable, __file__, "--arm", str(pages), args.config], env=env, cwd=REPO, capture_output=True, text=True, check=True)
            runs[ref].append(json.loads(out.stdout.strip().splitlines()[-1]))
    first = args.refs[0]
    for corpus in runs[first][0]:
        print(f"\n{corpus} ({runs[first][0][corpus]['pages']:,} pages), {args.config}, CPU s (median of {args.rounds}):")
        totals = {ref: statistics.median(sum(r[corpus]["seconds"].values()) for r in runs[ref]) for ref in args.refs}
        for ref in args.refs:
            stages = {s: statistics.median(r[corpus]["seconds"][s] for r in runs[ref]) for s in runs[ref][0][corpus]["seconds"]}
            kept = runs[ref][0][corpus]["kept"]
            same = "same kept ids" if kept == runs[first][0][corpus]["kept"] else "KEPT IDS DIFFER"
            print(f"  {ref:>10}: total {totals[ref]:6.2f}  x{totals[first] / totals[ref]:.2f} vs {first}; kept {len(kept)} ({same}); "
                  + ", ".join(f"{s} {v:.2f}" for s, v in stages.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
