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
from refinery.reason import Reason, measured

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


@lru_cache(maxsize=64)
def _in_order(paths: tuple[str, ...]) -> tuple[str, ...]:
    """The union, sorted, so the word a URL is dropped for does not depend on set order."""
    return tuple(sorted(_union_of(paths)))


def _listed_parent(host: str, domains: frozenset[str]) -> str | None:
    """The host or the parent domain of it that is listed (so a.b.example.com matches
    example.com), or None."""
    parts = host.split(".")
    return next((d for d in (".".join(parts[i:]) for i in range(len(parts) - 1)) if d in domains), None)


def url_filter(url: str | None, domain: str | None, p: UrlFilterParams) -> Reason | None:
    """The reason to drop a page by its URL, or None to keep it. Soft words count once each,
    however often they occur (`/hot/hot-deals` is one hit), as DCLM and datatrove count them."""
    if not url:
        return Reason("url_filter:no_url", "the record has no URL")
    host = (domain or "").lower().removeprefix("www.")
    listed = _listed_parent(host, _union(p.curated_domains))
    if listed:
        return Reason("url_filter:curated_domain", f"domain {host} is under {listed}")
    listed = _listed_parent(host, _union(p.blocklist_domains))
    if listed:
        return Reason("url_filter:blocklisted_domain", f"domain {host} is under {listed}")
    lowered = url.lower()
    words = _URL_WORD.findall(lowered)
    hard = _union(p.hard_words)
    hit = next((w for w in words if w in hard), None)
    if hit:
        return Reason("url_filter:hard_word", f"hard word {hit!r}")
    soft = sorted(set(words) & _union(p.soft_words))
    if len(soft) >= p.soft_word_hits:
        return Reason("url_filter:soft_words", measured(f"soft words ({', '.join(soft)})", len(soft), ">=", p.soft_word_hits))
    squashed = lowered.replace("-", "").replace(".", "")
    hit = next((w for w in _in_order(tuple(p.strict_words)) if w in squashed), None)
    if hit:
        return Reason("url_filter:strict_word", f"strict word {hit!r} in the URL")
    return None
