"""The filter-phase stages as functions from a batch of rows to a batch of rows.

Each stage looks only at live rows (`removed_by` is null); a row it drops gets `removed_by` and
`reason` and passes on untouched, so the batch that leaves the last stage accounts for every
record that entered the first. No Ray here: `pipeline.py` maps these over Ray Data blocks, and
tests call them directly."""
from __future__ import annotations

from typing import Callable, Union

import pyarrow as pa

from refinery.extract import ExtractParams, extract_text
from refinery.filters.c4 import C4Params, c4_filter
from refinery.filters.fineweb import FineWebQualityParams, fineweb_quality
from refinery.filters.gopher import (
    GopherQualityParams,
    GopherRepetitionParams,
    gopher_quality,
    gopher_repetition,
)
from refinery.filters.language import (
    LanguageParams,
    LanguagePrefilterParams,
    identify_language,
    language_prefilter,
    language_reason,
)
from refinery.filters.lines import LineCorrectionsParams, line_corrections
from refinery.filters.url import UrlFilterParams, url_filter
from refinery.reason import Reason
from refinery.schema import ROW

StageParams = Union[
    UrlFilterParams,
    LanguagePrefilterParams,
    ExtractParams,
    LanguageParams,
    GopherRepetitionParams,
    GopherQualityParams,
    LineCorrectionsParams,
    C4Params,
    FineWebQualityParams,
]

# A row step looks at one live row (a dict), may set fields on it, and returns a drop reason
# (a Reason, which carries what it measured) or None. A text-modifying step also gets a list to
# note the lines it removes in, or None when nobody will read them.
RowStep = Callable[[dict, StageParams, "list | None"], "Reason | None"]


def _url_step(row: dict, p: UrlFilterParams, _) -> Reason | None:
    return url_filter(row["url"], row["domain"], p)


def _prefilter_step(row: dict, p: LanguagePrefilterParams, _) -> Reason | None:
    """A page it drops keeps the language and score it was dropped for; for the others, the
    language stage sets them from the extracted text."""
    reason, language, score = language_prefilter(row["html"], p)
    if reason:
        row["language"], row["language_score"] = language, score
    return reason


def _extract_step(row: dict, p: ExtractParams, _) -> Reason | None:
    row["text"], reason = extract_text(row["html"], p)
    return reason


def _language_step(row: dict, p: LanguageParams, _) -> Reason | None:
    row["language"], row["language_score"] = identify_language(row["text"], p.model_path)
    return language_reason(row["language"], row["language_score"], p)


def _document_filter(check: Callable) -> RowStep:
    return lambda row, p, _: check(row["text"], p)


def _text_modifier(modify: Callable) -> RowStep:
    def step(row: dict, p, removed_lines: list | None) -> Reason | None:
        text, reason = modify(row["text"], p, removed_lines)
        if reason is None:
            row["text"] = text
        return reason

    return step


ROW_STEPS: dict[type, RowStep] = {
    UrlFilterParams: _url_step,
    LanguagePrefilterParams: _prefilter_step,
    ExtractParams: _extract_step,
    LanguageParams: _language_step,
    GopherRepetitionParams: _document_filter(gopher_repetition),
    GopherQualityParams: _document_filter(gopher_quality),
    FineWebQualityParams: _document_filter(fineweb_quality),
    LineCorrectionsParams: _text_modifier(line_corrections),
    C4Params: _text_modifier(c4_filter),
}
TEXT_MODIFIERS = (LineCorrectionsParams, C4Params)
READS_HTML = (LanguagePrefilterParams, ExtractParams)
_HTML = ROW.get_field_index("html")
_WITHOUT_HTML = ROW.remove(_HTML)


def apply_stage(batch: pa.Table, p: StageParams, keep_removed_text: bool = False) -> pa.Table:
    """Run one stage over the live rows of a batch. A dropped row gets the stage, the reason and
    what the rule measured (`reason_detail`). What a text-modifying stage strikes from a row it
    keeps goes into the row's `struck` (for the funnel), and with `keep_removed_text` (the run
    writes removed documents) the lines it removes go into `removed_lines`. Text of dropped rows
    is kept only then; the HTML is dropped once text has been extracted.

    The HTML, most of a batch's bytes, becomes Python strings only for the stages that read it,
    and only for live rows; the other stages pass its Arrow column on as it is (converting it to
    Python and back cost more than the URL filter's own work)."""
    step = ROW_STEPS[type(p)]
    modifies = isinstance(p, TEXT_MODIFIERS)
    html = batch.column("html").cast(ROW.field("html").type)
    rows = batch.drop_columns(["html"]).to_pylist()
    if isinstance(p, READS_HTML):
        live = [i for i, row in enumerate(rows) if row["removed_by"] is None]
        for i, page in zip(live, html.take(pa.array(live, pa.int64())).to_pylist()):
            rows[i]["html"] = page
    for row in rows:
        if row["removed_by"] is not None:
            continue
        before = row["text"]
        lines: list | None = [] if modifies and keep_removed_text else None
        reason = step(row, p, lines)
        if lines:
            row["removed_lines"] = (row["removed_lines"] or []) + [
                {"stage": p.stage, "rule": rule, "line": i, "text": text} for rule, i, text in lines
            ]
        if reason is not None:
            row["removed_by"], row["reason"], row["reason_detail"] = p.stage, str(reason), getattr(reason, "detail", None)
            if not keep_removed_text:
                row["text"] = None
        if row["text"] is not None:
            row["n_chars"] = len(row["text"])
            row["n_words"] = len(row["text"].split())
        if modifies and reason is None and row["text"] != before:
            struck = {"stage": p.stage, "words": len(before.split()) - row["n_words"], "chars": len(before) - row["n_chars"]}
            row["struck"] = (row["struck"] or []) + [struck]
    if isinstance(p, ExtractParams):
        html = pa.nulls(len(rows), ROW.field("html").type)
    return pa.Table.from_pylist(rows, schema=_WITHOUT_HTML).add_column(_HTML, ROW.field("html"), html)
