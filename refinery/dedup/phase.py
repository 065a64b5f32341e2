"""The bodies of the dedup phase, without Ray: what each worker computes from a batch of
filtered documents (bucket rows), what each shuffle partition reduces them to (edges from a
duplicate to the document kept in its place), and how the driver turns edges into removals.

All three dedup stages share this shape, so they share the shuffle: MinHash LSH emits one row
per (document, band); exact dedup one row keyed by the normalized text's hash; URL dedup one
row keyed by the normalized URL, ranked by crawl date. Which document of a bucket survives is
a function of the bucket's rows alone, so the kept set does not depend on workers, blocks or
input order."""
from __future__ import annotations

from datetime import datetime
from typing import Literal, Union

import numpy as np
import pyarrow as pa
from pydantic import Field

from refinery.dedup.clusters import (
    band_partition,
    bucket_edges,
    cluster_size_histogram,
    connected_components,
    doc_ids_from_strings,
    explode_bands,
)
from refinery.dedup.exact import exact_text_keys, url_keys
from refinery.dedup.minhash import MinHashParams, lsh_band_keys, minhash_signatures
from refinery.params import Params


class ExactDedupParams(Params):
    """Identical normalized text (MinHash's normalization): one document kept, the smallest id."""

    stage: Literal["exact_dedup"] = "exact_dedup"
    partitions: int = Field(16, ge=1)


class UrlDedupParams(Params):
    """One document per normalized URL: the first or the latest crawl of it (ties: smallest id)."""

    stage: Literal["url_dedup"] = "url_dedup"
    keep: Literal["first", "latest"] = "latest"
    partitions: int = Field(16, ge=1)


DedupParams = Union[MinHashParams, ExactDedupParams, UrlDedupParams]
REASONS = {"minhash": "minhash:near_duplicate", "exact_dedup": "exact_dedup:same_text", "url_dedup": "url_dedup:same_url"}
BUCKET_SCHEMA = pa.schema([("part", pa.int64()), ("doc", pa.int64()), ("band", pa.int64()), ("key", pa.uint64()), ("rank", pa.int64())])
EDGE_SCHEMA = pa.schema([("doc", pa.int64()), ("kept", pa.int64())])


def _date_rank(dates: list[str | None], keep: str) -> np.ndarray:
    """Smaller rank wins: epoch seconds for `first`, minus them for `latest`; no date loses."""
    out = np.full(len(dates), np.iinfo(np.int64).max, dtype=np.int64)
    for i, d in enumerate(dates):
        try:
            t = int(datetime.fromisoformat((d or "").replace("Z", "+00:00")).timestamp())
        except ValueError:
            continue
        out[i] = t if keep == "first" else -t
    return out


def bucket_rows(batch: pa.Table, p: DedupParams, excluded: np.ndarray) -> pa.Table:
    """One row per (document, bucket) for the documents of `batch` not already `excluded`
    by an earlier dedup stage, with the shuffle partition of its bucket."""
    docs = doc_ids_from_strings(batch.column("id").to_pylist())
    alive = ~np.isin(docs, excluded)
    batch, docs = batch.filter(pa.array(alive)), docs[alive]
    if isinstance(p, MinHashParams):
        keys = lsh_band_keys(minhash_signatures(batch.column("text"), p), p.bands, p.rows)
        doc, band, key = explode_bands(docs, keys)
        rank = doc
    else:
        band = np.zeros(len(docs), dtype=np.int64)
        if isinstance(p, ExactDedupParams):
            key, rank = exact_text_keys(batch.column("text")), docs
        else:
            key, rank = url_keys(batch.column("url").to_pylist()), _date_rank(batch.column("date").to_pylist(), p.keep)
        doc = docs
    part = band_partition(band, key, p.partitions)
    return pa.table([part, doc, band, key, rank], schema=BUCKET_SCHEMA)


def partition_edges(rows: pa.Table) -> pa.Table:
    """Reduce one shuffle partition: link every document of a bucket to the bucket's winner
    (smallest rank, then smallest id). MinHash's rank is the id, so this is `bucket_edges`."""
    doc = rows.column("doc").to_numpy()
    band, key, rank = (rows.column(c).to_numpy() for c in ("band", "key", "rank"))
    if np.array_equal(doc, rank):
        edges = bucket_edges(doc, band, key)
    else:
        order = np.lexsort((doc, rank, key, band))
        d, b, k = doc[order], band[order], key[order]
        starts = np.ones(len(d), dtype=bool)
        starts[1:] = (b[1:] != b[:-1]) | (k[1:] != k[:-1])
        winner = d[starts][np.cumsum(starts) - 1]
        edges = np.stack([d[d != winner], winner[d != winner]], axis=1)
    return pa.table([edges[:, 0], edges[:, 1]], schema=EDGE_SCHEMA) if len(edges) else EDGE_SCHEMA.empty_table()


def removals(p: DedupParams, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[int, int]]:
    """(removed docs, the doc kept in each one's place, cluster-size histogram). MinHash
    clusters are transitive, so its edges go through union-find; exact and URL buckets are
    already whole clusters."""
    if len(edges) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64), {}
    if isinstance(p, MinHashParams):
        ids, roots = connected_components(edges)
    else:
        ids = np.concatenate([edges[:, 0], np.unique(edges[:, 1])])
        roots = np.concatenate([edges[:, 1], np.unique(edges[:, 1])])
    dup = ids != roots
    return ids[dup], roots[dup], cluster_size_histogram(roots)
