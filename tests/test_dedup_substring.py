"""Exact substring dedup without Ray: the four passes of `refinery.dedup.substring` run in one
process (`dedup_in_memory`, with the Ray phase's routing over several slots and partitions) and
held to the rule computed by brute force on real text (AEB and trafilatura-eval bodies), with
repeated spans planted across documents and within one."""
from __future__ import annotations

import gzip
import json
import random

import numpy as np
import pyarrow as pa
import pytest

from refinery.dedup.clusters import doc_ids_from_strings
from refinery.dedup.substring import (
    SubstringDedupParams, candidates, dedup_in_memory, reference_struck, request_runs, strike, strike_text,
    token_spans, tokenize, window_rows,
)

M = 38  # the default min_tokens


@pytest.fixture(scope="module")
def bodies(data_dir):
    """Real article bodies: 60 of AEB's ground truth and trafilatura's main text of 12 English
    trafilatura-eval pages."""
    from refinery.extract import ExtractParams, extract_text

    truth = json.loads((data_dir / "article-extraction-benchmark" / "ground-truth.json").read_text())
    texts = sorted((v["articleBody"] for v in truth.values() if len(v["articleBody"].split()) > 150), key=len)[:60]
    evaldata = json.loads(gzip.open(data_dir / "trafilatura-eval" / "evaldata.json.gz", "rt").read())
    english = [e["file"] for u, e in sorted(evaldata.items()) if any(t in u for t in (".com/", ".org/", ".co.uk/"))]
    for name in english:
        path = next((p for sub in ("eval", "cache") if (p := data_dir / "trafilatura-eval" / sub / f"{name}.gz").exists()), None)
        text = path and extract_text(gzip.open(path, "rt", errors="replace").read(), ExtractParams(favor_precision=False))[0]
        if text and len(text.split()) > 150 and sum(c.isascii() for c in text) > 0.95 * len(text):
            texts.append(text)
        if len(texts) == 72:
            break
    assert len(texts) == 72
    return texts


def plant(texts: list[str], rng: random.Random) -> list[str]:
    """Copies of real spans of 30-90 words planted into other documents, mid-line and as a line
    of their own, and twice into one document."""
    out = list(texts)
    for _ in range(25):
        src, dst = rng.sample(range(len(texts)), 2)
        words = texts[src].split()
        n = rng.randint(30, 90)
        at = rng.randrange(len(words) - n)
        span = " ".join(words[at : at + n])
        lines = out[dst].split("\n")
        i = rng.randrange(len(lines))
        if rng.random() < 0.5:
            lines.insert(i, span)
        else:
            cut = lines[i].split(" ")
            j = rng.randrange(len(cut) + 1)
            lines[i] = " ".join(cut[:j] + [span] + cut[j:])
        out[dst] = "\n".join(lines)
    words = texts[3].split()
    out[5] = out[5] + "\n" + " ".join(words[:60]) + "\nand then again\n" + " ".join(words[:60])
    return out


def struck_masks(texts: list[str], ids: list[str], edits: pa.Table) -> list[np.ndarray]:
    """Per text, its struck tokens as the edits' spans say."""
    by_doc = {d: spans for d, spans in zip(edits.column("doc").to_pylist(), edits.column("spans").to_pylist())}
    masks = []
    for text, doc in zip(texts, doc_ids_from_strings(ids).tolist()):
        spans = token_spans(text)
        mask = np.zeros(len(spans), dtype=bool)
        for s in by_doc.get(doc, []):
            mask |= np.array([a >= s["start"] and b <= s["end"] for a, b in spans], dtype=bool)
        masks.append(mask)
    return masks


def as_slots(texts: list[str], ids: list[str], n: int) -> list[pa.Table]:
    cuts = np.array_split(np.arange(len(texts)), n)
    return [pa.table({"id": [ids[i] for i in c], "text": [texts[i] for i in c]}) for c in cuts]


