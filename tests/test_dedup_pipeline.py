"""Dedup as users meet it: planted near-duplicates and exact copies of real articles, run
through `refinery run`, found and removed with the document kept in their place named."""
from __future__ import annotations

import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter
import io

from refinery.dedup.minhash import shingles
from refinery.dedup.phase import ExactDedupParams, UrlDedupParams, bucket_rows, partition_edges, removals
from conftest import run_cli

CONFIG = """
stages:
  - stage: extract
    favor_precision: false
  - stage: language
dedup:
  - stage: minhash
  - stage: exact_dedup
  - stage: url_dedup
    keep: latest
"""


def articles(data_dir, n):
    truth = json.loads((data_dir / "article-extraction-benchmark" / "ground-truth.json").read_text())
    texts = [v["articleBody"] for v in truth.values() if len(v["articleBody"].split()) > 400]
    english = sorted(texts, key=lambda t: -t.count(" the ") / len(t.split()))
    return english[:n]


def edited(text: str, rng: random.Random, fraction: float) -> str:
    words = text.split(" ")
    for i in rng.sample(range(len(words)), int(len(words) * fraction)):
        words[i] = words[i][::-1]
    return " ".join(words)


def reordered(text: str) -> str:
    """The first and last paragraphs swapped."""
    paras = text.split("\n")
    paras[0], paras[-1] = paras[-1], paras[0]
    return "\n".join(paras)


def page(text: str) -> bytes:
    body = "".join(f"<p>{p}</p>" for p in text.split("\n") if p.strip())
    return f"<html><head><title>t</title></head><body><article>{body}</article></body></html>".encode()


def write(path, docs):
    with open(path, "wb") as f:
        w = WARCWriter(f, gzip=True)
        for url, date, text in docs:
            http = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
            rec = w.create_warc_record(url, "response", payload=io.BytesIO(page(text)), http_headers=http)
            rec.rec_headers.replace_header("WARC-Date", date)
            w.write_record(rec)


def jaccard(a: str, b: str) -> float:
    x, y = set(shingles(a).tolist()), set(shingles(b).tolist())
    return len(x & y) / len(x | y)


@pytest.fixture(scope="module")
def planted(data_dir, tmp_path_factory):
    rng = random.Random(7)
    texts = articles(data_dir, 14)
    date = "2024-01-01T00:00:00Z"
    docs = [(f"https://site{i}.example/article", date, t) for i, t in enumerate(texts[:10])]
    variants = []  # (original index, url, text)
    for i, t in enumerate(texts[:6]):
        variants.append((i, f"https://copy{i}.example/a", edited(t, rng, 0.01)))
        variants.append((i, f"https://copy{i}.example/b", reordered(t) + "\nSubscribe to our newsletter for more stories."))
    far = (8, "https://far.example/eight", edited(texts[8], rng, 0.4))  # Jaccard < 0.5: not a duplicate
    exact = [(7, "https://mirror.example/seven", texts[7])]
    # the same URL crawled twice with different content: URL dedup keeps the latest crawl
    same_url = [("https://news.example/front", "2023-05-01T00:00:00Z", texts[10]), ("https://news.example/front", "2024-05-01T00:00:00Z", texts[11])]
    docs += [(u, date, t) for _, u, t in variants + exact + [far]] + same_url
    tmp = tmp_path_factory.mktemp("planted")
    half = len(docs) // 2
    write(tmp / "a.warc.gz", docs[:half])
    write(tmp / "b.warc.gz", docs[half:])
    (tmp / "dedup.yaml").write_text(CONFIG)
    return tmp, texts, variants, exact, far


def run(tmp, out, *extra):
    proc = run_cli("run", str(tmp / "dedup.yaml"), "--output", str(out), "--write-removed", *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "stats.json").read_text())


@pytest.fixture(scope="module")
def run_ab(planted):
    """Inputs a then b on two workers: the run the planted duplicates are checked in, and one
    side of the independence test (a CLI run costs seconds of Ray start-up, so it is shared)."""
    tmp = planted[0]
    stats = run(tmp, tmp / "out_ab", "--input", str(tmp / "a.warc.gz"), str(tmp / "b.warc.gz"), "--workers", "2")
    return tmp / "out_ab", stats


