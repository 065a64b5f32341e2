"""Inputs beyond local files, end to end: S3 (a real S3-compatible server, moto, on 127.0.0.1, with
real WARCs uploaded), http(s) URLs, and Common Crawl crawl ids (http.server on 127.0.0.1 serving a
miniature crawl-data/ tree). Every server binds to loopback and is stopped by its fixture, and
nothing here sends traffic anywhere else."""
from __future__ import annotations

import contextlib
import gzip
import json
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import REPO, run_cli
from run_checks import RunOutput, check_funnel_against_files
from warc_builders import count_records

from refinery.config import ConfigError, load_config
from refinery.io import sources
from refinery.io.sources import COMMON_CRAWL, CrawlInput, InputError, list_inputs, open_input
from refinery.io.storage import Output
from refinery.schema import SHARD

# Loopback only: no proxy for anything, no Ray usage stats, no EC2 metadata lookups for AWS credentials.
LOOPBACK_ENV = {
    "no_proxy": "*",
    "NO_PROXY": "*",
    "RAY_USAGE_STATS_ENABLED": "0",
    "AWS_EC2_METADATA_DISABLED": "true",
}
CC_FILES = ["CC-MAIN-2020-34-sample.resiliparse.warc.gz", "CC-MAIN-2019-51-single.jwarc.warc.gz", "CC-MAIN-2024-22-whirlwind.warc.gz"]


def small_config(tmp_path: Path, input_value=None) -> Path:
    """pipelines/cc.yaml's filter stages (the dedup phase is tested elsewhere), with `input` set."""
    cfg = yaml.safe_load((REPO / "pipelines" / "cc.yaml").read_text())
    cfg.pop("dedup", None)
    cfg["input"] = input_value if input_value is not None else []
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def samples(data_dir) -> Path:
    folder = data_dir / "warc-samples"
    if not folder.is_dir():
        pytest.skip(f"real WARC samples not found at {folder}")
    return folder


# --- servers on loopback -------------------------------------------------------------------------


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(handler) -> str:
    """An HTTP server on 127.0.0.1 (a free port) in a thread; yields its base URL; always stopped."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture(scope="module")
def s3_endpoint():
    moto_server = pytest.importorskip("moto.server", reason="moto[server] (a test dependency) is not installed")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def s3_env(s3_endpoint) -> dict[str, str]:
    return LOOPBACK_ENV | {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        "AWS_CONFIG_FILE": "/nonexistent",
    }


@pytest.fixture(scope="module")
def bucket(s3_env, samples) -> str:
    """Bucket `crawl` holding every sample WARC under in/<folder>/<name>."""
    fs = pafs.S3FileSystem(
        endpoint_override=s3_env["AWS_ENDPOINT_URL"].removeprefix("http://"), scheme="http", region="us-east-1",
        access_key="testing", secret_key="testing", allow_bucket_creation=True,
    )
    fs.create_dir("crawl")
    for f in sorted(samples.glob("*/*.warc.gz")):
        with fs.open_output_stream(f"crawl/in/{f.parent.name}/{f.name}", compression=None) as out:
            out.write(f.read_bytes())
    return "crawl"


@pytest.fixture
def in_s3_env(s3_env, monkeypatch):
    for k, v in s3_env.items():
        monkeypatch.setenv(k, v)


@pytest.fixture(scope="module")
def mini_crawl(samples, tmp_path_factory) -> Path:
    """crawl-data/CC-MAIN-TEST/ as Common Crawl lays it out: warc.paths.gz plus the files it lists."""
    root = tmp_path_factory.mktemp("www")
    lines = []
    for i, name in enumerate(CC_FILES):
        rel = f"crawl-data/CC-MAIN-TEST/segments/170000000{i}.{i}/warc/{name}"
        (root / rel).parent.mkdir(parents=True)
        shutil.copy(samples / "common-crawl" / name, root / rel)
        lines.append(rel)
    with gzip.open(root / "crawl-data/CC-MAIN-TEST/warc.paths.gz", "wt") as f:
        f.write("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def www(mini_crawl) -> str:
    with serve(partial(QuietHandler, directory=str(mini_crawl))) as url:
        yield url


def read_back(fs: pafs.FileSystem, root: str):
    with fs.open_input_stream(f"{root}/stats.json") as f:
        stats = json.loads(f.read())
    shards = [i.path for i in fs.get_file_info(pafs.FileSelector(f"{root}/shards")) if i.path.endswith(".parquet")]
    table = pq.read_table(shards, filesystem=fs) if shards else SHARD.empty_table()
    return stats, table


# --- S3 ------------------------------------------------------------------------------------------


def test_s3_globs_list_the_matching_objects(bucket, in_s3_env, samples):
    every = list_inputs([f"s3://{bucket}/in/**/*.warc.gz"])
    assert every == sorted(f"s3://{bucket}/in/{f.parent.name}/{f.name}" for f in samples.glob("*/*.warc.gz"))
    assert list_inputs([f"s3://{bucket}/in/common-crawl/CC-MAIN-20[12][09]-*.warc.gz"]) == [
        f"s3://{bucket}/in/common-crawl/{n}" for n in sorted(CC_FILES[:2])
    ]
    one = f"s3://{bucket}/in/common-crawl/{CC_FILES[1]}"
    assert list_inputs([one, one]) == [one]
    for missing in [f"s3://{bucket}/nothing/*.warc.gz", f"s3://{bucket}/in/none.warc.gz", "s3://no-such-bucket/x.warc.gz"]:
        with pytest.raises(InputError, match="matches no file"):
            list_inputs([missing])


def test_s3_objects_stream_byte_for_byte(bucket, in_s3_env, samples):
    local = samples / "archive-crawls" / "IAH-20080430-archive.org-shallow.aut.warc.gz"
    with open_input(f"s3://{bucket}/in/archive-crawls/{local.name}") as stream:
        first = stream.read(1000)
        rest = stream.read()
    assert first + rest == local.read_bytes()  # raw gzip bytes: the WARC reader decompresses


def test_output_on_an_s3_endpoint(bucket, in_s3_env, s3_env):
    """storage.Output with the endpoint from AWS_ENDPOINT_URL, and with pyarrow's URI options."""
    host = s3_env["AWS_ENDPOINT_URL"].removeprefix("http://")
    for uri in [f"s3://{bucket}/unit/env", f"s3://{bucket}/unit/query?endpoint_override={host}&scheme=http&region=us-east-1"]:
        out = Output(uri)
        assert out.is_empty()
        out.write_json("a/b.json", {"x": 1})
        assert out.read_json("a/b.json") == {"x": 1}
        assert out.list_files("a", ".json") == ["a/b.json"] and not out.is_empty()
        out.clear()
        assert out.is_empty()


