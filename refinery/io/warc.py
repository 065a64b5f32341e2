"""WARC records -> document rows (warcio), streaming.

Every record of a file yields exactly one row, so stats can account for all of them:
`response` records with HTTP 200 and an HTML payload become live documents; every other
record (request, metadata, warcinfo, revisit, non-200, non-HTML, oversized) is a row marked
removed by the `read` stage with a reason.

Damaged files: a .warc.gz is read one gzip member (one record) at a time, each checked on its
own (zlib verifies the member's CRC, and the record must end where its Content-Length says,
followed only by blank lines). A member that is cut short, corrupt, or holds a record whose
Content-Length lies becomes one error row (`read:truncated_record`, `read:corrupt_gzip`,
`read:bad_content_length`) at its offset, and reading goes on at the next gzip member found after
its start, so one bad record costs one record. An uncompressed .warc has no such framing: a
record with a lying Content-Length is flagged, and the rest of the file after it is one
`read:error:*` row. A file that is not a WARC at all yields one `read:error:*` row.

A network failure is not damage: when the stream gives up after its retries (`NetworkError`),
`read_warc` raises `ReadInterrupted` with the point to read on from (the record ordinal and byte
offset of the first gzip member not read), never a row. A .warc.gz can be read from any such point.

Reading a .warc.gz goes through FastWARC (resiliparse's WARC library, ~3x faster than warcio's
Python parsing) as long as every record it gives can be vouched for: a record's row is emitted
only once FastWARC has parsed the next record, which starts a gzip member of its own. At the first
error, at anything that does not add up, and for the last record of the file, reading goes back to
the start of that record's gzip member and warcio's member-by-member reader takes the rest of the
file, so the damage above is found and counted exactly as without FastWARC.

Memory stays bounded whatever the input: a payload over `max_record_bytes` (declared or, for a
compression bomb, found while decompressing) is skipped as `read:record_too_large` and drained in
small chunks, never held.
"""
from __future__ import annotations

import hashlib
import io
import logging
import re
import zlib
from typing import BinaryIO, Iterator, Literal
from urllib.parse import urlsplit

import charset_normalizer
import pyarrow as pa
from pydantic import Field
from fastwarc import ArchiveIterator as FastArchiveIterator
from warcio.archiveiterator import ArchiveIterator
from warcio.bufferedreaders import BufferedReader
from warcio.recordloader import ArcWarcRecordLoader

from refinery.io.sources import NetworkError, RetryParams
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


class ReadInterrupted(Exception):
    """The stream of a file failed for good (`error`, after its retries). Reading the file from
    byte `offset`, numbering records from `record`, gives the records not read yet, exactly as
    reading it whole would have."""

    def __init__(self, error: NetworkError, record: int, offset: int):
        super().__init__(f"{error} (read on from record {record}, byte {offset})")
        self.error, self.record, self.offset = error, record, offset


class ReadParams(Params):
    stage: Literal["read"] = "read"
    batch_records: int = Field(128, ge=1, description="records per batch handed to the stages")
    max_record_bytes: int = Field(
        50_000_000, ge=1, description="a larger record payload (declared, or found while decompressing) is skipped, drained, never held"
    )
    retry: RetryParams = Field(RetryParams(), description="retries of a remote input's stream; not part of what decides the output")


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


# Magic numbers of formats that servers send labelled text/html (a PDF, an image, an archive):
# such a payload is not a page, whatever its Content-Type says.
_BINARY_MAGIC = (b"%PDF-", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"\xff\xd8\xff", b"PK\x03\x04", b"\x1f\x8b\x08", b"RIFF", b"\x00\x00\x01\x00", b"OggS", b"ID3", b"\x7fELF", b"MZ")


def _is_binary(payload: bytes) -> bool:
    head = payload[:1024]
    if head.lstrip().startswith(_BINARY_MAGIC):
        return True
    # NUL bytes do not occur in HTML in any ASCII-compatible charset; UTF-16 pages carry a BOM
    return b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff"))


