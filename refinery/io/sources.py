"""The inputs of a run: the list of WARC files to read, and opening one as a byte stream. Nothing
is read whole; a reader pulls the bytes it needs, so a 1 GB WARC costs a few MB of memory.

- local paths and globs (`crawl/*.warc.gz`, `~/warcs/**/*.warc.gz`)
- `http://` and `https://` URLs, streamed; a dropped connection resumes where it stopped with a
  Range request. A URL is taken literally (no globs).
- object storage through pyarrow's filesystems: `s3://bucket/prefix/*.warc.gz` (globs in the key;
  an S3-compatible store via `AWS_ENDPOINT_URL`, see `refinery/io/storage.py`), and likewise `gs://`,
  read in ranged reads of READ_BUFFER bytes.
- a Common Crawl crawl by id, `{crawl: CC-MAIN-2024-10, files: 3}`: the first `files` lines of
  `<base_url>/crawl-data/<crawl>/warc.paths.gz`, each as `<base_url>/<path>`. `base_url` may be
  https (the default, data.commoncrawl.org), `s3://commoncrawl/`, or a local mirror.

Listing runs in the driver before any work starts and fails at once (`InputError`, exit 2) when an
input is missing or a server cannot be reached within REFINERY_CONNECT_TIMEOUT seconds (10).

Reading a remote input retries what may pass (a dropped or stalled connection, 408/429/403/5xx, an
object-store error) from the byte where it stopped, with the backoff of `read.retry`
(`RetryParams`). A stream that still fails raises `NetworkError`: the input is unfinished, not
damaged, and a re-run reads on from there (refinery.resume)."""
from __future__ import annotations

import glob
import gzip
import http.client
import io
import logging
import os
import random
import re
import time
import urllib.error
import urllib.request
import zlib
from abc import abstractmethod
from typing import BinaryIO

import pyarrow.fs as pafs
from pydantic import Field

from refinery.io.storage import filesystem, split_query
from refinery.params import Params

log = logging.getLogger(__name__)

COMMON_CRAWL = "https://data.commoncrawl.org/"
CONNECT_TIMEOUT = float(os.environ.get("REFINERY_CONNECT_TIMEOUT", "10"))  # listing: fail fast when offline
READ_BUFFER = 8 << 20  # object storage: one ranged GET per 8 MiB
# Answers that may pass: throttling (429; 503 "Slow Down" from S3 backpressure; 403 from the rate
# rules of Common Crawl's CloudFront, status.commoncrawl.org), timeouts and server errors. Any other
# answer (404 ...) is final: the reader counts it as a `read:error:*` row.
RETRY_STATUS = frozenset({403, 408, 429, 500, 502, 503, 504})
USER_AGENT = "refinery (RefinedWeb-style corpus cleaning; https://commoncrawl.org/terms-of-use)"
OFFLINE_HINT = "without internet access, pass --input with local WARC paths or globs (it replaces the config's input)"


class InputError(Exception):
    """An input pattern that names no readable file."""


class NetworkError(Exception):
    """A stream that still failed after its retries (`read.retry`): the input is not finished, and
    not damaged either; what was read of it stands, and a re-run reads on from there."""


