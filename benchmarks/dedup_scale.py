"""Memory and scaling of the dedup phase on Ray: MinHash LSH + exact dedup (issue 3), or
substring dedup (`--stage substring_dedup`, issue 14).

Builds planted corpora as filtered shards (the SHARD schema, 10,000-row zstd Parquet files, as
the filter phase writes them), runs `refinery.dedup_ray.dedup_phase` on each in a fresh process
with a local Ray of `--workers` CPUs and run()'s DataContext settings: with `--stage minhash`,
cc.yaml's MinHash (bands/rows/hash bits/partitions overridable) then exact_dedup; with `--stage
substring_dedup`, cc.yaml's substring_dedup alone (removed rows written, to compare every
document's struck tokens with `substring.reference_struck`, the rule by brute force, on corpora
of at most `--reference-docs` documents). It measures:
- wall time of dedup_phase (Ray started and its workers warm beforehand, as after the filter phase);
- the driver's peak RSS (kernel high-water mark VmHWM, reset when the phase starts) and its
  anonymous part (RSS minus shared pages, i.e. without object-store pages it maps);
- the Ray worker processes' RSS, sampled every 0.2 s with psutil among the driver's descendants
  only (command line `ray::...`: task workers and Ray Data's helper actors), max per process and
  max simultaneous sum, with the anonymous part again (RSS counts the object-store pages a
  worker touched, so sums double-count shared memory); /dev/shm growth = object store use;
- when each stage's edges reached the driver, how many, and the union-find time (by wrapping
  `dedup_ray.removals`); with --trace-driver, tracemalloc's view of the driver's Python heap;
- the documents removed against the planted near-duplicates.
psutil is Ray's vendored copy (on the path once `ray` is imported).

Documents are real text: the articleBody texts of article-extraction-benchmark, WikiText-2
(valid + test, detokenized) and trafilatura's main text of the trafilatura-eval pages (extracted
once, cached under --work). These are cut into passages of consecutive sentences (~40-80
words); an original document is a random sequence of passages, cut at a length drawn from
300-600 words, so two originals share almost no shingles. A `--dup-fraction` of the documents
are planted copies of an original (about two per family): 0-3% of words replaced, with
probability 1/2 two paragraphs swapped, with probability 1/2 one of a few boilerplate footers
appended, and 5% of copies identical up to case, punctuation and whitespace (exact duplicates).
Each copy's true 5-gram Jaccard with its original is recorded, so the measured recall can be
compared with the LSH S-curve's expectation 1 - (1 - J^rows)^bands. A family of n documents
should lose n - 1 of them: recall is the sum over families of min(removed, n - 1) over the planted
copies; removals beyond that, and removals of unplanted documents, are "non-planted removed".

    python benchmarks/dedup_scale.py --docs 10000,100000 --bands 450 --rows 20 --workers 2 --work out/dedup-scale
    python benchmarks/dedup_scale.py --docs 10000,100000 --bands 14 --rows 8 --hash-bits 64 --work out/dedup-scale
    python benchmarks/dedup_scale.py --docs 100000 --dup-fraction 0 [--partitions 256] --work out/dedup-scale
    python benchmarks/dedup_scale.py --stage substring_dedup --docs 10000,100000 --work out/dedup-scale
    python benchmarks/dedup_scale.py --compare-suffix-array 10000,100000 --work out/dedup-scale

`--compare-suffix-array` times the alternative Lee et al. used, a suffix array (pydivsufsort, `pip
install pydivsufsort`; not a dependency of Refinery) over the token ids of the whole corpus, against
the hashed windows and one sort that substring dedup's passes 1-2 do, each in a fresh process on the
same corpus (peak RSS from getrusage), with the struck tokens of both.
"""
from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import random
import re
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from refinery.schema import SHARD

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CC_YAML = Path(__file__).resolve().parents[1] / "pipelines" / "cc.yaml"
SHARD_ROWS = 10_000
CORPUS_VERSION = 1
BOILERPLATE = [
    "Subscribe to our newsletter to get the latest stories delivered to your inbox every morning. "
    "You can unsubscribe at any time.",
    "We use cookies to improve your experience on our website. By continuing to browse the site you "
    "agree to our use of cookies and our privacy policy.",
    "Share this article on Facebook, Twitter and LinkedIn. Copyright 2024, all rights reserved. "
    "This material may not be published, broadcast, rewritten or redistributed.",
    "Related articles: more from this section, most read this week, editor's picks and the best "
    "of our archive. Sign up for free to read the full story.",
    "Comments are closed for this article. Please read our community guidelines before posting and "
    "report any abusive comments to the moderators.",
]
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


# ---------------------------------------------------------------- real text


def _wikitext_paragraphs() -> list[str]:
    out = []
    for name in ("valid.txt.gz", "test.txt.gz"):
        with gzip.open(DATA / "wikitext-2-tokenized" / name, "rt", encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("="):
                    continue
                line = line.replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".")
                line = re.sub(r"\s*<unk>", "", line)
                line = re.sub(r" ([.,;:!?)'\]])", r"\1", line)
                line = re.sub(r"([(\[]) ", r"\1", line).replace(' " ', ' "')
                out.append(line)
    return out