@pytest.fixture(scope="module")
def runs(request, www, tmp_path_factory):
    """The two end-to-end runs, started together (each is a CLI subprocess with its own local Ray;
    most of a small run is Ray starting up, so they overlap well):
    - s3: inputs on S3 (a glob) and an http URL, shards, stats and removed rows written to S3
      (None when moto is not installed);
    - crawl: `input: {crawl: CC-MAIN-TEST, files: 2, base_url: http://127.0.0.1:PORT/}`."""
    tmp = tmp_path_factory.mktemp("runs")
    (tmp / "s3").mkdir()
    (tmp / "crawl").mkdir()
    crawl_cfg = small_config(tmp / "crawl", {"crawl": "CC-MAIN-TEST", "files": 2, "base_url": www})
    crawl_args = ["run", str(crawl_cfg), "--output", str(tmp / "crawl" / "out")]
    try:
        bucket, s3_env = request.getfixturevalue("bucket"), request.getfixturevalue("s3_env")
    except pytest.skip.Exception:
        return {"s3": None, "crawl": (run_cli(*crawl_args, env=LOOPBACK_ENV), tmp / "crawl" / "out")}
    url = f"{www}crawl-data/CC-MAIN-TEST/segments/1700000000.0/warc/{CC_FILES[0]}"
    s3_args = ["run", str(small_config(tmp / "s3")), "--input", f"s3://{bucket}/in/archive-crawls/dolma-*.warc.gz", url,
               "--output", f"s3://{bucket}/runs/one", "--write-removed"]
    with ThreadPoolExecutor(2) as pool:
        s3_run = pool.submit(run_cli, *s3_args, env=s3_env)
        crawl_run = pool.submit(run_cli, *crawl_args, env=LOOPBACK_ENV)
        return {"s3": (s3_run.result(), url), "crawl": (crawl_run.result(), tmp / "crawl" / "out")}


