"""Issue 11: nothing is lost to the network. Real servers on loopback with outages longer than the
retry budget: an http(s) server serving a cut of crawl-sample that drops the connection mid-body
and then answers 503, and the S3 server (moto) behind a proxy that cuts an object's body and then
answers 503 SlowDown. A failed stream leaves its input unfinished (exit 3, named), a re-run reads
on from where it stopped with a ranged read and gives exactly the documents of a clean local run,
and `--accept-failed-inputs` finishes a run counting the failure. Damage in the data stays one
counted record."""
from __future__ import annotations

import http.client
import io
import json
import shutil
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import run_cli
from test_sources import LOOPBACK_ENV, serve, small_config
from warc_builders import split_warc

from refinery.io.sources import NetworkError, RetryParams, open_input
from refinery.io.storage import Output
from refinery.resume import committed_counts
from refinery.io.warc import ReadInterrupted, ReadParams, read_warc
from refinery.stats import merge_counts

RECORDS = 300  # the first 300 records of crawl-sample: 9.06 MB, so more than one 8 MiB object read
# 0.75-1.5 s of waiting before a stream gives up (waits of 0.25-0.5 s, then 0.5-1 s); under each S3
# try the AWS SDK makes its own quick retries (pyarrow's default, 3 attempts), ~5 s more in all here
BUCKET = "network-outage"
FAST_RETRY = {"attempts": 3, "backoff_s": 0.5, "max_backoff_s": 1.0, "timeout_s": 10.0}


@pytest.fixture(scope="module")
def warc(data_dir, tmp_path_factory) -> Path:
    return split_warc(data_dir / "crawl-sample" / "real-pages.warc.gz", tmp_path_factory.mktemp("in"), RECORDS, 1)[0]


# --- faulty servers on loopback ---------------------------------------------------------------------


@dataclass
class Outage:
    """What a faulty server does with one file: the response that crosses byte `cut_after` of it
    is cut there (the connection dropped), and from then on every request is answered 503 until
    `down` is cleared. `log` holds (first byte asked for, status, bytes sent) per request."""

    cut_after: int | None = None
    down: bool = False
    short: int | None = None  # when set, the outage ends by itself after this many 503 answers
    log: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, handler: BaseHTTPRequestHandler, status: int, headers: list, start: int, data: bytes) -> None:
        """Answer with `data`, the file's bytes from `start`, unless it is down; cut if it crosses `cut_after`."""
        with self.lock:
            down = self.down
            cut = not down and self.cut_after is not None and start < self.cut_after < start + len(data)
            if cut:
                data_sent = data[: self.cut_after - start]
                self.cut_after, self.down = None, True
        if down:
            return self.unavailable(handler, start)
        body = data_sent if cut else data
        self.log.append((start, status, len(body)))  # before answering: the client may act on the answer at once
        handler.send_response(status)
        for k, v in headers:
            handler.send_header(k, v)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)
            handler.wfile.flush()
        if cut:
            handler.connection.shutdown(socket.SHUT_RDWR)

    def unavailable(self, handler: BaseHTTPRequestHandler, start: int) -> None:
        body = b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
        self.log.append((start, 503, 0))
        with self.lock:
            if self.short is not None:
                self.short -= 1
                self.down = self.short > 0
        handler.send_response(503)
        handler.send_header("Content-Type", "application/xml")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)


def parse_range(header: str | None) -> tuple[int, int | None]:
    if not header:
        return 0, None
    a, _, b = header.removeprefix("bytes=").partition("-")
    return int(a), int(b) if b else None


class QuietHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass


class WarcServer(QuietHandler):
    """Serves `body` at any path, with Range requests, through `outage`."""

    body: bytes = b""
    outage: Outage

    def do_GET(self):
        start, end = parse_range(self.headers.get("Range"))
        data = self.body[start : None if end is None else end + 1]
        ranged = self.headers.get("Range") is not None
        headers = [("Content-Type", "application/warc")]
        if ranged:
            headers.append(("Content-Range", f"bytes {start}-{start + len(data) - 1}/{len(self.body)}"))
        self.outage.send(self, 206 if ranged else 200, headers, start, data)


def warc_server(body: bytes, outage: Outage):
    return serve(type("Server", (WarcServer,), {"body": body, "outage": outage}))


HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "te", "upgrade"}


