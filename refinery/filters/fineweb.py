"""FineWeb's own quality rules (Penedo et al. 2024), applied after the C4 rules.

They target what Gopher and C4 miss in recent crawls: list-like pages (few lines ending in
punctuation), pages repeating lines (menus, footers) and pages made of short lines.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from refinery.params import Params
from refinery.reason import Reason, measured
from refinery.text import TERMINAL_PUNCTUATION


class FineWebQualityParams(Params):
    """Bounds over the non-blank lines of a document, as FineWeb's released code (datatrove's
    FineWebQualityFilter, which produced FineWeb) sets them; note the inclusive comparisons."""

    stage: Literal["fineweb_quality"] = "fineweb_quality"
    line_punct_ratio: float = Field(
        0.12, ge=0, le=1,
        description="dropped when lines ending in terminal punctuation / lines <= this")
    short_line_length: int = Field(30, ge=0, description="a line of at most this many chars is short")
    short_line_ratio: float = Field(0.67, ge=0, le=1, description="dropped when short lines / lines >= this")
    # The FineWeb paper's text says 0.1; its appendix and the released code that produced
    # FineWeb use 0.01, and so do REFERENCE.md and this default.
    dup_line_char_frac: float = Field(
        0.01, ge=0, le=1,
        description="dropped when chars in duplicated lines / chars (newlines excluded) >= this")
    terminal_punctuation: tuple[str, ...] = TERMINAL_PUNCTUATION

    @field_validator("terminal_punctuation")
    @classmethod
    def _nonempty(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v or any(not s for s in v):
            raise ValueError("terminal_punctuation must be a non-empty list of non-empty strings")
        return v


def _drop(rule: str, name: str, value: float, op: str, bound: float) -> Reason:
    return Reason(f"fineweb_quality:{rule}", measured(name, value, op, bound))


def fineweb_quality(text: str, p: FineWebQualityParams) -> Reason | None:
    """None to keep, else `fineweb_quality:<rule>` with what it measured; rules in datatrove's
    order: line_punct_ratio, short_line_ratio, dup_line_char_frac (empty text: `empty`).

    Lines are the non-blank lines with trailing whitespace removed. A duplicated line is one
    equal to an earlier line; its chars count against the text's chars minus newlines.
    """
    lines = [s for s in (line.rstrip() for line in text.split("\n")) if s.strip()]
    if not lines:
        return Reason("fineweb_quality:empty", "no line with text")
    n_lines = len(lines)
    ends = p.terminal_punctuation
    punct = sum(1 for s in lines if s.endswith(ends)) / n_lines
    if punct <= p.line_punct_ratio:
        return _drop("line_punct_ratio", "lines ending in punctuation", punct, "<=", p.line_punct_ratio)
    short = sum(1 for s in lines if len(s) <= p.short_line_length) / n_lines
    if short >= p.short_line_ratio:
        return _drop("short_line_ratio", f"lines of <= {p.short_line_length} chars", short, ">=", p.short_line_ratio)
    seen: set[str] = set()
    dup_chars = 0
    for s in lines:
        if s in seen:
            dup_chars += len(s)
        else:
            seen.add(s)
    if dup_chars:
        frac = dup_chars / (len(text) - text.count("\n"))
        if frac >= p.dup_line_char_frac:
            return _drop("dup_line_char_frac", "chars in duplicated lines", frac, ">=", p.dup_line_char_frac)
    return None
