"""Issue 7: a corpus of damaged and odd WARC records, built from real crawl-sample pages, run
through `refinery run pipelines/cc.yaml` beside a file of good pages. The run must finish, every
record must be accounted for in stats.json with a reason that names its fault, and the good
pages must come out exactly as from a run over the good pages alone."""
from __future__ import annotations

import html as html_module
import io
import json
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image
from warcio.statusandheaders import StatusAndHeaders

from conftest import run_cli
from run_checks import RunOutput, check_funnel_against_files
from refinery.filters.language import identify_language
from warc_builders import bomb_record, lie_about_length, nested, record_bytes, response_record, write_warc

N_GOOD = 30


def english_pages(warc: Path, n: int) -> list[tuple[str, bytes]]:
    """The first n pages of a real WARC that are confidently English (the crawl sample is
    mostly German, which cc.yaml drops at once: English pages make the comparison mean something)."""
    from warcio.archiveiterator import ArchiveIterator

    pages = []
    with open(warc, "rb") as f:
        for rec in ArchiveIterator(f):
            html = rec.content_stream().read()
            text = re.sub(r"<[^>]*>", " ", re.sub(r"(?is)<(script|style)\b.*?</\1\s*>", " ", html.decode("utf-8", "replace")))
            language, score = identify_language(html_module.unescape(" ".join(text.split()))[:20_000])
            if language == "en" and score >= 0.9:
                pages.append((rec.rec_headers.get_header("WARC-Target-URI"), html))
                if len(pages) == n:
                    return pages
    raise AssertionError(f"only {len(pages)} English pages in {warc}")


def image_bytes(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buf, fmt)
    return buf.getvalue()


