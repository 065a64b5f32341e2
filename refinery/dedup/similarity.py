"""How alike a near-duplicate is to the document kept in its place: the Jaccard similarity of
their shingle sets (the hashed word n-grams of normalized text that MinHash estimates it from),
computed exactly, for the removed rows a run writes (`--write-removed`; the run report shows
clusters side by side with it).

Only cluster members take part, through a storage shuffle like the buckets': each member's
shingle set is written keyed by its cluster's kept document (`member_shingles`, the map side),
then each partition compares every removed member with its kept document (`cluster_jaccards`,
the reduce side). O(duplicates) documents move; the driver gets one float per removed document.
Clusters are transitive, so a member can be less alike its kept document than the MinHash
threshold: it was linked through another member."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from refinery.dedup.clusters import doc_ids_from_strings
from refinery.dedup.minhash import MinHashParams, fmix, shingles

SHINGLE_ROWS = pa.schema([("part", pa.int64()), ("root", pa.int64()), ("doc", pa.int64()), ("shingles", pa.large_list(pa.uint64()))])
JACCARD = pa.schema([("doc", pa.int64()), ("jaccard", pa.float64())])


def member_shingles(batch: pa.Table, p: MinHashParams, removed: np.ndarray, roots: np.ndarray, partitions: int) -> pa.Table:
    """The shingle sets of the batch's cluster members: each removed document (`removed`,
    sorted, with `roots[i]` kept in the place of `removed[i]`) under its root, and each root
    under itself, with the shuffle partition of the root."""
    ints = doc_ids_from_strings(batch.column("id").to_pylist())
    pos = np.minimum(np.searchsorted(removed, ints), max(len(removed) - 1, 0))
    is_removed = removed[pos] == ints if len(removed) else np.zeros(len(ints), dtype=bool)
    member = is_removed | np.isin(ints, roots)
    root = np.where(is_removed, roots[pos] if len(roots) else ints, ints)[member]
    texts = batch.column("text").filter(pa.array(member)).to_pylist()
    sets = [shingles(text or "", p.ngram) for text in texts]
    part = (fmix(root.view(np.uint64), 64) % np.uint64(partitions)).astype(np.int64)
    return pa.table([part, root, ints[member], pa.array(sets, pa.large_list(pa.uint64()))], schema=SHINGLE_ROWS)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """|a & b| / |a | b| of two sorted unique arrays (1.0 for two empty sets)."""
    common = len(np.intersect1d(a, b, assume_unique=True))
    union = len(a) + len(b) - common
    return common / union if union else 1.0


def cluster_jaccards(rows: pa.Table) -> pa.Table:
    """Each removed member's Jaccard similarity with its root, from one partition's rows."""
    sets: dict[int, dict[int, np.ndarray]] = {}
    for root, doc, values in zip(rows.column("root").to_numpy(), rows.column("doc").to_numpy(), rows.column("shingles").to_pylist()):
        sets.setdefault(int(root), {})[int(doc)] = np.asarray(values, dtype=np.uint64)
    docs, values = [], []
    for root, members in sets.items():
        kept = members.get(root)
        for doc, shingle_set in members.items():
            if doc != root and kept is not None:
                docs.append(doc)
                values.append(jaccard(kept, shingle_set))
    return pa.table([pa.array(docs, pa.int64()), pa.array(values, pa.float64())], schema=JACCARD)
