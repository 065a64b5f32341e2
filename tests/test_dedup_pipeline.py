"""Dedup as users meet it: planted near-duplicates and exact copies of real articles, run
through `refinery run`, found and removed with the document kept in their place named."""
from __future__ import annotations

import json
import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter
import io

from refinery.dedup.minhash import shingles
from refinery.dedup.phase import ExactDedupParams, UrlDedupParams, bucket_rows, partition_edges, removals
from conftest import run_cli

FILTER = """
stages:
  - stage: extract
    favor_precision: false
  - stage: language
"""
CONFIG = FILTER + """dedup:
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


def test_kept_set_does_not_depend_on_workers_or_input_order(planted, run_ab):
    tmp, *_ = planted
    out_a, _ = run_ab  # a, b on two workers
    run(tmp, tmp / "out_b", "--input", str(tmp / "b.warc.gz"), str(tmp / "a.warc.gz"), "--workers", "1")
    ids_a = set(pq.read_table(out_a / "shards", columns=["id"]).column("id").to_pylist())
    ids_b = set(pq.read_table(tmp / "out_b" / "shards", columns=["id"]).column("id").to_pylist())
    assert ids_a == ids_b and ids_a


def _dedup(p, table, order_of=None):
    rows = bucket_rows(table, p, np.empty(0, np.int64), None, order_of)
    edges = partition_edges(rows)
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


# ---------------------------------------------------------------- scopes, substring dedup and URL dedup on Ray

SCOPED_CONFIG = FILTER + """dedup:
  - stage: minhash
    scope: crawl
  - stage: exact_dedup
    scope: run
  - stage: substring_dedup
    scope: {parts: 2}
    partitions: 5
  - stage: url_dedup
    keep: first
