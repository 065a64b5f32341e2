"""Gopher (MassiveWeb) document filters: repetition removal and quality outliers.

Rae et al. 2021, appendix A / table A1; RefinedWeb (MDR stages 4 and 5) applies both.
Where the paper is silent the semantics follow datatrove's implementation (used by FineWeb);
each such choice is noted next to the code that makes it.
"""
from __future__ import annotations

from collections import Counter
from itertools import accumulate
from typing import Literal

from pydantic import Field, field_validator, model_validator

from refinery.params import Params
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

    Char fractions are over `len(text)`. N-gram char counts join the words without spaces.
    Setting a fraction to 1 effectively disables its rule.
    """

    stage: Literal["gopher_repetition"] = "gopher_repetition"
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


def _duplicates(items: list[str]) -> tuple[int, int]:
    """(number of items equal to an earlier item, total chars of those items)."""
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


def _dup_ngram_chars(
    words: list[str], n: int, cum_len: list[int], n_chars: int, bound: float
) -> int | None:
    """Chars covered by duplicated n-grams, scanning left to right (Gopher / datatrove);
    None when no n-gram repeats (then no longer n-gram repeats either).

    At position i, an n-gram seen before adds its chars (without spaces) and the scan jumps
    past it (i += n), so overlapping repeats are not double counted; otherwise it is
    remembered and the scan moves one word. Stops early once chars / n_chars > bound.
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
            if chars / n_chars > bound:
                return chars
            i += n
        else:
            seen.add(g)
            i += 1
    return chars


def gopher_repetition(text: str, p: GopherRepetitionParams) -> str | None:
    """None to keep, else `gopher_repetition:<rule>` for the first bound exceeded.

    Checks paragraphs, then lines, then top 2/3/4-grams, then duplicated 5..10-grams.
    Lines are split on newlines, paragraphs on blank lines; both are compared after
    stripping surrounding whitespace and blank ones are ignored. Empty text is kept (the
    quality filter's word-count bound handles it).
    """
    n_chars = len(text)
    if n_chars == 0:
        return None
    paras = paragraphs(text)
    if paras:
        dup, dup_chars = _duplicates(paras)
        if dup / len(paras) > p.dup_para_frac:
            return "gopher_repetition:dup_para_frac"
        if dup_chars / n_chars > p.dup_para_char_frac:
            return "gopher_repetition:dup_para_char_frac"
    lines = non_blank_lines(text)
    if lines:
        dup, dup_chars = _duplicates(lines)
        if dup / len(lines) > p.dup_line_frac:
            return "gopher_repetition:dup_line_frac"
        if dup_chars / n_chars > p.dup_line_char_frac:
            return "gopher_repetition:dup_line_char_frac"

    words = split_words(text)
    for n, bound in ((2, p.top_2_gram_frac), (3, p.top_3_gram_frac), (4, p.top_4_gram_frac)):
        covered = _top_ngram_chars(words, n)
        if covered == 0:  # no repeated n-gram, so none of any longer length
            return None
        if covered / n_chars > bound:
            return f"gopher_repetition:top_{n}_gram"

    cum_len = [0, *accumulate(map(len, words))]
    for n, bound in (
        (5, p.dup_5_gram_frac),
        (6, p.dup_6_gram_frac),
        (7, p.dup_7_gram_frac),
        (8, p.dup_8_gram_frac),
        (9, p.dup_9_gram_frac),
        (10, p.dup_10_gram_frac),
    ):
        covered = _dup_ngram_chars(words, n, cum_len, n_chars, bound)
        if covered is None:  # no repeated n-gram, so none of any longer length
            break
        if covered / n_chars > bound:
            return f"gopher_repetition:dup_{n}_gram"
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


def gopher_quality(text: str, p: GopherQualityParams) -> str | None:
    """None to keep, else `gopher_quality:<rule>` for the first bound failed.

    Order: min_words, max_words, mean_word_length, hash_ratio, ellipsis_ratio,
    bullet_lines, ellipsis_lines, alpha_words, stop_words. Stop words are counted as
    occurrences (as datatrove does), after lowercasing and stripping edge punctuation.
    """
    words = split_words(text)
    n_words = len(words)
    symbol_free = [w for w in words if has_alnum(w)]
    n_symbol_free = len(symbol_free)
    if n_symbol_free < p.min_words:
        return "gopher_quality:min_words"
    if n_symbol_free > p.max_words:
        return "gopher_quality:max_words"
    if n_symbol_free:
        mean_len = sum(map(len, symbol_free)) / n_symbol_free
        if not (p.min_mean_word_length <= mean_len <= p.max_mean_word_length):
            return "gopher_quality:mean_word_length"
    elif p.min_mean_word_length > 0:
        return "gopher_quality:mean_word_length"
    if n_words == 0:  # only reachable with min_words == 0; nothing else to measure
        return None

    if text.count("#") / n_words > p.max_hash_ratio:
        return "gopher_quality:hash_ratio"
    if (text.count("...") + text.count("…")) / n_words > p.max_ellipsis_ratio:
        return "gopher_quality:ellipsis_ratio"

    lines = non_blank_lines(text)  # already stripped on both sides
    if lines:
        n_lines = len(lines)
        bullets = p.bullet_prefixes
        if sum(1 for s in lines if s.startswith(bullets)) / n_lines > p.max_bullet_lines_frac:
            return "gopher_quality:bullet_lines"
        if sum(1 for s in lines if s.endswith(ELLIPSES)) / n_lines > p.max_ellipsis_lines_frac:
            return "gopher_quality:ellipsis_lines"

    if sum(1 for w in words if has_letter(w)) / n_words < p.min_alpha_words_frac:
        return "gopher_quality:alpha_words"

    if p.min_stop_words:
        stop = frozenset(p.stop_words)
        found = 0
        for w in words:
            if w.strip(WORD_EDGE_PUNCTUATION).lower() in stop:
                found += 1
                if found >= p.min_stop_words:
                    break
        if found < p.min_stop_words:
            return "gopher_quality:stop_words"
    return None
