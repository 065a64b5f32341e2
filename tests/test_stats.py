"""The funnel (stats.json) from counted rows: documents and words per stage, the words a
text-modifying stage strikes counted at that stage, and the comparison with RefinedWeb's figure 2."""
from __future__ import annotations

import json

import pytest

from refinery.pipeline import replace_kept
from refinery.schema import rows_from_pylist
from refinery.stats import SCHEMA_VERSION, batch_counts, format_table, funnel, merge_counts

FILTER = ["url_filter", "language_prefilter", "extract", "language", "line_corrections"]
# a dedup-phase stage that strikes spans (as substring dedup does) reports through `struck` too
DEDUP = ["minhash", "substring_dedup"]


def doc(id: str, words: int | None = None, stage: str | None = None, struck: list | None = None, **kw) -> dict:
    return {"id": id, "record_type": "response", "n_words": words, "n_chars": None if words is None else 6 * words,
            "removed_by": stage, "reason": f"{stage}:rule" if stage else None, "struck": struck, **kw}


def struck(stage: str, words: int) -> dict:
    return {"stage": stage, "words": words, "chars": 6 * words}


@pytest.fixture
def stats() -> dict:
    filter_phase = rows_from_pylist([
        doc("a", stage="url_filter"),
        doc("b", stage="language_prefilter", language="de"),
        doc("c", stage="extract"),
        doc("d", 100, "language", language="fr"),
        doc("e", 50, "line_corrections", language="en"),  # dropped whole: its 50 words go here
        doc("f", 90, struck=[struck("line_corrections", 10)], language="en"),  # kept, 10 words struck
        doc("g", 200, language="en"),
        {"id": "h", "record_type": "request", "removed_by": "read", "reason": "read:record_request"},
    ])
    dedup_phase = rows_from_pylist([
        doc("f", 60, struck=[struck("substring_dedup", 30)]),  # 90 words in, 30 struck here
        doc("g", 200, "minhash"),
    ])
    parts = [batch_counts(filter_phase.slice(0, 4)), batch_counts(filter_phase.slice(4))]
    counts = replace_kept(merge_counts(parts), merge_counts([batch_counts(dedup_phase)]))
    return json.loads(json.dumps(funnel(counts, FILTER, DEDUP)))  # what stats.json holds


def test_documents_and_words_per_stage(stats):
    assert stats["schema_version"] == SCHEMA_VERSION == 2
    assert stats["documents"] == 7 and stats["not_documents"] == {"read:record_request": 1}
    # 100 + 50 + (60 + 10 + 30) + 200: every word extracted, struck ones included
    assert stats["words_extracted"] == 450
    rows = {s["stage"]: s for s in stats["stages"]}
    assert [(s["docs_in"], s["docs_out"]) for s in stats["stages"]] == [(7, 6), (6, 5), (5, 4), (4, 3), (3, 2), (2, 1), (1, 1)]
    assert [s["words_out"] for s in stats["stages"]] == [None, None, 450, 350, 290, 90, 60]
    assert rows["extract"]["words_in"] is None and rows["language"]["words_in"] == 450
    assert rows["line_corrections"]["words_struck"] == 10 and rows["line_corrections"]["chars_struck"] == 60
    assert rows["line_corrections"]["removed_detail"] == {"line_corrections:rule": {"docs": 1, "words": 50, "chars": 300}}
    assert rows["substring_dedup"]["words_struck"] == 30
    assert rows["substring_dedup"]["chars_out"] == 360 == stats["kept"]["chars"]
    assert stats["kept"] == {"docs": 1, "words": 60, "chars": 360}
    assert rows["language"]["percent_of_words"] == pytest.approx(100 * 350 / 450, abs=0.01)
    for s in stats["stages"][2:]:
        assert s["words_in"] is None or s["words_in"] - sum(r["words"] for r in s["removed_detail"].values()) - s["words_struck"] == s["words_out"]


def test_figure2_groups_the_prefilter_with_language_and_measures_dedup_in_tokens(stats):
    rows = {s["stage"]: s for s in stats["stages"]}
    assert rows["url_filter"]["figure2_percent"] == pytest.approx(100 * 6 / 7, abs=0.01)
    assert rows["language_prefilter"]["figure2_percent"] is None
    assert rows["extract"]["figure2_percent"] == pytest.approx(100 * 5 / 7, abs=0.01)  # as if no prefilter ran
    assert rows["extract"]["percent_of_documents"] == pytest.approx(100 * 4 / 7, abs=0.01)
    assert rows["language"]["figure2_percent"] == rows["language"]["percent_of_documents"] == pytest.approx(100 * 3 / 7, abs=0.01)
    assert rows["line_corrections"]["figure2_measure"] == "documents"
    assert rows["minhash"]["figure2_measure"] == rows["substring_dedup"]["figure2_measure"] == "tokens"
    # tokens chained from the filter phase's last bar, as the paper's figure chains them
    assert rows["minhash"]["figure2_percent"] == pytest.approx(28.57 * 90 / 290, abs=0.01)
    assert rows["substring_dedup"]["figure2_percent"] == pytest.approx(28.57 * 60 / 290, abs=0.01)
    assert (rows["extract"]["refinedweb_percent"], rows["language"]["refinedweb_percent"]) == (96.31, 47.51)
    assert rows["substring_dedup"]["refinedweb_percent"] == 11.67  # the paper's "exact dedup" is span-level


def test_table_shows_documents_tokens_and_the_paper(stats):
    table = format_table(stats)
    assert "RefinedWeb %" in table and "as figure 2" in table
    assert "Tokens are words" in table
    line = next(x for x in table.splitlines() if x.startswith("extract "))
    assert line.split()[-3:] == ["71.43", "docs", "96.31"]
    assert next(x for x in table.splitlines() if x.startswith("language_prefilter")).split()[-3:] == ["in", "language", "-"]
    assert next(x for x in table.splitlines() if x.startswith("minhash ")).split()[-2] == "tokens"
    assert "(words struck from documents kept)" in table


def test_parts_of_an_older_run_have_no_struck_words():
    old = batch_counts(rows_from_pylist([doc("x", 10)]))
    del old["struck"]
    stats = funnel(merge_counts([old]), ["extract"])
    assert stats["stages"][0]["words_out"] == 10 == stats["kept"]["words"]
