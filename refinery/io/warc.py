"""WARC records -> document rows (warcio), streaming.

Every record of a file yields exactly one row, so stats can account for all of them:
`response` records with HTTP 200 and an HTML payload become live documents; every other
record (request, metadata, warcinfo, revisit, non-200, non-HTML, oversized) is a row marked
removed by the `read` stage with a reason. A file that is truncated or is not a WARC yields
one `read:error:*` row at the point of failure, after the records read before it.
"""
from __future__ import annotations

import hashlib
import logging
import re
from typing import BinaryIO, Iterator, Literal
from urllib.parse import urlsplit

import charset_normalizer
import pyarrow as pa
from pydantic import Field
from warcio.archiveiterator import ArchiveIterator

from refinery.params import Params
from refinery.schema import rows_from_pylist

log = logging.getLogger(__name__)

HTML_TYPES = ("text/html", "application/xhtml+xml")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
_HEADER_CHARSET = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9_.:-]+)", re.I)
# Browsers (WHATWG) decode these labels as windows-1252, and so do we: pages declaring latin-1
# routinely contain cp1252 quotes.
_WHATWG_ALIASES = {"iso-8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252", "us-ascii": "cp1252", "ascii": "cp1252"}


class NotAWarc(Exception):
    pass


class ReadParams(Params):
    stage: Literal["read"] = "read"
    batch_records: int = Field(128, ge=1, description="records per batch handed to the stages")
    max_record_bytes: int = Field(
        50_000_000, ge=1, description="a record payload larger than this is skipped, never held in memory"
    )


def _codec(label: str | None) -> str | None:
    """The Python codec for a charset label, or None when the label is unknown."""
    if not label:
        return None
    label = label.strip().lower()
    label = _WHATWG_ALIASES.get(label, label)
    import codecs

    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def decode_html(payload: bytes, header_charset: str | None) -> tuple[str, str]:
    """Decode HTML bytes: the HTTP header's charset, then the <meta> tag, then UTF-8, then
    detection. Bytes that do not decode are replaced; this never raises."""
    meta = _META_CHARSET.search(payload[:4096])
    for label in (header_charset, meta.group(1).decode("ascii", "ignore") if meta else None):
        codec = _codec(label)
        if codec:
            return payload.decode(codec, errors="replace"), codec
    try:
        return payload.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    best = charset_normalizer.from_bytes(payload[:65536]).best()
    codec = _codec(best.encoding if best else None) or "cp1252"
    return payload.decode(codec, errors="replace"), codec


def _record_id(record, url: str | None, date: str | None) -> str:
    rid = record.rec_headers.get_header("WARC-Record-ID")
    if rid:
        return rid.strip("<>").removeprefix("urn:uuid:")
    return hashlib.sha1(f"{url}\n{date}".encode()).hexdigest()


def _is_html(content_type: str | None, payload_head: bytes) -> bool:
    if content_type:
        return content_type.split(";")[0].strip().lower() in HTML_TYPES
    head = payload_head[:1024].lower()
    return b"<html" in head or b"<!doctype html" in head


def _read_limited(stream, limit: int) -> bytes | None:
    """The payload, or None when it is larger than `limit` (then drained, not kept).
    warcio's readers return at most one chunk per read(), so read until EOF."""
    chunks, size = [], 0
    while chunk := stream.read(1 << 20):
        size += len(chunk)
        if size > limit:
            while stream.read(1 << 20):
                pass
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def record_row(record, source: str, p: ReadParams) -> dict:
    """One WARC record as one row (a live document, or a row removed by `read` with a reason)."""
    rtype = record.rec_type
    url = record.rec_headers.get_header("WARC-Target-URI")
    date = record.rec_headers.get_header("WARC-Date")
    row = {
        "id": _record_id(record, url, date),
        "url": url,
        "domain": (urlsplit(url).hostname or "") if url else None,
        "date": date,
        "source": source,
        "record_type": rtype,
    }
    if rtype != "response":
        return row | {"removed_by": "read", "reason": f"read:record_{rtype}"}
    if record.http_headers is None:
        return row | {"removed_by": "read", "reason": "read:no_http_headers"}
    status = int(record.http_headers.get_statuscode() or 0)
    content_type = record.http_headers.get_header("Content-Type")
    row |= {"http_status": status, "content_type": content_type}
    if status != 200:
        return row | {"removed_by": "read", "reason": f"read:http_{status}"}
    payload = _read_limited(record.content_stream(), p.max_record_bytes)
    if payload is None:
        return row | {"removed_by": "read", "reason": "read:record_too_large"}
    if not _is_html(content_type, payload):
        return row | {"removed_by": "read", "reason": "read:not_html"}
    header_charset = _HEADER_CHARSET.search(content_type or "")
    html, charset = decode_html(payload, header_charset.group(1) if header_charset else None)
    return row | {"html": html, "charset": charset}


def read_warc(stream: BinaryIO, source: str, p: ReadParams) -> Iterator[pa.Table]:
    """Stream the records of one WARC file (.warc or .warc.gz) as tables of `p.batch_records`
    rows. Never raises on bad data: a failure ends the file with one `read:error:*` row."""
    rows: list[dict] = []
    offset = 0
    n_records = 0
    try:
        it = ArchiveIterator(stream, check_digests=False)
        for record in it:
            if record.format != "warc":  # warcio reads any text as ARC lines; we take WARC only
                raise NotAWarc(f"not a WARC file (record format {record.format!r})")
            try:
                row = record_row(record, source, p)
            except Exception as e:  # one malformed record (headers, payload) is skipped, not the file
                log.warning("%s: bad record after offset %d: %s: %s", source, offset, type(e).__name__, e)
                row = _error_row(source, offset, f"read:bad_record:{type(e).__name__}")
            # warcio finds the offset by reading the record to its end: ask only after the payload was read
            offset = row["source_offset"] = it.get_record_offset()
            if getattr(record.raw_stream, "limit", 0) > 0:  # the file ended inside this record
                log.warning("%s: record at offset %d is truncated", source, offset)
                row = _error_row(source, offset, "read:truncated_record")
            rows.append(row)
            n_records += 1
            if len(rows) >= p.batch_records:
                yield rows_from_pylist(rows)
                rows = []
    except Exception as e:  # warcio, gzip and zlib raise many types for a damaged file
        log.warning("%s: unreadable after offset %d: %s: %s", source, offset, type(e).__name__, e)
        rows.append(_error_row(source, offset, f"read:error:{type(e).__name__}"))
    else:
        if n_records == 0:
            log.warning("%s: no WARC records in the file", source)
            rows.append(_error_row(source, 0, "read:empty_file"))
    if rows:
        yield rows_from_pylist(rows)


def _error_row(source: str, offset: int, reason: str) -> dict:
    """A row standing for the part of a file that could not be read."""
    return {
        "id": hashlib.sha1(f"{source}\n{offset}\n{reason}".encode()).hexdigest(),
        "source": source,
        "source_offset": offset,
        "record_type": "error",
        "removed_by": "read",
        "reason": reason,
    }