def test_planted_duplicates_are_removed(planted, run_ab):
    tmp, texts, variants, exact, far = planted
    out, stats = run_ab
    # at Jaccard >= 0.85, 450 x 20 LSH finds a pair with probability > 0.9999; under 0.5, ~0
    assert all(jaccard(texts[i], t) >= 0.85 for i, _, t in variants)
    assert jaccard(texts[8], far[2]) < 0.5
    removed = pq.read_table(out / "removed" / "minhash").to_pydict()
    kept = pq.read_table(out / "shards").to_pydict()
    kept_urls = set(kept["url"])
    # each original with its variants and copies is one cluster: exactly one member survives
    for i in range(6):
        members = {f"https://site{i}.example/article", f"https://copy{i}.example/a", f"https://copy{i}.example/b"}
        assert len(members & kept_urls) == 1, members & kept_urls
    assert len({"https://site7.example/article", "https://mirror.example/seven"} & kept_urls) == 1
    assert {"https://site8.example/article", "https://far.example/eight"} <= kept_urls
    # removed rows name the kept document of their cluster
    kept_ids = set(kept["id"])
    assert set(removed["duplicate_of"]) <= kept_ids
    assert stats["dedup"]["minhash"]["removed"] == 13 == len(removed["id"])
    assert stats["dedup"]["minhash"]["cluster_sizes"] == {"2": 1, "3": 6}
    url = pq.read_table(out / "removed" / "url_dedup").to_pydict()
    assert url["url"] == ["https://news.example/front"]
    front = [d for d, u in zip(kept["date"], kept["url"]) if u == "https://news.example/front"]
    assert front == ["2024-05-01T00:00:00Z"]
    # the funnel goes on through dedup and adds up
    names = [s["stage"] for s in stats["stages"]]
    assert names[-3:] == ["minhash", "exact_dedup", "url_dedup"]
    assert stats["kept"]["docs"] == len(kept["id"]) == stats["stages"][-1]["docs_out"]
    # each removed row says how alike it is to the document kept in its place (what the report shows)
    kept_text = dict(zip(kept["id"], kept["text"]))
    for text, kept_id, detail in zip(removed["text"], removed["duplicate_of"], removed["reason_detail"]):
        assert detail == f"jaccard {jaccard(text, kept_text[kept_id]):.3f} with the kept document (word 5-gram shingles)"


def test_kept_set_does_not_depend_on_workers_or_input_order(planted, run_ab):
    tmp, *_ = planted
    out_a, _ = run_ab  # a, b on two workers
    run(tmp, tmp / "out_b", "--input", str(tmp / "b.warc.gz"), str(tmp / "a.warc.gz"), "--workers", "1")
    ids_a = set(pq.read_table(out_a / "shards", columns=["id"]).column("id").to_pylist())
    ids_b = set(pq.read_table(tmp / "out_b" / "shards", columns=["id"]).column("id").to_pylist())
    assert ids_a == ids_b and ids_a


def _dedup(p, table):
    rows = bucket_rows(table, p, excluded=pa.array([], pa.int64()).to_numpy())
    edges = partition_edges(rows)
    import numpy as np

    return removals(p, np.stack([edges.column("doc").to_numpy(), edges.column("kept").to_numpy()], axis=1))


def test_exact_dedup_keeps_one_of_identical_normalized_texts():
    from refinery.dedup.clusters import doc_ids_from_strings

    table = pa.table({"id": ["a", "b", "c", "d"], "text": ["Hello, World!", "hello world", "hello   WORLD.", "other text"]})
    removed, kept, sizes = _dedup(ExactDedupParams(), table)
    ids = dict(zip(doc_ids_from_strings(["a", "b", "c", "d"]).tolist(), "abcd"))
    assert sorted(ids[d] for d in removed.tolist()) == sorted(set("abc") - {ids[min(k for k, v in ids.items() if v in "abc")]})
    assert sizes == {3: 1}


@pytest.mark.parametrize("keep, winner", [("latest", "new"), ("first", "old")])
def test_url_dedup_keeps_first_or_latest_crawl(keep, winner):
    from refinery.dedup.clusters import doc_ids_from_strings

    table = pa.table(
        {
            "id": ["old", "new", "other"],
            "url": ["https://A.example/x#frag", "https://a.example/x", "https://a.example/y"],
            "date": ["2020-01-01T00:00:00Z", "2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z"],
        }
    )
    removed, kept, _ = _dedup(UrlDedupParams(keep=keep), table)
    names = dict(zip(doc_ids_from_strings(["old", "new", "other"]).tolist(), ["old", "new", "other"]))
    assert [names[k] for k in kept.tolist()] == [winner]
    assert [names[r] for r in removed.tolist()] == [{"old": "new", "new": "old"}[winner]]
