"""Every preset in pipelines/ loaded and run end to end on real pages, with what each of its own
stages removed checked against the stage's rule, recomputed here (run_checks.py):

- cc.yaml: the session's crawl-sample run (conftest.crawl_run);
- fineweb.yaml: the pages cc.yaml's language ID keeps, plus planted copies for its 64-bit MinHash;
- extract-only.yaml (the baseline arm of `refinery pretrain --baseline`): the first records of the
  crawl sample, with --limit.

The assertions hold for any thresholds: a stage's reasons are its own and its rule reproduces
them, the funnel adds up against the files, a removed duplicate shares an LSH cluster with a
kept document; never today's exact counts."""
from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from warcio.archiveiterator import ArchiveIterator

from conftest import REPO, run_cli
from refinery.config import load_config
from refinery.extract import extract_text
from refinery.filters.fineweb import fineweb_quality
from refinery.dedup.minhash import MinHashParams
from run_checks import (
    RunOutput,
    check_dedup_removals,
    check_filter_removals,
    check_funnel_against_files,
    warc_record_row,
)
from warc_builders import write_warc

PRESETS = REPO / "pipelines"
LIMIT = 60  # records of the extract-only run


def test_the_presets_are_the_three_these_tests_run():
    """A new preset fails here until a test runs it."""
    assert sorted(p.name for p in PRESETS.glob("*.yaml")) == ["cc.yaml", "extract-only.yaml", "fineweb.yaml"]
    for p in PRESETS.glob("*.yaml"):
        assert load_config(p).stages


def copy_records(src: Path, offsets: list[int], all_offsets: list[int]) -> bytes:
    """The gzip members of `src` at `offsets`, byte for byte; a member ends where the next record
    starts (`all_offsets`: every record of the file)."""
    data = src.read_bytes()
    ends = dict(zip(sorted(all_offsets), [*sorted(all_offsets)[1:], len(data)]))
    return b"".join(data[o : ends[o]] for o in offsets)


@pytest.fixture(scope="module")
def runs(crawl_run, data_dir, tmp_path_factory):
    """The fineweb.yaml and extract-only.yaml runs, started together (each is a CLI run with a
    local Ray of its own). fineweb's input is one WARC: the pages cc.yaml's language ID kept in
    crawl_run, then 3 exact copies and 4 edited copies ("the" -> "a") of kept pages under new URLs."""
    cc_out, _, cc_stats = crawl_run
    crawl = data_dir / "crawl-sample" / "real-pages.warc.gz"
    cc = RunOutput(cc_out)
    names = [s["stage"] for s in cc_stats["stages"]]
    before_text_filters = names[: names.index("language") + 1]
    rows = {n: cc.table(f"removed/{n}", ["source_offset"]) for n in names}
    every = [o for t in [cc.table("shards", ["source_offset"]), *rows.values()] if t is not None for o in t.column(0).to_pylist()]
    dropped = {o for n in before_text_filters if rows[n] is not None for o in rows[n].column(0).to_pylist()}
    english = sorted(set(every) - dropped)
    kept = cc.table("shards", ["id", "url", "source_offset", "n_words"]).sort_by("id").to_pylist()
    long_pages = [r for r in kept if r["n_words"] >= 300][:7]
    planted = []
    for i, r in enumerate(long_pages):
        html = warc_record_row(str(crawl), r["source_offset"])["html"].encode()
        planted.append((f"https://mirror{i}.example/copy", html if i < 3 else html.replace(b" the ", b" a "), "text/html", "200 OK"))
    folder = tmp_path_factory.mktemp("presets")
    extra = write_warc(folder / "planted.warc.gz", planted)
    fineweb_in = folder / "english.warc.gz"
    fineweb_in.write_bytes(copy_records(crawl, english, every) + extra.read_bytes())
    commands = {
        "fineweb": ["run", "pipelines/fineweb.yaml", "--input", str(fineweb_in), "--output", str(folder / "fineweb"), "--write-removed"],
        "extract-only": ["run", "pipelines/extract-only.yaml", "--input", str(crawl), "--limit", str(LIMIT),
                         "--output", str(folder / "extract-only"), "--write-removed"],
    }
    with ThreadPoolExecutor(len(commands)) as pool:
        procs = {name: pool.submit(run_cli, *args) for name, args in commands.items()}
        result = {}
        for name, future in procs.items():
            proc = future.result()
            assert proc.returncode == 0, proc.stderr[-3000:]
            out = RunOutput(folder / name)
            result[name] = (out, out.stats())
    result["planted"] = (long_pages, len(english))
    return result


