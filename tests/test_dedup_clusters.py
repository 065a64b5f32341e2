"""Near-duplicate clusters: planted near-duplicates of real pages found by 450 x 20 LSH,
and the union-find's result independent of row order and partitioning."""
import json
import random
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from refinery.dedup.clusters import (
    band_hash,
    bucket_edges,
    cluster_size_histogram,
    connected_components,
    doc_ids_from_strings,
    duplicate_ids,
    explode_bands,
    unique_edges,
)
from refinery.dedup.scope import Partitions
from refinery.dedup.minhash import MinHashParams, lsh_band_keys, minhash_signatures, shingle_bytes

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
GROUND_TRUTH = DATA / "article-extraction-benchmark" / "ground-truth.json"
BOILERPLATE = (
    "\n\nSubscribe to our newsletter for the latest news. We use cookies to improve your "
    "experience; by continuing you accept our cookie policy. Share this article on Facebook, "
    "Twitter or by email. Copyright 2019, all rights reserved. Terms of use. Privacy policy."
)


def edit_words(text: str, fraction: float, rng: random.Random) -> str:
    """Replace a fraction of the words with random tokens, keeping the line structure."""
    lines = [line.split(" ") for line in text.split("\n")]
    positions = [(i, j) for i, line in enumerate(lines) for j in range(len(line)) if line[j]]
    for i, j in rng.sample(positions, max(1, round(fraction * len(positions)))):
        lines[i][j] = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=7))
    return "\n".join(" ".join(line) for line in lines)


def reorder_paragraphs(text: str, rng: random.Random) -> str:
    paragraphs = text.split("\n\n")
    rng.shuffle(paragraphs)
    return "\n\n".join(paragraphs)


VARIANTS = {  # median Jaccard to the original on these pages, from ~0.95 down to ~0.19
    "edit 0.5%": lambda t, rng: edit_words(t, 0.005, rng),
    "edit 1%": lambda t, rng: edit_words(t, 0.01, rng),
    "paragraphs reordered": reorder_paragraphs,
    "edit 1% + boilerplate": lambda t, rng: edit_words(t, 0.01, rng) + BOILERPLATE,
    "edit 2% + boilerplate": lambda t, rng: edit_words(t, 0.02, rng) + BOILERPLATE,
    "edit 4%": lambda t, rng: edit_words(t, 0.04, rng),
    "edit 8%": lambda t, rng: edit_words(t, 0.08, rng),
    "edit 12%": lambda t, rng: edit_words(t, 0.12, rng),
    "edit 20%": lambda t, rng: edit_words(t, 0.20, rng),
}


def jaccard(x: set, y: set) -> float:
    return len(x & y) / len(x | y)


def candidate_pairs(band_keys: np.ndarray) -> set[tuple[int, int]]:
    """Every pair of documents that shares at least one (band, key) bucket."""
    docs, bands, keys = explode_bands(np.arange(len(band_keys)), band_keys)
    order = np.lexsort((docs, keys, bands))
    docs, bands, keys = docs[order], bands[order], keys[order]
    pairs = set()
    for gap in range(1, len(band_keys)):
        same = (bands[gap:] == bands[:-gap]) & (keys[gap:] == keys[:-gap])
        if not same.any():
            break
        pairs.update(zip(docs[:-gap][same].tolist(), docs[gap:][same].tolist()))
    return pairs


@pytest.fixture(scope="module")
def planted():
    """Real pages of >= 150 words and nine edited copies of each: texts, (original, copy,
    variant) triples, the exact shingle set of every text, and 450 x 20 band keys."""
    if not GROUND_TRUTH.exists():
        pytest.skip(f"real pages not found at {GROUND_TRUTH}")
    pages = [v["articleBody"] for v in json.loads(GROUND_TRUTH.read_text()).values()]
    rng = random.Random(0)
    texts, pairs = [], []  # pairs: (original index, copy index, variant name)
    for page in (p for p in pages if len(p.split()) >= 150):
        original = len(texts)
        texts.append(page)
        for name, make in VARIANTS.items():
            pairs.append((original, len(texts), name))
            texts.append(make(page, rng))
    params = MinHashParams()
    band_keys = lsh_band_keys(minhash_signatures(texts, params), params.bands, params.rows)
    return texts, pairs, [set(shingle_bytes(t)) for t in texts], band_keys


def test_planted_near_duplicates_found_and_dissimilar_pairs_never(planted):
    texts, pairs, sets, band_keys = planted
    candidates = candidate_pairs(band_keys)
    similarity = {(a, b): jaccard(sets[a], sets[b]) for a, b, _ in pairs}
    high = [pair for pair, j in similarity.items() if j >= 0.85]
    low = [pair for pair, j in similarity.items() if j < 0.5]
    assert len(high) >= 400 and len(low) >= 300  # the planted set spans both sides
    assert sum(pair in candidates for pair in high) / len(high) >= 0.99
    assert [pair for pair in low if pair in candidates] == []
    # No candidate at all, planted or between different pages, is under Jaccard 0.5.
    assert min(jaccard(sets[a], sets[b]) for a, b in candidates) >= 0.5


def band_partition(bands: np.ndarray, keys: np.ndarray, partitions: int) -> np.ndarray:
    """Where the pipeline sends band rows of one scope group among `partitions` shared partitions."""
    return Partitions.shared(partitions).of(np.zeros(len(bands), np.int64), band_hash(bands, keys))