class RetryParams(Params):
    """How long a WARC stream keeps trying after a failure before its input fails for this run.
    The default rides out Common Crawl's throttling: its status page (status.commoncrawl.org)
    asks for retries no more often than once a second, and its "503 Slow Down" episodes last
    minutes. 12 tries, waits doubling from 1 s to at most 60 s, is about 6 min of waiting (each
    wait drawn between half and all of that, so thousands of throttled readers do not retry in
    step). The count starts again after every successful read. An input that fails is not lost:
    a re-run reads on from where it stopped."""

    attempts: int = Field(12, ge=1, description="tries of one read, the first included, before the input fails for this run")
    backoff_s: float = Field(1.0, gt=0, description="the wait before the first retry; doubled for each next one")
    max_backoff_s: float = Field(60.0, gt=0, description="the longest wait between two tries")
    timeout_s: float = Field(60.0, gt=0, description="an http(s) read that stalls this long fails (and is retried)")

    def delay(self, retry: int, at_least: float = 0.0) -> float:
        """The wait before retry number `retry` (from 0): exponential, capped, jittered; at least
        what the server asked for (Retry-After), within the cap."""
        wait = min(self.max_backoff_s, self.backoff_s * 2**retry) * random.uniform(0.5, 1.0)
        return max(wait, min(at_least, self.max_backoff_s))

    def budget_s(self) -> float:
        """The longest the waits of one failing read add up to."""
        return sum(min(self.max_backoff_s, self.backoff_s * 2**i) for i in range(self.attempts - 1))


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


def list_inputs(inputs: list[str] | CrawlInput, check_urls: bool = True) -> list[str]:
    """The WARC files to read, in a stable order, duplicates dropped. A pattern that matches
    nothing is an error, because a typo in a path would otherwise look like an empty crawl.
    Without `check_urls`, URLs are taken as they are (a run that accepts failed inputs must not
    be stopped by a server that has gone)."""
    if isinstance(inputs, CrawlInput):
        return resolve_crawl(inputs)
    files: list[str] = []
    for pattern in inputs:
        scheme = _scheme(pattern)
        if scheme in ("http", "https"):
            if check_urls:
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
    first byte (a GET, so presigned URLs work too). An answer that may pass (throttling, a 5xx)
    says nothing about the file: the input is kept, and its reader retries."""
    try:
        with urllib.request.urlopen(_request(url, 0, 0), timeout=CONNECT_TIMEOUT):
            pass
    except urllib.error.HTTPError as e:
        if e.code not in RETRY_STATUS:
            raise InputError(f"input {url} cannot be read: {_describe(e)}") from None
        log.warning("input %s answered %s when listed; its reader will retry", url, _describe(e))
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


class RetryingStream(io.RawIOBase):
    """The bytes of one remote file from `start` on, fetched at `self.pos` by `_fetch`. A fetch
    that fails in a way that may pass (`_transient`) is retried with `retry`'s backoff, from the
    byte where it stopped; when all tries fail, NetworkError, and every later read raises it too."""

    def __init__(self, name: str, retry: RetryParams, start: int = 0):
        self.name, self.retry, self.pos = name, retry, start
        self.failed: NetworkError | None = None

    @abstractmethod
    def _fetch(self, buffer) -> int:
        """Read into `buffer` from self.pos; the bytes read."""

    @abstractmethod
    def _transient(self, e: Exception) -> bool:
        """Whether `e` may pass (a dropped connection, a timeout, 429/5xx), so the fetch is retried."""

    def _reset(self) -> None:
        """Forget the connection after a failure; the next fetch opens one at self.pos."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.failed is not None:
            raise self.failed
        waited = 0.0
        for attempt in range(self.retry.attempts):
            try:
                n = self._fetch(buffer)
                self.pos += n
                return n
            except Exception as e:
                if not self._transient(e):
                    raise
                err = e
            self._reset()
            if attempt + 1 < self.retry.attempts:
                retry_after = _retry_after(err)
                delay = self.retry.delay(attempt, retry_after)
                log.warning("%s: %s at byte %d; retrying in %.1fs", self.name, _describe(err), self.pos, delay)
                time.sleep(delay)  # the next try reopens at self.pos
                waited += delay
        self.failed = NetworkError(f"{_describe(err)} at byte {self.pos}, after {self.retry.attempts} tries over {waited:.0f}s")
        raise self.failed from err

    def close(self) -> None:
        self._reset()
        super().close()


def _retry_after(e: Exception) -> float:
    """Seconds a 429/503 answer asked to wait (Retry-After), or 0."""
    value = e.headers.get("Retry-After", "") if isinstance(e, urllib.error.HTTPError) and e.headers else ""
    return float(value) if value.strip().isdigit() else 0.0


