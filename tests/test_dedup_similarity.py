"""The Jaccard similarity the dedup phase records for each near-duplicate it removes: exact,
on the shingle sets MinHash estimates it from, whichever partition a cluster lands in."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from refinery.dedup.clusters import doc_ids_from_strings
from refinery.dedup.minhash import MinHashParams, shingle_bytes, shingles
from refinery.dedup.similarity import cluster_jaccards, member_shingles

BASE = ("the quick brown fox jumps over the lazy dog while the cat sleeps on a warm mat near "
        "the old red barn at the edge of the quiet village by the river").split()


def text(words: list[str]) -> str:
    return " ".join(words)


def exact(a: str, b: str) -> float:
    x, y = set(shingle_bytes(a)), set(shingle_bytes(b))
    return len(x & y) / len(x | y)


@pytest.mark.parametrize("partitions", [1, 3])
def test_each_removed_member_gets_its_jaccard_with_the_kept_document(partitions):
    docs = {
        "kept-a": text(BASE),
        "near-a": text(BASE[:-3] + ["by", "the", "sea"]),  # a changed tail
        "far-a": text(BASE[:10] + ["completely", "different", "words", "from", "here", "on"] + BASE[20:]),
        "kept-b": text(BASE[::-1]),
        "same-b": text(BASE[::-1]).upper() + "!",  # equal once normalized
        "loner": "nothing in common with any of the others at all really",
    }
    ids = list(docs)
    ints = dict(zip(ids, doc_ids_from_strings(ids)))
    removed = np.array([ints["near-a"], ints["far-a"], ints["same-b"]])
    kept = np.array([ints["kept-a"], ints["kept-a"], ints["kept-b"]])
    order = np.argsort(removed)
    batch = pa.table({"id": ids, "text": list(docs.values())})
    # two batches, as two map tasks would see them
    rows = pa.concat_tables(member_shingles(b, MinHashParams(), removed[order], kept[order], partitions)
                            for b in (batch.slice(0, 3), batch.slice(3)))
    assert ints["loner"] not in rows.column("doc").to_pylist()
    found = pa.concat_tables(cluster_jaccards(rows.filter(pa.compute.equal(rows.column("part"), part)))
                             for part in range(partitions)).to_pylist()
    got = {r["doc"]: r["jaccard"] for r in found}
    assert set(got) == set(removed.tolist())
    for name, keeper in (("near-a", "kept-a"), ("far-a", "kept-a"), ("same-b", "kept-b")):
        assert got[ints[name]] == pytest.approx(exact(docs[name], docs[keeper]))
    assert got[ints["same-b"]] == 1.0 and 0 < got[ints["far-a"]] < got[ints["near-a"]] < 1


def test_a_run_records_each_near_duplicates_jaccard_on_its_removed_row(crawl_run):
    out, _, stats = crawl_run
    removed = pq.read_table(out / "removed" / "minhash").to_pylist()
    assert len(removed) == stats["dedup"]["minhash"]["removed"] > 0
    kept = {r["id"]: r["text"] for r in pq.read_table(out / "shards", columns=["id", "text"]).to_pylist()}
    for row in removed:
        a, b = set(shingles(row["text"]).tolist()), set(shingles(kept[row["duplicate_of"]]).tolist())
        assert row["reason_detail"] == f"jaccard {len(a & b) / len(a | b):.3f} with the kept document (word 5-gram shingles)"