def clusters_via_partitions(doc_ids, band_keys, partitions: int, rng) -> set[int]:
    """The pipeline's reduction on shuffled rows: per-partition edges, then one union-find."""
    docs, bands, keys = explode_bands(doc_ids, band_keys)
    order = rng.permutation(len(docs))
    docs, bands, keys = docs[order], bands[order], keys[order]
    partition = band_partition(bands, keys, partitions)
    edges = [
        bucket_edges(docs[partition == p], bands[partition == p], keys[partition == p])
        for p in range(partitions)
    ]
    ids, roots = connected_components(np.concatenate(edges))
    return set(doc_ids.tolist()) - set(duplicate_ids(ids, roots).tolist())


def test_kept_set_does_not_depend_on_row_order_or_partitioning(planted):
    texts, pairs, sets, band_keys = planted
    rng = np.random.default_rng(1)
    doc_ids = rng.integers(-(2**63), 2**63 - 1, len(texts), dtype=np.int64)
    kept = [clusters_via_partitions(doc_ids, band_keys, p, rng) for p in (1, 7, 64)]
    assert kept[0] == kept[1] == kept[2]
    assert len(kept[0]) < len(texts)


def test_original_and_its_close_copies_form_one_cluster(planted):
    texts, pairs, sets, band_keys = planted
    doc_ids = np.arange(len(texts), dtype=np.int64)
    docs, bands, keys = explode_bands(doc_ids, band_keys)
    ids, roots = connected_components(bucket_edges(docs, bands, keys))
    root_of = dict(zip(ids.tolist(), roots.tolist()))
    for original, copy, _ in pairs:
        if jaccard(sets[original], sets[copy]) >= 0.9:
            assert root_of[copy] == root_of[original] <= original


def reference_components(edges) -> dict[int, int]:
    """Plain BFS: each node's smallest reachable id."""
    neighbours = defaultdict(set)
    for a, b in edges:
        neighbours[a].add(b)
        neighbours[b].add(a)
    root = {}
    for start in neighbours:
        if start in root:
            continue
        seen, frontier = {start}, [start]
        while frontier:
            frontier = [n for node in frontier for n in neighbours[node] if n not in seen]
            seen.update(frontier)
        smallest = min(seen)
        root.update(dict.fromkeys(seen, smallest))
    return root


def test_components_are_transitive():
    ids, roots = connected_components(np.array([[20, 10], [30, 20], [7, 5]]))
    assert dict(zip(ids.tolist(), roots.tolist())) == {5: 5, 7: 5, 10: 10, 20: 10, 30: 10}


@pytest.mark.parametrize("seed", [0, 1])
def test_components_match_bfs_on_random_graphs(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(-(2**62), 2**62, 3000, dtype=np.int64)
    edges = labels[rng.integers(0, 3000, (2500, 2))]
    chain = rng.permutation(labels)[:500]  # one long path, in random id order
    edges = np.concatenate([edges, np.stack([chain[:-1], chain[1:]], axis=1)])
    ids, roots = connected_components(edges)
    assert dict(zip(ids.tolist(), roots.tolist())) == reference_components(edges.tolist())


def test_bucket_edges_link_each_bucket_to_its_smallest_doc_once():
    docs = np.array([9, 4, 6, 9, 4, 3, 8], dtype=np.int64)
    bands = np.array([0, 0, 0, 1, 1, 1, 1])
    keys = np.array([7, 7, 7, 5, 5, 6, 6], dtype=np.uint64)
    # band 0 bucket {4, 6, 9}; band 1 buckets {4, 9} (a repeat) and {3, 8}.
    assert bucket_edges(docs, bands, keys).tolist() == [[6, 4], [8, 3], [9, 4]]
    assert bucket_edges(docs[:0], bands[:0], keys[:0]).shape == (0, 2)


def test_same_key_in_different_bands_is_not_a_match():
    keys = np.array([5, 5], dtype=np.uint64)
    assert bucket_edges(np.array([1, 2]), np.array([0, 1]), keys).shape == (0, 2)


def test_band_partition_routes_equal_buckets_together_and_spreads_bands():
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 2**63, 1000, dtype=np.uint64)
    bands = rng.integers(0, 450, 1000)
    partition = band_partition(bands, keys, 16)
    assert partition.min() >= 0 and partition.max() < 16
    np.testing.assert_array_equal(band_partition(bands.copy(), keys.copy(), 16), partition)
    same_key = band_partition(np.arange(450), np.full(450, 12345, dtype=np.uint64), 16)
    assert len(set(same_key.tolist())) == 16


def test_empty_edges_give_no_clusters():
    ids, roots = connected_components(np.zeros((0, 2), dtype=np.int64))
    assert len(ids) == len(roots) == 0
    assert cluster_size_histogram(roots) == {}


def test_unique_edges_and_histogram():
    assert unique_edges(np.array([[3, 1], [2, 1], [3, 1]])).tolist() == [[2, 1], [3, 1]]
    ids, roots = connected_components(np.array([[2, 1], [3, 1], [5, 4], [9, 8], [10, 8]]))
    assert cluster_size_histogram(roots) == {2: 1, 3: 2}
    assert duplicate_ids(ids, roots).tolist() == [2, 3, 5, 9, 10]


def test_doc_ids_from_strings_are_stable_int64():
    ids = doc_ids_from_strings(["urn:uuid:a", "urn:uuid:b", "urn:uuid:a"])
    assert ids.dtype == np.int64 and ids[0] == ids[2] != ids[1]
