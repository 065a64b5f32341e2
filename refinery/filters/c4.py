"""C4's heuristic rules (Raffel et al. 2020) as FineWeb applies them.

FineWeb keeps C4's line rules and document rules but turns off the "every line ends in
terminal punctuation" rule, which removed too much (it is a flag here, off by default).
The order follows C4 / datatrove: a line is judged on its words first, and the
document-level "lorem ipsum" and "{" checks only look at lines that survived those.
"""
from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from refinery.params import Params
from refinery.text import TERMINAL_PUNCTUATION

POLICY_SUBSTRINGS: tuple[str, ...] = (
    "terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies",
)

# Wikipedia-style citation marks C4 strips from lines: "[1]", "[edit]", "[citation needed]".
_CITATION = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]", re.IGNORECASE)

# Sentence boundary: a run of . ! ? (optionally followed by closing quotes/brackets) and then
# whitespace or the end of the line. A line's sentence count is the number of pieces between
# boundaries that hold a letter or digit, so "A b c. D e f" is 2 and a line without terminal
# punctuation is 1. It over-splits abbreviations ("Dr. Who"): a simple stand-in for the
# NLTK/spaCy splitter datatrove uses.
# The lookbehind starts a boundary only at the first mark of a run, keeping it linear.
_SENTENCE_END = re.compile(r"(?<![.!?])[.!?]+[\"'”’)\]]*(?:\s+|$)")
_HAS_ALNUM = re.compile(r"[^\W_]").search


def count_sentences(line: str) -> int:
    return sum(1 for piece in _SENTENCE_END.split(line) if _HAS_ALNUM(piece))


class C4Params(Params):
    """C4 rules; lines failing a line rule are removed, a document rule drops the document."""

    stage: Literal["c4"] = "c4"
    min_words_per_line: int = Field(3, ge=0, description="lines with fewer words are removed")
    max_word_length: int = Field(1000, ge=1, description="lines with a longer word are removed")
    filter_javascript: bool = Field(True, description='remove lines containing "javascript"')
    policy_substrings: tuple[str, ...] = Field(
        POLICY_SUBSTRINGS, description="lines containing one of these (lowercased) are removed")
    filter_lorem_ipsum: bool = Field(True, description='drop documents containing "lorem ipsum"')
    filter_curly_bracket: bool = Field(True, description='drop documents containing "{"')
    filter_no_terminal_punct: bool = Field(
        False, description="remove lines not ending in terminal punctuation (off in FineWeb)")
    remove_citations: bool = Field(True, description='strip "[1]", "[edit]", "[citation needed]"')
    min_sentences: int = Field(5, ge=0, description="documents with fewer sentences are dropped")

    @field_validator("policy_substrings")
    @classmethod
    def _lowercase_nonblank(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if any(not s.strip() for s in v):
            raise ValueError("policy_substrings must be non-blank strings")
        return tuple(s.lower() for s in v)


def c4_filter(text: str, p: C4Params) -> tuple[str, str | None]:
    """`(kept lines joined by "\\n", None)`, or `(text, "c4:<rule>")` to drop.

    Per stripped line, in order: a word over `max_word_length` chars removes it; citations
    are stripped; (if enabled) no terminal punctuation or an ellipsis ending removes it;
    fewer than `min_words_per_line` words removes it; "lorem ipsum" drops the document;
    "javascript" removes it; "{" drops the document; a policy notice removes it. Then fewer
    than `min_sentences` sentences in the kept lines (see `count_sentences`) drops the
    document (c4:too_few_sentences), as does nothing left (c4:empty).
    """
    kept: list[str] = []
    n_sentences = 0
    policies = p.policy_substrings
    for line in text.split("\n"):
        line = line.strip()
        if not line:
            continue
        words = line.split()
        if max(map(len, words)) > p.max_word_length:
            continue
        if p.remove_citations and "[" in line:
            line = _CITATION.sub("", line).strip()
            words = line.split()
        if p.filter_no_terminal_punct and (
            not line.endswith(TERMINAL_PUNCTUATION) or line.endswith(("...", "…"))
        ):
            continue
        if len(words) < p.min_words_per_line:
            continue
        lower = line.lower()
        if p.filter_lorem_ipsum and "lorem ipsum" in lower:
            return text, "c4:lorem_ipsum"
        if p.filter_javascript and "javascript" in lower:
            continue
        if p.filter_curly_bracket and "{" in line:
            return text, "c4:curly_bracket"
        if any(s in lower for s in policies):
            continue
        n_sentences += count_sentences(line)
        kept.append(line)
    if n_sentences < p.min_sentences:
        return text, "c4:too_few_sentences"
    if not kept:
        return text, "c4:empty"
    return "\n".join(kept), None