@pytest.mark.parametrize("keep", ["none", "first"])
def test_struck_spans_equal_the_brute_force_reference_on_real_text(bodies, keep):
    texts = plant(bodies, random.Random(11))
    ids = [f"doc-{i}" for i in range(len(texts))]
    p = SubstringDedupParams(keep=keep, partitions=7, min_words=0)
    edits, rejected = dedup_in_memory(as_slots(texts, ids, 3), p)
    want = reference_struck(texts, doc_ids_from_strings(ids).tolist(), [0] * len(texts), p)
    got = struck_masks(texts, ids, edits)
    assert sum(int(w.sum()) for w in want) > 25 * 30  # the planted spans, and the text's own repeats
    for i, (g, w) in enumerate(zip(got, want)):
        assert np.array_equal(g, w), (i, np.flatnonzero(g != w)[:10])
    assert rejected == 0
    assert edits.num_rows == sum(bool(w.any()) for w in want)
    assert sorted(edits.column("tokens_struck").to_pylist()) == sorted(int(w.sum()) for w in want if w.any())
    # the same with every document in one slot and one partition
    one, _ = dedup_in_memory(as_slots(texts, ids, 1), p.model_copy(update={"partitions": 1}))
    assert one.sort_by("doc").to_pylist() == edits.sort_by("doc").to_pylist()


def test_no_output_word_is_a_fragment_of_an_input_word(bodies):
    texts = plant(bodies, random.Random(5))
    ids = [f"doc-{i}" for i in range(len(texts))]
    edits, _ = dedup_in_memory(as_slots(texts, ids, 2), SubstringDedupParams(min_words=0))
    by_doc = dict(zip(doc_ids_from_strings(ids).tolist(), texts))
    assert edits.num_rows > 20
    for doc, new in zip(edits.column("doc").to_pylist(), edits.column("text").to_pylist()):
        original = by_doc[doc]
        assert set(new.split()) <= set(original.split())
        assert "\n\n\n" not in new and not new.startswith("\n") and not new.endswith("\n")
        assert len(new.split()) < len(original.split())


def unique_words(tag: str, n: int) -> str:
    return " ".join(f"{tag}{i}x" for i in range(n))


@pytest.mark.parametrize("length, struck", [(M - 1, False), (M, True)])
def test_a_repeat_of_min_tokens_is_struck_and_one_token_shorter_survives(bodies, length, struck):
    span = " ".join(bodies[0].split()[100 : 100 + length])
    texts = [f"{unique_words('a', 60)} {span} {unique_words('b', 60)}", f"{unique_words('c', 60)}\n{span}\n{unique_words('d', 60)}"]
    ids = ["first", "second"]
    for keep in ("none", "first"):
        edits, _ = dedup_in_memory(as_slots(texts, ids, 2), SubstringDedupParams(keep=keep))
        if not struck:
            assert edits.num_rows == 0
            continue
        docs = doc_ids_from_strings(ids).tolist()
        struck_docs = sorted(docs) if keep == "none" else [max(docs)]  # keep first: the smallest id keeps its copy
        assert sorted(edits.column("doc").to_pylist()) == struck_docs
        for row in edits.to_pylist():
            assert [s["text"] for s in row["spans"]] == [span]
            original = texts[docs.index(row["doc"])]
            assert row["text"] == original.replace(f" {span}", "").replace(f"\n{span}", "")
            assert row["tokens_struck"] == length


def test_chinese_repeated_span_is_cut_on_character_boundaries(data_dir):
    from refinery.extract import ExtractParams, extract_text

    html = gzip.open(data_dir / "trafilatura-eval" / "eval" / "archive.org.he.xinhuanet.com.25340717.html.gz").read().decode("gb18030")
    chinese = extract_text(html, ExtractParams(favor_precision=False))[0]
    assert sum("\u4e00" <= c <= "\u9fff" for c in chinese) > 500
    span = chinese[200:260]  # 60 characters of real Chinese text
    a = "据新华社报道，" + span + "。以上为全文。" + chinese[600:900]
    b = chinese[1000:1300] + "。另据消息：" + span + "，记者现场采访。"
    edits, _ = dedup_in_memory(as_slots([a, b], ["a", "b"], 1), SubstringDedupParams(min_words=0))
    assert edits.num_rows == 2
    for row, original in zip(sorted(edits.to_pylist(), key=lambda r: r["doc"] != doc_ids_from_strings(["a"])[0]), [a, b]):
        assert [s["text"] for s in row["spans"]] == [span]
        s = row["spans"][0]
        assert original[s["start"] : s["end"]] == span
        assert row["text"] == original[: s["start"]] + original[s["end"] :]  # nothing but the span, no space added
        row["text"].encode("utf-8")
        assert row["tokens_struck"] == len(span)


