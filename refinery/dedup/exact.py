"""Exact document keys: identical normalized text (whole-document dedup) and URL dedup.

This is whole-document exact dedup. RefinedWeb's stage 8 (REFERENCE.md) is span-level, any
repeated run of >= 50 tokens cut out: that is `refinery.dedup.substring`.
"""
from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import xxhash

from refinery.dedup.minhash import Texts, normalize, normalize_texts

_DEFAULT_PORTS = {"http": "80", "https": "443"}


def exact_text_key(text: str) -> int:
    """xxh64 of the normalized text (the MinHash normalization): equal iff equal after it."""
    return xxhash.xxh64_intdigest(normalize(text).encode())


def exact_text_keys(texts: Texts) -> np.ndarray:
    """`exact_text_key` over a batch, uint64."""
    normalized = normalize_texts(texts)
    keys = (xxhash.xxh64_intdigest(t.encode()) for t in normalized)
    return np.fromiter(keys, dtype=np.uint64, count=len(normalized))


def normalize_url(url: str) -> str:
    """Lowercase scheme and host, no fragment, no default port, "/" for an empty path.
    Path and query keep their case and order: servers may treat them as significant."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    userinfo, at, host = parts.netloc.rpartition("@")
    host = host.lower()
    default_port = _DEFAULT_PORTS.get(scheme)
    if default_port and host.endswith(":" + default_port):
        host = host[: -len(default_port) - 1]
    path = parts.path or ("/" if host else "")
    return urlunsplit((scheme, userinfo + at + host, path, parts.query, ""))


def url_key(url: str) -> int:
    """xxh64 of the normalized URL."""
    return xxhash.xxh64_intdigest(normalize_url(url).encode())


def url_keys(urls: Iterable[str]) -> np.ndarray:
    """`url_key` over a batch, uint64."""
    return np.array([url_key(u) for u in urls], dtype=np.uint64)


def keep_smallest_id_per_key(keys: np.ndarray, doc_ids: np.ndarray) -> np.ndarray:
    """Boolean mask keeping, for each distinct key, the row with the smallest doc id
    (deterministic whatever the row order, like the fuzzy clusters' rule)."""
    order = np.lexsort((doc_ids, keys))
    first = np.ones(len(order), dtype=bool)
    first[1:] = keys[order][1:] != keys[order][:-1]
    keep = np.zeros(len(order), dtype=bool)
    keep[order[first]] = True
    return keep
