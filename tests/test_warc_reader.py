"""The WARC reader on real files: record accounting, charsets, ids, offsets."""
from __future__ import annotations

import io
from collections import Counter

import pytest
from warcio.archiveiterator import ArchiveIterator

from refinery.io.warc import ReadParams, decode_html, read_warc
from warc_builders import real_pages, write_warc


def read_all(path, **params):
    with open(path, "rb") as f:
        rows = [r for t in read_warc(f, str(path), ReadParams(**params)) for r in t.to_pylist()]
    return rows


def test_every_record_of_a_real_crawl_becomes_one_row(data_dir):
    path = data_dir / "warc-samples" / "archive-crawls" / "IAH-20080430-archive.org-shallow.aut.warc.gz"
    rows = read_all(path, batch_records=50)
    with open(path, "rb") as f:
        types = Counter(r.rec_type for r in ArchiveIterator(f))
    assert Counter(r["record_type"] for r in rows) == types
    documents = [r for r in rows if r["removed_by"] is None]
    assert documents and all(r["http_status"] == 200 and r["html"] for r in documents)
    assert all(r["record_type"] == "response" for r in documents)
    reasons = Counter(r["reason"] for r in rows if r["removed_by"])
    assert reasons["read:record_request"] == types["request"]
    assert reasons["read:http_404"] == 40  # per warc-samples/README.md
    assert len({r["id"] for r in rows}) == len(rows)


def test_offsets_point_at_the_records(data_dir):
    path = data_dir / "warc-samples" / "common-crawl" / "CC-MAIN-2020-34-sample.resiliparse.warc.gz"
    rows = read_all(path)
    data = path.read_bytes()
    for row in rows[:10]:
        rec = next(iter(ArchiveIterator(io.BytesIO(data[row["source_offset"]:]))))
        assert rec.rec_headers.get_header("WARC-Record-ID").strip("<>").removeprefix("urn:uuid:") == row["id"]


def test_revisits_are_counted_apart_from_documents(data_dir):
    rows = read_all(data_dir / "warc-samples" / "archive-crawls" / "BL-20140325122341434-data.gov.uk-revisits.warc.gz")
    assert Counter(r["reason"] for r in rows)["read:record_revisit"] == 55


@pytest.mark.parametrize(
    "payload, header, expected_codec, expected_text",
    [
        ("Grüße".encode("utf-8"), "utf-8", "utf-8", "Grüße"),
        ("Grüße".encode("cp1252"), "iso-8859-1", "cp1252", "Grüße"),  # WHATWG: latin-1 means cp1252
        ('<meta charset="windows-1251"><p>Привет'.encode("cp1251"), None, "cp1251", "Привет"),
        ("Grüße".encode("utf-8"), None, "utf-8", "Grüße"),
        ("Grüße".encode("utf-8"), "no-such-charset", "utf-8", "Grüße"),  # bogus label: next source
    ],
)
def test_charset_header_then_meta_then_utf8(payload, header, expected_codec, expected_text):
    text, codec = decode_html(payload, header)
    assert codec == expected_codec
    assert expected_text in text


def test_undecodable_bytes_are_replaced_never_fatal():
    text, codec = decode_html(b"<p>ok \xff\xfe\x80 bytes</p>", "utf-8")
    assert "ok" in text and "\ufffd" in text


def test_oversized_and_non_html_records_are_skipped_with_reasons(data_dir, tmp_path):
    (url, html), = real_pages(data_dir / "crawl-sample" / "real-pages.warc.gz", 1)
    path = write_warc(
        tmp_path / "t.warc.gz",
        [(url, html, "text/html", "200 OK"), (url + "pdf", b"%PDF-1.4 binary", "application/pdf", "200 OK"), (url + "x", html * 3, "text/html", "200 OK")],
    )
    rows = read_all(path, max_record_bytes=len(html) * 2)
    assert [r["reason"] for r in rows] == [None, "read:not_html", "read:record_too_large"]
