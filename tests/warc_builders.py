"""Build WARC files for tests out of real pages (never synthetic HTML): bad inputs are real
records with one thing changed."""
from __future__ import annotations

import io
from pathlib import Path

from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter


def real_pages(warc: Path, n: int) -> list[tuple[str, bytes]]:
    """(url, html bytes) of the first n response records of a real WARC."""
    pages = []
    with open(warc, "rb") as f:
        for rec in ArchiveIterator(f):
            if rec.rec_type == "response":
                pages.append((rec.rec_headers.get_header("WARC-Target-URI"), rec.content_stream().read()))
                if len(pages) == n:
                    break
    return pages


def response_record(writer: WARCWriter, url: str, body: bytes, content_type="text/html", status="200 OK"):
    http = StatusAndHeaders(status, [("Content-Type", content_type)], protocol="HTTP/1.1")
    return writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=http)


def write_warc(path: Path, records: list[tuple[str, bytes, str, str]]) -> Path:
    """records: (url, body, content_type, status) -> a gzipped WARC at path."""
    with open(path, "wb") as f:
        writer = WARCWriter(f, gzip=True)
        for url, body, ctype, status in records:
            writer.write_record(response_record(writer, url, body, ctype, status))
    return path


def truncated_copy(src: Path, dst: Path, fraction: float = 0.5) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def count_records(path: Path) -> int:
    """Records warcio reads from a file before the end or the first error."""
    n = 0
    with open(path, "rb") as f:
        try:
            for _ in ArchiveIterator(f):
                n += 1
        except Exception:
            pass
    return n