class HttpStream(RetryingStream):
    """An HTTP(S) body as a stream. A connection that drops or stalls, or an answer that may pass
    (RETRY_STATUS), is retried from the byte where it stopped, with a Range request."""

    def __init__(self, url: str, retry: RetryParams, start: int = 0):
        super().__init__(url, retry, start)
        self.url = url
        self._resp = None  # opened by the first read, so that a failure is the reader's to count

    def _open(self) -> None:
        resp = urllib.request.urlopen(_request(self.url, self.pos), timeout=self.retry.timeout_s)
        if self.pos and resp.status != 206:  # the server ignored the Range: skip to our byte
            log.warning("%s: the server ignored the Range request; skipping %d bytes to resume", self.url, self.pos)
            left = self.pos
            while left:
                chunk = resp.read(min(left, 1 << 20))
                if not chunk:
                    raise http.client.IncompleteRead(b"", left)
                left -= len(chunk)
        self._resp = resp

    def _fetch(self, buffer) -> int:
        if self._resp is None:
            self._open()
        n = self._resp.readinto(buffer)
        if n == 0 and self._resp.length not in (None, 0):  # closed early without an error
            raise http.client.IncompleteRead(b"", self._resp.length)
        return n

    def _transient(self, e: Exception) -> bool:
        if isinstance(e, urllib.error.HTTPError):
            return e.code in RETRY_STATUS
        return isinstance(e, (OSError, http.client.HTTPException))

    def _reset(self) -> None:
        if self._resp is not None:
            try:
                self._resp.close()
            except Exception:
                pass
            self._resp = None


class ObjectStream(RetryingStream):
    """An object on a pyarrow filesystem (s3://, gs://) read in ranged reads, each retried on its
    own. Under our retries sits the SDK's own (pyarrow's S3 default: 3 attempts, quick)."""

    def __init__(self, path: str, retry: RetryParams, start: int = 0):
        super().__init__(path, retry, start)
        self._file = None
        self.size = 0

    def _fetch(self, buffer) -> int:
        if self._file is None:  # here, so that a failure to reach the store is retried too
            fs, inner = filesystem(self.name)  # (pyarrow may ask AWS for the bucket's region)
            self._file = fs.open_input_file(inner)  # asks for the size, reads nothing
            self.size = self._file.size()
        if self.pos >= self.size:
            return 0
        data = self._file.read_at(min(len(buffer), self.size - self.pos), self.pos)
        if not data:  # an answer cut short reads as nothing
            raise OSError(f"short read at byte {self.pos} of {self.size}")
        buffer[: len(data)] = data
        return len(data)

    def _transient(self, e: Exception) -> bool:
        # pyarrow raises OSError for what the SDK gave up on (SlowDown, a dropped connection, a
        # timeout); a missing object is final
        return isinstance(e, OSError) and not isinstance(e, FileNotFoundError)

    def _reset(self) -> None:
        self._file = None


def open_input(path: str, retry: RetryParams | None = None, start: int = 0) -> BinaryIO:
    """One input as a readable binary stream from byte `start` (a context manager), streamed,
    never read whole. The bytes are the file's own (a .warc.gz stays gzip: the WARC reader
    decompresses it). A remote input connects on the first read, so a file that fails for good
    (a 404 in a crawl's list) becomes the WARC reader's counted `read:error` row, and one whose
    server stays down past `retry` raises NetworkError there."""
    retry = retry or RetryParams()
    scheme = _scheme(path)
    if scheme in ("http", "https"):
        return io.BufferedReader(HttpStream(path, retry, start), buffer_size=1 << 20)
    if scheme in ("", "file"):
        f = open(path.removeprefix("file://") if scheme else path, "rb")
        f.seek(start)
        return f
    return io.BufferedReader(ObjectStream(path, retry, start), buffer_size=READ_BUFFER)