def _extract_one(path: str) -> str | None:
    from refinery.extract import ExtractParams, extract_text

    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        html = f.read()
    return extract_text(html, ExtractParams())[0]


def _trafilatura_texts(work: Path, jobs: int) -> list[str]:
    """trafilatura's main text of the trafilatura-eval pages, extracted once and cached."""
    cache = work / "trafilatura-eval-texts.json.gz"
    if cache.exists():
        with gzip.open(cache, "rt", encoding="utf-8") as f:
            return json.load(f)
    from multiprocessing import Pool

    folder = DATA / "trafilatura-eval"
    paths = sorted(str(p) for sub in ("eval", "cache") for p in (folder / sub).glob("*.html.gz"))
    started = time.monotonic()
    with Pool(jobs) as pool:
        texts = [t for t in pool.map(_extract_one, paths, chunksize=8) if t]
    print(f"extracted {len(texts)} texts from {len(paths)} trafilatura-eval pages in {time.monotonic() - started:.0f} s")
    with gzip.open(cache, "wt", encoding="utf-8") as f:
        json.dump(texts, f)
    return texts


def passage_pool(work: Path, jobs: int) -> list[str]:
    """Distinct passages of consecutive sentences (>= 40 words, one paragraph each) of all sources."""
    aeb = json.loads((DATA / "article-extraction-benchmark" / "ground-truth.json").read_text(encoding="utf-8"))
    paragraphs = [p for v in aeb.values() for p in v["articleBody"].split("\n")]
    paragraphs += _wikitext_paragraphs()
    paragraphs += [p for t in _trafilatura_texts(work, jobs) for p in t.split("\n")]
    seen, pool = set(), []
    for paragraph in paragraphs:
        current: list[str] = []
        for sentence in _SENTENCE_END.split(paragraph.strip()):
            current.append(sentence)
            if sum(len(s.split()) for s in current) >= 40:
                passage = " ".join(current)
                if passage not in seen:
                    seen.add(passage)
                    pool.append(passage)
                current = []
    return pool


# ---------------------------------------------------------------- planted corpus


def _original(pool: list[str], rng: random.Random) -> str:
    target = rng.randint(300, 600)
    paragraphs, words = [], 0
    while words < target:
        passage = pool[rng.randrange(len(pool))].split()
        take = passage[: target - words]
        paragraphs.append(" ".join(take))
        words += len(take)
    return "\n\n".join(paragraphs)


def _copy(text: str, vocabulary: list[str], rng: random.Random) -> str:
    if rng.random() < 0.05:  # exact duplicate after normalization (case, punctuation, whitespace)
        return "  " + text.upper().replace(". ", "... ") + " !"
    paragraphs = text.split("\n\n")
    if len(paragraphs) > 1 and rng.random() < 0.5:
        i, j = rng.sample(range(len(paragraphs)), 2)
        paragraphs[i], paragraphs[j] = paragraphs[j], paragraphs[i]
    lines = [p.split(" ") for p in paragraphs]
    positions = [(i, j) for i, line in enumerate(lines) for j in range(len(line))]
    for i, j in rng.sample(positions, round(rng.uniform(0.0, 0.03) * len(positions))):
        lines[i][j] = rng.choice(vocabulary)
    copy = "\n\n".join(" ".join(line) for line in lines)
    if rng.random() < 0.5:
        copy += "\n\n" + rng.choice(BOILERPLATE)
    return copy


def _jaccards(originals: list[str], copies: list[str], ngram: int) -> np.ndarray:
    """Exact Jaccard of the pipeline's hashed word 5-gram sets, copy vs original."""
    from refinery.dedup.minhash import shingles

    return np.array(
        [
            len(np.intersect1d(a, b, assume_unique=True)) / max(len(np.union1d(a, b)), 1)
            for a, b in ((shingles(o, ngram), shingles(c, ngram)) for o, c in zip(originals, copies))
        ]
    )


def _span_texts(n_docs: int, pool: list[str], vocabulary: list[str], rng: random.Random) -> list[str]:
    """The `spans` corpus, for substring dedup: originals as above with one word in every 10-20
    replaced at random, so that two documents drawing the same passage share no 38-word span (the
    passage pool has ~834k words, so at 10k documents every passage is drawn ~5 times); then planted
    repeats: 30% of the documents get a 38-150-word span of another document as a paragraph, 5%
    repeat one of their own paragraphs, 20% end with one of five ~45-word boilerplate footers."""
    texts = []
    for _ in range(n_docs):
        paragraphs = []
        for paragraph in _original(pool, rng).split("\n\n"):
            words = paragraph.split(" ")
            i = rng.randrange(10)
            while i < len(words):
                words[i] = rng.choice(vocabulary)
                i += rng.randint(10, 20)
            paragraphs.append(words)
        texts.append(paragraphs)
    footers = [BOILERPLATE[i] + " " + BOILERPLATE[(i + 1) % len(BOILERPLATE)] for i in range(len(BOILERPLATE))]
    for d in range(n_docs):
        if rng.random() < 0.3:
            source = [w for p in texts[rng.randrange(n_docs)] for w in p]
            n = rng.randint(38, 150)
            at = rng.randrange(max(len(source) - n, 1))
            texts[d].insert(rng.randrange(len(texts[d]) + 1), source[at : at + n])
        if rng.random() < 0.05:
            texts[d].append(list(rng.choice(texts[d])))
        if rng.random() < 0.2:
            texts[d].append(rng.choice(footers).split(" "))
    return ["\n\n".join(" ".join(p) for p in paragraphs) for paragraphs in texts]


