"""The inputs of a run: the list of WARC files to read, and opening one as a byte stream. Nothing
is read whole; a reader pulls the bytes it needs, so a 1 GB WARC costs a few MB of memory.

- local paths and globs (`crawl/*.warc.gz`, `~/warcs/**/*.warc.gz`)
- `http://` and `https://` URLs, streamed; a dropped connection resumes where it stopped with a
  Range request. A URL is taken literally (no globs).
- object storage through pyarrow's filesystems: `s3://bucket/prefix/*.warc.gz` (globs in the key;
  an S3-compatible store via `AWS_ENDPOINT_URL`, see `refinery/io/storage.py`), and likewise `gs://`.
- a Common Crawl crawl by id, `{crawl: CC-MAIN-2024-10, files: 3}`: the first `files` lines of
  `<base_url>/crawl-data/<crawl>/warc.paths.gz`, each as `<base_url>/<path>`. `base_url` may be
  https (the default, data.commoncrawl.org), `s3://commoncrawl/`, or a local mirror.

Listing runs in the driver before any work starts and fails at once (`InputError`, exit 2) when an
input is missing or a server cannot be reached within REFINERY_CONNECT_TIMEOUT seconds (10)."""
from __future__ import annotations

import glob
import gzip
import http.client
import io
import logging
import os
import re
import time
import urllib.error
import urllib.request
import zlib
from typing import BinaryIO

import pyarrow.fs as pafs
from pydantic import Field

from refinery.io.storage import filesystem, split_query
from refinery.params import Params

log = logging.getLogger(__name__)

COMMON_CRAWL = "https://data.commoncrawl.org/"
CONNECT_TIMEOUT = float(os.environ.get("REFINERY_CONNECT_TIMEOUT", "10"))  # listing: fail fast when offline
READ_TIMEOUT = float(os.environ.get("REFINERY_READ_TIMEOUT", "60"))  # one stalled read of a WARC stream
HTTP_RETRIES = 5  # per WARC stream, for dropped connections and 429/5xx answers
READ_BUFFER = 8 << 20  # object storage: one ranged GET per 8 MiB
USER_AGENT = "refinery (RefinedWeb-style corpus cleaning; https://commoncrawl.org/terms-of-use)"
OFFLINE_HINT = "without internet access, pass --input with local WARC paths or globs (it replaces the config's input)"


class InputError(Exception):
    """An input pattern that names no readable file."""


class CrawlInput(Params):
    """A Common Crawl crawl by id: its WARC files, in the order of the crawl's warc.paths.gz."""

    crawl: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="crawl id, e.g. CC-MAIN-2024-10")
    files: int = Field(ge=1, description="how many WARC files of the crawl to read")
    skip: int = Field(0, ge=0, description="WARC files to skip first, e.g. to split a crawl over runs")
    base_url: str = Field(COMMON_CRAWL, min_length=1, description="https://, s3:// or local root of the crawl-data/ tree")

    @property
    def index_url(self) -> str:
        return _join(self.base_url, f"crawl-data/{self.crawl}/warc.paths.gz")


def _join(base: str, path: str) -> str:
    return base.rstrip("/") + "/" + path.lstrip("/")


def _scheme(uri: str) -> str:
    return uri.split("://", 1)[0].lower() if "://" in uri else ""


def list_inputs(inputs: list[str] | CrawlInput) -> list[str]:
    """The WARC files to read, in a stable order, duplicates dropped. A pattern that matches
    nothing is an error, because a typo in a path would otherwise look like an empty crawl."""
    if isinstance(inputs, CrawlInput):
        return resolve_crawl(inputs)
    files: list[str] = []
    for pattern in inputs:
        scheme = _scheme(pattern)
        if scheme in ("http", "https"):
            check_url(pattern)
            files.append(pattern)
        elif scheme in ("", "file"):
            files.extend(_list_local(pattern.removeprefix("file://") if scheme else pattern))
        else:
            files.extend(_list_filesystem(pattern))
    return list(dict.fromkeys(files))


def _list_local(pattern: str) -> list[str]:
    matches = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
    matches = [m for m in matches if os.path.isfile(m)]
    if not matches:
        raise InputError(f"input {pattern!r} matches no file")
    return [os.path.abspath(m) for m in matches]


