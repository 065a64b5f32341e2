"""The stage adapter without Ray: a batch of real WARC rows through every RefinedWeb stage."""
from __future__ import annotations

from refinery.config import load_config
from refinery.filters import language
from refinery.io.warc import ReadParams, read_warc
from refinery.stages import apply_stage


def first_batch(data_dir, n=40):
    with open(data_dir / "crawl-sample" / "real-pages.warc.gz", "rb") as f:
        return next(read_warc(f, "crawl-sample", ReadParams(batch_records=n)))


def test_rows_are_marked_not_dropped_and_html_is_released(data_dir):
    batch = first_batch(data_dir)
    cfg = load_config("pipelines/cc.yaml")
    for p in cfg.stages:
        before = batch.num_rows
        batch = apply_stage(batch, p)
        assert batch.num_rows == before  # a stage marks rows; it never loses one
    rows = batch.to_pylist()
    assert all(r["html"] is None for r in rows)
    removed = [r for r in rows if r["removed_by"]]
    kept = [r for r in rows if not r["removed_by"]]
    assert removed and kept
    assert all(r["reason"].startswith(r["removed_by"] + ":") for r in removed)
    assert all(r["text"] is None for r in removed)  # not kept unless removed text is written
    assert all(r["language"] == "en" and r["n_words"] == len(r["text"].split()) for r in kept)


def test_a_batch_with_no_live_row_passes_the_html_stages(data_dir):
    """A block whose every page the prefilter dropped (a German file, say) reaches extract with
    no live row: the stages that read the HTML get none, and the rows pass on as they were."""
    stages = {p.stage: p for p in load_config("pipelines/cc.yaml").stages}
    batch = apply_stage(first_batch(data_dir, 10), stages["language_prefilter"])
    dead = batch.filter(batch.column("removed_by").is_valid())
    assert dead.num_rows > 0
    after = apply_stage(apply_stage(dead, stages["language_prefilter"]), stages["extract"])
    assert after.column("removed_by").to_pylist() == dead.column("removed_by").to_pylist()
    assert after.column("html").null_count == after.num_rows  # released once text is extracted


def test_removed_text_is_kept_when_asked(data_dir):
    batch = first_batch(data_dir, 10)
    stages = {p.stage: p for p in load_config("pipelines/cc.yaml").stages}
    for name in ("url_filter", "extract", "language"):  # without the prefilter, so LID sees German pages
        batch = apply_stage(batch, stages[name], keep_removed_text=True)
    lid = [r for r in batch.to_pylist() if r["removed_by"] == "language"]
    assert lid and all(r["text"] for r in lid)


def test_language_model_loads_once_per_process(data_dir):
    stages = {p.stage: p for p in load_config("pipelines/cc.yaml").stages}
    extract, lid = stages["extract"], stages["language"]
    language.load_model.cache_clear()
    for _ in range(3):
        apply_stage(apply_stage(first_batch(data_dir, 5), extract), lid)
    assert language.load_model.cache_info().misses == 1


def test_drops_say_what_they_measured_and_edits_are_counted(data_dir):
    """Every row a filter-phase stage drops carries its rule's measure; what line corrections
    strike from a row they keep is on the row (words and chars), and with removed text kept,
    the lines themselves, numbered in the text the stage got."""
    batch = first_batch(data_dir, 60)
    for p in load_config("pipelines/cc.yaml").stages:
        if p.stage == "line_corrections":
            before = {r["id"]: r["text"] for r in batch.to_pylist() if r["removed_by"] is None}
        batch = apply_stage(batch, p, keep_removed_text=True)
    rows = batch.to_pylist()
    removed = [r for r in rows if r["removed_by"]]
    assert {r["removed_by"] for r in removed} >= {"language_prefilter", "language", "gopher_repetition", "gopher_quality"}
    assert all(r["reason_detail"] for r in removed)
    edited = [r for r in rows if r["struck"]]
    assert edited
    for r in edited:
        (s,) = r["struck"]
        assert s["stage"] == "line_corrections"
        assert s["words"] == len(before[r["id"]].split()) - r["n_words"] > 0
        assert s["chars"] == len(before[r["id"]]) - r["n_chars"]
        lines = before[r["id"]].split("\n")
        assert r["removed_lines"] and all(x["text"] in lines[x["line"]] for x in r["removed_lines"])
    unchanged = [r for r in rows if r["removed_by"] is None and not r["struck"]]
    assert all(before[r["id"]] == r["text"] and not r["removed_lines"] for r in unchanged)
