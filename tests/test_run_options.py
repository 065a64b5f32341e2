"""`refinery run` options and refusals end to end, as a user meets them: --overwrite replacing a
folder that held something else, a page whose extraction runs out of time removed as
`extract:timeout` while the run goes on, and the output folders a run refuses to touch. (--limit:
test_presets.py, on the extract-only run.)"""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import REPO, run_cli
from refinery.filters.language import identify_language, page_text
from warc_builders import real_pages, write_warc

GIANT_CHARS = 25_000_000  # a real page's body repeated: seconds of trafilatura's CPU time, far past timeout_s


def giant(html: bytes, chars: int) -> bytes:
    """The page with its body repeated inside one <body> until it is `chars` long."""
    low = html.lower()
    i = html.index(b">", low.index(b"<body")) + 1
    j = low.rindex(b"</body")
    return html[:i] + html[i:j] * (chars // (j - i) + 1) + html[j:]


@pytest.fixture(scope="module")
def timeout_run(data_dir, tmp_path_factory):
    """extract-only.yaml with max_html_chars raised so that a 25 MB page reaches trafilatura (its
    timeout_s stays the default), over three English pages and that page; the output folder held
    a note and a stale shard, and --overwrite is passed."""
    folder = tmp_path_factory.mktemp("timeout")
    pages = [(u, h) for u, h in real_pages(data_dir / "crawl-sample" / "real-pages.warc.gz", 40)
             if identify_language(page_text(h.decode("utf-8", "replace")))[0] == "en"][:4]
    (url, html), normal = pages[0], pages[1:]
    big = giant(html, GIANT_CHARS)
    (folder / "in").mkdir()
    warc = write_warc(folder / "in" / "pages.warc.gz", [(u, h, "text/html", "200 OK") for u, h in normal] + [(url + "?giant", big, "text/html", "200 OK")])
    config = yaml.safe_load((REPO / "pipelines" / "extract-only.yaml").read_text())
    config["stages"][0]["max_html_chars"] = 2 * GIANT_CHARS
    cfg = folder / "extract.yaml"
    cfg.write_text(yaml.safe_dump(config))
    out = folder / "out"
    (out / "shards").mkdir(parents=True)
    (out / "notes.txt").write_text("not a run")
    pq.write_table(pa.table({"stale": [1, 2, 3]}), out / "shards" / "part-00000.parquet")
    proc = run_cli("run", str(cfg), "--input", str(folder / "in" / "*.warc.gz"), "--output", str(out), "--write-removed", "--overwrite")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cfg, warc, out, [u for u, _ in normal], url + "?giant"


def test_overwrite_replaces_a_folder_that_held_something_else(timeout_run):
    *_, out, normal, _ = timeout_run
    assert not (out / "notes.txt").exists()
    shards = pq.read_table(out / "shards")
    assert "stale" not in shards.column_names
    assert shards.num_rows == json.loads((out / "stats.json").read_text())["kept"]["docs"]


def test_a_page_that_runs_out_of_extraction_time_is_removed_and_the_run_goes_on(timeout_run):
    *_, out, normal, giant_url = timeout_run
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


def test_a_rerun_whose_glob_now_matches_other_files_is_refused_and_the_finished_run_left_as_it_was(timeout_run, data_dir):
    cfg, warc, out, *_ = timeout_run
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
