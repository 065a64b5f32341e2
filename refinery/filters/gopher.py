"""Gopher (MassiveWeb) document filters: repetition removal and quality outliers.

Rae et al. 2021, appendix A / table A1; RefinedWeb (MDR stages 4 and 5) applies both.
Where the paper is silent the semantics follow DCLM's RefinedWeb reproduction or datatrove's
implementation (used by FineWeb); each such choice is noted next to the code that makes it.
"""
from __future__ import annotations

from collections import Counter
from itertools import accumulate
from typing import Literal

from pydantic import Field, field_validator, model_validator

from refinery.params import Params
from refinery.reason import Reason, measured
from refinery.text import (
    WORD_EDGE_PUNCTUATION,
    has_alnum,
    has_letter,
    non_blank_lines,
    paragraphs,
    split_words,
)

def _nonempty_strings(value: tuple[str, ...], what: str) -> tuple[str, ...]:
    if not value:
        raise ValueError(f"{what} must not be empty")
    if any(not isinstance(v, str) or not v for v in value):
        raise ValueError(f"{what} must hold non-empty strings")
    return value


# ---------------------------------------------------------------------------------------
# Repetition
# ---------------------------------------------------------------------------------------


class GopherRepetitionParams(Params):
    """Bounds on repeated content; a document exceeding any bound is dropped (strict `>`).

    `counting: paper` (the default) reads Gopher's table A1 as written, "characters contained
    within all duplicate n-grams": every copy of a repeated line, paragraph or n-gram counts,
    the first too, and a character fraction is over the characters of the units compared (lines,
    paragraphs, or words), separators excluded on both sides (DCLM's RefinedWeb reproduction).
    `counting: datatrove` is datatrove's reading, kept for comparisons with it: only the copies
    after the first count (about half the value on the same text), line and paragraph chars
    are over `len(text)`, and n-gram chars (joined without spaces) are over `len(text)` too.
    Setting a fraction to 1 effectively disables its rule.
    """

    stage: Literal["gopher_repetition"] = "gopher_repetition"
    counting: Literal["paper", "datatrove"] = Field(
        "paper", description="paper: every copy counts (Gopher, DCLM); datatrove: copies after the first")
    dup_para_frac: float = Field(0.30, ge=0, le=1, description="duplicate paragraphs / paragraphs")
    dup_para_char_frac: float = Field(0.20, ge=0, le=1, description="chars in duplicate paragraphs / chars")
    dup_line_frac: float = Field(0.30, ge=0, le=1, description="duplicate lines / lines")
    dup_line_char_frac: float = Field(0.20, ge=0, le=1, description="chars in duplicate lines / chars")
    top_2_gram_frac: float = Field(0.20, ge=0, le=1, description="chars covered by the most frequent 2-gram / chars")
    top_3_gram_frac: float = Field(0.18, ge=0, le=1)
    top_4_gram_frac: float = Field(0.16, ge=0, le=1)
    dup_5_gram_frac: float = Field(0.15, ge=0, le=1, description="chars covered by duplicated 5-grams / chars")
    dup_6_gram_frac: float = Field(0.14, ge=0, le=1)
    dup_7_gram_frac: float = Field(0.13, ge=0, le=1)
    dup_8_gram_frac: float = Field(0.12, ge=0, le=1)
    dup_9_gram_frac: float = Field(0.11, ge=0, le=1)
    dup_10_gram_frac: float = Field(0.10, ge=0, le=1)


def _duplicates(items: list[str], every_copy: bool) -> tuple[int, int]:
    """(items that are copies, their total chars): every item whose text occurs more than once
    (`every_copy`), or only those equal to an earlier item."""
    if every_copy:
        counts = Counter(items)
        return (
            sum(c for c in counts.values() if c > 1),
            sum(len(item) * c for item, c in counts.items() if c > 1),
        )
    seen: set[str] = set()
    count = chars = 0
    for item in items:
        if item in seen:
            count += 1
            chars += len(item)
        else:
            seen.add(item)
    return count, chars


def _ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    return list(zip(*(words[i:] for i in range(n))))


def _top_ngram_chars(words: list[str], n: int) -> int:
    """Chars covered by the most frequent n-gram: its length without spaces times its count.

    Only an n-gram seen at least twice counts (a text with no repeated n-gram covers 0).
    Ties on the count are broken by the larger coverage, so the result does not depend on
    word order (datatrove takes the first-seen among ties).
    """
    counts = Counter(zip(*(words[i:] for i in range(n))))
    top = max(counts.values(), default=0)
    if top < 2:
        return 0
    return top * max(sum(map(len, g)) for g, c in counts.items() if c == top)


def _covered_chars(words: list[str], n: int, cum_len: list[int]) -> int | None:
    """Gopher's reading: chars (without spaces) of the words that some repeated n-gram covers,
    each word once; None when no n-gram repeats (then no longer n-gram repeats either)."""
    grams = _ngrams(words, n)
    counts = Counter(grams)
    if len(counts) == len(grams):
        return None
    chars = end = 0  # words before `end` are counted already
    for i, g in enumerate(grams):
        if counts[g] > 1:
            chars += cum_len[i + n] - cum_len[max(i, end)]
            end = i + n
    return chars


