"""MinHash throughput of Refinery vs datasketch, and LSH precision/recall vs exact Jaccard.

Documents: the real article texts of article-extraction-benchmark/ground-truth.json, each
with edited copies (words replaced, paragraphs reordered, boilerplate appended), ~2,000 in
all. Both sides start from raw text and use the same normalization (`normalize_texts`);
datasketch then gets each document's shingle bytes and a C hash (xxhash), its fastest usual
setup. At 9,000 hashes datasketch is timed on a random subset and scaled by shingle count.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np
import xxhash
from datasketch import MinHash

from refinery.dedup.clusters import explode_bands
from refinery.dedup.minhash import (
    FINEWEB_MINHASH,
    MinHashParams,
    lsh_band_keys,
    minhash_signatures,
    normalize_texts,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BOILERPLATE = (
    "\n\nSubscribe to our newsletter. We use cookies to improve your experience; by continuing "
    "you accept our cookie policy. Share this article. Copyright 2019, all rights reserved."
)
EDIT_FRACTIONS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12)
THRESHOLD = 0.8


def edit_words(text: str, fraction: float, rng: random.Random) -> str:
    lines = [line.split(" ") for line in text.split("\n")]
    positions = [(i, j) for i, line in enumerate(lines) for j in range(len(line)) if line[j]]
    for i, j in rng.sample(positions, max(1, round(fraction * len(positions)))):
        lines[i][j] = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=7))
    return "\n".join(" ".join(line) for line in lines)


def planted_corpus(pages: list[str], rng: random.Random) -> tuple[list[str], list[int]]:
    """Each page and 10 edited copies; returns texts and each text's family (source page)."""
    texts, family = [], []
    for f, page in enumerate(pages):
        paragraphs = page.split("\n\n")
        rng.shuffle(paragraphs)
        copies = [edit_words(page, x, rng) for x in EDIT_FRACTIONS]
        copies += ["\n\n".join(paragraphs), page + BOILERPLATE, edit_words(page, 0.01, rng) + BOILERPLATE]
        texts += [page, *copies]
        family += [f] * (1 + len(copies))
    return texts, family


def shingle_lists(texts: list[str], n: int = 5) -> list[list[bytes]]:
    """datasketch's input: each document's word 5-grams as bytes."""
    lists = []
    for normalized in normalize_texts(texts):
        words = normalized.split(" ") if normalized else []
        count = max(len(words) - n + 1, 1) if words else 0
        lists.append([" ".join(words[i : i + n]).encode() for i in range(count)])
    return lists


def timed(fn, repeats: int):
    """(best wall time of `repeats` runs, last result): the machine is shared, and the
    minimum is the least disturbed run."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def datasketch_bulk(texts, num_perm, bits):
    hashfunc = xxhash.xxh32_intdigest if bits == 32 else xxhash.xxh64_intdigest
    return MinHash.bulk(shingle_lists(texts), num_perm=num_perm, hashfunc=hashfunc, scheme=f"affine{bits}")


def datasketch_update_batch(texts, num_perm, bits):
    hashfunc = xxhash.xxh32_intdigest if bits == 32 else xxhash.xxh64_intdigest
    sketches = []
    for shingles in shingle_lists(texts):
        sketch = MinHash(num_perm=num_perm, hashfunc=hashfunc, scheme=f"affine{bits}")
        sketch.update_batch(shingles)
        sketches.append(sketch)
    return sketches


def candidate_pairs(band_keys: np.ndarray) -> set[tuple[int, int]]:
    """Pairs sharing at least one (band, key) bucket: LSH's candidates, with no verification."""
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


def precision_recall(candidates, sets, family) -> tuple[float, float, int, int]:
    """Against exact Jaccard >= THRESHOLD. True pairs are searched within each family (copies
    of one page); every candidate, in or across families, gets its exact Jaccard."""

    def jaccard(a, b):
        return len(sets[a] & sets[b]) / len(sets[a] | sets[b])

    members: dict[int, list[int]] = {}
    for doc, f in enumerate(family):
        members.setdefault(f, []).append(doc)
    within = [(a, b) for m in members.values() for i, a in enumerate(m) for b in m[i + 1 :]]
    truth = {pair for pair in within if jaccard(*pair) >= THRESHOLD}
    hits = {pair for pair in candidates if jaccard(*pair) >= THRESHOLD}
    precision = len(hits) / max(len(candidates), 1)
    return precision, len(hits & truth) / len(truth), len(candidates), len(truth)


def throughput(texts, total_shingles, params, args, rng) -> np.ndarray:
    """Print one row of docs/s and ratios; return Refinery's signatures."""
    refinery_s, signatures = timed(lambda: minhash_signatures(texts, params), args.repeats)
    sample = texts if params.num_perm < 1000 else rng.sample(texts, args.subset)
    scale = total_shingles / sum(map(len, shingle_lists(sample)))
    bulk_s = timed(lambda: datasketch_bulk(sample, params.num_perm, params.hash_bits), args.repeats)[0]
    update_s = timed(lambda: datasketch_update_batch(sample, params.num_perm, params.hash_bits), args.repeats)[0]
    bulk_s, update_s = bulk_s * scale, update_s * scale
    n = len(texts)
    label = f"{params.num_perm} ({params.bands}x{params.rows}, {params.hash_bits}-bit)"
    note = "" if sample is texts else f"  (datasketch: {len(sample)} docs, scaled by shingle count)"
    print(
        f"{label:22s} {n / refinery_s:9.1f} {n / bulk_s:18.1f} {n / update_s:20.1f} "
        f"{bulk_s / refinery_s:9.1f} {update_s / refinery_s:11.1f}{note}"
    )
    return signatures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=100, help="docs timed for datasketch at 9,000 hashes")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs per figure")
    args = parser.parse_args()
    print(f"# reproduce: python benchmarks/minhash.py --subset {args.subset} --repeats {args.repeats}")
    ground_truth = DATA / "article-extraction-benchmark" / "ground-truth.json"
    pages = [v["articleBody"] for v in json.loads(ground_truth.read_text()).values()]
    rng = random.Random(0)
    texts, family = planted_corpus(pages, rng)
    shingles = shingle_lists(texts)
    total_shingles = sum(map(len, shingles))
    print(
        f"# {len(texts)} docs ({len(pages)} real pages + 10 edited copies each), {total_shingles} shingles; "
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, one process, "
        f"best of {args.repeats}"
    )
    minhash_signatures(texts[:20], FINEWEB_MINHASH)  # warm Arrow's kernels and the regex
    normalize_s = timed(lambda: normalize_texts(texts), args.repeats)[0]
    print(f"# normalization alone (both sides pay it): {len(texts) / normalize_s:.0f} docs/s")

    print("\nhashes          refinery docs/s  datasketch bulk docs/s  update_batch docs/s  x bulk  x update_batch")
    configs = (FINEWEB_MINHASH, MinHashParams())
    signatures = [throughput(texts, total_shingles, params, args, rng) for params in configs]

    print(f"\nLSH candidate pairs vs exact 5-gram Jaccard >= {THRESHOLD}")
    shingle_sets = [set(s) for s in shingles]
    for params, sig in zip(configs, signatures):
        keys = lsh_band_keys(sig, params.bands, params.rows)
        precision, recall, n_candidates, n_true = precision_recall(candidate_pairs(keys), shingle_sets, family)
        print(
            f"{params.bands:3d} x {params.rows:2d}: precision {precision:.3f}  recall {recall:.3f}  "
            f"({n_candidates} candidate pairs, {n_true} true pairs)"
        )


if __name__ == "__main__":
    main()
