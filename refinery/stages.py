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

# A row step looks at one live row (a dict), may set fields on it, and returns a drop reason or None.
RowStep = Callable[[dict, StageParams], "str | None"]


def _url_step(row: dict, p: UrlFilterParams) -> str | None:
    return url_filter(row["url"], row["domain"], p)


def _prefilter_step(row: dict, p: LanguagePrefilterParams) -> str | None:
    """A page it drops keeps the language and score it was dropped for; for the others, the
    language stage sets them from the extracted text."""
    reason, language, score = language_prefilter(row["html"], p)
    if reason:
        row["language"], row["language_score"] = language, score
    return reason


def _extract_step(row: dict, p: ExtractParams) -> str | None:
    row["text"], reason = extract_text(row["html"], p)
    return reason


def _language_step(row: dict, p: LanguageParams) -> str | None:
    row["language"], row["language_score"] = identify_language(row["text"], p.model_path)
    return language_reason(row["language"], row["language_score"], p)


def _document_filter(check: Callable) -> RowStep:
    return lambda row, p: check(row["text"], p)


def _text_modifier(modify: Callable) -> RowStep:
    def step(row: dict, p) -> str | None:
        text, reason = modify(row["text"], p)
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


def apply_stage(batch: pa.Table, p: StageParams, keep_removed_text: bool = False) -> pa.Table:
    """Run one stage over the live rows of a batch. Text of dropped rows is kept only when the
    run writes removed documents; the HTML is dropped once text has been extracted."""
    step = ROW_STEPS[type(p)]
    rows = batch.to_pylist()
    for row in rows:
        if row["removed_by"] is not None:
            continue
        reason = step(row, p)
        if reason is not None:
            row["removed_by"], row["reason"] = p.stage, reason
            if not keep_removed_text:
                row["text"] = None
        if row["text"] is not None:
            row["n_chars"] = len(row["text"])
            row["n_words"] = len(row["text"].split())
    if isinstance(p, ExtractParams):
        for row in rows:
            row["html"] = None
    return pa.Table.from_pylist(rows, schema=ROW)
