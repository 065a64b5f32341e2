"""Small text helpers shared by the document filters.

Everything here is whitespace/regex based and language-agnostic on purpose: the filters run
on every document of a crawl, so they avoid tokenizers and stay linear in the text length.
"""
from __future__ import annotations

import re
import string

# A paragraph break is a blank line: two newlines with only spaces/tabs between them.
_PARAGRAPH_BREAK = re.compile(r"\n(?:[ \t\r\f\v]*\n)+")

# "Has a Unicode letter" (\w minus digits and underscore) and "has a letter or digit".
has_letter = re.compile(r"[^\W\d_]").search
has_alnum = re.compile(r"[^\W_]").search

# Characters stripped around a word before comparing it with a word list (stop words).
WORD_EDGE_PUNCTUATION = string.punctuation + "“”‘’«»„‚‹›…–—¡¿·"

# Line endings that count as "ends a sentence" (C4 and FineWeb rules), ASCII and common
# Unicode forms; quotes count because a sentence often ends inside a quotation.
TERMINAL_PUNCTUATION: tuple[str, ...] = (
    ".", "!", "?", '"', "'", "”", "’", "…", "。", "！", "？",
)


def split_words(text: str) -> list[str]:
    """Words as the Gopher/RefinedWeb rules count them: whitespace-separated tokens."""
    return text.split()


def non_blank_lines(text: str) -> list[str]:
    """Lines split on newline, stripped, with blank (whitespace-only) lines left out."""
    return [s for s in (line.strip() for line in text.split("\n")) if s]


def paragraphs(text: str) -> list[str]:
    """Paragraphs (text between blank lines), stripped, with empty ones left out."""
    return [s for s in (p.strip() for p in _PARAGRAPH_BREAK.split(text)) if s]