def _declared_payload_length(record) -> int | None:
    """The payload size the record declares: its Content-Length less the HTTP headers already
    parsed (warcio reads the block through a LimitReader, whose `limit` is what is left of it);
    None when the Content-Length is not a number."""
    limit = getattr(record.raw_stream, "limit", None)
    return limit if isinstance(limit, int) else None


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
    if (_declared_payload_length(record) or 0) > p.max_record_bytes:  # skipped unread
        return row | {"removed_by": "read", "reason": "read:record_too_large"}
    # the declared length can lie and Content-Encoding can inflate: the limit holds while reading too
    payload = _read_limited(record.content_stream(), p.max_record_bytes)
    if payload is None:
        return row | {"removed_by": "read", "reason": "read:record_too_large"}
    if not _is_html(content_type, payload):
        return row | {"removed_by": "read", "reason": "read:not_html"}
    if not payload.strip():
        return row | {"removed_by": "read", "reason": "read:empty_payload"}
    if _is_binary(payload):  # labelled HTML, but a PDF, an image, ...
        return row | {"removed_by": "read", "reason": "read:binary_payload"}
    header_charset = _HEADER_CHARSET.search(content_type or "")
    html, charset = decode_html(payload, header_charset.group(1) if header_charset else None)
    return row | {"html": html, "charset": charset}


_CHUNK = 1 << 16
_GZIP_MAGIC = b"\x1f\x8b\x08"
# room for the WARC and HTTP headers of a record beside its payload, in a member's byte budget
_HEADER_ROOM = 1 << 20


class _Input:
    """A file's raw bytes, read forward, keeping the bytes since the last good gzip member (up
    to `keep` of them) so that after a damaged member reading can go back to just after its
    start and look for the next member there."""

    def __init__(self, stream: BinaryIO, keep: int, start: int = 0, record: int = 0):
        self.stream = stream  # positioned at `start`
        self.keep = keep
        self.buf = bytearray()
        self.base = start  # file offset of buf[0]
        self.pos = start  # file offset of the next byte read() returns
        self.eof = False
        self.failed: NetworkError | None = None  # the stream gave up: nothing read after is trusted
        # (record ordinal, offset) of a gzip member boundary with every record before it read:
        # where reading can start again and go on exactly as it would have
        self.checkpoint = (record, start)

    def tell(self) -> int:
        return self.pos

    def _more(self) -> bool:
        """Append a chunk of the stream to the buffer; False at the end of the file."""
        if self.eof:
            return False
        if self.failed is not None:
            raise self.failed
        try:
            chunk = self.stream.read(_CHUNK)
        except NetworkError as e:
            self.failed = e
            raise
        if not chunk:
            self.eof = True
            return False
        excess = len(self.buf) + len(chunk) - self.keep
        if excess > 0:  # forget the oldest history, never bytes not yet read
            drop = min(excess, self.pos - self.base)
            del self.buf[:drop]
            self.base += drop
        self.buf += chunk
        return True

    def read(self, n: int = _CHUNK) -> bytes:
        if self.pos - self.base >= len(self.buf):
            self._more()
        i = self.pos - self.base
        out = bytes(self.buf[i : i + n])
        self.pos += len(out)
        return out

    def unread(self, n: int) -> None:
        self.pos -= n

    def anchor(self) -> None:
        """Everything before the current position is done with."""
        del self.buf[: self.pos - self.base]
        self.base = self.pos

    def forget_before(self, offset: int) -> None:
        if offset > self.base:
            del self.buf[: offset - self.base]
            self.base = offset

    def seek(self, pattern: bytes, after: int, skip: int = 0) -> bool:
        """Move to the next occurrence of `pattern` (plus `skip` bytes) at an offset > `after`,
        or, if those bytes were already forgotten, the next one in the bytes kept. False, at the
        end of the file, when there is none."""
        self.pos = max(after + 1 - skip, self.base)
        while True:
            i = self.buf.find(pattern, self.pos - self.base)
            if i >= 0:
                self.pos = self.base + i + skip
                return True
            # nothing here: keep the last bytes (a match may straddle chunks) and read on
            self.pos = max(self.pos, self.base + len(self.buf) - len(pattern) + 1)
            self.anchor()
            if not self._more():
                self.pos = self.base + len(self.buf)
                return False


class _Member(io.RawIOBase):
    """The decompressed bytes of the gzip member starting at `raw`'s position, decompressed
    lazily and never more than `budget` bytes given out (a compression bomb reads as a short
    member). `status` is None until the member's end was reached: then "ok" (zlib checked its
    CRC and length), "truncated" (the file ended inside it) or "corrupt"."""

    def __init__(self, raw: _Input, budget: int):
        self.raw = raw
        self.start = raw.pos
        self.z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.tail = b""
        self.out = b""
        self.budget = budget
        self.given = 0
        self.status: str | None = None

    def readable(self) -> bool:
        return True

    def _fill(self) -> None:
        while not self.out and self.status is None:
            data = self.tail or self.raw.read(_CHUNK)
            if not data:
                self.status = "truncated"
                return
            try:
                self.out = self.z.decompress(data, _CHUNK)
            except zlib.error:
                self.status = "corrupt"
                return
            self.tail = self.z.unconsumed_tail
            if self.z.eof:
                self.raw.unread(len(self.z.unused_data))
                self.status = "ok"

    def readinto(self, b) -> int:
        if self.given >= self.budget:
            return 0
        self._fill()
        n = min(len(b), len(self.out), self.budget - self.given)
        b[:n] = self.out[:n]
        self.out = self.out[n:]
        self.given += n
        return n

    def new_budget(self, budget: int) -> None:
        self.given, self.budget = 0, budget

    def finish(self) -> str:
        """Decompress (and discard) the rest of the member; its status."""
        while self.status is None:
            self.out = b""
            self._fill()
        self.out = b""
        return self.status


