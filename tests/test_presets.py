"""Every preset in pipelines/ loaded and run end to end on real pages, with what each of its own
stages removed checked against the stage's rule, recomputed here (run_checks.py):

- cc.yaml: the session's crawl-sample run (conftest.crawl_run);
- fineweb.yaml: English pages of the crawl sample, plus planted copies for its 64-bit MinHash;
- extract-only.yaml (the baseline arm of `refinery pretrain --baseline`): the first records of the
  crawl sample, with --limit.

The assertions hold for any thresholds: a stage's reasons are its own and its rule reproduces
them, the funnel adds up against the files, a removed duplicate shares an LSH cluster with a
kept document; never today's exact counts.

Then the `refinery run` options and refusals a user meets, end to end: --limit (the extract-only
run), --overwrite over a folder that held something else, a page whose extraction runs out of
time, and the output folders a run refuses to touch. The three runs start together: each is a
CLI run with a local Ray of its own, and most of a small run is Ray starting."""
from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from warcio.archiveiterator import ArchiveIterator

from conftest import REPO, run_cli
from refinery.config import load_config
from refinery.extract import extract_text
from refinery.filters.fineweb import fineweb_quality
from refinery.filters.language import identify_language, page_text
from refinery.dedup.minhash import MinHashParams
from refinery.schema import rows_from_pylist
from refinery.stages import apply_stage
from run_checks import (
    RunOutput,
    check_dedup_removals,
    check_filter_removals,
    check_funnel_against_files,
    warc_payload,
    warc_record_row,
)
from warc_builders import real_pages, write_warc

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


def fineweb_keeps(crawl: Path, candidates: list[dict], n: int) -> list[dict]:
    """The WARC rows of the first `n` pages of 300+ words that fineweb.yaml's filter stages keep,
    run here on them one by one: copies of these reach its dedup phase whatever its thresholds."""
    stages = load_config(PRESETS / "fineweb.yaml").stages
    found = []
    for candidate in (c for c in candidates if c["n_words"] >= 300):
        row = warc_record_row(str(crawl), candidate["source_offset"])
        batch = rows_from_pylist([row])
        for p in stages:
            batch = apply_stage(batch, p)
        if batch.column("removed_by")[0].as_py() is None:
            found.append(row)
            if len(found) == n:
                return found
    raise AssertionError(f"only {len(found)} pages of crawl_run pass fineweb.yaml's filters")


def english_pages(cc: RunOutput, stats: dict, fineweb_stages: list) -> list[int]:
    """Offsets of crawl-sample pages whose text cc.yaml's language ID kept: every one that
    fineweb's own rules (its stages cc.yaml lacks, run here on crawl_run's texts) would likely
    drop, and every fourth of the others, so that those rules have work in a run of ~100 pages."""
    names = [s["stage"] for s in stats["stages"]]
    after_language = names[names.index("language") + 1 :]
    texts = [t for t in [cc.table("shards", ["source_offset", "text"]), *(cc.table(f"removed/{n}", ["source_offset", "text"]) for n in after_language)] if t is not None]
    rows = [r for t in texts for r in t.to_pylist()]
    own = [p for p in fineweb_stages if p.stage not in names]
    batch = rows_from_pylist([{"id": str(r["source_offset"]), "text": r["text"]} for r in rows])
    for p in own:
        batch = apply_stage(batch, p)
    flagged = {int(i) for i, by in zip(batch.column("id").to_pylist(), batch.column("removed_by").to_pylist()) if by}
    others = sorted(r["source_offset"] for r in rows if r["source_offset"] not in flagged)
    return sorted(flagged | set(others[::4]))


GIANT_CHARS = 25_000_000  # a real page's body repeated: seconds of trafilatura's CPU time, far past timeout_s


