"""RefinedWeb line-wise corrections (MDR stage 6) with the 5% rule.

RefinedWeb removes boilerplate lines (mostly uppercase, only numbers, counters such as
"3 likes", single words) and boilerplate substrings of short lines ("sign-in" at the start,
"Read more..." at the end, "items in cart" anywhere). The paper gives no numbers; the
thresholds are DCLM's RefinedWeb reproduction. If the corrections remove more than 5% of
the document's words, the page was mostly boilerplate and is dropped whole.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator

from refinery.params import Params
from refinery.reason import Reason, measured

COUNTER_NOUNS: tuple[str, ...] = (
    "likes", "like", "comments", "comment", "views", "view", "shares", "share",
    "retweets", "retweet", "reposts", "repost", "replies", "reply", "followers", "follower",
    "upvotes", "upvote", "votes", "vote", "downloads", "download", "reactions", "reaction",
    "favorites", "favorite", "bookmarks", "bookmark", "subscribers", "subscriber",
    "reviews", "review",
)


class LineCorrectionsParams(Params):
    """Which lines and substrings are boilerplate, and how much removal a document survives.

    Patterns match case-insensitively and only as whole words (so "sign in" does not eat
    the start of "sign inside").
    """

    stage: Literal["line_corrections"] = "line_corrections"
    uppercase_frac_threshold: float = Field(
        0.5, ge=0, le=1, description="a line is removed when uppercase chars / chars > this")
    numeric_frac_threshold: float = Field(
        0.999999, ge=0, le=1,
        description="a line is removed when numeric chars / non-space chars >= this")
    min_words_per_line: int = Field(2, ge=0, description="a line with fewer words is removed")
    counter_nouns: tuple[str, ...] = Field(
        COUNTER_NOUNS, description='a line "<number> <noun>" with one of these nouns is removed')
    max_words_for_patterns: int = Field(
        10, ge=0, description="substring patterns are removed only in lines of at most this many words")
    prefix_patterns: tuple[str, ...] = ("sign-in", "sign in")
    suffix_patterns: tuple[str, ...] = ("read more...", "read more…", "read more")
    anywhere_patterns: tuple[str, ...] = ("items in cart",)
    max_removed_words_frac: float = Field(
        0.05, ge=0, le=1, description="the document is dropped when removed words / words > this")

    @field_validator("counter_nouns", "prefix_patterns", "suffix_patterns", "anywhere_patterns")
    @classmethod
    def _nonempty_items(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        # An empty list disables that rule; an empty or blank pattern would match everywhere.
        if any(not s.strip() for s in v):
            raise ValueError("patterns must be non-blank strings")
        return tuple(s.strip() for s in v)


_MAX_COUNTER_CHARS = 64


def _alternation(patterns: tuple[str, ...]) -> str:
    """Longest first, so "read more..." wins over "read more"; word boundaries where the
    pattern begins/ends with a word char."""
    parts = []
    for pat in sorted(patterns, key=len, reverse=True):
        rx = re.escape(pat)
        if re.match(r"\w", pat):
            rx = r"(?<!\w)" + rx
        if re.search(r"\w$", pat):
            rx = rx + r"(?!\w)"
        parts.append(rx)
    return "|".join(parts)


@lru_cache(maxsize=64)
def _counter_regex(nouns: tuple[str, ...]) -> re.Pattern[str] | None:
    if not nouns:
        return None
    # "3 likes", "1,204 comments", "1.2K views", "(12 shares)", "10+ reviews"
    return re.compile(
        rf"^\W*\d[\d.,]*\s*[kmb]?\+?\s*(?:{_alternation(nouns)})\W*$", re.IGNORECASE)


@lru_cache(maxsize=64)
def _edge_regex(patterns: tuple[str, ...], where: str) -> re.Pattern[str] | None:
    if not patterns:
        return None
    alt = _alternation(patterns)
    # No leading \s*: it would make a search quadratic in a long run of spaces. The
    # whitespace left around a removed pattern is folded afterwards.
    if where == "prefix":
        rx = rf"^(?:{alt})"
    elif where == "suffix":
        rx = rf"(?:{alt})$"
    else:
        rx = rf"(?:{alt})"
    return re.compile(rx, re.IGNORECASE)


def _boilerplate_rule(line: str, n_words: int, p: LineCorrectionsParams,
                      counter: re.Pattern[str] | None) -> str | None:
    """The line rule that removes `line` (stripped, non-empty), or None."""
    if n_words < p.min_words_per_line:
        return "few_words"
    # Uppercase over all the line's chars (DCLM): a line without letters has ratio 0, and
    # "NASA and the FBI" (7 of 16 chars) stays while an all-caps heading goes.
    if sum(map(str.isupper, line)) / len(line) > p.uppercase_frac_threshold:
        return "uppercase"
    # Numeric over non-space chars, so "1 2 3 4" counts as only numbers.
    n_nonspace = len(line) - sum(map(str.isspace, line))
    if sum(map(str.isnumeric, line)) / n_nonspace >= p.numeric_frac_threshold:
        return "numeric"
    # A counter is "<number>[K] <noun>" with punctuation around: a short line of at most
    # 4 tokens (the guard also keeps the regex off huge lines, where it backtracks a lot).
    if (counter is not None and n_words <= 4 and len(line) <= _MAX_COUNTER_CHARS
            and counter.match(line) is not None):
        return "counter"
    return None


def line_corrections(text: str, p: LineCorrectionsParams, removed_lines: list | None = None) -> tuple[str, Reason | None]:
    """Remove boilerplate lines/substrings; `(corrected_text, None)` or `(text, reason)`.

    Lines are split on "\\n" and judged after stripping. Line rules run first, then the
    substring patterns on surviving lines of <= `max_words_for_patterns` words; a line the
    patterns empty is removed. Unchanged lines keep their original form (an edited one has
    its whitespace folded to single spaces); blank lines are kept as paragraph breaks (at
    most one in a row, none at the ends). Words are whitespace tokens; removed = words
    before - words after.

    With `removed_lines` (a list), each removal is appended to it as `(rule, line number in
    text.split("\\n"), removed text)`: a whole line for the line rules (few_words, uppercase,
    numeric, counter), the matched substring for the patterns (prefix, suffix, anywhere).
    """
    words_before = len(text.split())
    if words_before == 0:
        return "", Reason("line_corrections:empty", "no words")
    counter = _counter_regex(p.counter_nouns)
    prefix = _edge_regex(p.prefix_patterns, "prefix")
    suffix = _edge_regex(p.suffix_patterns, "suffix")
    anywhere = _edge_regex(p.anywhere_patterns, "anywhere")
    suffix_span = 1 + max(map(len, p.suffix_patterns), default=0)
    note = removed_lines.append if removed_lines is not None else None

    out: list[str] = []
    words_after = 0
    for i, raw in enumerate(text.split("\n")):
        line = raw.strip()
        if not line:
            if out and out[-1]:
                out.append("")
            continue
        n_words = len(line.split())
        rule = _boilerplate_rule(line, n_words, p, counter)
        if rule is not None:
            if note:
                note((rule, i, line))
            continue
        if n_words <= p.max_words_for_patterns:
            edited = line
            if prefix is not None:
                m = prefix.search(edited)
                if m is not None:
                    edited = edited[m.end():]
                    if note:
                        note(("prefix", i, m.group()))
            if suffix is not None:
                # match within the line's tail only (a pattern plus one char of context)
                cut = max(0, len(edited) - suffix_span)
                m = suffix.search(edited, cut)
                if m is not None:
                    edited = edited[: m.start()]
                    if note:
                        note(("suffix", i, m.group()))
            if anywhere is not None:
                if note:
                    for m in anywhere.finditer(edited):
                        note(("anywhere", i, m.group()))
                edited = anywhere.sub(" ", edited)
            if edited != line:
                words = edited.split()
                if not words:
                    continue
                n_words = len(words)
                raw = " ".join(words)
        words_after += n_words
        out.append(raw)

    removed = (words_before - words_after) / words_before
    if removed > p.max_removed_words_frac:
        detail = measured("removed words", removed, ">", p.max_removed_words_frac)
        return text, Reason("line_corrections:too_many_words_removed", f"{detail} ({words_before - words_after:,} of {words_before:,})")
    while out and not out[-1]:
        out.pop()
    return "\n".join(out), None