class FaultyProxy(QuietHandler):
    """A reverse proxy in front of the S3 server: requests pass through unchanged (the Host header
    too, so signatures hold) except that GETs of keys ending in `key` go through `outage`, and
    while it is down every request is answered 503 SlowDown, as S3 does when throttling."""

    upstream: str = ""
    key: str = ""
    outage: Outage

    def _forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        payload = self.rfile.read(length) if length else None
        if self.outage.down:
            return self.outage.unavailable(self, -1)
        conn = http.client.HTTPConnection(self.upstream, timeout=30)
        try:
            conn.request(self.command, self.path, body=payload, headers={k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP})
            resp = conn.getresponse()
            data = resp.read()
            headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP]
        finally:
            conn.close()
        if self.command == "GET" and self.path.split("?")[0].endswith(self.key) and resp.status in (200, 206):
            return self.outage.send(self, resp.status, headers, parse_range(self.headers.get("Range"))[0], data)
        self.send_response(resp.status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", resp.getheader("Content-Length", "0") if self.command == "HEAD" else str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward


# --- the reader: a failure is not damage, and reading goes on from its checkpoint -------------------


def member_spans(data: bytes) -> list[tuple[int, int]]:
    """(offset, length) of each record (gzip member) of a gzip-per-record WARC."""
    from warcio.archiveiterator import ArchiveIterator

    spans = []
    it = ArchiveIterator(io.BytesIO(data))
    for rec in it:
        rec.content_stream().read()
        spans.append((it.get_record_offset(), it.get_record_length()))
    return spans


DAMAGED = 40  # the record whose gzip member is cut in half (the next member follows at once)
JUNK_AT = 100  # before this record's member: 1 MiB of junk holding no gzip header, one more error row
JUNK = bytes(range(256)) * 4096


def with_corrupt_member(data: bytes) -> bytes:
    members = [data[o : o + n] for o, n in member_spans(data)]
    members[DAMAGED] = members[DAMAGED][: len(members[DAMAGED]) // 2]
    members[JUNK_AT] = JUNK + members[JUNK_AT]
    return b"".join(members)


@pytest.fixture(scope="module")
def damaged_body(warc) -> bytes:
    return with_corrupt_member(warc.read_bytes())


@pytest.fixture(scope="module")
def whole(damaged_body) -> list[dict]:
    """The rows of the damaged file read from memory: what every read over the network must give."""
    rows, _ = read_rows(io.BytesIO(damaged_body), ReadParams())
    errors = [(i, r["reason"]) for i, r in enumerate(rows) if r["record_type"] == "error"]
    assert errors == [(DAMAGED, "read:corrupt_gzip"), (JUNK_AT, "read:not_gzip")] and len(rows) == RECORDS + 1
    return rows


def read_rows(stream, p: ReadParams, record: int = 0, offset: int = 0) -> tuple[list[dict], ReadInterrupted | None]:
    rows = []
    try:
        for table in read_warc(stream, "sample", p, record, offset):
            rows.extend(table.to_pylist())
    except ReadInterrupted as e:
        return rows, e
    return rows, None


QUICK = RetryParams(attempts=3, backoff_s=0.05, max_backoff_s=0.1, timeout_s=10)


@pytest.mark.parametrize("cut", [0.2, "damaged", 0.9])
def test_a_stream_that_fails_for_good_reads_on_from_its_checkpoint(damaged_body, whole, cut):
    """The connection drops mid-file and the server answers 503 past the retries: the reader
    raises ReadInterrupted (no row for it), and reading from its (record, offset) with a ranged
    request gives the rest, so that both parts together are exactly a whole read, the damaged
    member's one `read:corrupt_gzip` row included."""
    p = ReadParams(batch_records=16, retry=QUICK)
    # "damaged": inside the junk, so that the stream fails while the reader looks for the next member
    cut_after = whole[JUNK_AT]["source_offset"] + len(JUNK) // 2 if cut == "damaged" else int(len(damaged_body) * cut)
    outage = Outage(cut_after=cut_after)
    with warc_server(damaged_body, outage) as url:
        with open_input(url + "sample.warc.gz", QUICK) as stream:
            first, interrupted = read_rows(stream, p)
        assert interrupted is not None and isinstance(interrupted.error, NetworkError)
        assert "HTTP 503" in str(interrupted.error)
        assert [s for _, s, _ in outage.log] == [200] + [503] * (QUICK.attempts - 1)  # one try cut, then 503s
        assert 0 < interrupted.offset <= cut_after and interrupted.record <= len(first)
        assert whole[interrupted.record]["source_offset"] == interrupted.offset  # a member boundary
        assert not any(r["reason"] and "error" in r["reason"] for r in first)  # the failure is no row
        outage.down = False
        before = len(outage.log)
        with open_input(url + "sample.warc.gz", QUICK, interrupted.offset) as stream:
            rest, again = read_rows(stream, p, interrupted.record, interrupted.offset)
    assert again is None
    assert outage.log[before:] == [(interrupted.offset, 206, len(damaged_body) - interrupted.offset)]
    assert first[: interrupted.record] + rest == whole
    # what was read past the checkpoint (a damaged stretch) comes again the same, so skipping it is safe
    assert first[interrupted.record :] == rest[: len(first) - interrupted.record]


def test_a_corrupt_gzip_member_over_a_flaky_connection_costs_one_record(damaged_body, whole):
    """A dropped connection within the retry budget costs nothing, and data damage stays one
    counted record: the stream is the reader's business, the member its own."""
    p = ReadParams(batch_records=64, retry=QUICK)
    outage = Outage(cut_after=len(damaged_body) // 3, short=QUICK.attempts - 2)  # the last try gets through
    with warc_server(damaged_body, outage) as url:
        with open_input(url + "x.warc.gz", QUICK) as stream:
            rows, interrupted = read_rows(stream, p)
    assert interrupted is None
    assert rows == whole
    assert [r["reason"] for r in rows if r["record_type"] == "error"] == ["read:corrupt_gzip", "read:not_gzip"]
    cut = outage.log[0][0] + outage.log[0][2]
    assert [(s, st) for s, st, _ in outage.log] == [(0, 200)] + [(cut, 503)] * (QUICK.attempts - 2) + [(cut, 206)]


class NoRangeServer(QuietHandler):
    """Ignores Range requests (answers the whole body, 200), and drops its first connection mid-body."""

    body: bytes = b""
    answered: list = []

    def do_GET(self):
        self.answered.append(self.headers.get("Range"))
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body[: len(self.body) // 2] if len(self.answered) == 1 else self.body)
        if len(self.answered) == 1:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)


def test_a_server_that_ignores_range_requests_is_read_on_by_skipping(damaged_body):
    """Resuming where such a server has no Range support costs a re-download up to the byte
    where the stream stopped, not the input."""
    handler = type("H", (NoRangeServer,), {"body": damaged_body, "answered": []})
    with serve(handler) as url:
        with open_input(url + "a.warc.gz", QUICK) as stream:
            assert stream.read() == damaged_body
    assert handler.answered[0] is None and handler.answered[1] == f"bytes={len(damaged_body) // 2}-"


def test_throttling_at_listing_time_is_left_to_the_reader(damaged_body):
    """A 503 when an input is listed says nothing about the file: it is listed, and its reader
    retries. A 404 is a missing input, at once, unless failed inputs are being accepted."""
    from refinery.io.sources import InputError, list_inputs

    outage = Outage(down=True)
    with warc_server(damaged_body, outage) as url:
        assert list_inputs([url + "a.warc.gz"]) == [url + "a.warc.gz"]
    with serve(type("Gone", (QuietHandler,), {"do_GET": lambda self: self.send_error(404)})) as url:
        with pytest.raises(InputError, match="HTTP 404"):
            list_inputs([url + "a.warc.gz"])
        # --accept-failed-inputs: a server that has gone for good cannot stop the run it finishes
        assert list_inputs([url + "a.warc.gz"], check_urls=False) == [url + "a.warc.gz"]


def test_retry_settings_are_validated_and_do_not_change_the_run(tmp_path):
    from refinery.config import ConfigError, load_config
    from refinery.resume import fingerprint

    cfg = small_config(tmp_path, ["a.warc.gz"])
    with pytest.raises(ConfigError, match="read.retry.attempts"):
        load_config(cfg, {"read": {"retry": {"attempts": 0}}})
    default = load_config(cfg)
    assert default.read.retry.budget_s() >= 300  # minutes of waiting, for Common Crawl's throttling
    patient = load_config(cfg, {"read": {"batch_records": default.read.batch_records, "retry": {"attempts": 30}}})
    assert fingerprint(patient, ["a"]) == fingerprint(default, ["a"])  # a re-run may wait longer


# --- whole runs: an outage longer than the retry budget, over http(s) and over S3 -----------------


def shard_rows(out: Path, source: str | None = None) -> list[dict]:
    """The kept documents of a finished run (of one input), by offset, without the `source` column."""
    rows = pq.read_table(out / "shards").to_pylist()
    rows = [r for r in rows if source is None or r.pop("source") == source]
    for r in rows:
        r.pop("source", None)
    return sorted(rows, key=lambda r: r["source_offset"])


@pytest.fixture(scope="module")
def outage_runs(damaged_body, tmp_path_factory):
    """The damaged cut of crawl-sample (one corrupt member, one stretch of junk) as a local file, at
    an http URL, and as an S3 object behind the faulty proxy. Runs:
    1. `failed`: the URL, the object and the local file (the clean local read every other is
       compared with), the URL and the object each cut mid-file (the http body at 45%; the object
       in its second 8 MiB read) and then answering 503 until this run ends;
    2. once both outages are over, side by side on two copies of `failed`'s output: `resumed`,
       the same command; `accepted`, with --accept-failed-inputs."""
    moto_server = pytest.importorskip("moto.server", reason="moto[server] (a test dependency) is not installed")
    from refinery.io.sources import READ_BUFFER

    tmp = tmp_path_factory.mktemp("outage")
    local = tmp / "sample.warc.gz"
    local.write_bytes(damaged_body)
    config = yaml.safe_load(small_config(tmp).read_text())
    config["read"].update(batch_records=32, retry=FAST_RETRY)  # parts of 32 records: several committed before the cut
    # what is under test is reading: the stages before extraction (cheap) decide which records are documents kept
    config["stages"] = [s for s in config["stages"] if s["stage"] in ("url_filter", "language_prefilter")]
    cfg = tmp / "run.yaml"
    cfg.write_text(yaml.safe_dump(config))

    moto = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    s3 = pafs.S3FileSystem(endpoint_override=f"{host}:{port}", scheme="http", region="us-east-1",
                           access_key="testing", secret_key="testing", allow_bucket_creation=True, allow_bucket_deletion=True)
    try:
        # moto's servers in one process share their buckets: a bucket of this module's own, deleted after
        s3.create_dir(BUCKET)
        with s3.open_output_stream(f"{BUCKET}/in/sample.warc.gz", compression=None) as f:
            f.write(damaged_body)
        http_outage = Outage(cut_after=int(len(damaged_body) * 0.45))
        s3_outage = Outage(cut_after=(READ_BUFFER + len(damaged_body)) // 2)
        proxy = type("Proxy", (FaultyProxy,), {"upstream": f"{host}:{port}", "key": "/sample.warc.gz", "outage": s3_outage})
        with warc_server(damaged_body, http_outage) as www, serve(proxy) as s3_url:
            env = LOOPBACK_ENV | {
                "AWS_ENDPOINT_URL": s3_url.rstrip("/"), "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_REGION": "us-east-1", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent",
            }
            remote = [www + "sample.warc.gz", f"s3://{BUCKET}/in/sample.warc.gz"]
            inputs = remote + [str(local)]

            def run(out: str, *extra: str):
                return run_cli("run", str(cfg), "--input", *inputs, "--output", str(tmp / out), *extra, env=env)

            failed = run("failed")
            logged = {"http": len(http_outage.log), "s3": len(s3_outage.log)}
            left = sorted(str(f.relative_to(tmp / "failed")) for f in (tmp / "failed").rglob("*") if f.is_file())
            http_outage.down = s3_outage.down = False
            shutil.copytree(tmp / "failed", tmp / "accepted")
            listed = tmp / "failed" / "_failed_inputs.json"
            failed_inputs = json.loads(listed.read_text()) if listed.exists() else None  # (the tests say why not)
            with ThreadPoolExecutor(2) as pool:
                accepted = pool.submit(run, "accepted", "--accept-failed-inputs")
                resumed = pool.submit(run, "failed").result()
                accepted = accepted.result()
    finally:
        s3.delete_dir(BUCKET)
        moto.stop()
    return {
        "inputs": inputs, "remote": remote, "dir": tmp, "failed": failed, "failed_inputs": failed_inputs, "left": left,
        "resumed": resumed, "accepted": accepted, "size": len(damaged_body),
        "second_phase": {"http": http_outage.log[logged["http"]:], "s3": s3_outage.log[logged["s3"]:]},
    }


def test_an_outage_past_the_retries_stops_the_run_with_exit_3_naming_the_inputs(outage_runs):
    proc, remote = outage_runs["failed"], outage_runs["remote"]
    assert proc.returncode == 3, proc.stderr[-5000:]
    assert all(path in proc.stderr for path in remote) and "--accept-failed-inputs" in proc.stderr
    listed = outage_runs["failed_inputs"]
    assert [f["path"] for f in listed] == remote
    assert "HTTP 503" in listed[0]["error"] and listed[1]["error"]
    for f in listed:  # records before the cut were committed, and the re-run knows where to read on
        assert 0 < f["records_committed"] and 0 < f["read_on_from"]["offset"] < outage_runs["size"]
    # the final pass did not run: no stats.json ("complete when stats.json exists" holds), no shards;
    # the committed parts stay, and each input's failure note
    left = outage_runs["left"]
    assert "stats.json" not in left and not [f for f in left if f.startswith(("shards", "_staging"))]
    assert sum(f.startswith("_parts/") for f in left) >= 2 and len([f for f in left if f.startswith("_failed/")]) == 2
    # the local input was read to the end beside them; neither failed input is finished
    finished = [f for f in left if f.startswith("_inputs/")]
    assert len(finished) == 1 and finished[0].startswith("_inputs/000002-")


def per_input_counts(out: Path) -> dict:
    """What happened to the records of each input (by input name): its committed counts summed
    (its manifest's, and any parts not folded into one)."""
    parts: dict = {}
    for name, counts in committed_counts(Output(str(out))):
        parts.setdefault(name, []).append(counts)
    return {name: {k: v for k, v in merge_counts(p).items() if k != "errors"} for name, p in parts.items()}


def test_the_rerun_after_the_outage_reads_on_and_gives_the_documents_of_a_clean_local_run(outage_runs):
    """The local input, read to the end in the first run, is the clean local read: the URL's and
    the object's documents and per-input counts, read in two runs around an outage, are its own."""
    proc, out = outage_runs["resumed"], outage_runs["dir"] / "failed"
    assert proc.returncode == 0, proc.stderr[-3000:]
    url, obj, local = outage_runs["inputs"]
    expected = shard_rows(out, local)
    assert len(expected) > 20
    assert shard_rows(out, url) == expected and shard_rows(out, obj) == expected
    counts = per_input_counts(out)
    assert len(counts) == 3 and all(c == counts[min(counts)] for c in counts.values())
    stats = json.loads((out / "stats.json").read_text())
    assert stats["records_read"] == 3 * (RECORDS + 1)  # the corrupt member is its record's row; the junk one more
    assert stats["not_documents"]["read:corrupt_gzip"] == 3 and "read:network_failed" not in stats["not_documents"]
    assert stats["failed_inputs"] == [] and not (out / "_failed_inputs.json").exists()
    # read on with ranged reads from where each stream failed, not from byte 0
    assert outage_runs["failed_inputs"] is not None, outage_runs["failed"].stderr[-3000:]
    (http_from, s3_from) = (f["read_on_from"]["offset"] for f in outage_runs["failed_inputs"])
    second = outage_runs["second_phase"]
    bodies = [(s, n) for s, status, n in second["http"] if n > 1]  # (listing asks for one byte)
    assert bodies == [(http_from, outage_runs["size"] - http_from)]
    assert second["s3"] and min(s for s, _, _ in second["s3"]) >= s3_from
    assert sum(n for _, _, n in second["s3"]) == outage_runs["size"] - s3_from


def test_accept_failed_inputs_finishes_the_run_counting_the_failures(outage_runs):
    proc, out = outage_runs["accepted"], outage_runs["dir"] / "accepted"
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = json.loads((out / "stats.json").read_text())
    listed = outage_runs["failed_inputs"]
    assert listed is not None, outage_runs["failed"].stderr[-3000:]
    assert stats["not_documents"]["read:network_failed"] == 2  # one row per failed input: the rest of it
    assert stats["records_read"] == sum(f["records_committed"] for f in listed) + 2 + RECORDS + 1  # + the local input
    assert stats["documents"] + sum(stats["not_documents"].values()) == stats["records_read"]
    assert [(f["path"], f["error"]) for f in stats["failed_inputs"]] == [(f["path"], f["error"]) for f in listed]
    network = [e for e in stats["errors"] if e["reason"] == "read:network_failed"]
    assert sorted((e["source"], e["offset"]) for e in network) == sorted((f["path"], f["read_on_from"]["offset"]) for f in listed)
    clean = shard_rows(out, outage_runs["inputs"][2])  # the local input's documents: all of them
    assert len(clean) > 20
    for f in listed:  # the documents read before the failure, exactly
        assert shard_rows(out, f["path"]) == [r for r in clean if r["source_offset"] < f["read_on_from"]["offset"]]
    assert not (out / "_failed_inputs.json").exists()
