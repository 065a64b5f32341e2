"""Build WARC files for tests out of real pages (never synthetic HTML): bad inputs are real
records with one thing changed."""
from __future__ import annotations

import gzip
import io
import zlib
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


def response_record(writer: WARCWriter, url: str, body: bytes, content_type="text/html", status="200 OK", headers=()):
    http = StatusAndHeaders(status, [("Content-Type", content_type), *headers], protocol="HTTP/1.1")
    return writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=http)


def record_bytes(make, gz: bool = True) -> bytes:
    """One record as it lies in a file (a gzip member, or plain bytes): `make(writer)` builds
    it, e.g. `lambda w: response_record(w, url, html)` or `lambda w: w.create_warcinfo_record(...)`."""
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=gz)
    writer.write_record(make(writer))
    return buf.getvalue()


def lie_about_length(record: bytes, delta: int, gz: bool = True) -> bytes:
    """The record with its WARC Content-Length off by `delta` bytes (the bytes unchanged)."""
    raw = gzip.decompress(record) if gz else record
    head, sep, rest = raw.partition(b"Content-Length: ")
    n, crlf, tail = rest.partition(b"\r\n")
    raw = head + sep + str(int(n) + delta).encode() + crlf + tail
    return gzip.compress(raw) if gz else raw


def bomb_record(url: str, size: int, declared: int | None = None) -> bytes:
    """A gzip member holding a 200 text/html response of `size` zero bytes, compressed as it
    is built (never held whole), that declares `declared` bytes (default: the truth)."""
    http = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n"
    length = declared if declared is not None else len(http) + size
    warc = (
        "WARC/1.0\r\nWARC-Type: response\r\nWARC-Record-ID: <urn:uuid:00000000-0000-0000-0000-0000000b0mb0>\r\n"
        f"WARC-Target-URI: {url}\r\nWARC-Date: 2024-01-01T00:00:00Z\r\nContent-Type: application/http; msgtype=response\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    out = [z.compress(warc + http)]
    zeros = bytes(1 << 20)
    for i in range(0, size, len(zeros)):
        out.append(z.compress(zeros[: min(len(zeros), size - i)]))
    out.append(z.compress(b"\r\n\r\n"))
    out.append(z.flush())
    return b"".join(out)


def write_warc(path: Path, records: list[tuple[str, bytes, str, str]]) -> Path:
    """records: (url, body, content_type, status) -> a gzipped WARC at path."""
    with open(path, "wb") as f:
        writer = WARCWriter(f, gzip=True)
        for url, body, ctype, status in records:
            writer.write_record(response_record(writer, url, body, ctype, status))
    return path


def nested(html: bytes, depth: int) -> bytes:
    """The page with its body wrapped in `depth` nested <div>s."""
    i = html.lower().index(b"<body")
    i = html.index(b">", i) + 1
    j = html.lower().rindex(b"</body")
    return html[:i] + b"<div>" * depth + html[i:j] + b"</div>" * depth + html[j:]


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



def raw_records(src: Path, n_records: int | None = None) -> list[bytes]:
    """The first n_records (default: all) records of a gzipped WARC, each its own gzip member's bytes."""
    spans = []
    with open(src, "rb") as f:
        it = ArchiveIterator(f)
        for rec in it:
            rec.content_stream().read()
            spans.append((it.get_record_offset(), it.get_record_length()))
            if len(spans) == n_records:
                break
    data = src.read_bytes()
    return [data[o : o + n] for o, n in spans]


def split_warc(src: Path, folder: Path, n_records: int, n_files: int) -> list[Path]:
    """The first n_records records of a gzipped WARC, byte for byte, dealt into n_files files
    in runs of consecutive records (each record is its own gzip member, so this is just bytes)."""
    records = raw_records(src, n_records)
    folder.mkdir(parents=True, exist_ok=True)
    per_file = -(-len(records) // n_files)
    paths = []
    for i in range(n_files):
        path = folder / f"{src.name.split('.')[0]}-{i}.warc.gz"
        path.write_bytes(b"".join(records[i * per_file : (i + 1) * per_file]))
        paths.append(path)
    return paths