def giant(html: bytes, chars: int) -> bytes:
    """The page with its body repeated inside one <body> until it is `chars` long."""
    low = html.lower()
    i = html.index(b">", low.index(b"<body")) + 1
    j = low.rindex(b"</body")
    return html[:i] + html[i:j] * (chars // (j - i) + 1) + html[j:]


@pytest.fixture(scope="module")
def runs(crawl_run, data_dir, tmp_path_factory):
    """Three CLI runs, started together:
    - fineweb.yaml over one WARC: English pages (`english_pages`), then 3 exact copies and 4
      edited copies ("the" -> "a"), under new URLs, of pages fineweb.yaml's filters keep;
    - extract-only.yaml over crawl-sample with --limit;
    - extract-only.yaml with max_html_chars raised so that a 25 MB page reaches trafilatura
      (timeout_s stays the default), over three English pages and that page, into a folder that
      held a note and a stale shard, with --overwrite; its input is a glob."""
    cc_out, _, cc_stats = crawl_run
    crawl = data_dir / "crawl-sample" / "real-pages.warc.gz"
    cc = RunOutput(cc_out)
    fineweb = load_config(PRESETS / "fineweb.yaml")
    every = [o for t in [cc.table("shards", ["source_offset"]), *(cc.table(f"removed/{s['stage']}", ["source_offset"]) for s in cc_stats["stages"])]
             if t is not None for o in t.column(0).to_pylist()]
    long_pages = fineweb_keeps(crawl, cc.table("shards", ["source_offset", "n_words"]).sort_by("source_offset").to_pylist(), 7)
    english = sorted(set(english_pages(cc, cc_stats, fineweb.stages)) | {p["source_offset"] for p in long_pages})
    planted = []
    for i, page in enumerate(long_pages):
        content_type, html = warc_payload(str(crawl), page["source_offset"])
        planted.append((f"https://mirror{i}.example/copy", html if i < 3 else html.replace(b" the ", b" a "), content_type, "200 OK"))
    folder = tmp_path_factory.mktemp("presets")
    extra = write_warc(folder / "planted.warc.gz", planted)
    fineweb_in = folder / "english.warc.gz"
    fineweb_in.write_bytes(copy_records(crawl, english, every) + extra.read_bytes())

    pages = [(u, h) for u, h in real_pages(crawl, 40) if identify_language(page_text(h.decode("utf-8", "replace")))[0] == "en"][:4]
    (url, html), normal = pages[0], pages[1:]
    (folder / "in").mkdir()
    timeout_in = write_warc(folder / "in" / "pages.warc.gz", [(u, h, "text/html", "200 OK") for u, h in normal] + [(url + "?giant", giant(html, GIANT_CHARS), "text/html", "200 OK")])
    config = yaml.safe_load((PRESETS / "extract-only.yaml").read_text())
    config["stages"][0]["max_html_chars"] = 2 * GIANT_CHARS
    timeout_cfg = folder / "extract.yaml"
    timeout_cfg.write_text(yaml.safe_dump(config))
    (folder / "timeout" / "shards").mkdir(parents=True)
    (folder / "timeout" / "notes.txt").write_text("not a run")
    pq.write_table(pa.table({"stale": [1, 2, 3]}), folder / "timeout" / "shards" / "part-00000.parquet")

    commands = {
        "fineweb": ["run", "pipelines/fineweb.yaml", "--input", str(fineweb_in), "--output", str(folder / "fineweb"), "--write-removed"],
        "extract-only": ["run", "pipelines/extract-only.yaml", "--input", str(crawl), "--limit", str(LIMIT),
                         "--output", str(folder / "extract-only"), "--write-removed"],
        "timeout": ["run", str(timeout_cfg), "--input", str(folder / "in" / "*.warc.gz"), "--output", str(folder / "timeout"),
                    "--write-removed", "--overwrite"],
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
    result["timeout_case"] = (timeout_cfg, timeout_in, folder / "timeout", [u for u, _ in normal], url + "?giant")
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


# --- run options and refusals ---------------------------------------------------------------------


def test_overwrite_replaces_a_folder_that_held_something_else(runs):
    _, _, out, _, _ = runs["timeout_case"]
    assert not (out / "notes.txt").exists()
    shards = pq.read_table(out / "shards")
    assert "stale" not in shards.column_names
    assert shards.num_rows == json.loads((out / "stats.json").read_text())["kept"]["docs"]


def test_a_page_that_runs_out_of_extraction_time_is_removed_and_the_run_goes_on(runs):
    _, _, out, normal, giant_url = runs["timeout_case"]
    stats = json.loads((out / "stats.json").read_text())
    extract = next(s for s in stats["stages"] if s["stage"] == "extract")
    assert extract["removed"] == {"extract:timeout": 1}
    removed = pq.read_table(out / "removed" / "extract").to_pylist()
    assert [(r["url"], r["reason"]) for r in removed] == [(giant_url, "extract:timeout")]
    assert sorted(pq.read_table(out / "shards", columns=["url"]).column("url").to_pylist()) == sorted(normal)


def test_a_non_empty_folder_holding_no_run_is_refused_and_left_as_it_was(data_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.tex").write_text("weeks of work")
    warc = data_dir / "warc-samples" / "common-crawl" / "CC-MAIN-2019-51-single.jwarc.warc.gz"
    proc = run_cli("run", "pipelines/extract-only.yaml", "--input", str(warc), "--output", str(out), timeout=120)
    assert proc.returncode == 2
    assert "not empty and holds no Refinery run" in proc.stderr and "--overwrite" in proc.stderr
    assert [p.name for p in out.iterdir()] == ["thesis.tex"] and (out / "thesis.tex").read_text() == "weeks of work"


def test_a_rerun_whose_glob_now_matches_other_files_is_refused_and_the_finished_run_left_as_it_was(runs, data_dir):
    cfg, warc, out, _, _ = runs["timeout_case"]
    before = {f: f.stat().st_mtime_ns for f in out.rglob("*")}
    added = warc.parent / "more.warc.gz"
    added.write_bytes((data_dir / "warc-samples" / "common-crawl" / "CC-MAIN-2019-51-single.jwarc.warc.gz").read_bytes())
    try:
        proc = run_cli("run", str(cfg), "--input", str(warc.parent / "*.warc.gz"), "--output", str(out), "--write-removed", timeout=120)
    finally:
        added.unlink()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "different config (changed: input files)" in proc.stderr and "--overwrite" in proc.stderr
    assert {f: f.stat().st_mtime_ns for f in out.rglob("*")} == before