def test_run_reads_from_s3_and_https_and_writes_to_s3(runs, bucket, s3_env, samples):
    """`refinery run` with inputs on S3 and on an http URL, shards and stats written to S3."""
    if runs["s3"] is None:
        pytest.skip("moto[server] (a test dependency) is not installed")
    proc, url = runs["s3"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    fs = pafs.S3FileSystem(endpoint_override=s3_env["AWS_ENDPOINT_URL"].removeprefix("http://"), scheme="http",
                           region="us-east-1", access_key="testing", secret_key="testing")
    stats, table = read_back(fs, f"{bucket}/runs/one")
    dolma = sorted(samples.glob("archive-crawls/dolma-*.warc.gz"))
    assert stats["inputs"] == [f"s3://{bucket}/in/archive-crawls/{f.name}" for f in dolma] + [url]
    assert stats["records_read"] == sum(count_records(f) for f in dolma) + count_records(samples / "common-crawl" / CC_FILES[0])
    check_funnel_against_files(RunOutput(f"{bucket}/runs/one", fs), stats)
    assert table.schema.remove_metadata().equals(SHARD)
    assert table.num_rows == stats["kept"]["docs"] > 10  # dolma's pages are English and extractable
    assert len(set(table.column("id").to_pylist())) == table.num_rows
    assert set(table.column("source").to_pylist()) <= set(stats["inputs"])
    for s in stats["stages"]:
        n = sum(s["removed"].values())
        files = [i.path for i in fs.get_file_info(pafs.FileSelector(f"{bucket}/runs/one/removed/{s['stage']}", allow_not_found=True))]
        assert sum(pq.read_metadata(f, filesystem=fs).num_rows for f in files) == n, s["stage"]


# --- Common Crawl by crawl id, and http(s) URLs -------------------------------------------------


def test_crawl_id_end_to_end(runs, www, mini_crawl):
    """input: {crawl: CC-MAIN-TEST, files: 2, base_url: ...}: the first two files of warc.paths.gz."""
    proc, out = runs["crawl"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = json.loads((out / "stats.json").read_text())
    listed = gzip.decompress((mini_crawl / "crawl-data/CC-MAIN-TEST/warc.paths.gz").read_bytes()).decode().split()
    assert stats["inputs"] == [www + p for p in listed[:2]]
    assert stats["records_read"] == sum(count_records(mini_crawl / p) for p in listed[:2])
    assert pq.read_table(out / "shards").num_rows == stats["kept"]["docs"]


def test_crawl_listing_slices_the_index(www, mini_crawl):
    listed = gzip.decompress((mini_crawl / "crawl-data/CC-MAIN-TEST/warc.paths.gz").read_bytes()).decode().split()
    assert list_inputs(CrawlInput(crawl="CC-MAIN-TEST", files=1, skip=1, base_url=www)) == [www + listed[1]]
    assert list_inputs(CrawlInput(crawl="CC-MAIN-TEST", files=10, base_url=www.rstrip("/"))) == [www + p for p in listed]
    # a local mirror of crawl-data/ works the same way
    assert list_inputs(CrawlInput(crawl="CC-MAIN-TEST", files=1, base_url=str(mini_crawl))) == [f"{mini_crawl}/{listed[0]}"]
    with pytest.raises(InputError, match="HTTP 404"):
        list_inputs(CrawlInput(crawl="CC-MAIN-NONE", files=1, base_url=www))
    with pytest.raises(InputError, match="lists no WARC files"):
        list_inputs(CrawlInput(crawl="CC-MAIN-TEST", files=1, skip=3, base_url=www))


def test_crawl_on_object_storage(bucket, in_s3_env, mini_crawl):
    """base_url: s3://... (Common Crawl's own bucket is s3://commoncrawl/)."""
    fs, _ = sources.filesystem(f"s3://{bucket}")
    index = "crawl-data/CC-MAIN-TEST/warc.paths.gz"
    with fs.open_output_stream(f"{bucket}/mirror/{index}", compression=None) as f:
        f.write((mini_crawl / index).read_bytes())
    listed = gzip.decompress((mini_crawl / index).read_bytes()).decode().split()
    assert list_inputs(CrawlInput(crawl="CC-MAIN-TEST", files=2, base_url=f"s3://{bucket}/mirror/")) == [
        f"s3://{bucket}/mirror/{p}" for p in listed[:2]
    ]


def test_url_inputs_are_checked_when_listed(www):
    url = f"{www}crawl-data/CC-MAIN-TEST/segments/1700000001.1/warc/{CC_FILES[1]}"
    assert list_inputs([url, url]) == [url]
    with pytest.raises(InputError, match="HTTP 404"):
        list_inputs([f"{www}missing.warc.gz"])


def test_a_url_that_fails_is_a_counted_read_error_not_a_crash(www):
    """A file of a crawl's list that has gone (404) ends as the reader's error row, like a damaged file."""
    from refinery.io.warc import ReadParams, read_warc

    url = f"{www}crawl-data/CC-MAIN-TEST/gone.warc.gz"
    with open_input(url) as stream:
        rows = [r for t in read_warc(stream, url, ReadParams()) for r in t.to_pylist()]
    assert [r["reason"] for r in rows] == ["read:error:HTTPError"]


class RangeHandler(QuietHandler):
    """Serves one file with Range support; the first response is cut off after 100 KB."""

    body = b""
    requests: list = []

    def do_GET(self):
        start = 0
        if rng := self.headers.get("Range"):
            start = int(rng.removeprefix("bytes=").split("-")[0])
        self.requests.append(rng)
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(self.body) - start))
        self.end_headers()
        data = self.body[start:]
        if len(self.requests) == 1:
            self.wfile.write(data[:100_000])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)  # drop the connection mid-body
            return
        self.wfile.write(data)


