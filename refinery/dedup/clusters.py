"""From LSH band keys to near-duplicate clusters: partitioning, bucket edges, union-find.

The shuffle is by partition number, not by (band, key): Ray Data's per-group call was ~8x
slower on these machines (DESIGN.md). Every row of one (band, key) bucket lands in the same
partition, and `bucket_edges` reduces a whole partition with one sort.

A document is kept iff it is the smallest id of its cluster, so the kept set depends only on
the set of (doc, band, key) rows: not on row order, nor on how rows are split into partitions.
Document ids are int64; the pipeline maps its string ids with `doc_ids_from_strings` (xxh64).
Two distinct ids collide with probability ~n^2 / 2^65 (~3e-8 for a billion documents); a
collision would merge two documents' clusters.

Scale. Edges are far fewer than band rows: a row makes an edge only when another document
shares its bucket, and `bucket_edges` and `connected_components` drop repeats (a pair that
matches in k bands gives one edge, not k). 20,000 documents x 450 bands is 9M rows but only as
many edges as duplicate pairs, so `connected_components` runs in one process on the
concatenated edges of all partitions; its memory is a few int64 arrays of the edge count, so
one process handles up to roughly 10^8 edges. That is what is implemented. Beyond it the same
algorithm distributes as rounds over Ray Data joins (join edges with the current labels, take
each node's min neighbour label, repeat until no label changes, pointer-jumping between
rounds): not implemented here.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import xxhash

from refinery.dedup.minhash import fmix

_BAND_SALT = np.uint64(0xD6E8FEB86659FD93)  # separates equal keys of different bands


def doc_ids_from_strings(ids: Iterable[str]) -> np.ndarray:
    """Stable int64 document ids: xxh64 of the UTF-8 string id, as signed int64."""
    hashes = [xxhash.xxh64_intdigest(i.encode()) for i in ids]
    return np.array(hashes, dtype=np.uint64).view(np.int64)


def explode_bands(doc_ids: np.ndarray, band_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n_docs, bands) keys to flat rows (doc_id, band_index, key), one per document and band."""
    n_docs, bands = band_keys.shape
    band_index = np.tile(np.arange(bands, dtype=np.int64), n_docs)
    return np.repeat(doc_ids, bands), band_index, band_keys.ravel()


def band_hash(band_index: np.ndarray, key: np.ndarray) -> np.ndarray:
    """A uint64 hash of each (band, key) row, which places it in a shuffle partition."""
    salted = key.astype(np.uint64) ^ (band_index.astype(np.uint64) * _BAND_SALT)
    return fmix(salted, 64)



def unique_edges(edges: np.ndarray) -> np.ndarray:
    """Distinct rows of an (E, 2) int64 edge array, sorted."""
    if len(edges) == 0:
        return edges.reshape(0, 2).astype(np.int64)
    ordered = edges[np.lexsort((edges[:, 1], edges[:, 0]))]
    first = np.ones(len(ordered), dtype=bool)
    first[1:] = np.any(ordered[1:] != ordered[:-1], axis=1)
    return ordered[first]


def bucket_edges(doc_ids: np.ndarray, band_index: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """(E, 2) int64 edges (doc, smallest doc of its bucket) for one partition's rows.

    One lexsort by (band, key, doc): each run of equal (band, key) starts with its smallest doc,
    and every other doc of the run links to it, so a bucket of k docs gives k-1 edges, not k^2."""
    order = np.lexsort((doc_ids, keys, band_index))
    docs, bands, bucket_keys = doc_ids[order], band_index[order], keys[order]
    starts_run = np.ones(len(docs), dtype=bool)
    starts_run[1:] = (bands[1:] != bands[:-1]) | (bucket_keys[1:] != bucket_keys[:-1])
    run_smallest = docs[starts_run][np.cumsum(starts_run) - 1]
    linked = docs != run_smallest
    return unique_edges(np.stack([docs[linked], run_smallest[linked]], axis=1).astype(np.int64))


def _compress(parent: np.ndarray) -> np.ndarray:
    """Pointer jumping until every node points at its root."""
    while True:
        grandparent = parent[parent]
        if np.array_equal(grandparent, parent):
            return parent
        parent = grandparent


def connected_components(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ids, roots): every doc that appears in an edge, sorted, and its cluster's smallest id.

    Vectorized union-find: each round hooks the larger root of every edge whose ends are in
    different trees under the smallest such root (np.minimum.at), then compresses all paths
    by pointer jumping. Parents only ever point at smaller nodes, so the root of a finished
    tree is its smallest id; the number of roots falls every round. Docs in no edge are
    singletons, absent from the result."""
    edges = unique_edges(np.asarray(edges, dtype=np.int64))
    ids, dense = np.unique(edges.ravel(), return_inverse=True)
    left, right = dense.reshape(-1, 2).T
    parent = np.arange(len(ids))
    while True:
        left_root, right_root = parent[left], parent[right]
        apart = left_root != right_root
        if not apart.any():
            return ids, ids[parent]
        larger = np.maximum(left_root, right_root)[apart]
        np.minimum.at(parent, larger, np.minimum(left_root, right_root)[apart])
        parent = _compress(parent)


def duplicate_ids(ids: np.ndarray, roots: np.ndarray) -> np.ndarray:
    """The docs to remove: every clustered doc but its cluster's smallest id."""
    return ids[ids != roots]


def cluster_size_histogram(roots: np.ndarray) -> dict[int, int]:
    """{cluster size: number of clusters} over the clustered docs (singletons are not in roots)."""
    _, sizes = np.unique(roots, return_counts=True)
    size, count = np.unique(sizes, return_counts=True)
    return dict(zip(size.tolist(), count.tolist()))
