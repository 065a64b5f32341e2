"""The bodies of the document-level dedup stages, without Ray: what each worker computes from
a batch of filtered documents (bucket rows), what each shuffle partition reduces them to (edges
from a duplicate to the document kept in its place), and how the driver turns edges into
removals. (Span-level dedup, `substring_dedup`, is `refinery.dedup.substring`.)

All three stages share this shape, so they share the shuffle: MinHash LSH emits one row per
(document, band); exact dedup one row keyed by the normalized text's hash; URL dedup one row
keyed by the normalized URL, ranked. Which document of a bucket survives is a function of the
bucket's rows alone, so the kept set does not depend on workers, blocks or input order.

A stage's scope (`refinery.dedup.scope`) is in the `band` column: a document of scope group g
emits its band b as g * bands + b (exact and URL dedup: g), so documents of two groups never
share a bucket."""
from __future__ import annotations

from typing import Literal, Union

import numpy as np
import pyarrow as pa
from pydantic import Field

from refinery.dedup.clusters import (
    band_hash,
    bucket_edges,
    cluster_size_histogram,
    connected_components,
    doc_ids_from_strings,
    explode_bands,
)
from refinery.dedup.exact import exact_text_keys, url_keys
from refinery.dedup.minhash import MinHashParams, lsh_band_keys, minhash_signatures
from refinery.dedup.scope import PartitionCount, Partitions, Scope, epoch_seconds, groups, parts_of_run, shuffle_partitions
from refinery.dedup.substring import REASON_SHORT, SubstringDedupParams
from refinery.params import Params


class ExactDedupParams(Params):
    """Identical normalized text (MinHash's normalization): one document kept, the smallest id."""

    stage: Literal["exact_dedup"] = "exact_dedup"
    partitions: PartitionCount = "auto"
    scope: Scope = "run"


class UrlDedupParams(Params):
    """One document per normalized URL (MDR stage 9). `first`: the copy in the lowest part
    (the run's split into parts, `refinery.dedup.scope`), then the oldest crawl id, then the
    oldest WARC date, then the smallest doc id. `latest`: the newest WARC date, then the
    smallest doc id."""

    stage: Literal["url_dedup"] = "url_dedup"
    keep: Literal["first", "latest"] = "first"
    partitions: PartitionCount = "auto"
    scope: Scope = "run"


DedupParams = Union[MinHashParams, ExactDedupParams, UrlDedupParams, SubstringDedupParams]
REASONS = {
    "minhash": "minhash:near_duplicate", "exact_dedup": "exact_dedup:same_text", "url_dedup": "url_dedup:same_url",
    "substring_dedup": REASON_SHORT,
}
_DATE_BITS = 36  # epoch seconds up to the year 4147
BUCKET_SCHEMA = pa.schema([("part", pa.int64()), ("doc", pa.int64()), ("band", pa.int64()), ("key", pa.uint64()), ("rank", pa.int64())])
BUCKET_ROW_BYTES = 8 * len(BUCKET_SCHEMA)  # the shuffle writes them without `part`, but reads them back with a copy or two
WINDOW_ROW_BYTES = 32  # substring dedup's WINDOW_SCHEMA: one row per word (window), int32/int64 columns
EDGE_SCHEMA = pa.schema([("doc", pa.int64()), ("kept", pa.int64())])


def url_rank(dates: list[str | None], keep: str, order: np.ndarray | None = None) -> np.ndarray:
    """Smaller rank wins. `first`: (`order`, the position of the copy's part and crawl in the
    run's order, then its date) packed in an int64, no date after every date; `latest`: minus
    the date, no date last."""
    seconds = epoch_seconds(dates)
    if keep == "latest":
        return np.where(seconds >= 0, -seconds, np.iinfo(np.int64).max)
    date = np.where(seconds >= 0, np.minimum(seconds, (1 << _DATE_BITS) - 2), (1 << _DATE_BITS) - 1)
    return ((np.zeros(len(dates), np.int64) if order is None else order.astype(np.int64)) << _DATE_BITS) | date


def shuffle_row_bytes(p: DedupParams, docs: np.ndarray, words: np.ndarray) -> np.ndarray:
    """The bytes of shuffle rows a stage emits for scope groups of `docs` documents and `words`
    words (what `partitions: auto` sizes from): MinHash a row per band, exact and URL dedup one
    per document, substring dedup one per word."""
    if isinstance(p, SubstringDedupParams):
        return np.asarray(words, np.float64) * WINDOW_ROW_BYTES
    return np.asarray(docs, np.float64) * BUCKET_ROW_BYTES * (p.bands if isinstance(p, MinHashParams) else 1)


def stage_partitions(p: DedupParams, docs: np.ndarray, words: np.ndarray) -> Partitions:
    """A stage's shuffle partitions for scope groups of `docs` documents and `words` words."""
    return shuffle_partitions(p.partitions, shuffle_row_bytes(p, docs, words))


def bucket_rows(batch: pa.Table, p: DedupParams, excluded: np.ndarray, group_of: dict[str, int] | None = None,
                order_of: dict[str, int] | None = None, partitions: Partitions | None = None) -> pa.Table:
    """One row per (document, bucket) for the documents of `batch` not already `excluded`
    by an earlier dedup stage, with the shuffle partition of its bucket. `group_of` gives the
    scope group of each input file (`source`; default: one group); `order_of` the rank of each
    input file for URL dedup's `keep: first` (part, then crawl); `partitions` where each group's
    rows go (default: an integer `p.partitions` shared, or one)."""
    docs = doc_ids_from_strings(batch.column("id").to_pylist())
    alive = ~np.isin(docs, excluded)
    batch, docs = batch.filter(pa.array(alive)), docs[alive]
    sources = batch.column("source").to_pylist() if "source" in batch.column_names else [""] * len(docs)
    group = groups(sources, group_of or {}).astype(np.int64)
    if partitions is None:
        partitions = Partitions.shared(p.partitions if p.partitions != "auto" else 1, int(group.max(initial=0)) + 1)
    if isinstance(p, MinHashParams):
        keys = lsh_band_keys(minhash_signatures(batch.column("text"), p), p.bands, p.rows)
        doc, band, key = explode_bands(docs, keys)
        row_group = np.repeat(group, p.bands)
        band = band + row_group * p.bands
        rank = doc
    else:
        band = row_group = group
        if isinstance(p, ExactDedupParams):
            key, rank = exact_text_keys(batch.column("text")), docs
        else:
            order = groups(sources, order_of or {})
            key, rank = url_keys(batch.column("url").to_pylist()), url_rank(batch.column("date").to_pylist(), p.keep, order)
        doc = docs
    part = partitions.of(row_group, band_hash(band, key))
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


def check_dedup_list(stages: list[DedupParams]) -> None:
    """What a config's dedup list must satisfy, raised as ValueError naming the stage: one
    substring dedup at most, after the stages that read text (they would read the text before
    its spans were struck), and one split into parts for the whole run (`refinery.dedup.scope`)."""
    substring = [i for i, p in enumerate(stages) if isinstance(p, SubstringDedupParams)]
    if len(substring) > 1:
        raise ValueError(f"dedup.{substring[1]}: substring_dedup appears twice")
    for i, p in enumerate(stages):
        if substring and i > substring[0] and isinstance(p, (MinHashParams, ExactDedupParams)):
            raise ValueError(f"dedup.{i}: {p.stage} reads text, so it must come before substring_dedup (dedup.{substring[0]})")
    try:
        parts_of_run([p.scope for p in stages])
    except ValueError as e:
        raise ValueError(f"dedup: {e}") from None
