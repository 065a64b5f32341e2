"""`refinery run` end to end as a user runs it: real WARCs in, shards + stats.json + funnel out."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from refinery.filters.language import identify_language, page_text
from refinery.schema import SHARD
from conftest import run_cli
from run_checks import RunOutput, check_funnel_against_files
from warc_builders import count_records, real_pages, truncated_copy, write_warc

CC = "pipelines/cc.yaml"


def test_shards_have_the_document_schema(crawl_run):
    out, _, stats = crawl_run
    table = pq.read_table(out / "shards")
    assert table.schema.remove_metadata().equals(SHARD)
    assert table.num_rows == stats["kept"]["docs"] > 0
    assert len(set(table.column("id").to_pylist())) == table.num_rows
    assert all(t for t in table.column("text").to_pylist())
    for f in (out / "shards").glob("*.parquet"):
        assert pq.ParquetFile(f).metadata.row_group(0).column(0).compression == "ZSTD"


def test_every_record_is_a_shard_or_removed_row_and_the_funnel_counts_those_files(crawl_run):
    out, _, stats = crawl_run
    assert stats["records_read"] == 1171  # the sample's response records (crawl-sample/README.md)
    # documents, words and characters in and out of every stage, counted from the shards and removed rows
    check_funnel_against_files(RunOutput(out), stats)


def test_language_id_removes_non_english(crawl_run):
    out, _, stats = crawl_run
    removed = {r: n for s in stats["stages"] for r, n in s["removed"].items()}
    # the sample is mostly German (699 pages per its README): LID (before or after extraction)
    # must remove most documents
    assert removed["language:not_target"] + removed.get("language_prefilter:not_target", 0) > 600
    assert stats["languages"]["de"] > 600
    kept = pq.read_table(out / "shards", columns=["language", "language_score"]).to_pydict()
    assert set(kept["language"]) == {"en"}
    assert min(kept["language_score"]) >= 0.65


def test_removed_documents_are_written_per_stage(crawl_run):
    out, _, stats = crawl_run
    for s in stats["stages"]:
        n = sum(s["removed"].values())
        folder = out / "removed" / s["stage"]
        if n == 0 and s["stage"] != "substring_dedup":
            assert not folder.exists()
            continue
        removed = pq.read_table(folder)
        reasons = Counter(removed.column("reason").to_pylist())
        # substring dedup also lists the documents it kept with spans struck out of them
        struck = reasons.pop("substring_dedup:spans_struck", 0)
        assert removed.num_rows == n + struck
        assert reasons == Counter(s["removed"])
    lang = pq.read_table(out / "removed" / "language").to_pydict()
    assert all(lang["text"])  # the text a rule removed can be read


def test_removed_rows_say_what_the_rule_measured(crawl_run):
    out, _, stats = crawl_run
    for s in stats["stages"]:
        if s["phase"] == "filter" and s["removed"]:
            details = pq.read_table(out / "removed" / s["stage"], columns=["reason_detail"]).column(0).to_pylist()
            assert all(details), s["stage"]
    lang = pq.read_table(out / "removed" / "language").to_pylist()
    assert all(r["reason_detail"].startswith("language ") for r in lang)
    assert all(r["reason_detail"].endswith("not en" if r["reason"] == "language:not_target" else "< 0.65") for r in lang)
    low = [r for r in pq.read_table(out / "removed" / "gopher_repetition").to_pylist() if r["reason"].endswith("dup_5_gram")]
    assert low and all(float(r["reason_detail"].split()[1]) > 0.15 for r in low)


def test_lines_removed_from_documents_can_be_read_back(crawl_run):
    """removed_lines/line_corrections/ holds every line the corrections took, with its rule;
    for a document they dropped whole, the line numbers index its text in removed/."""
    out, _, stats = crawl_run
    lines = pq.read_table(out / "removed_lines" / "line_corrections").to_pylist()
    assert {r["rule"] for r in lines} >= {"few_words", "uppercase"}
    dropped = {r["id"]: r["text"] for r in pq.read_table(out / "removed" / "line_corrections").to_pylist()}
    assert dropped
    for r in lines:
        if r["id"] in dropped:
            assert r["text"] in dropped[r["id"]].split("\n")[r["line"]]
    kept_ids = set(pq.read_table(out / "shards", columns=["id"]).column(0).to_pylist())
    assert any(r["id"] in kept_ids for r in lines)  # lines struck from documents that were kept
    assert [f.name for f in (out / "removed_lines").iterdir()] == ["line_corrections"]  # only text-modifying stages


def test_funnel_counts_words_struck_where_they_are_struck(crawl_run):
    out, _, stats = crawl_run
    assert stats["schema_version"] == 3 and stats["token_unit"].startswith("words")
    rows = {s["stage"]: s for s in stats["stages"]}
    shard_words = sum(len(t.split()) for t in pq.read_table(out / "shards", columns=["text"]).column(0).to_pylist())
    assert stats["stages"][-1]["words_out"] == stats["kept"]["words"] == shard_words
    assert rows["extract"]["words_out"] == stats["words_extracted"] > shard_words
    # the words of the lines line corrections took from the documents it kept, as removed_lines/ holds them
    # (every stage's words in and out against the files: test_every_record_is_a_shard_or_removed_row_...)
    dropped = set(pq.read_table(out / "removed" / "line_corrections", columns=["id"]).column(0).to_pylist())
    lines = pq.read_table(out / "removed_lines" / "line_corrections", columns=["id", "text"]).to_pylist()
    assert rows["line_corrections"]["words_struck"] == sum(len(r["text"].split()) for r in lines if r["id"] not in dropped) > 0


def test_funnel_compares_with_figure2_as_the_paper_measures(crawl_run):
    _, _, stats = crawl_run
    rows = {s["stage"]: s for s in stats["stages"]}
    docs = stats["documents"]
    lost_before_text = sum(rows[s]["docs_in"] - rows[s]["docs_out"] for s in ("url_filter", "extract"))
    assert rows["extract"]["figure2_percent"] == pytest.approx(100 * (docs - lost_before_text) / docs, abs=0.01)
    assert rows["extract"]["figure2_percent"] > 95  # what is left to compare with the paper's 96.31
    assert rows["language_prefilter"]["figure2_percent"] is None
    assert rows["language"]["figure2_percent"] == rows["language"]["percent_of_documents"]
    assert [rows[s]["figure2_measure"] for s in ("gopher_quality", "line_corrections", "minhash", "substring_dedup")] == [
        "documents", "documents", "tokens", "tokens"]
    lc, md = rows["line_corrections"], rows["minhash"]
    assert md["figure2_percent"] == pytest.approx(lc["figure2_percent"] * md["words_out"] / lc["words_out"], abs=0.01)


def test_funnel_is_printed_beside_refinedweb(crawl_run):
    _, proc, stats = crawl_run
    assert "RefinedWeb %" in proc.stdout
    for s in stats["stages"]:
        assert s["stage"] in proc.stdout
    reference = {s["stage"]: s["refinedweb_percent"] for s in stats["stages"]}
    assert reference == {
        "url_filter": 97.76, "extract": 96.31, "language": 47.51, "gopher_repetition": 35.97,
        "gopher_quality": 30.15, "line_corrections": 23.34, "minhash": 14.50, "substring_dedup": 11.67, "url_dedup": None,
    } | ({"language_prefilter": None} if "language_prefilter" in reference else {})
    assert f"kept: {stats['kept']['docs']:,} documents" in proc.stdout
    assert "Tokens are words" in proc.stdout
    extract = next(line for line in proc.stdout.splitlines() if line.startswith("extract "))
    assert f"{reference['extract']:.2f}" in extract and "docs" in extract


def test_shards_load_in_datasets_duckdb_polars(crawl_run, tmp_path):
    out, _, stats = crawl_run
    import datasets
    import duckdb
    import polars as pl

    files = sorted(str(f) for f in (out / "shards").glob("*.parquet"))
    n = stats["kept"]["docs"]
    assert datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(tmp_path)).num_rows == n
    assert duckdb.sql(f"select count(*) from read_parquet({files!r})").fetchall()[0][0] == n
    assert pl.read_parquet(files).height == n


def test_bad_inputs_are_counted_and_good_data_still_processed(data_dir, tmp_path):
    good = data_dir / "warc-samples" / "archive-crawls" / "dolma-wget-sample-0000.warc.gz"
    pages = real_pages(data_dir / "crawl-sample" / "real-pages.warc.gz", 40)
    english = [(u, h) for u, h in pages if identify_language(page_text(h.decode("utf-8", "replace")))[0] == "en"]
    (url, html), (url2, html2) = pages[0], english[0]  # the giant page must get past language ID to reach extraction
    giant = (html2 * (30_000_000 // len(html2) + 1))[:30_000_000]
    odd = write_warc(
        tmp_path / "odd.warc.gz",
        [
            (url, html, "text/html; charset=no-such-charset", "200 OK"),  # bogus charset: decoded anyway
            (url2 + "?big", giant, "text/html", "200 OK"),  # 30 MB page: dropped by the size limit
            (url2, html2, "text/html", "404 Not Found"),
        ],
    )
    truncated = truncated_copy(data_dir / "warc-samples" / "archive-crawls" / "dolma-wget-sample-0001.warc.gz", tmp_path / "truncated.warc.gz")
    not_warc = tmp_path / "notes.warc"
    not_warc.write_text("this is not a WARC file\n" * 100)
    empty = tmp_path / "empty.warc.gz"
    empty.write_bytes(b"")
    out = tmp_path / "out"
    proc = run_cli("run", CC, "--input", str(good), str(odd), str(truncated), str(not_warc), str(empty), "--output", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = json.loads((out / "stats.json").read_text())
    errors = {Path(e["source"]).name: e["reason"] for e in stats["errors"]}
    assert errors["truncated.warc.gz"] == "read:truncated_record"
    assert errors["notes.warc"].startswith("read:error:")
    assert errors["empty.warc.gz"] == "read:empty_file"
    for name in errors:
        assert name in proc.stdout  # a clear message per bad file
    # every record warcio itself finds (the truncated one included), plus one row per unreadable file
    assert stats["records_read"] == count_records(good) + 3 + count_records(truncated) + 2
    extract = next(s for s in stats["stages"] if s["stage"] == "extract")
    assert extract["removed"]["extract:html_too_large"] == 1
    assert stats["not_documents"]["read:http_404"] == 1
    kept = pq.read_table(out / "shards", columns=["source", "url"]).to_pydict()
    assert len(kept["url"]) == stats["kept"]["docs"]
    assert any(s.endswith("dolma-wget-sample-0000.warc.gz") for s in kept["source"])  # good data still processed


def test_no_readable_input_exits_non_zero(tmp_path):
    bad = tmp_path / "bad.warc.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00 definitely not gzip")
    proc = run_cli("run", CC, "--input", str(bad), "--output", str(tmp_path / "out"))
    assert proc.returncode == 1
    assert "bad.warc.gz" in proc.stdout


@pytest.mark.parametrize(
    "yaml_text, field",
    [
        ("stages:\n  - stage: extract\n  - stage: gopher_quality\n    min_wordz: 3\n", "stages.1.gopher_quality.min_wordz"),
        ("stages:\n  - stage: extract\n  - stage: language\n    threshold: 1.5\n", "stages.1.language.threshold"),
        ("stages:\n  - stage: no_such_stage\n", "stages.0"),
        ("shard_rowz: 3\nstages:\n  - stage: extract\n", "shard_rowz"),
        ("stages:\n  - stage: gopher_quality\n  - stage: extract\n", "must come after extract"),
    ],
)
def test_bad_config_exits_2_naming_the_field_and_writes_nothing(tmp_path, yaml_text, field):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml_text)
    out = tmp_path / "out"
    proc = run_cli("run", str(cfg), "--input", "whatever.warc.gz", "--output", str(out))
    assert proc.returncode == 2
    assert field in proc.stderr
    assert not out.exists()


def test_input_that_matches_nothing_is_an_error(tmp_path):
    proc = run_cli("run", CC, "--input", str(tmp_path / "nope-*.warc.gz"), "--output", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "matches no file" in proc.stderr