def build_corpus(folder: Path, n_docs: int, dup_fraction: float, pool: list[str], seed: int, kind: str = "near") -> None:
    """Filtered shards under folder/out/_filtered and the planted truth in folder/truth.npz.
    `kind`: `near` (originals and their near-duplicate copies, for MinHash) or `spans`
    (`_span_texts`, for substring dedup; `dup_fraction` unused)."""
    marker = folder / "corpus.json"
    spec = {"version": CORPUS_VERSION, "docs": n_docs, "dup_fraction": dup_fraction, "seed": seed, "pool": len(pool), "kind": kind}
    if marker.exists() and json.loads(marker.read_text()) == spec:
        return
    started = time.monotonic()
    rng = random.Random(seed * 1_000_003 + n_docs)
    vocabulary = sorted({w for p in pool[:2000] for w in p.split()})
    n_copies = 0 if kind == "spans" else round(n_docs * dup_fraction)
    n_originals = n_docs - n_copies
    originals = _span_texts(n_docs, pool, vocabulary, rng) if kind == "spans" else [_original(pool, rng) for _ in range(n_originals)]
    # Copies pick their original among the first n_copies // 2 originals: ~2 copies per family.
    parent = np.array([rng.randrange(max(n_copies // 2, 1)) for _ in range(n_copies)], dtype=np.int64)
    copies = [_copy(originals[p], vocabulary, rng) for p in parent]
    jaccard = _jaccards([originals[p] for p in parent], copies, 5)
    texts = originals + copies
    family = np.concatenate([np.arange(n_originals), parent])  # a doc's family = its original's index
    order = np.random.default_rng(seed + n_docs).permutation(n_docs)  # copies scattered among originals
    ids = [f"<urn:uuid:planted-{n_docs}-{i:07d}>" for i in range(n_docs)]
    filtered = folder / "out" / "_filtered"
    filtered.mkdir(parents=True, exist_ok=True)
    for f in filtered.glob("*.parquet"):
        f.unlink()
    for k, lo in enumerate(range(0, n_docs, SHARD_ROWS)):
        rows = order[lo : lo + SHARD_ROWS]
        shard_texts = [texts[i] for i in rows]
        table = pa.table(
            {
                "id": [ids[i] for i in rows],
                "url": [f"https://site{i % 997}.example/article/{i}" for i in rows],
                "domain": [f"site{i % 997}.example" for i in rows],
                "date": ["2024-02-20T12:00:00Z"] * len(rows),
                "source": [f"planted-{n_docs}.warc.gz"] * len(rows),
                "source_offset": rows.astype(np.int64),
                "text": shard_texts,
                "language": ["en"] * len(rows),
                "language_score": np.full(len(rows), 0.9, dtype=np.float32),
                "n_words": [len(t.split()) for t in shard_texts],
                "n_chars": [len(t) for t in shard_texts],
            },
            schema=SHARD,
        )
        pq.write_table(table, filtered / f"part-{k:05d}.parquet", compression="zstd")
    np.savez(folder / "truth.npz", ids=np.array(ids), family=family, is_copy=np.arange(n_docs) >= n_originals, jaccard=jaccard)
    marker.write_text(json.dumps(spec))
    words = sum(len(t.split()) for t in texts)
    print(f"built {n_docs:,} docs ({n_copies:,} planted copies, {words / n_docs:.0f} words/doc) in {time.monotonic() - started:.0f} s")


# ---------------------------------------------------------------- measuring one run (child process)


def _vm_hwm(pid: int | str) -> int:
    """The kernel's peak RSS of a process (VmHWM), in bytes; 0 when unreadable."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:")), 0)
    except OSError:
        return 0


def _shm_used() -> int:
    """Bytes used in /dev/shm, where Ray's object store lives (host-wide: other Rays count too)."""
    st = os.statvfs("/dev/shm")
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def _reset_vm_hwm(pid: int | str) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: `echo 5 > /proc/PID/clear_refs`)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Sampler(threading.Thread):
    """Peak RSS of this process and of its descendants every `interval` s: Ray workers (command
    line `ray::...` or default_worker.py) and Ray's own processes (raylet, gcs_server, agents).
    Only descendants of this driver are sampled, so other Ray instances on the host are not.
    Per-process peaks also read the kernel's high-water mark (VmHWM, reset when sampling starts),
    so a spike between two samples still counts; sums are of simultaneous samples."""

    def __init__(self, interval: float = 0.2):
        super().__init__(daemon=True)
        import psutil

        self.psutil, self.interval = psutil, interval
        self.me = psutil.Process()
        self.stop = threading.Event()
        self.driver_peak = self.driver_anon_peak = 0
        self.worker_peak: dict[int, int] = {}
        self.worker_anon_peak: dict[int, int] = {}
        self.workers_sum_peak = self.workers_anon_sum_peak = self.system_sum_peak = 0
        self.cpu_first: dict[int, float] = {}
        self.cpu_last: dict[int, float] = {}
        self.kinds: dict[int, str] = {}
        self.titles: dict[int, set[str]] = {}
        self.timeline: list[tuple[float, int, int]] = []
        self.started = time.monotonic()
        self.hwm_reset = False
        self.shm_start = self.shm_peak = _shm_used()

    def _kind(self, p) -> str:
        """worker: a Ray worker process (task or actor); system: raylet, GCS, agents, log monitor."""
        argv = p.cmdline()
        title = " ".join(argv)[:100]
        if title.startswith("ray::"):
            self.titles.setdefault(p.pid, set()).add(title.split(" ")[0])
        if p.pid not in self.kinds:
            worker = (title.startswith("ray::") and not title.startswith(("ray::DashboardAgent", "ray::RuntimeEnvAgent"))) or (
                len(argv) > 1 and argv[1].endswith("default_worker.py")
            )
            self.kinds[p.pid] = "worker" if worker else "system"
            self.titles.setdefault(p.pid, set()).add(title.split(" ")[0].rsplit("/", 1)[-1] if not title.startswith("ray::") else title.split(" ")[0])
        return self.kinds[p.pid]

    def sample(self) -> None:
        m = self.me.memory_info()
        self.driver_peak = max(self.driver_peak, m.rss, _vm_hwm("self") if self.hwm_reset else 0)
        self.driver_anon_peak = max(self.driver_anon_peak, m.rss - m.shared)
        sums = {"worker": 0, "worker_anon": 0, "system": 0}
        for p in self.me.children(recursive=True):
            try:
                kind, mi, cpu = self._kind(p), p.memory_info(), p.cpu_times()
            except (self.psutil.NoSuchProcess, self.psutil.AccessDenied, self.psutil.ZombieProcess):
                continue
            sums[kind] += mi.rss
            if kind == "worker":
                sums["worker_anon"] += mi.rss - mi.shared
                self.worker_peak[p.pid] = max(self.worker_peak.get(p.pid, 0), mi.rss, _vm_hwm(p.pid))
                self.worker_anon_peak[p.pid] = max(self.worker_anon_peak.get(p.pid, 0), mi.rss - mi.shared)
                self.cpu_first.setdefault(p.pid, cpu.user + cpu.system)
                self.cpu_last[p.pid] = cpu.user + cpu.system
        self.workers_sum_peak = max(self.workers_sum_peak, sums["worker"])
        self.workers_anon_sum_peak = max(self.workers_anon_sum_peak, sums["worker_anon"])
        self.system_sum_peak = max(self.system_sum_peak, sums["system"])
        self.shm_peak = max(self.shm_peak, _shm_used())
        self.timeline.append((round(time.monotonic() - self.started, 2), m.rss, sums["worker"]))

    def run(self) -> None:
        self.hwm_reset = _reset_vm_hwm("self")
        for p in self.me.children(recursive=True):
            _reset_vm_hwm(p.pid)
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.interval)

    def finish(self) -> dict:
        self.stop.set()
        self.join()
        self.sample()
        mb = 1 << 20
        helpers = {pid for pid, titles in self.titles.items() if any(re.match(r"ray::(_\w*Actor|FooterReader)", t) for t in titles)}
        tasks = [pid for pid in self.worker_peak if pid not in helpers]
        return {
            "hwm_reset": self.hwm_reset,
            "shm_growth_peak_mb": (self.shm_peak - self.shm_start) / mb,
            "task_workers": len(tasks),
            "task_worker_peak_mb": max((self.worker_peak[p] for p in tasks), default=0) / mb,
            "helper_actors": len(self.worker_peak) - len(tasks),
            "helper_actor_peak_mb": max((self.worker_peak[p] for p in self.worker_peak if p in helpers), default=0) / mb,
            "driver_peak_mb": self.driver_peak / mb,
            "driver_anon_peak_mb": self.driver_anon_peak / mb,
            "worker_peak_mb": max(self.worker_peak.values(), default=0) / mb,
            "worker_anon_peak_mb": max(self.worker_anon_peak.values(), default=0) / mb,
            "workers_sum_peak_mb": self.workers_sum_peak / mb,
            "workers_anon_sum_peak_mb": self.workers_anon_sum_peak / mb,
            "ray_system_sum_peak_mb": self.system_sum_peak / mb,
            "worker_processes": len(self.worker_peak),
            "worker_cpu_s": sum(self.cpu_last[p] - self.cpu_first[p] for p in self.cpu_last),
            "timeline": self.timeline,
            "processes": [
                {"pid": pid, "kind": self.kinds[pid], "titles": sorted(self.titles[pid]), "peak_mb": self.worker_peak.get(pid, 0) / mb,
                 "cpu_s": self.cpu_last.get(pid, 0) - self.cpu_first.get(pid, 0)}
                for pid in self.kinds
            ],
        }


def _traced_top(label: str, top: int = 8) -> dict:
    import tracemalloc

    current, peak = tracemalloc.get_traced_memory()
    stats = tracemalloc.take_snapshot().statistics("lineno")[:top]
    return {
        "label": label, "current_mb": current / (1 << 20), "peak_mb": peak / (1 << 20),
        "top": [{"mb": st.size / (1 << 20), "where": [f"{fr.filename.rsplit('site-packages/', 1)[-1]}:{fr.lineno}" for fr in st.traceback[-4:]]}
                for st in stats],
    }


def measure(folder: Path, bands: int, rows: int, hash_bits: int | None, workers: int, trace: bool = False,
            partitions: int | None = None, stage: str = "minhash") -> dict:
    import ray  # puts Ray's vendored psutil (ray/thirdparty_files) on the path
    import ray.data
    import psutil

    import refinery.dedup_ray as dedup_ray
    import refinery.pipeline as pipeline
    from refinery.config import load_config
    from refinery.io.storage import Output

    listed = {d["stage"]: d for d in yaml.safe_load(CC_YAML.read_text(encoding="utf-8"))["dedup"]}
    if stage == "minhash":
        minhash = listed["minhash"] | {"bands": bands, "rows": rows} | ({"hash_bits": hash_bits} if hash_bits else {})
        dedup = [minhash | ({"partitions": partitions} if partitions else {}), {"stage": "exact_dedup"}]
    else:
        dedup = [listed["substring_dedup"] | ({"partitions": partitions} if partitions else {})]
    cfg = load_config(CC_YAML, {"output": str(folder / "out"), "workers": workers, "dedup": dedup, "write_removed": stage != "minhash"})
    out = Output(cfg.output)
    for rel in ("shards", "removed", dedup_ray.DEDUP_PARTS_DIR):
        out.delete(rel)
    mb = 1 << 20
    rss_imports = psutil.Process().memory_info().rss / mb
    pipeline.start_ray(cfg.workers)
    ctx = ray.data.DataContext.get_current()  # as in pipeline.run()
    ctx.execution_options.preserve_order = True
    ctx.target_max_block_size = 16 * 1024 * 1024
    ctx.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    ray.get([ray.remote(lambda: os.getpid()).remote() for _ in range(workers)])  # workers warm, as after the filter phase
    rss_ray = psutil.Process().memory_info().rss / mb

    # Timestamps and edge counts at the driver: `removals` is called once per document-level
    # stage, right after the stage's shuffle has been drained into the driver.
    stages: list[dict] = []
    original_removals = dedup_ray.removals

    def timed_removals(p, edges):
        if trace:
            traced.append(_traced_top(f"{p.stage}: edges at the driver"))
        entered = time.monotonic()
        rss_edges = psutil.Process().memory_info().rss / mb
        result = original_removals(p, edges)
        stages.append({"stage": p.stage, "edges": int(len(edges)), "removed": int(len(result[0])), "at_s": entered - started,
                       "union_find_s": time.monotonic() - entered, "driver_rss_mb_at_edges": rss_edges})
        return result

    dedup_ray.removals = timed_removals
    traced: list[dict] = []
    if trace:  # Python-level allocations (numpy included) of the driver, to split its RSS growth
        import tracemalloc

        tracemalloc.start(8)
    kept: dict[str, list[int]] = {}  # per source, the documents and words entering dedup (what `auto` sizes from)
    for f in out.list_files("_filtered", ".parquet"):
        for row in pq.read_table(out.path(f), columns=["source", "n_words"]).group_by("source").aggregate([("n_words", "count"), ("n_words", "sum")]).to_pylist():
            total = kept.setdefault(row["source"], [0, 0])
            total[0] += row["n_words_count"]
            total[1] += row["n_words_sum"]
    sources = sorted(kept)
    sampler = Sampler()
    started = time.monotonic()
    sampler.start()
    info = dedup_ray.dedup_phase(cfg, out, sources, kept)
    pipeline.publish_shards(out)
    wall = time.monotonic() - started
    result = sampler.finish()
    if trace:
        traced.append(_traced_top("end of dedup_phase"))
    result.update(traced=traced,
        wall_s=wall, stages=stages, info=info, rss_after_imports_mb=rss_imports, rss_after_ray_init_mb=rss_ray,
        minhash=next((p.model_dump() for p in cfg.dedup if p.stage == "minhash"), None),
        substring=next((p.model_dump(mode="json") for p in cfg.dedup if p.stage == "substring_dedup"), None),
        loadavg=os.getloadavg(),
    )
    ray.shutdown()
    return result


# ---------------------------------------------------------------- evaluation and report


def evaluate(folder: Path, result: dict) -> dict:
    truth = np.load(folder / "truth.npz")
    ids, family, is_copy, jaccard = truth["ids"], truth["family"], truth["is_copy"], truth["jaccard"]
    kept_ids = pq.read_table(folder / "out" / "shards", columns=["id"]).column("id").to_numpy(zero_copy_only=False)
    removed = ~np.isin(ids, kept_ids.astype(ids.dtype))
    size = np.bincount(family, minlength=family.max() + 1)
    removed_per_family = np.bincount(family, weights=removed, minlength=len(size)).astype(np.int64)
    planted = is_copy.sum()
    caught = np.minimum(removed_per_family, size - 1).sum()  # a family of n docs should lose n - 1
    over = np.maximum(removed_per_family - (size - 1), 0).sum()  # more than that: a non-planted removal
    p = result["minhash"]
    s_curve = 1 - (1 - jaccard**p["rows"]) ** p["bands"]
    return {
        "removed": int(removed.sum()),
        "planted": int(planted),
        "recall": float(caught / planted) if planted else float("nan"),
        "expected_recall": float(s_curve.mean()) if planted else float("nan"),
        "false_removed": int(over),
        "jaccard_quartiles": np.percentile(jaccard, [5, 25, 50, 75]).round(3).tolist() if len(jaccard) else [],
        "threshold": (1 / p["bands"]) ** (1 / p["rows"]),
    }


def report(rows: list[tuple[int, dict, dict]]) -> None:
    print()
    print("| hashes (bands x rows) | docs | wall s | docs/s | driver peak MB (after Ray init) | worker peak MB, max single | "
          "worker peak MB, max sum | removed | planted | planted recall (S-curve) | non-planted removed |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n, r, e in rows:
        m = r["minhash"]
        print(
            f"| {m['bands'] * m['rows']:,} ({m['bands']}x{m['rows']}, {m['hash_bits']}-bit, {m['partitions']} parts) | {n:,} | {r['wall_s']:.0f} | "
            f"{n / r['wall_s']:.0f} | {r['driver_peak_mb']:.0f} ({r['rss_after_ray_init_mb']:.0f}) | {r['worker_peak_mb']:.0f} | "
            f"{r['workers_sum_peak_mb']:.0f} | {e['removed']:,} | {e['planted']:,} | {e['recall']:.4f} ({e['expected_recall']:.4f}) | "
            f"{e['false_removed']:,} |"
        )
    print()
    for n, r, e in rows:
        m = r["minhash"]
        stage_lines = []
        last = 0.0
        for s in r["stages"]:
            stage_lines.append(
                f"{s['stage']} {s['at_s'] - last:.0f} s to the driver, {s['edges']:,} edges -> {s['removed']:,} removed, "
                f"union-find {s['union_find_s']:.2f} s, driver RSS {s['driver_rss_mb_at_edges']:.0f} MB with the edges"
            )
            last = s["at_s"] + s["union_find_s"]
        stage_lines.append(f"final write {r['wall_s'] - last:.0f} s")
        print(f"{n:,} docs, {m['bands']}x{m['rows']}:")
        print("  " + "; ".join(stage_lines))
        print(
            f"  driver: {r['rss_after_imports_mb']:.0f} MB after imports, {r['rss_after_ray_init_mb']:.0f} MB after Ray init, "
            f"peak {r['driver_peak_mb']:.0f} MB (anonymous {r['driver_anon_peak_mb']:.0f} MB)"
            f" ({'kernel high-water mark VmHWM, reset at the start' if r['hwm_reset'] else 'sampled every 0.2 s'})"
        )
        print(
            f"  workers: {r['worker_processes']} processes ({r['task_workers']} that ran tasks or idled, peak "
            f"{r['task_worker_peak_mb']:.0f} MB; {r['helper_actors']} Ray Data helper actors, peak {r['helper_actor_peak_mb']:.0f} MB), peak {r['worker_peak_mb']:.0f} MB single (anonymous "
            f"{r['worker_anon_peak_mb']:.0f}), {r['workers_sum_peak_mb']:.0f} MB sum (anonymous {r['workers_anon_sum_peak_mb']:.0f}); "
            f"Ray system processes {r['ray_system_sum_peak_mb']:.0f} MB; worker CPU {r['worker_cpu_s']:.0f} s = "
            f"{r['worker_cpu_s'] / r['wall_s']:.2f} cores busy on average; object store (/dev/shm) grew by up to "
            f"{r['shm_growth_peak_mb']:.0f} MB; load average at the end {r['loadavg'][0]:.1f}"
        )
        for t in r.get("traced", []):
            print(f"  tracemalloc, {t['label']}: {t['current_mb']:.1f} MB traced now, {t['peak_mb']:.1f} MB peak; top: "
                  + "; ".join(f"{x['mb']:.1f} MB {x['where'][-1]}" for x in t["top"][:4]))
        print(
            f"  planted copies' Jaccard p5/p25/p50/p75 {e['jaccard_quartiles']}, LSH threshold {e['threshold']:.3f}; "
            f"dedup info {json.dumps({k: v['removed'] for k, v in r['info'].items()})}"
        )


def corpus(folder: Path) -> tuple[list[str], list[str]]:
    """(ids, texts) of a built corpus, in shard order."""
    table = pa.concat_tables(pq.read_table(f, columns=["id", "text"]) for f in sorted((folder / "out" / "_filtered").glob("*.parquet")))
    return table.column("id").to_pylist(), table.column("text").to_pylist()


def evaluate_substring(folder: Path, result: dict, reference_docs: int) -> dict:
    """Tokens struck, and (corpora of at most `reference_docs`) whether every document's struck
    tokens are those of the brute-force rule."""
    from refinery.dedup.clusters import doc_ids_from_strings
    from refinery.dedup.substring import SubstringDedupParams, reference_struck, token_spans

    info = result["info"]["substring_dedup"]
    out = {"tokens_struck": info["tokens_struck"], "windows": info["windows"], "touched": info["documents_touched"],
           "dropped": info["removed"], "rejected": info["rejected_candidates"], "reference_tokens": None, "equal": None}
    ids, texts = corpus(folder)
    if len(ids) > reference_docs:
        return out
    started = time.monotonic()
    p = SubstringDedupParams(**{k: v for k, v in result["substring"].items() if k in ("min_tokens", "keep")})
    want = reference_struck(texts, doc_ids_from_strings(ids).tolist(), [0] * len(ids), p, passes=8)
    removed = pq.read_table(folder / "out" / "removed" / "substring_dedup", columns=["id", "spans"]).to_pylist()
    spans = {r["id"]: r["spans"] for r in removed}
    mismatched = 0
    for i, text, mask in zip(ids, texts, want):
        got = np.zeros(len(mask), dtype=bool)
        if i in spans:
            starts = np.array([a for a, _ in token_spans(text)])
            for sp in spans[i]:
                got[(starts >= sp["start"]) & (starts < sp["end"])] = True
        mismatched += not np.array_equal(got, mask)
    out.update(reference_tokens=int(sum(m.sum() for m in want)), mismatched_docs=mismatched, equal=mismatched == 0,
               reference_s=time.monotonic() - started, tokens=int(sum(len(m) for m in want)))
    return out


def report_substring(rows: list[tuple[int, dict, dict]]) -> None:
    print()
    print("| docs | wall s | docs/s | driver peak MB (after Ray init) | worker peak MB, max single | object store growth MB | "
          "windows | docs touched | dropped | tokens struck | brute-force reference | equal |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for n, r, e in rows:
        ref = f"{e['reference_tokens']:,}" if e["reference_tokens"] is not None else "-"
        share = f" ({100 * e['tokens_struck'] / e['windows']:.1f}%)" if e["windows"] else ""
        print(f"| {n:,} | {r['wall_s']:.0f} | {n / r['wall_s']:.0f} | {r['driver_peak_mb']:.0f} ({r['rss_after_ray_init_mb']:.0f}) | "
              f"{r['worker_peak_mb']:.0f} | {r['shm_growth_peak_mb']:.0f} | {e['windows']:,} | {e['touched']:,} | {e['dropped']:,} | "
              f"{e['tokens_struck']:,}{share} | {ref} | {'yes' if e['equal'] else ('-' if e['equal'] is None else 'NO')} |")
    for n, r, e in rows:
        print(f"{n:,} docs: {r['task_workers']} task workers, peak {r['task_worker_peak_mb']:.0f} MB; Ray Data helper actors peak "
              f"{r['helper_actor_peak_mb']:.0f} MB; rejected candidates {e['rejected']}; load average at the end {r['loadavg'][0]:.1f}; "
              f"stage info {json.dumps({k: v for k, v in r['info']['substring_dedup'].items() if k != 'groups'})}")


def suffix_array_child(folder: Path, method: str, min_tokens: int) -> dict:
    """One way to find the struck tokens of a whole corpus in this process: `hash` (substring
    dedup's windows and one sort, as passes 1-2 do per partition) or `suffix_array` (token ids,
    divsufsort, Kasai's LCP: Lee et al.'s way). Returns seconds, peak RSS and struck tokens."""
    import resource

    from refinery.dedup.substring import tokenize, window_hashes

    ids, texts = corpus(folder)
    array = pa.array(texts, pa.large_string())
    started = time.monotonic()
    counts = tokenize(array)[-1]
    offsets = np.r_[0, np.cumsum(counts)]
    struck = np.zeros(offsets[-1] + 1, dtype=np.int64)
    if method == "hash":
        hashes, text, pos = window_hashes(array, min_tokens)
        order = np.argsort(hashes, kind="stable")
        h = hashes[order]
        dup = np.zeros(len(h), dtype=bool)
        dup[1:] |= h[1:] == h[:-1]
        dup[:-1] |= h[1:] == h[:-1]
        start = offsets[text[order][dup]] + pos[order][dup]
    else:
        from pydivsufsort import divsufsort, kasai

        from refinery.dedup.substring import token_hashes

        _, token_id = np.unique(token_hashes(array)[0], return_inverse=True)
        vocab = int(token_id.max()) + 1 if len(token_id) else 1
        # each document ends with a separator of its own, so no common prefix crosses documents
        sequence = np.insert(token_id.astype(np.int64), offsets[1:], vocab + np.arange(len(counts))).astype(np.int64)
        doc_start = offsets + np.arange(len(offsets))  # where each document starts in `sequence`
        suffixes = divsufsort(sequence)
        lcp = kasai(sequence, suffixes)
        long = np.flatnonzero(lcp[:-1] >= min_tokens)  # suffixes i and i+1 share >= min_tokens tokens
        at = np.unique(np.r_[suffixes[long], suffixes[long + 1]])
        doc = np.searchsorted(doc_start, at, side="right") - 1
        start = offsets[doc] + (at - doc_start[doc])
    np.add.at(struck, start, 1)
    np.add.at(struck, start + min_tokens, -1)
    tokens = int((np.cumsum(struck)[:-1] > 0).sum())
    return {"method": method, "seconds": time.monotonic() - started, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "tokens_struck": tokens, "tokens": int(offsets[-1])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", default="10000,100000", help="corpus sizes, comma-separated")
    ap.add_argument("--stage", choices=("minhash", "substring_dedup"), default="minhash",
                    help="minhash: cc.yaml's MinHash then exact_dedup; substring_dedup: cc.yaml's substring_dedup alone")
    ap.add_argument("--bands", type=int, default=450)
    ap.add_argument("--rows", type=int, default=20)
    ap.add_argument("--hash-bits", type=int, choices=(32, 64), default=None, help="default: cc.yaml's (32)")
    ap.add_argument("--partitions", type=int, default=None, help="the stage's shuffle partitions; default: cc.yaml's (64)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--dup-fraction", type=float, default=0.3)
    ap.add_argument("--corpus", choices=("near", "spans"), default=None,
                    help="near: near-duplicate copies (MinHash's); spans: planted repeated spans (default for substring_dedup)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="out/dedup-scale")
    ap.add_argument("--reference-docs", type=int, default=10_000, help="substring_dedup: brute-force check up to this many docs")
    ap.add_argument("--compare-suffix-array", help="corpus sizes: hashed windows vs a suffix array, in one process each")
    ap.add_argument("--trace-driver", action="store_true", help="tracemalloc in the driver (Python-level allocations)")
    ap.add_argument("--measure", help=argparse.SUPPRESS)  # internal: one run in a fresh process
    ap.add_argument("--sa-child", help=argparse.SUPPRESS)  # internal: one suffix-array comparison run
    args = ap.parse_args()
    args.corpus = args.corpus or ("spans" if args.stage == "substring_dedup" or args.compare_suffix_array else "near")
    if args.measure:
        folder = Path(args.measure)
        result = measure(folder, args.bands, args.rows, args.hash_bits, args.workers, args.trace_driver, args.partitions, args.stage)
        (folder / "result.json").write_text(json.dumps(result))
        return
    if args.sa_child:
        folder, method = args.sa_child.rsplit(":", 1)
        print(json.dumps(suffix_array_child(Path(folder), method, 38)))
        return

    command = ["python", "benchmarks/dedup_scale.py"] + sys.argv[1:]
    print("reproduce: " + " ".join(shlex.quote(a) for a in command), flush=True)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    sizes = [int(x) for x in (args.compare_suffix_array or args.docs).split(",")]
    pool = None
    for n in sizes:
        folder = _folder(work, n, args.dup_fraction, args.corpus)
        if pool is None and not _corpus_ready(folder, n, args):
            pool = passage_pool(work, args.workers)
            print(f"passage pool: {len(pool):,} passages, {sum(len(p.split()) for p in pool):,} words", flush=True)
        if pool is not None:
            build_corpus(folder, n, args.dup_fraction, pool, args.seed, args.corpus)
    pool = None
    if args.compare_suffix_array:
        print("\n| docs | tokens | method | seconds | peak RSS MB | tokens struck |\n| ---: | ---: | --- | ---: | ---: | ---: |")
        for n in sizes:
            for method in ("hash", "suffix_array"):
                child = subprocess.run([sys.executable, __file__, "--sa-child", f"{_folder(work, n, args.dup_fraction, args.corpus)}:{method}"],
                                       check=True, capture_output=True, text=True)
                r = json.loads(child.stdout.strip().splitlines()[-1])
                print(f"| {n:,} | {r['tokens']:,} | {method} | {r['seconds']:.1f} | {r['peak_rss_mb']:.0f} | {r['tokens_struck']:,} |", flush=True)
        print(f"load average {os.getloadavg()[0]:.1f}")
        return
    rows = []
    for n in sizes:
        folder = _folder(work, n, args.dup_fraction, args.corpus)
        cmd = [sys.executable, __file__, "--measure", str(folder), "--bands", str(args.bands), "--rows", str(args.rows),
               "--workers", str(args.workers), "--stage", args.stage] + (["--hash-bits", str(args.hash_bits)] if args.hash_bits else []) \
            + (["--trace-driver"] if args.trace_driver else []) + (["--partitions", str(args.partitions)] if args.partitions else [])
        print(f"dedup phase on {n:,} docs ...", flush=True)
        subprocess.run(cmd, check=True)
        result = json.loads((folder / "result.json").read_text())
        tag = (args.stage if args.stage != "minhash" else f"{args.bands}x{args.rows}" + (f"-{args.hash_bits}" if args.hash_bits else "")) \
            + (f"-p{args.partitions}" if args.partitions else "")
        (folder / f"result-{tag}.json").write_text(json.dumps(result))
        evaluation = evaluate(folder, result) if args.stage == "minhash" else evaluate_substring(folder, result, args.reference_docs)
        rows.append((n, result, evaluation))
        print(f"  {result['wall_s']:.0f} s", flush=True)
    report(rows) if args.stage == "minhash" else report_substring(rows)


def _folder(work: Path, n: int, dup_fraction: float, kind: str = "near") -> Path:
    if kind == "spans":
        return work / f"docs-{n}-spans"
    return work / (f"docs-{n}" if dup_fraction == 0.3 else f"docs-{n}-dup{dup_fraction:g}")


def _corpus_ready(folder: Path, n: int, args) -> bool:
    marker = folder / "corpus.json"
    if not marker.exists():
        return False
    spec = json.loads(marker.read_text())
    return spec.get("version") == CORPUS_VERSION and spec.get("docs") == n and spec.get("dup_fraction") == args.dup_fraction \
        and spec.get("seed") == args.seed and spec.get("kind", "near") == args.corpus


if __name__ == "__main__":
    main()