_LOADER = ArcWarcRecordLoader(verify_http=False, arc2warc=False)


def _member_rows(raw: _Input, source: str, p: ReadParams) -> tuple[list[dict], str | None, str]:
    """What the gzip member at `raw`'s position holds: the row of its record (none when no
    record header could be parsed), the fault found (None for one whole, sound record) and
    the member's status ("ok": it ended where zlib says, CRC checked; "truncated"; "corrupt")."""
    start = raw.pos
    member = _Member(raw, p.max_record_bytes + _HEADER_ROOM)
    reader = BufferedReader(member, block_size=_CHUNK)
    try:
        record = _LOADER.parse_record_stream(reader, known_format="warc")
    except EOFError:  # an empty member: no record in it
        status = member.finish()
        return [], None if status == "ok" else f"read:{status}_gzip", status
    except NetworkError:
        raise
    except Exception as e:
        status = member.finish()
        return [], f"read:bad_record:{type(e).__name__}" if status == "ok" else f"read:{status}_gzip", status
    try:
        row = record_row(record, source, p)
    except NetworkError:
        raise
    except Exception as e:  # one malformed record (headers, payload) is skipped, not the file
        log.warning("%s: bad record at offset %d: %s: %s", source, start, type(e).__name__, e)
        row = error_row(source, start, f"read:bad_record:{type(e).__name__}")
    row["source_offset"] = start
    fault = None
    if row.get("reason") != "read:record_too_large":  # a skipped payload is not read to its end
        try:
            while record.raw_stream.read(_CHUNK):  # what the row did not read of the payload
                pass
            short = record.raw_stream.limit > 0  # the member ended before the declared length
            # after the record only the blank lines that end it; anything else means the
            # declared length was too short (or the member holds a second record)
            member.new_budget(_HEADER_ROOM)
            extra = False
            while chunk := reader.read(_CHUNK):
                if chunk.strip():
                    extra = True
                    break
            if short or extra:
                fault = "read:bad_content_length"
        except NetworkError:
            raise
        except Exception:
            pass  # a decompression failure: the member's status says what went wrong
    status = member.finish()
    if status != "ok":
        fault = "read:truncated_record" if status == "truncated" else "read:corrupt_gzip"
    return [row], fault, status


def _read_gzip(raw: _Input, source: str, p: ReadParams) -> Iterator[dict]:
    """Rows of a gzip-per-record WARC, member by member, skipping damage (see the module doc),
    from `raw`'s checkpoint on, which it moves past every member that ended cleanly."""
    first = raw.checkpoint[0]
    n_rows = 0
    resyncing = False  # inside a damaged stretch: what fails there before a record is found is no record
    while True:
        start = raw.pos
        head = raw.read(len(_GZIP_MAGIC))
        raw.unread(len(head))
        if not head:
            break
        if head == _GZIP_MAGIC:
            rows, fault, status = _member_rows(raw, source, p)
        else:
            rows, fault, status = [], "read:not_gzip", "corrupt"
        if status == "ok":  # the member's end is known: reading goes on right after it
            raw.anchor()
            resyncing = False
            if fault:
                if start == 0 and not rows:
                    raise NotAWarc("not a WARC file (its first gzip member holds no WARC record)")
                log.warning("%s: record at offset %d: %s", source, start, fault.removeprefix("read:"))
                rows = [error_row(source, start, fault)]
            n_rows += len(rows)
            raw.checkpoint = (first + n_rows, raw.pos)
            yield from rows
            continue
        if rows or not resyncing:  # a record was damaged (not a false start inside the damage)
            if head != _GZIP_MAGIC:  # bytes after the last member: blank padding is harmless
                tail = raw.read(_CHUNK)
                raw.unread(len(tail))
                if len(tail) < _CHUNK and not tail.strip(b"\r\n\t \x00"):
                    break
            log.warning("%s: record at offset %d: %s", source, start, fault.removeprefix("read:"))
            n_rows += 1
            yield error_row(source, start, fault)
        # the member's end is unknown: look for the next member header after its start
        resyncing = True
        if not raw.seek(_GZIP_MAGIC, after=start):
            break
    if first + n_rows == 0:
        log.warning("%s: no WARC records in the file", source)
        yield error_row(source, 0, "read:empty_file")