def test_url_stream_resumes_after_a_dropped_connection(samples, monkeypatch):
    monkeypatch.setattr(sources.time, "sleep", lambda s: None)
    body = (samples / "archive-crawls" / "BL-20140325121225068-data.gov.uk.warc.gz").read_bytes()
    handler = type("H", (RangeHandler,), {"body": body, "requests": []})
    with serve(handler) as url:
        with open_input(url + "f.warc.gz") as stream:
            data = stream.read()
    assert data == body
    assert handler.requests[0] is None and handler.requests[1].startswith("bytes=") and int(handler.requests[1][6:-1]) > 0


class EndlessHandler(QuietHandler):
    """A 1 GiB body, generated as it is sent; counts the bytes the client actually took."""

    sent = 0

    def do_GET(self):
        size = 1 << 30
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        chunk = b"\0" * (1 << 20)
        try:
            for _ in range(size // len(chunk)):
                self.wfile.write(chunk)
                type(self).sent += len(chunk)
        except OSError:  # the client closed the stream: that is the point
            pass


def test_url_inputs_are_streamed_not_downloaded():
    handler = type("H", (EndlessHandler,), {"sent": 0})
    with serve(handler) as url:
        with open_input(url + "big.warc.gz") as stream:
            assert len(stream.read(1 << 20)) == 1 << 20
        time.sleep(0.5)
    assert handler.sent < 64 << 20  # socket buffers hold a few MB, never the whole GiB


# --- offline -------------------------------------------------------------------------------------


def test_cc_yaml_defaults_to_a_real_crawl_and_input_replaces_it():
    cfg = load_config(REPO / "pipelines" / "cc.yaml")
    assert isinstance(cfg.input, CrawlInput)
    assert cfg.input.crawl.startswith("CC-MAIN-") and cfg.input.files >= 1 and cfg.input.base_url == COMMON_CRAWL
    assert load_config(REPO / "pipelines" / "cc.yaml", {"input": ["a.warc.gz"]}).input == ["a.warc.gz"]
    with pytest.raises(ConfigError, match="input.crawl.files"):
        load_config(REPO / "pipelines" / "cc.yaml", {"input": {"crawl": "CC-MAIN-2024-10", "files": 0}})


def test_offline_crawl_default_fails_at_once_naming_input(tmp_path):
    """The crawl default with an unreachable base URL (a closed port on loopback) exits 2 before
    Ray starts, telling the user to pass --input."""
    cfg = small_config(tmp_path, {"crawl": "CC-MAIN-2024-10", "files": 3, "base_url": "http://127.0.0.1:9/"})
    start = time.monotonic()
    proc = run_cli("run", str(cfg), "--output", str(tmp_path / "out"), env=LOOPBACK_ENV, timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "--input" in proc.stderr and "CC-MAIN-2024-10" in proc.stderr
    assert time.monotonic() - start < 60  # python and imports; the connection itself is refused at once
    assert not (tmp_path / "out").exists()


def test_a_server_that_never_answers_times_out(monkeypatch):
    monkeypatch.setattr(sources, "CONNECT_TIMEOUT", 1.0)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # the kernel accepts the connection; nobody ever answers
        start = time.monotonic()
        with pytest.raises(InputError, match="--input"):
            list_inputs(CrawlInput(crawl="CC-MAIN-2024-10", files=1, base_url=f"http://127.0.0.1:{silent.getsockname()[1]}/"))
        assert time.monotonic() - start < 5