def test_tokens_are_words_and_characters_of_scripts_without_spaces(bodies):
    assert [("Alice wanted to go"[a:b]) for a, b in token_spans("Alice wanted to go")] == ["Alice", "wanted", "to", "go"]
    text = "我爱北京 Python编程 กินข้าว e\u0301te\u0301 ok"
    assert [text[a:b] for a, b in token_spans(text)] == ["我", "爱", "北", "京", "Python", "编", "程", "กิ", "น", "ข้", "า", "ว", "e\u0301te\u0301", "ok"]
    # the compiled tokenizer is the definition, on real text of several scripts
    samples = bodies[:20] + [text, "", "  \n ", "\u0301lone mark", "Ｆｕｌｌ　ｗｉｄｔｈ！"]
    data, offsets, bs, be, cs, ce, counts = tokenize(pa.array(samples))
    first = 0
    for t, (sample, n) in enumerate(zip(samples, counts.tolist())):
        assert list(zip(cs[first : first + n].tolist(), ce[first : first + n].tolist())) == token_spans(sample)
        for k in range(first, first + n):  # byte offsets cut the same tokens out of the UTF-8
            assert bytes(data[offsets[t] + bs[k] : offsets[t] + be[k]]).decode() == sample[cs[k] : ce[k]]
        first += n


def test_a_hash_collision_never_strikes_unique_text(bodies):
    """Two different windows given the same hash: a candidate, rejected by the text check."""
    p = SubstringDedupParams(partitions=1)
    table = pa.table({"id": ["x", "y"], "text": [bodies[1], bodies[2]]})
    docs = doc_ids_from_strings(["x", "y"])
    rows = window_rows(table.column("text"), docs, np.zeros(2, np.int32), 0, p)
    hashes = rows.column("hash").to_numpy().copy()
    doc = rows.column("doc").to_numpy()
    hashes[np.flatnonzero(doc == docs[1])[0]] = hashes[0]  # y's first window collides with x's
    rows = rows.set_column(rows.schema.get_field_index("hash"), "hash", pa.array(hashes))
    cand, req = candidates(rows, p.keep)
    assert cand.num_rows == 2
    runs = request_runs(table, docs, req, p.min_tokens)
    edits, rejected = strike(table, docs, cand, runs, p)
    assert edits.num_rows == 0 and rejected == 2


def test_lines_left_empty_go_and_separators_stay():
    text = "Alice wanted to go to the store\n\nX Y Z\n\nlast line here"
    spans = token_spans(text)
    words = [text[a:b] for a, b in spans]
    starts, ends = np.array([a for a, _ in spans]), np.array([b for _, b in spans])

    def cut(*struck_words):
        return strike_text(text, starts, ends, np.isin(np.arange(len(words)), [words.index(w) for w in struck_words]))

    assert cut("to", "go") == "Alice wanted to the store\n\nX Y Z\n\nlast line here".replace("wanted to the", "wanted to the")
    assert cut("store") == "Alice wanted to go to the\n\nX Y Z\n\nlast line here"
    assert cut("X", "Y", "Z") == "Alice wanted to go to the store\n\nlast line here"
    assert cut("last", "line", "here") == "Alice wanted to go to the store\n\nX Y Z"
    assert cut("Alice", "wanted") == "to go to the store\n\nX Y Z\n\nlast line here"