# --- cc.yaml ---------------------------------------------------------------------------------------


def test_cc_yaml_stages_remove_by_their_own_rules(crawl_run):
    out, _, stats = crawl_run
    cfg = load_config(PRESETS / "cc.yaml")
    reasons = check_filter_removals(RunOutput(out), cfg, stats)
    assert reasons["language_prefilter"] and reasons["language"] and reasons["gopher_quality"]
    check_dedup_removals(RunOutput(out), cfg, stats)


# --- fineweb.yaml ----------------------------------------------------------------------------------


def test_fineweb_yaml_runs_c4_fineweb_quality_and_64_bit_minhash():
    cfg = load_config(PRESETS / "fineweb.yaml")
    assert {"c4", "fineweb_quality"} <= {p.stage for p in cfg.stages}
    minhash = [p for p in cfg.dedup if isinstance(p, MinHashParams)]
    assert len(minhash) == 1 and minhash[0].hash_bits == 64


def test_fineweb_yaml_funnel_matches_its_files(runs):
    out, stats = runs["fineweb"]
    long_pages, n_english = runs["planted"]
    assert stats["records_read"] == n_english + len(long_pages)
    check_funnel_against_files(out, stats)


def test_fineweb_yaml_filter_stages_remove_by_their_own_rules(runs):
    out, stats = runs["fineweb"]
    cfg = load_config(PRESETS / "fineweb.yaml")
    reasons = check_filter_removals(out, cfg, stats)
    assert reasons["c4"] and reasons["fineweb_quality"], reasons  # FineWeb's own rules have work on these pages
    quality = next(p for p in cfg.stages if p.stage == "fineweb_quality")
    kept = out.table("shards", ["text"]).column("text").to_pylist()
    assert all(fineweb_quality(t, quality) is None for t in kept)  # and what they keep passes them


def test_fineweb_yaml_minhash_removes_exactly_one_per_lsh_cluster(runs):
    out, stats = runs["fineweb"]
    long_pages, _ = runs["planted"]
    removed = check_dedup_removals(out, load_config(PRESETS / "fineweb.yaml"), stats)
    assert removed["minhash"] >= 3
    # each exact copy and its original: one of the two is kept
    kept_urls = set(out.table("shards", ["url"]).column("url").to_pylist())
    for i, page in enumerate(long_pages[:3]):
        assert len({page["url"], f"https://mirror{i}.example/copy"} & kept_urls) == 1


# --- extract-only.yaml, with --limit ---------------------------------------------------------------


def first_record_ids(path: Path, n: int) -> list[str]:
    with open(path, "rb") as f:
        it = iter(ArchiveIterator(f))
        return [next(it).rec_headers.get_header("WARC-Record-ID").strip("<>").removeprefix("urn:uuid:") for _ in range(n)]


def test_limit_reads_exactly_the_first_n_records(runs, data_dir):
    out, stats = runs["extract-only"]
    assert stats["records_read"] == LIMIT
    ids = out.table("shards", ["id"]).column("id").to_pylist()
    removed = out.table("removed/extract", ["id"])
    ids += removed.column("id").to_pylist() if removed is not None else []
    assert sorted(ids) == sorted(first_record_ids(data_dir / "crawl-sample" / "real-pages.warc.gz", LIMIT))


def test_extract_only_yaml_removes_only_pages_without_text_and_keeps_every_language(runs, crawl_run):
    out, stats = runs["extract-only"]
    cfg = load_config(PRESETS / "extract-only.yaml")
    assert [p.stage for p in cfg.stages] == ["extract"]
    check_funnel_against_files(out, stats)
    check_filter_removals(out, cfg, stats, html_sample=LIMIT)
    kept = out.table("shards", ["id", "source", "source_offset", "text", "language"]).to_pylist()
    assert kept and all(r["language"] is None for r in kept)  # no language ID in the baseline
    # what it keeps is exactly what its extract stage makes of each page
    for r in kept:
        assert r["text"] == extract_text(warc_record_row(r["source"], r["source_offset"])["html"], cfg.stages[0])[0]
    # pages the filtered pipeline drops for their language are in the baseline
    cc_out = crawl_run[0]
    not_english = RunOutput(cc_out).table("removed/language_prefilter", ["id"]).column("id").to_pylist()
    assert set(not_english) & {r["id"] for r in kept}
    assert Counter(r["id"] for r in kept).most_common(1)[0][1] == 1