def build_corpus(pages: list[tuple[str, bytes]], folder: Path) -> tuple[dict, Counter]:
    """Fault files out of real pages (distinct from the good ones, so dedup cannot tie them).
    Returns {file: the records it holds} and the read reasons expected in stats.json."""
    spare = iter(pages)
    expected: Counter = Counter()
    files: dict[str, int] = {}

    def resp(url, body, ctype="text/html", status="200 OK", headers=(), gz=True):
        return record_bytes(lambda w: response_record(w, url, body, ctype, status, headers), gz)

    # framing damage in a gzip-per-record file, good records between the faults
    (u0, h0), (u1, h1), (u2, h2), (u3, h3), (u4, h4) = [next(spare) for _ in range(5)]
    cut = resp(u1, h1)
    damaged = [
        resp(u0, h0),
        cut[: len(cut) // 2],                              # a gzip member cut in the middle
        resp(u2, h2),
        lie_about_length(resp(u3, h3), +1000),             # Content-Length too long
        resp(u4, h4),
        lie_about_length(resp(u3 + "?short", h3), -1000),  # Content-Length too short
        resp(u0 + "?again", h0),
    ]
    last = resp(u2 + "?truncated", h2)
    damaged.append(last[: len(last) * 2 // 3])             # the file ends inside a record
    (folder / "damaged.warc.gz").write_bytes(b"".join(damaged))
    files["damaged.warc.gz"] = len(damaged)
    expected.update({"read:corrupt_gzip": 1, "read:bad_content_length": 2, "read:truncated_record": 1})

    # the same lies in an uncompressed WARC, where no gzip framing helps
    plain = [
        resp(u4 + "?plain", h4, gz=False),
        lie_about_length(resp(u3 + "?plain-long", h3, gz=False), +1000, gz=False),
        resp(u0 + "?plain", h0, gz=False),
        lie_about_length(resp(u3 + "?plain-short", h3, gz=False), -1000, gz=False),
        resp(u2 + "?plain", h2, gz=False),
    ]
    (folder / "damaged.warc").write_bytes(b"".join(plain))
    files["damaged.warc"] = len(plain)
    expected.update({"read:bad_content_length": 2})

    # well-formed records that are not documents, or odd ones
    (u5, h5), (u6, h6), (u7, h7) = [next(spare) for _ in range(3)]
    digest = "sha1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    odd = [
        record_bytes(lambda w: w.create_warcinfo_record("odd.warc.gz", {"software": "refinery tests"})),
        record_bytes(lambda w: w.create_warc_record(u5, "request", payload=io.BytesIO(b""), http_headers=StatusAndHeaders(
            "GET / HTTP/1.1", [("Host", "example.org")], is_http_request=True))),
        record_bytes(lambda w: w.create_warc_record(u5, "metadata", payload=io.BytesIO(b"fetchTimeMs: 120\r\n"),
                                                    warc_content_type="application/warc-fields")),
        record_bytes(lambda w: w.create_revisit_record(u5, digest, u5, "2024-01-01T00:00:00Z",
                                                       http_headers=StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1"))),
        resp(u5 + "?gone", h5, status="404 Not Found"),
        resp(u5 + "?moved", b"", status="301 Moved Permanently", headers=[("Location", u5)]),
        resp(u5 + "?empty", b""),
        resp(u5 + "?pdf", image_bytes("PDF")),
        resp(u5 + "?png", image_bytes("PNG")),
        bomb_record(u5 + "?bomb", 200_000_000),             # 200 MB of zeros, ~200 KB compressed
        resp(u5 + "?charset", h5, "text/html; charset=x-no-such-thing"),
        resp(u6 + "?huge", (h6 * (30_000_000 // len(h6) + 1))[:30_000_000]),
        resp(u7 + "?nested", nested(h7, 100_000)),
    ]
    (folder / "odd.warc.gz").write_bytes(b"".join(odd))
    files["odd.warc.gz"] = len(odd)
    expected.update({
        "read:record_warcinfo": 1, "read:record_request": 1, "read:record_metadata": 1, "read:record_revisit": 1,
        "read:http_404": 1, "read:http_301": 1, "read:empty_payload": 1, "read:binary_payload": 2,
        "read:record_too_large": 1,
    })
    return files, expected


@pytest.fixture(scope="module")
def runs(data_dir, tmp_path_factory):
    """(good-alone run, faults+good run, the expected read reasons, the good file's ids)."""
    folder = tmp_path_factory.mktemp("faults")
    pages = english_pages(data_dir / "crawl-sample" / "real-pages.warc.gz", N_GOOD + 8)
    good = write_warc(folder / "good.warc.gz", [(u, h, "text/html", "200 OK") for u, h in pages[:N_GOOD]])
    files, expected = build_corpus(pages[N_GOOD:], folder)

    def run(name, inputs):
        out = folder / name
        started = time.monotonic()
        proc = run_cli("run", "pipelines/cc.yaml", "--input", *map(str, inputs), "--output", str(out), "--write-removed", timeout=300)
        return out, proc, time.monotonic() - started

    # the two runs are independent CLI runs, each with its own local Ray: started together, their
    # Ray start-ups and small final passes overlap
    with ThreadPoolExecutor(2) as pool:
        runs = {name: pool.submit(run, name, inputs) for name, inputs in (("clean", [good]), ("faults", [folder / f for f in files] + [good]))}
        results = {}
        for name, future in runs.items():
            out, proc, seconds = future.result()
            assert proc.returncode == 0, proc.stderr[-3000:]
            assert seconds < 240  # no fault may hang a worker
            results[name] = (out, json.loads((out / "stats.json").read_text()))
    return results, files, expected, N_GOOD


def outcomes(out: Path) -> dict[str, tuple]:
    """Every document's fate: id -> ("kept", text) or (stage, reason, text)."""
    fate = {}
    kept = pq.read_table(out / "shards", columns=["id", "text"]).to_pydict()
    for i, text in zip(kept["id"], kept["text"]):
        fate[i] = ("kept", text)
    for folder in (out / "removed").iterdir():
        removed = pq.read_table(folder).to_pydict()
        for i, reason, text in zip(removed["id"], removed["reason"], removed["text"]):
            assert i not in fate, i
            fate[i] = (folder.name, reason, text)
    return fate


def test_every_record_is_accounted_for_with_its_fault(runs):
    results, files, expected, n_good = runs
    out, stats = results["faults"]
    assert stats["records_read"] == sum(files.values()) + n_good
    check_funnel_against_files(RunOutput(out), stats)  # every record a shard row or a removed row, as counted
    for reason, n in expected.items():
        assert stats["not_documents"].get(reason) == n, (reason, stats["not_documents"])
    # nothing else was turned away by the reader: the other records are documents
    assert set(stats["not_documents"]) == set(expected), stats["not_documents"]
    assert stats["record_types"]["warcinfo"] == stats["record_types"]["request"] == 1
    # damage is listed per file, at the offset of the damaged record
    errors = Counter((Path(e["source"]).name, e["reason"]) for e in stats["errors"])
    assert errors == Counter({
        ("damaged.warc.gz", "read:corrupt_gzip"): 1, ("damaged.warc.gz", "read:bad_content_length"): 2,
        ("damaged.warc.gz", "read:truncated_record"): 1, ("damaged.warc", "read:bad_content_length"): 2,
    })
    # the odd pages that are documents end with the reason that fits them
    fate = {}
    for folder in (out / "removed").iterdir():
        t = pq.read_table(folder, columns=["url", "reason"]).to_pydict()
        fate |= dict(zip(t["url"], t["reason"]))
    kept_urls = set(pq.read_table(out / "shards", columns=["url"]).column("url").to_pylist())
    by_suffix = {u.rsplit("?", 1)[1]: r for u, r in fate.items() if u and "?" in u}
    assert by_suffix["huge"] == "extract:html_too_large"  # 30 MB: read, then dropped by size, not parsed
    assert by_suffix["nested"] == "extract:empty"  # lxml keeps 256 levels: the text is out of its reach
    charset = [u for u in kept_urls if u.endswith("?charset")] + [u for u in fate if u and u.endswith("?charset")]
    assert charset and (charset[0] in kept_urls or not fate[charset[0]].startswith(("read:", "extract:")))


def test_good_records_come_out_the_same(runs):
    results, *_ = runs
    (clean_out, clean), (fault_out, _) = results["clean"], results["faults"]
    expected = outcomes(clean_out)
    assert len(expected) == clean["documents"]
    got = outcomes(fault_out)
    assert {i: got.get(i) for i in expected} == expected
    # the comparison means something: English pages got through every stage, text and all
    assert clean["kept"]["docs"] >= N_GOOD // 3
    assert sum(1 for v in expected.values() if v[0] != "kept" and v[-1]) >= 1  # removed after extract, with text