def _dup_ngram_chars(words: list[str], n: int, cum_len: list[int]) -> int | None:
    """datatrove's reading: chars (without spaces) of the n-grams seen before, scanning left to
    right; None when no n-gram repeats (then no longer n-gram repeats either).

    At position i, an n-gram seen before adds its chars and the scan jumps past it (i += n),
    so overlapping repeats are not double counted; otherwise it is remembered and the scan
    moves one word. The first copy of a repeated n-gram never counts.
    """
    grams = _ngrams(words, n)
    if len(set(grams)) == len(grams):  # no repeat at all: the common case, decided in C
        return None
    seen: set[tuple[str, ...]] = set()
    chars = 0
    i, end = 0, len(grams)
    while i < end:
        g = grams[i]
        if g in seen:
            chars += cum_len[i + n] - cum_len[i]
            i += n
        else:
            seen.add(g)
            i += 1
    return chars


def _over(rule: str, value: float, bound: float) -> Reason | None:
    if value > bound:
        return Reason(f"gopher_repetition:{rule}", measured(rule, value, ">", bound))
    return None


def gopher_repetition(text: str, p: GopherRepetitionParams) -> Reason | None:
    """None to keep, else `gopher_repetition:<rule>` for the first bound exceeded, with the
    measured fraction as its detail.

    Checks paragraphs, then lines, then top 2/3/4-grams, then duplicated 5..10-grams.
    Lines are split on newlines, paragraphs on blank lines; both are compared after
    stripping surrounding whitespace and blank ones are ignored. Words are whitespace
    tokens. Empty text is kept (the quality filter's word-count bound handles it).
    """
    if not text:
        return None
    paper = p.counting == "paper"
    for rule, units, frac, char_frac in (
        ("dup_para", paragraphs(text), p.dup_para_frac, p.dup_para_char_frac),
        ("dup_line", non_blank_lines(text), p.dup_line_frac, p.dup_line_char_frac),
    ):
        if not units:
            continue
        dup, dup_chars = _duplicates(units, every_copy=paper)
        all_chars = sum(map(len, units)) if paper else len(text)
        reason = _over(f"{rule}_frac", dup / len(units), frac) or _over(f"{rule}_char_frac", dup_chars / all_chars, char_frac)
        if reason:
            return reason

    words = split_words(text)
    cum_len = [0, *accumulate(map(len, words))]
    n_chars = cum_len[-1] if paper else len(text)
    for n, bound in ((2, p.top_2_gram_frac), (3, p.top_3_gram_frac), (4, p.top_4_gram_frac)):
        covered = _top_ngram_chars(words, n)
        if covered == 0:  # no repeated n-gram, so none of any longer length
            return None
        reason = _over(f"top_{n}_gram", covered / n_chars, bound)
        if reason:
            return reason

    dup_bounds = [p.dup_5_gram_frac, p.dup_6_gram_frac, p.dup_7_gram_frac, p.dup_8_gram_frac, p.dup_9_gram_frac, p.dup_10_gram_frac]
    chars_of = _covered_chars if paper else _dup_ngram_chars
    for n, bound in zip(range(5, 11), dup_bounds):
        covered = chars_of(words, n, cum_len)
        if covered is None:  # no repeated n-gram, so none of any longer length
            break
        reason = _over(f"dup_{n}_gram", covered / n_chars, bound)
        if reason:
            return reason
        # Gopher's coverage never grows with n (a word under a repeated (n+1)-gram is under
        # a repeated n-gram), so once it is within every longer n-gram's bound, stop.
        if paper and covered / n_chars <= min(dup_bounds[n - 4 :], default=1):
            break
    return None


# ---------------------------------------------------------------------------------------
# Quality
# ---------------------------------------------------------------------------------------

GOPHER_STOP_WORDS: tuple[str, ...] = ("the", "be", "to", "of", "and", "that", "have", "with")

# Line starts that mark a list item. ASCII "-" and "*" plus the usual Unicode bullets.
BULLET_PREFIXES: tuple[str, ...] = ("•", "‣", "◦", "⁃", "∙", "●", "○", "▪", "▫", "■", "□", "➢", "►", "-", "*")

ELLIPSES: tuple[str, ...] = ("...", "…")