"""


def named_in_part(prefix: str, part: int) -> str:
    """A WARC file name that `parts: 2` deals into `part`."""
    from refinery.dedup.scope import part_of

    return next(f"{prefix}-{k}.warc.gz" for k in range(100) if part_of(f"{prefix}-{k}.warc.gz", 2) == part)


def with_span(text: str, span: str, inline: bool) -> str:
    """`span` as a paragraph of its own after the first one, or inside the second paragraph."""
    paras = text.split("\n")
    if inline:
        words = paras[1].split(" ")
        paras[1] = " ".join(words[:5] + [span] + words[5:])
    else:
        paras.insert(1, span)
    return "\n".join(paras)


@pytest.fixture(scope="module")
def scoped(data_dir, tmp_path_factory):
    """Three WARC files of real articles in three crawls (the crawl id in each file's name) and
    two parts: file a in part 0 (crawl 2024-10), files b and c in part 1 (crawls 2023-06 and
    2022-05). The same page is in a and b; one URL is in a and b, another in b and c, with
    different text; spans of 45-70 words are planted twice within part 0, twice within part 1,
    once in each part, and twice in one document. One CLI run of SCOPED_CONFIG on two workers."""
    texts = articles(data_dir, 24)
    spans = [" ".join(texts[20 + i].split()[50 : 50 + n]) for i, n in enumerate((45, 52, 60, 70))]
    tmp = tmp_path_factory.mktemp("scoped")
    u = "https://u.example/item"
    w = "https://w.example/item"
    files = {
        "a": (named_in_part("CC-MAIN-2024-10-a", 0), [
            ("https://same.example/page", "2024-03-01T00:00:00Z", texts[0]),
            (u, "2024-03-01T00:00:00Z", texts[1]),
            ("https://a.example/1", "2024-03-01T00:00:00Z", with_span(texts[2], spans[0], True)),
            ("https://a.example/2", "2024-03-01T00:00:00Z", with_span(texts[3], spans[0], False)),
            ("https://a.example/3", "2024-03-01T00:00:00Z", with_span(texts[4], spans[2], True)),
            ("https://a.example/4", "2024-03-01T00:00:00Z", with_span(texts[5] + "\n" + spans[3], spans[3], False)),
        ]),
        "b": (named_in_part("CC-MAIN-2023-06-b", 1), [
            ("https://same.example/page", "2023-02-01T00:00:00Z", texts[0]),
            (u, "2023-02-01T00:00:00Z", texts[6]),
            (w, "2023-02-01T00:00:00Z", texts[7]),
            ("https://b.example/1", "2023-02-01T00:00:00Z", with_span(texts[8], spans[1], False)),
            ("https://b.example/2", "2023-02-01T00:00:00Z", with_span(texts[9], spans[1], True)),
            ("https://b.example/3", "2023-02-01T00:00:00Z", with_span(texts[10], spans[2], False)),
        ]),
        "c": (named_in_part("CC-MAIN-2022-05-c", 1), [(w, "2024-06-01T00:00:00Z", texts[11])]),
    }
    for name, docs in files.values():
        write(tmp / name, docs)
    (tmp / "scoped.yaml").write_text(SCOPED_CONFIG)
    out = tmp / "out"
    proc = run_cli("run", str(tmp / "scoped.yaml"), "--output", str(out), "--write-removed", "--workers", "2",
                   "--input", *(str(tmp / name) for name, _ in files.values()))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads((out / "stats.json").read_text()), {k: str(tmp / name) for k, (name, _) in files.items()}, spans


def removed_rows(out, stage: str) -> list[dict]:
    folder = out / "removed" / stage
    return pq.read_table(folder).to_pylist() if folder.exists() else []


def test_same_page_in_two_crawls_survives_per_crawl_dedup_not_run_wide(scoped):
    out, stats, paths, _ = scoped
    minhash = stats["dedup"]["minhash"]
    assert minhash["scope"] == "crawl" and minhash["removed"] == 0
    assert set(minhash["groups"]) == {"CC-MAIN-2022-05", "CC-MAIN-2023-06", "CC-MAIN-2024-10"}
    assert minhash["groups"]["CC-MAIN-2024-10"]["docs_in"] == 6
    exact = removed_rows(out, "exact_dedup")  # run-wide: one of the two copies goes
    assert [r["url"] for r in exact] == ["https://same.example/page"]
    kept = pq.read_table(out / "shards", columns=["url"]).column("url").to_pylist()
    assert kept.count("https://same.example/page") == 1


def test_url_dedup_keeps_the_lowest_parts_copy_then_the_oldest_crawls(scoped):
    out, stats, paths, _ = scoped
    kept = pq.read_table(out / "shards", columns=["url", "source"]).to_pylist()
    source = {r["url"]: r["source"] for r in kept}
    # part 0 (crawl 2024-10) beats part 1 (the older crawl 2023-06); in part 1, crawl 2022-05 beats 2023-06
    assert source["https://u.example/item"] == paths["a"]
    assert source["https://w.example/item"] == paths["c"]
    assert sorted(r["url"] for r in removed_rows(out, "url_dedup")) == ["https://u.example/item", "https://w.example/item"]
    assert stats["dedup"]["substring_dedup"]["parts"] == 2


def test_substring_dedup_on_ray_strikes_what_brute_force_finds_within_each_part(scoped):
    from refinery.dedup.scope import part_of
    from refinery.dedup.substring import SubstringDedupParams, reference_struck, token_spans

    out, stats, paths, spans = scoped
    rows = removed_rows(out, "substring_dedup")
    # the documents substring dedup saw: the shards and what URL dedup removed after it, with
    # their text before striking where it struck
    seen = {r["id"]: r for r in pq.read_table(out / "shards").to_pylist() + removed_rows(out, "url_dedup")}
    original = {r["id"]: r["text"] for r in rows}
    ids = sorted(seen)
    texts = [original.get(i, seen[i]["text"]) for i in ids]
    groups = [part_of(seen[i]["source"], 2) for i in ids]
    from refinery.dedup.clusters import doc_ids_from_strings

    want = reference_struck(texts, doc_ids_from_strings(ids).tolist(), groups, SubstringDedupParams())
    struck = {r["id"]: r["spans"] for r in rows}
    for i, text, mask in zip(ids, texts, want):
        tokens = token_spans(text)
        got = np.array([any(a >= s["start"] and b <= s["end"] for s in struck.get(i, [])) for a, b in tokens], dtype=bool)
        assert np.array_equal(got, mask), (seen[i]["url"], np.flatnonzero(got != mask)[:10])
    struck_texts = {s["text"] for r in rows for s in r["spans"]}
    assert {spans[0], spans[1], spans[3]} <= struck_texts  # twice in part 0, twice in part 1, twice in one document
    assert spans[2] not in struck_texts  # once in each part
    info = stats["dedup"]["substring_dedup"]
    assert info["tokens_struck"] == sum(int(m.sum()) for m in want) == sum(r["tokens_struck"] for r in rows)
    assert info["documents_touched"] == len(rows) == 5 and info["rejected_candidates"] == 0
    assert all(r["reason_detail"] == f"{r['tokens_struck']} tokens struck in {len(r['spans'])} spans, "
               f"{len(r['text'].split()) - sum(len(s['text'].split()) for s in r['spans'])} words left" for r in rows)
    # each span's other place holds its first window (38 tokens)
    everything = dict(zip(ids, texts))

    def first_tokens(text: str) -> list[str]:
        return [text[a:b] for a, b in token_spans(text)[:38]]

    for r in rows:
        for s in r["spans"]:
            assert first_tokens(everything[s["other_id"]][s["other_start"] :]) == first_tokens(s["text"])
    # the kept documents' text is the text without the spans, and the funnel's words drop by what was struck
    kept = {r["id"]: r for r in pq.read_table(out / "shards").to_pylist()}
    for r in rows:
        if r["id"] in kept:
            assert not any(s["text"] in kept[r["id"]]["text"] for s in r["spans"])
            assert kept[r["id"]]["n_words"] == len(kept[r["id"]]["text"].split())
    stage = {s["stage"]: s for s in stats["stages"]}
    words_struck = sum(len(original[i].split()) - kept[i]["n_words"] for i in original if i in kept)
    assert words_struck > 0 and info["words_struck"] == words_struck
    assert stage["exact_dedup"]["words_out"] - stage["substring_dedup"]["words_out"] == words_struck == stage["substring_dedup"]["words_struck"]
    assert stage["substring_dedup"]["removed"] == {}


def test_crawl_ids_come_from_the_path_then_the_warcinfo_record(data_dir):
    from refinery.dedup.scope import NO_CRAWL, crawl_from_path, crawl_ids

    samples = data_dir / "warc-samples"
    assert crawl_from_path("s3://commoncrawl/crawl-data/CC-MAIN-2024-10/segments/1/warc/CC-MAIN-20240220211055-20240221001055-00000.warc.gz") == "CC-MAIN-2024-10"
    assert crawl_from_path("/data/CC-MAIN-20240220211055-20240221001055-00000.warc.gz") is None  # a WARC's timestamp, not a crawl
    found = crawl_ids([str(p) for p in (
        samples / "common-crawl" / "CC-MAIN-2024-22-whirlwind.warc.gz",
        samples / "archive-crawls" / "BL-20140325121225068-data.gov.uk.warc.gz",  # isPartOf: daily-0900
        samples / "archive-crawls" / "dolma-wget-sample-0000.warc.gz",  # wget writes no isPartOf
    )])
    assert list(found.values()) == ["CC-MAIN-2024-22", "daily-0900", NO_CRAWL]
    # the whirlwind file's warcinfo says the same as its name
    from refinery.dedup.scope import crawl_from_warcinfo

    assert crawl_from_warcinfo(str(samples / "common-crawl" / "CC-MAIN-2024-22-whirlwind.warc.gz")) == "CC-MAIN-2024-22"


def test_parts_are_dealt_by_file_name_whatever_the_mirror():
    from refinery.dedup.scope import AUTO_PART_WORDS, Scopes, PartsScope, auto_parts, part_of

    name = "CC-MAIN-20240220211055-20240221001055-00042.warc.gz"
    mirrors = [f"/mnt/cc/{name}", f"s3://commoncrawl/crawl-data/CC-MAIN-2024-10/segments/x/warc/{name}", f"https://data.commoncrawl.org/x/{name}"]
    assert len({part_of(m, 100) for m in mirrors}) == 1
    names = [f"CC-MAIN-2024-10/warc/file-{i:05d}.warc.gz" for i in range(4000)]
    counts = np.bincount([part_of(n, 8) for n in names], minlength=8)
    assert counts.min() > 400  # ~1/8 of the files each
    assert auto_parts(0, 10) == 1 and auto_parts(3 * AUTO_PART_WORDS, 10) == 3 and auto_parts(500 * AUTO_PART_WORDS, 10) == 10
    scopes = Scopes(names[:50], [PartsScope(parts="auto")], words=2 * AUTO_PART_WORDS + 1, crawls=False)
    assert scopes.parts == 3 and scopes.names(PartsScope(parts="auto")) == ["part-0000", "part-0001", "part-0002"]


def test_minhash_buckets_of_two_scope_groups_never_meet(data_dir):
    from refinery.dedup.minhash import MinHashParams

    text = articles(data_dir, 1)[0]
    table = pa.table({"id": ["x", "y"], "text": [text, text], "source": ["crawl-a.warc.gz", "crawl-b.warc.gz"]})
    p = MinHashParams(bands=20, rows=5)
    for group_of, removed in [({"crawl-a.warc.gz": 0, "crawl-b.warc.gz": 1}, 0), ({"crawl-a.warc.gz": 0, "crawl-b.warc.gz": 0}, 1)]:
        rows = bucket_rows(table, p, np.empty(0, np.int64), group_of)
        edges = partition_edges(rows)
        assert edges.num_rows == removed


def test_url_dedup_ranks_part_then_crawl_then_date_then_id():
    from refinery.dedup.clusters import doc_ids_from_strings

    def winner(rows, order_of):
        table = pa.table({k: [r[k] for r in rows] for k in ("id", "url", "date", "source")})
        removed, kept, _ = _dedup(UrlDedupParams(), table, order_of)
        names = dict(zip(doc_ids_from_strings([r["id"] for r in rows]).tolist(), [r["id"] for r in rows]))
        return {names[k] for k in kept.tolist()}

    url = "https://a.example/x"
    rows = [
        {"id": "p1-new", "url": url, "date": "2024-01-01T00:00:00Z", "source": "p1"},
        {"id": "p0-new", "url": url, "date": "2024-06-01T00:00:00Z", "source": "p0"},
    ]
    assert winner(rows, {"p0": 0, "p1": 1}) == {"p0-new"}  # the lowest part, though its copy is newer
    assert winner(rows, {"p0": 1, "p1": 0}) == {"p1-new"}
    assert winner(rows, {"p0": 0, "p1": 0}) == {"p1-new"}  # same part and crawl: the oldest date
    same = [dict(r, date="2024-01-01T00:00:00Z") for r in rows]
    smallest = min(doc_ids_from_strings(["p1-new", "p0-new"]).tolist())
    assert winner(same, {"p0": 0, "p1": 0}) == {dict(zip(doc_ids_from_strings(["p1-new", "p0-new"]).tolist(), ["p1-new", "p0-new"]))[smallest]}

