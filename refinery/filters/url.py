"""RefinedWeb's URL filter: a domain blocklist, severity-weighted URL words, and the exclusion
of curated-corpus domains. Runs before extraction, so it costs nothing per rejected page."""
from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import Field

from refinery.params import Params

_URL_WORD = re.compile(r"[a-z0-9]+")


def _bundled(name: str) -> str:
    return str(resources.files("refinery") / "data" / name)


class UrlFilterParams(Params):
    stage: Literal["url_filter"] = "url_filter"
    blocklist_domains: list[str] = Field(default_factory=lambda: [_bundled("url_blocklist_domains.txt")])
    hard_words: list[str] = Field(default_factory=lambda: [_bundled("url_hard_words.txt")])
    soft_words: list[str] = Field(default_factory=lambda: [_bundled("url_soft_words.txt")])
    strict_words: list[str] = Field(default_factory=lambda: [_bundled("url_strict_words.txt")])
    curated_domains: list[str] = Field(default_factory=lambda: [_bundled("curated_domains.txt")])
    soft_word_hits: int = Field(2, ge=1, description="soft-word hits that drop a URL")


@lru_cache(maxsize=64)
def load_word_list(path: str) -> frozenset[str]:
    """A list file: one entry per line, lowercased; '#' comments and blank lines ignored.
    UT1's `domains` files have the same shape, so they can be given as they are."""
    lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    return frozenset(s.strip().lower() for s in lines if s.strip() and not s.lstrip().startswith("#"))


def _union(paths: list[str]) -> frozenset[str]:
    return _union_of(tuple(paths))


@lru_cache(maxsize=64)
def _union_of(paths: tuple[str, ...]) -> frozenset[str]:
    """Built once per process: with UT1's lists (millions of domains) a union per URL would
    cost seconds."""
    return frozenset().union(*(load_word_list(p) for p in paths))


def _domain_in(host: str, domains: frozenset[str]) -> bool:
    """True if the host or any parent domain of it is listed (so a.b.example.com matches example.com)."""
    parts = host.split(".")
    return any(".".join(parts[i:]) in domains for i in range(len(parts) - 1))


def url_filter(url: str | None, domain: str | None, p: UrlFilterParams) -> str | None:
    """The reason to drop a page by its URL, or None to keep it."""
    if not url:
        return "url_filter:no_url"
    host = (domain or "").lower().removeprefix("www.")
    if _domain_in(host, _union(p.curated_domains)):
        return "url_filter:curated_domain"
    if _domain_in(host, _union(p.blocklist_domains)):
        return "url_filter:blocklisted_domain"
    lowered = url.lower()
    words = _URL_WORD.findall(lowered)
    if any(w in _union(p.hard_words) for w in words):
        return "url_filter:hard_word"
    soft = _union(p.soft_words)
    if sum(w in soft for w in words) >= p.soft_word_hits:
        return "url_filter:soft_words"
    squashed = lowered.replace("-", "").replace(".", "")
    if any(w in squashed for w in _union(p.strict_words)):
        return "url_filter:strict_word"
    return None