class _Headers:
    """FastWARC's header map through warcio's `get_header`."""

    def __init__(self, headers):
        self.headers = headers

    def get_header(self, name: str, default=None):
        return self.headers.get(name, default)

    def get_statuscode(self) -> str:
        return str(self.headers.status_code)


class _FastRecord:
    """A FastWARC record seen through the part of warcio's record API that `record_row` reads,
    with what warcio's loader normalizes normalized the same way (a target URI's spaces)."""

    def __init__(self, record):
        self.record = record
        headers = record.headers
        uri = headers.get("WARC-Target-URI")
        if uri is not None and uri.startswith("<") and uri.endswith(">"):
            headers.set("WARC-Target-URI", uri := uri[1:-1])
        if uri is not None and " " in uri:
            headers.set("WARC-Target-URI", uri.replace(" ", "%20"))
        self.rec_type = headers.get("WARC-Type")
        self.rec_headers = _Headers(headers)
        self.http_headers = _Headers(record.http_headers) if record.is_http else None
        self.raw_stream = self  # `limit`: the declared payload length, as warcio's LimitReader has it

    @property
    def limit(self) -> int:
        return self.record.content_length

    def content_stream(self):
        return self.record.reader


class _Stream:
    """An _Input as the file object FastWARC reads, offsets counted from where it starts."""

    def __init__(self, raw: _Input):
        self.raw, self.start = raw, raw.pos

    def read(self, n: int = _CHUNK) -> bytes:
        return self.raw.read(n if 0 < n <= _CHUNK else _CHUNK)

    def tell(self) -> int:
        return self.raw.pos - self.start


def _one_member(raw: _Input, start: int, end: int) -> bool:
    """Whether the bytes of `raw` from `start` to `end` are one whole gzip member followed by
    another: a gzip header at `end`, and none before it, or, where one seems to be (its three
    bytes occur in compressed data about once in 16 MB), decompressing shows it is not."""
    buf, i, j = raw.buf, start - raw.base, end - raw.base
    if i < 0 or j <= i or buf[j: j + len(_GZIP_MAGIC)] != _GZIP_MAGIC:
        return False
    if buf.find(_GZIP_MAGIC, i + 1, j) < 0:
        return True
    z = zlib.decompressobj(16 + zlib.MAX_WBITS)
    data = bytes(buf[i:j])
    try:
        while data and not z.eof:
            z.decompress(data, _CHUNK)
            data = z.unconsumed_tail
    except zlib.error:
        return False
    return z.eof and not z.unused_data


