"""The WARC reader on real files: record accounting, charsets, ids, offsets."""
from __future__ import annotations

import io
from collections import Counter

import pytest
from warcio.archiveiterator import ArchiveIterator

from refinery.io.warc import ReadParams, decode_html, read_warc
from warc_builders import bomb_record, lie_about_length, real_pages, record_bytes, response_record, write_warc


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


def read_bytes(data: bytes, **params) -> list[dict]:
    return [r for t in read_warc(io.BytesIO(data), "mem", ReadParams(**params)) for r in t.to_pylist()]


@pytest.fixture(scope="module")
def three(data_dir):
    return real_pages(data_dir / "crawl-sample" / "real-pages.warc.gz", 3)


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("damage, reason", [
    (lambda b, gz: b[: len(b) // 2], "read:corrupt_gzip"),  # cut, then the next record follows
    (lambda b, gz: lie_about_length(b, +1000, gz), "read:bad_content_length"),
    (lambda b, gz: lie_about_length(b, -1000, gz), "read:bad_content_length"),
])
def test_a_damaged_record_costs_only_itself(three, gz, damage, reason):
    a, b, c = (record_bytes(lambda w, u=u, h=h: response_record(w, u, h), gz) for u, h in three)
    rows = read_bytes(a + damage(b, gz) + c)
    if not gz and reason == "read:corrupt_gzip":
        reason = "read:bad_content_length"  # uncompressed, a cut record is one that claims too much
    assert [(r["url"], r["reason"]) for r in rows] == [(three[0][0], None), (None, reason), (three[2][0], None)]
    assert [r["html"] is not None for r in rows] == [True, False, True]
    assert rows[1]["record_type"] == "error" and rows[1]["source_offset"] == len(a)


@pytest.mark.parametrize("declared", [None, 1000])  # the honest length, and a lie that hides the bomb
def test_a_compression_bomb_is_skipped_in_bounded_memory(three, declared):
    import tracemalloc

    (url, html), *_ = three
    data = bomb_record("https://bomb.example/", 200_000_000, declared) + record_bytes(lambda w: response_record(w, url, html))
    assert len(data) < 1_000_000
    tracemalloc.start()
    rows = read_bytes(data, max_record_bytes=10_000_000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 30_000_000  # never the 200 MB, at most a few record limits' worth
    expected = "read:record_too_large" if declared is None else "read:bad_content_length"
    assert [r["reason"] for r in rows] == [expected, None]


def test_payload_over_the_limit_while_decompressing_is_skipped(three):
    """A record that declares a small length is still cut off at max_record_bytes."""
    (url, html), *_ = three
    big = record_bytes(lambda w: response_record(w, url, html * 20))
    assert [r["reason"] for r in read_bytes(big, max_record_bytes=len(html) * 2)] == ["read:record_too_large"]


def test_binary_and_empty_payloads_labelled_html(three):
    (url, html), *_ = three
    recs = [(url + "1", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "text/html", "200 OK"),
            (url + "2", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "text/html", "200 OK"),
            (url + "3", b"", "text/html", "200 OK"),
            (url + "4", html, "text/html; charset=x-no-such-thing", "200 OK")]
    rows = read_bytes(b"".join(record_bytes(lambda w, r=r: response_record(w, *r)) for r in recs))
    assert [r["reason"] for r in rows] == ["read:binary_payload", "read:binary_payload", "read:empty_payload", None]
    assert rows[3]["charset"] == "utf-8"


def test_junk_between_members_and_trailing_padding(three):
    a, b = (record_bytes(lambda w, u=u, h=h: response_record(w, u, h)) for u, h in three[:2])
    rows = read_bytes(a + b"garbage that is not gzip" + b + b"\r\n\r\n")
    assert [r["reason"] for r in rows] == [None, "read:not_gzip", None]


# FastWARC reads sound .warc.gz records; warcio's member-by-member reader takes over from the first
# record FastWARC cannot vouch for. Both must give exactly the rows warcio's reader alone gives.


def read_all_warcio(path, monkeypatch, **params):
    """The rows of warcio's reader alone (FastWARC out of the way)."""
    import refinery.io.warc as warc

    with monkeypatch.context() as m:
        m.setattr(warc, "_read_gzip_fast", warc._read_gzip)
        return read_all(path, **params)


def test_fastwarc_gives_warcio_rows_on_every_real_warc(data_dir, monkeypatch):
    """Every WARC of shared/data, real crawls with their quirks (WARC/0.17 and 0.18, ClueWeb09's
    bare-LF HTTP headers, revisits, spaces in target URIs, gzip'd HTTP payloads)."""
    import refinery.io.warc as warc

    served_by_warcio = []
    read_gzip = warc._read_gzip

    def counting(raw, source, p):
        for row in read_gzip(raw, source, p):
            served_by_warcio.append(source)
            yield row

    paths = sorted(data_dir.glob("crawl-sample/*.warc.gz")) + sorted(data_dir.glob("warc-samples/*/*.warc.gz"))
    assert len(paths) >= 10
    for path in paths:
        expected = read_all_warcio(path, monkeypatch)
        with monkeypatch.context() as m:
            m.setattr(warc, "_read_gzip", counting)
            assert read_all(path) == expected, path.name
    # FastWARC did the reading: warcio read the last record of each file, and ClueWeb09's records
    by_file = Counter(served_by_warcio)
    assert by_file[str(data_dir / "crawl-sample" / "real-pages.warc.gz")] == 1
    assert sum(n for f, n in by_file.items() if "clueweb" not in f) == len(paths) - 1


def test_fastwarc_hands_damage_to_warcio_and_reads_on(three, tmp_path, monkeypatch):
    """Each kind of damage between sound records: the same rows as warcio's reader alone
    (each fault counted once, with its reason, and every sound record after it read)."""
    import gzip

    a, b, c = (record_bytes(lambda w, u=u, h=h: response_record(w, u, h)) for u, h in three)
    rb = gzip.decompress(b)
    flipped = bytearray(b)
    flipped[len(b) // 2] ^= 0xFF
    crc = bytearray(b)
    crc[-6] ^= 0xFF
    cases = {
        "cut": [a, b[: len(b) // 2], c, a],
        "too_long": [a, lie_about_length(b, +1000), c, a],
        "too_short": [a, lie_about_length(b, -1000), c, a],
        "corrupt": [a, bytes(flipped), c, a],
        "crc": [a, bytes(crc), c, a],
        "two_in_one_member": [a, gzip.compress(rb + gzip.decompress(c)), a, c],
        "split_over_members": [a, gzip.compress(rb[: len(rb) // 2]), gzip.compress(rb[len(rb) // 2:]), c, a],
        "junk_between": [a, b"not a member\r\n", b, c],
        "truncated_end": [a, b, c[: len(c) * 2 // 3]],
    }
    for name, members in cases.items():
        path = tmp_path / f"{name}.warc.gz"
        path.write_bytes(b"".join(members))
        rows = read_all(path)
        assert rows == read_all_warcio(path, monkeypatch), name
        assert any(r["reason"] and r["reason"].startswith("read:") and r["record_type"] == "error" for r in rows), name