def _glob_regex(pattern: str) -> re.Pattern:
    """A glob over '/'-separated keys: `*` and `?` stay within a segment, `**` crosses them."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[" and (end := pattern.find("]", i + 2)) > 0:
            body = pattern[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


def _list_filesystem(pattern: str) -> list[str]:
    """A path or glob on a pyarrow filesystem (s3://, gs://, ...), as full URIs. Only the part
    before the first glob character goes to pyarrow (which cannot parse `[` or `?` in a URI)."""
    uri, query = split_query(pattern)
    suffix = f"?{query}" if query else ""
    scheme, rest = uri.split("://", 1)
    parts = rest.split("/")
    first = next((i for i, p in enumerate(parts) if glob.has_magic(p)), None)
    try:
        if first is None:
            fs, path = filesystem(pattern)
            if fs.get_file_info(path).type != pafs.FileType.File:
                raise InputError(f"input {pattern!r} matches no file")
            return [pattern]
        if first == 0:
            raise InputError(f"input {pattern!r}: the bucket (or host) cannot be a glob")
        base = f"{scheme}://" + "/".join(parts[:first])
        fs, base_path = filesystem(base + suffix)
        base_path = base_path.rstrip("/")
        recursive = first < len(parts) - 1 or "**" in parts[first]
        infos = fs.get_file_info(pafs.FileSelector(base_path, recursive=recursive, allow_not_found=True))
    except InputError:
        raise
    except Exception as e:  # pyarrow raises OSError and ArrowInvalid subclasses for most failures
        raise InputError(f"cannot list input {pattern!r}: {type(e).__name__}: {e}") from None
    regex = _glob_regex("/".join([base_path, *parts[first:]]))
    matches = sorted(i.path for i in infos if i.is_file and regex.match(i.path))
    if not matches:
        raise InputError(f"input {pattern!r} matches no file")
    return [base + m[len(base_path) :] + suffix for m in matches]


def _request(url: str, start: int = 0, end: int | None = None) -> urllib.request.Request:
    headers = {"User-Agent": USER_AGENT}
    if start or end is not None:
        headers["Range"] = f"bytes={start}-{'' if end is None else end}"
    return urllib.request.Request(url, headers=headers)


def _describe(e: Exception) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return f"{type(e.reason).__name__}: {e.reason}"
    return f"{type(e).__name__}: {e}"


def check_url(url: str) -> None:
    """Fail at listing time, not in a worker, when a URL input cannot be read: ask for its
    first byte (a GET, so presigned URLs work too)."""
    try:
        with urllib.request.urlopen(_request(url, 0, 0), timeout=CONNECT_TIMEOUT):
            pass
    except (OSError, http.client.HTTPException) as e:
        raise InputError(f"input {url} cannot be read: {_describe(e)}") from None


def resolve_crawl(c: CrawlInput) -> list[str]:
    """The WARC URLs of a crawl: lines skip..skip+files of its warc.paths.gz, read as a stream
    (the index is not fetched whole)."""
    url = c.index_url
    paths: list[str] = []
    try:
        if _scheme(url) in ("http", "https"):
            raw = urllib.request.urlopen(_request(url), timeout=CONNECT_TIMEOUT)
        else:
            raw = open_input(url)
        with raw, gzip.open(raw, "rt", encoding="utf-8") as lines:
            n = 0
            for line in lines:
                line = line.strip()
                if not line:
                    continue
                n += 1
                if n > c.skip:
                    paths.append(_join(c.base_url, line))
                    if len(paths) == c.files:
                        break
    except (OSError, EOFError, zlib.error, http.client.HTTPException, UnicodeDecodeError) as e:
        raise InputError(f"cannot read the file list of crawl {c.crawl} at {url} ({_describe(e)}); {OFFLINE_HINT}") from None
    if not paths:
        raise InputError(f"crawl {c.crawl}: {url} lists no WARC files after skipping {c.skip}")
    if len(paths) < c.files:
        log.warning("crawl %s has %d WARC files after skipping %d; %d were asked for", c.crawl, len(paths), c.skip, c.files)
    return paths


class CannotResume(Exception):
    """A server that answers a Range request with the whole body: not retried."""


class HttpStream(io.RawIOBase):
    """An HTTP(S) body as a stream. A connection that drops or stalls, or an answer of 429/5xx,
    is retried with backoff from the byte where it stopped (a Range request)."""

    RETRY_STATUS = {429, 500, 502, 503, 504}

    def __init__(self, url: str, retries: int = HTTP_RETRIES, timeout: float = READ_TIMEOUT):
        self.url, self.retries, self.timeout = url, retries, timeout
        self.pos = 0
        self._resp = None  # opened by the first read, so a failure is the reader's to count

    def _open(self) -> None:
        resp = urllib.request.urlopen(_request(self.url, self.pos), timeout=self.timeout)
        if self.pos and resp.status != 206:
            resp.close()
            raise CannotResume(f"{self.url}: the server ignored the Range request, cannot resume at byte {self.pos}")
        self._resp = resp

    def _with_retries(self, fn):
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except urllib.error.HTTPError as e:
                if e.code not in self.RETRY_STATUS or attempt == self.retries:
                    raise
                err = e
            except (OSError, http.client.HTTPException) as e:
                if attempt == self.retries:
                    raise
                err = e
            self._close_response()
            delay = min(2**attempt, 30)
            log.warning("%s: %s at byte %d; retrying in %ds", self.url, _describe(err), self.pos, delay)
            time.sleep(delay)  # the next attempt reopens the connection at self.pos

    def _close_response(self) -> None:
        if self._resp is not None:
            try:
                self._resp.close()
            except Exception:
                pass
            self._resp = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        def read() -> int:
            if self._resp is None:
                self._open()
            n = self._resp.readinto(buffer)
            if n == 0 and self._resp.length not in (None, 0):  # closed early without an error
                raise http.client.IncompleteRead(b"", self._resp.length)
            return n

        n = self._with_retries(read)
        self.pos += n
        return n

    def close(self) -> None:
        self._close_response()
        super().close()


def open_input(path: str) -> BinaryIO:
    """One input as a readable binary stream (a context manager), streamed, never read whole.
    The bytes are the file's own (a .warc.gz stays gzip: the WARC reader decompresses it). An
    http(s) URL connects on the first read, so a file that fails (a 404 in a crawl's list, a
    server that stays down) becomes the WARC reader's counted `read:error` row, not a failed run."""
    scheme = _scheme(path)
    if scheme in ("http", "https"):
        return io.BufferedReader(HttpStream(path), buffer_size=1 << 20)
    if scheme in ("", "file"):
        return open(path.removeprefix("file://") if scheme else path, "rb")
    fs, inner = filesystem(path)
    return fs.open_input_stream(inner, compression=None, buffer_size=READ_BUFFER)