def _read_gzip_fast(raw: _Input, source: str, p: ReadParams) -> Iterator[dict]:
    """Rows of a gzip-per-record WARC through FastWARC while each can be vouched for (see the
    module doc), then `_read_gzip` from the first record that could not."""
    first, start = raw.checkpoint
    stream = _Stream(raw)
    pending = None  # the row of the record read last: emitted once the next record is parsed
    n_rows = 0
    try:
        for record in FastArchiveIterator(stream, parse_http=True, auto_decode="all"):
            offset = start + record.stream_pos
            if pending is not None:
                if not _one_member(raw, pending["source_offset"], offset):
                    break  # warcio's reader tells what is wrong
                yield pending
                n_rows += 1
            raw.checkpoint = (first + n_rows, offset)
            raw.forget_before(offset)
            pending = None
            if record.content_length > p.max_record_bytes:  # warcio's reader skips it without holding it
                break
            if record.is_http and "\n" in record.http_headers.status_line:
                break  # HTTP headers ending lines in a bare LF (ClueWeb09): warcio's reader takes them
            pending = record_row(_FastRecord(record), source, p) | {"source_offset": offset}
    except NetworkError:
        raise
    except (GeneratorExit, KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: BLE001  (damage, a bad record; FastWARC's Rust panics are BaseExceptions)
        log.debug("%s: FastWARC stopped after offset %d: %s: %s", source, raw.checkpoint[1], type(e).__name__, e)
    # the record not vouched for (and everything after it) goes through warcio's reader
    raw.pos = raw.checkpoint[1]
    yield from _read_gzip(raw, source, p)


def _read_plain(raw: _Input, source: str, p: ReadParams) -> Iterator[dict]:
    """Rows of an uncompressed WARC (warcio, record after record). After bytes that are no
    record (e.g. what a record with a lying Content-Length left behind), reading goes on at the
    next line that starts a WARC record."""
    n_records = 0
    last = -1  # offset of the last record read
    explained = False  # bytes that fail to parse now belong to a record already flagged (or counted)
    while True:
        resumed_at = raw.pos
        it = ArchiveIterator(raw, check_digests=False)
        try:
            for record in it:
                if record.format != "warc":  # warcio reads any text as ARC lines; we take WARC only
                    raise NotAWarc(f"not a WARC file (record format {record.format!r})")
                errors_before = it.err_count
                try:
                    row = record_row(record, source, p)
                except NetworkError:
                    raise
                except Exception as e:  # one malformed record (headers, payload) is skipped, not the file
                    log.warning("%s: bad record after offset %d: %s: %s", source, last, type(e).__name__, e)
                    row = error_row(source, last, f"read:bad_record:{type(e).__name__}")
                # warcio finds the offset by reading the record to its end: ask only after the payload was read
                last = row["source_offset"] = it.get_record_offset()
                explained = False
                if getattr(record.raw_stream, "limit", 0) > 0:  # the file ended inside this record
                    log.warning("%s: record at offset %d is truncated", source, last)
                    row = error_row(source, last, "read:truncated_record")
                elif it.err_count > errors_before:  # not followed by blank lines: its Content-Length lies
                    log.warning("%s: record at offset %d: bad Content-Length", source, last)
                    row = error_row(source, last, "read:bad_content_length")
                    explained = True
                n_records += 1
                raw.forget_before(last)
                yield row
            if not explained:
                break
            # a record that claimed too much may hide the start of the next one: look inside it
        except NetworkError:
            raise
        except Exception as e:
            if n_records == 0:
                raise
            if not explained:
                log.warning("%s: no WARC record after offset %d: %s: %s", source, last, type(e).__name__, e)
                n_records += 1
                yield error_row(source, max(last, resumed_at), f"read:error:{type(e).__name__}")
                explained = True
        if not raw.seek(b"WARC/1.", after=max(last, resumed_at)):
            break
    if n_records == 0:
        log.warning("%s: no WARC records in the file", source)
        yield error_row(source, 0, "read:empty_file")


def read_warc(stream: BinaryIO, source: str, p: ReadParams, record: int = 0, offset: int = 0) -> Iterator[pa.Table]:
    """Stream the records of one WARC file (.warc or .warc.gz) as tables of `p.batch_records`
    rows. Never raises on bad data: damage becomes counted `read:*` rows (see the module doc).
    When the stream fails for good: the rows read so far, then ReadInterrupted. To read on from
    its point, pass its `record` and `offset`, with `stream` opened at `offset` (a .warc.gz)."""
    rows: list[dict] = []
    # room beside the largest record for its headers and FastWARC's read-ahead past it
    raw = _Input(stream, keep=p.max_record_bytes + 4 * _HEADER_ROOM, start=offset, record=record)
    last_offset = offset
    interrupted = None
    try:
        if offset:  # a checkpoint: a gzip member boundary (or the end of the file)
            reader = _read_gzip_fast
        else:
            head = raw.read(len(_GZIP_MAGIC))
            raw.unread(len(head))
            reader = _read_gzip_fast if head == _GZIP_MAGIC else _read_plain
        for row in reader(raw, source, p):
            if raw.failed is not None:  # a row made after the stream failed is not to be trusted
                raise raw.failed
            last_offset = row.get("source_offset") or last_offset
            rows.append(row)
            if len(rows) >= p.batch_records:
                yield rows_from_pylist(rows)
                rows = []
    except NetworkError as e:
        log.warning("%s: the stream failed after offset %d: %s", source, last_offset, e)
        interrupted = ReadInterrupted(e, *raw.checkpoint)
    except Exception as e:  # warcio, gzip and zlib raise many types for a damaged file
        log.warning("%s: unreadable after offset %d: %s: %s", source, last_offset, type(e).__name__, e)
        rows.append(error_row(source, last_offset, f"read:error:{type(e).__name__}"))
    if rows:
        yield rows_from_pylist(rows)
    if interrupted is not None:
        raise interrupted


def error_row(source: str, offset: int, reason: str) -> dict:
    """A row standing for the part of a file that could not be read."""
    return {
        "id": hashlib.sha1(f"{source}\n{offset}\n{reason}".encode()).hexdigest(),
        "source": source,
        "source_offset": offset,
        "record_type": "error",
        "removed_by": "read",
        "reason": reason,
    }