class GopherQualityParams(Params):
    """Gopher's quality bounds; a document outside any bound is dropped.

    Words are whitespace-separated tokens. "Non-symbol" words (those with at least one
    letter or digit) are what the word-count and mean-length bounds measure; the ratios
    below are over all words, line fractions over non-blank lines.
    """

    stage: Literal["gopher_quality"] = "gopher_quality"
    min_words: int = Field(50, ge=0, description="fewest non-symbol words")
    max_words: int = Field(100_000, ge=0, description="most non-symbol words")
    min_mean_word_length: float = Field(3, ge=0, description="mean chars per non-symbol word, lower bound")
    max_mean_word_length: float = Field(10, ge=0, description="mean chars per non-symbol word, upper bound")
    max_hash_ratio: float = Field(0.1, ge=0, description="count of '#' / words")
    max_ellipsis_ratio: float = Field(0.1, ge=0, description="count of '...' and '…' / words")
    max_bullet_lines_frac: float = Field(0.9, ge=0, le=1, description="lines starting with a bullet / lines")
    max_ellipsis_lines_frac: float = Field(0.3, ge=0, le=1, description="lines ending with an ellipsis / lines")
    min_alpha_words_frac: float = Field(0.8, ge=0, le=1, description="words with a letter / words")
    min_stop_words: int = Field(2, ge=0, description="fewest stop-word occurrences")
    stop_words: tuple[str, ...] = GOPHER_STOP_WORDS
    bullet_prefixes: tuple[str, ...] = BULLET_PREFIXES

    @field_validator("stop_words")
    @classmethod
    def _stop_words_lowercase(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        # Words are lowercased before lookup, so the list is lowercased too.
        return tuple(w.lower() for w in _nonempty_strings(v, "stop_words"))

    @field_validator("bullet_prefixes")
    @classmethod
    def _bullets_nonempty(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _nonempty_strings(v, "bullet_prefixes")

    @model_validator(mode="after")
    def _ranges_ordered(self) -> "GopherQualityParams":
        if self.min_words > self.max_words:
            raise ValueError("min_words must be <= max_words")
        if self.min_mean_word_length > self.max_mean_word_length:
            raise ValueError("min_mean_word_length must be <= max_mean_word_length")
        return self


def _quality(rule: str, name: str, value: float, op: str, bound: float) -> Reason:
    return Reason(f"gopher_quality:{rule}", measured(name, value, op, bound))


def gopher_quality(text: str, p: GopherQualityParams) -> Reason | None:
    """None to keep, else `gopher_quality:<rule>` for the first bound failed, with what it
    measured.

    Order: min_words, max_words, mean_word_length, hash_ratio, ellipsis_ratio,
    bullet_lines, ellipsis_lines, alpha_words, stop_words. Stop words are counted as
    occurrences (as datatrove does), after lowercasing and stripping edge punctuation.
    """
    words = split_words(text)
    n_words = len(words)
    symbol_free = [w for w in words if has_alnum(w)]
    n_symbol_free = len(symbol_free)
    if n_symbol_free < p.min_words:
        return _quality("min_words", "words", n_symbol_free, "<", p.min_words)
    if n_symbol_free > p.max_words:
        return _quality("max_words", "words", n_symbol_free, ">", p.max_words)
    if n_symbol_free:
        mean_len = sum(map(len, symbol_free)) / n_symbol_free
        if mean_len < p.min_mean_word_length:
            return _quality("mean_word_length", "mean word length", mean_len, "<", p.min_mean_word_length)
        if mean_len > p.max_mean_word_length:
            return _quality("mean_word_length", "mean word length", mean_len, ">", p.max_mean_word_length)
    elif p.min_mean_word_length > 0:
        return _quality("mean_word_length", "mean word length", 0, "<", p.min_mean_word_length)
    if n_words == 0:  # only reachable with min_words == 0; nothing else to measure
        return None

    hashes = text.count("#") / n_words
    if hashes > p.max_hash_ratio:
        return _quality("hash_ratio", "'#' per word", hashes, ">", p.max_hash_ratio)
    ellipses = (text.count("...") + text.count("…")) / n_words
    if ellipses > p.max_ellipsis_ratio:
        return _quality("ellipsis_ratio", "ellipses per word", ellipses, ">", p.max_ellipsis_ratio)

    lines = non_blank_lines(text)  # already stripped on both sides
    if lines:
        n_lines = len(lines)
        bullets = sum(1 for s in lines if s.startswith(p.bullet_prefixes)) / n_lines
        if bullets > p.max_bullet_lines_frac:
            return _quality("bullet_lines", "bullet lines", bullets, ">", p.max_bullet_lines_frac)
        trailing = sum(1 for s in lines if s.endswith(ELLIPSES)) / n_lines
        if trailing > p.max_ellipsis_lines_frac:
            return _quality("ellipsis_lines", "lines ending in an ellipsis", trailing, ">", p.max_ellipsis_lines_frac)

    alpha = sum(1 for w in words if has_letter(w)) / n_words
    if alpha < p.min_alpha_words_frac:
        return _quality("alpha_words", "words with a letter", alpha, "<", p.min_alpha_words_frac)

    if p.min_stop_words:
        stop = frozenset(p.stop_words)
        found = 0
        for w in words:
            if w.strip(WORD_EDGE_PUNCTUATION).lower() in stop:
                found += 1
                if found >= p.min_stop_words:
                    break
        if found < p.min_stop_words:
            return _quality("stop_words", "stop words", found, "<", p.min_stop_words)
    return None
