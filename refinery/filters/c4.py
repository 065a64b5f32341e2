"""C4's heuristic rules (Raffel et al. 2020) as FineWeb applies them.

FineWeb keeps C4's line rules and document rules but turns off the "every line ends in
terminal punctuation" rule, which removed too much (it is a flag here, off by default).
The order follows C4 / datatrove: a line is judged on its words first, and the
document-level "lorem ipsum" and "{" checks only look at lines that survived those. Sentences
are counted by spaCy's rule-based sentencizer, as datatrove counts them.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator

from refinery.params import Params
from refinery.reason import Reason, measured
from refinery.text import TERMINAL_PUNCTUATION

POLICY_SUBSTRINGS: tuple[str, ...] = (
    "terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies",
)

# Wikipedia-style citation marks C4 strips from lines: "[1]", "[edit]", "[citation needed]".
_CITATION = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]", re.IGNORECASE)

_HAS_ALNUM = re.compile(r"[^\W_]").search
# spaCy's Doc holds every token of its text: a longer line is counted piece by piece.
_MAX_PIECE_CHARS = 100_000


@lru_cache(maxsize=1)
def _sentencizer():
    """spaCy's rule-based sentencizer on a blank English pipeline, as datatrove splits C4's
    sentences: no model, nothing downloaded; built once per process (~0.5 s)."""
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    return nlp


def count_sentences(line: str, enough: int | None = None) -> int:
    """Sentences in a line that hold a letter or digit. The tokenizer keeps abbreviations
    ("Dr.", "p.m.", "U.S."), decimals and initials whole, so only a real sentence end splits
    ("Dr. Smith met Mr. Jones at 3 p.m. on the U.S. coast today." is one sentence). Counting
    stops once it reaches `enough`. A line over 100,000 chars is counted in pieces, so a
    sentence cut at a piece's end counts twice."""
    nlp = _sentencizer()
    n = 0
    for start in range(0, len(line), _MAX_PIECE_CHARS):
        n += sum(1 for s in nlp(line[start : start + _MAX_PIECE_CHARS]).sents if _HAS_ALNUM(s.text))
        if enough is not None and n >= enough:
            break
    return n


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


def c4_filter(text: str, p: C4Params, removed_lines: list | None = None) -> tuple[str, Reason | None]:
    """`(kept lines joined by "\\n", None)`, or `(text, "c4:<rule>")` to drop.

    Per stripped line, in order: a word over `max_word_length` chars removes it; citations
    are stripped; (if enabled) no terminal punctuation or an ellipsis ending removes it;
    fewer than `min_words_per_line` words removes it; "lorem ipsum" drops the document;
    "javascript" removes it; "{" drops the document; a policy notice removes it. Then fewer
    than `min_sentences` sentences in the kept lines (see `count_sentences`) drops the
    document (c4:too_few_sentences), as does nothing left (c4:empty).

    With `removed_lines` (a list), what the line rules remove is appended to it as
    `(rule, line number in text.split("\\n"), removed text)`.
    """
    kept: list[str] = []
    n_sentences = 0
    policies = p.policy_substrings
    note = removed_lines.append if removed_lines is not None else lambda removed: None
    for i, line in enumerate(text.split("\n")):
        line = line.strip()
        if not line:
            continue
        words = line.split()
        if max(map(len, words)) > p.max_word_length:
            note(("long_word", i, line))
            continue
        if p.remove_citations and "[" in line:
            for m in _CITATION.finditer(line):
                note(("citation", i, m.group()))
            line = _CITATION.sub("", line).strip()
            words = line.split()
        if p.filter_no_terminal_punct and (
            not line.endswith(TERMINAL_PUNCTUATION) or line.endswith(("...", "…"))
        ):
            note(("no_terminal_punct", i, line))
            continue
        if len(words) < p.min_words_per_line:
            note(("few_words", i, line))
            continue
        lower = line.lower()
        if p.filter_lorem_ipsum and "lorem ipsum" in lower:
            return text, Reason("c4:lorem_ipsum", f'"lorem ipsum" in line {i + 1}')
        if p.filter_javascript and "javascript" in lower:
            note(("javascript", i, line))
            continue
        if p.filter_curly_bracket and "{" in line:
            return text, Reason("c4:curly_bracket", f'"{{" in line {i + 1}')
        if any(s in lower for s in policies):
            note(("policy", i, line))
            continue
        if n_sentences < p.min_sentences:  # only whether there are enough matters
            n_sentences += count_sentences(line, enough=p.min_sentences - n_sentences)
        kept.append(line)
    if n_sentences < p.min_sentences:
        return text, Reason("c4:too_few_sentences", measured("sentences", n_sentences, "<", p.min_sentences))
    if not kept:
        return text, Reason("c4:empty", "no line left")
    return "\n".join(kept), None
