"""A whole `refinery run pipelines/cc.yaml` with its output on S3 (a moto server on loopback, in this
process): the filter phase, then the dedup phase, whose shuffle goes through the bucket
(`_buckets/<stage>/<partition>/`), killed with SIGKILL twice (in the filter phase, then in the
middle of the dedup shuffle) and resumed, must give exactly what the same run gives on a local
disk. The server's S3 backend is watched: every object put is recorded, which is how the test
knows when to kill and that the shuffle really went through the bucket."""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

import pyarrow.fs as pafs
import pytest
import yaml

from conftest import REPO, run_cli
from refinery.config import load_config
from run_checks import RunOutput, check_dedup_removals, check_funnel_against_files, warc_payload
from test_resume import kill_session, start_run
from warc_builders import split_warc, write_warc

BUCKET = "refinery-runs"
RECORDS = 150  # of crawl-sample, in two input files, plus a file of copies of three of its kept pages
LOOPBACK = {"no_proxy": "*", "NO_PROXY": "*", "RAY_USAGE_STATS_ENABLED": "0", "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on 127.0.0.1 (a free port) whose backend records every key put; yields
    (the environment for a CLI run, a pyarrow filesystem on it, the list of keys put)."""
    from moto.s3.models import S3Backend
    from moto.server import ThreadedMotoServer

    puts: list[str] = []
    put_object = S3Backend.put_object

    def recording_put(self, bucket_name, key_name, *args, **kwargs):
        stored = put_object(self, bucket_name, key_name, *args, **kwargs)
        puts.append(f"{bucket_name}/{key_name}")  # once stored: a test that sees it can list it
        return stored

    S3Backend.put_object = recording_put
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a log line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        env = LOOPBACK | {
            "AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent",
        }
        fs = pafs.S3FileSystem(endpoint_override=f"{host}:{port}", scheme="http", region="us-east-1",
                               access_key="testing", secret_key="testing", allow_bucket_creation=True)
        fs.create_dir(BUCKET)
        yield env, fs, puts
    finally:
        server.stop()
        S3Backend.put_object = put_object


def objects(fs: pafs.FileSystem, prefix: str) -> list[str]:
    infos = fs.get_file_info(pafs.FileSelector(prefix, recursive=True, allow_not_found=True))
    return [i.path for i in infos if i.is_file]


def copy_url(i: int, url: str) -> str:
    return f"https://copy{i}.example/{url.split('/')[-1]}"


@pytest.fixture(scope="module")
def inputs(crawl_run, data_dir, tmp_path_factory):
    """A config (cc.yaml, removed rows written, parts of 32 rows, 4 shuffle partitions per dedup
    stage) over the first RECORDS records of crawl-sample in two files and a third file holding
    copies, under new URLs, of three pages of those records that cc.yaml keeps."""
    folder = tmp_path_factory.mktemp("s3run")
    crawl = data_dir / "crawl-sample" / "real-pages.warc.gz"
    files = split_warc(crawl, folder / "in", RECORDS, 2)
    end = sum(f.stat().st_size for f in files)  # the files are the records' bytes: this is where record RECORDS starts
    kept = RunOutput(crawl_run[0]).table("shards", ["url", "source_offset"]).sort_by("source_offset").to_pylist()
    originals = [r for r in kept if r["source_offset"] < end][:3]
    assert len(originals) == 3
    copies = []
    for i, r in enumerate(originals):
        content_type, html = warc_payload(str(crawl), r["source_offset"])
        copies.append((copy_url(i, r["url"]), html, content_type, "200 OK"))
    files.append(write_warc(folder / "in" / "copies.warc.gz", copies))
    config = yaml.safe_load((REPO / "pipelines" / "cc.yaml").read_text())
    config.update(input=[str(f) for f in files], write_removed=True, shard_rows=50, commit_rows=32)
    for d in config["dedup"]:
        d["partitions"] = 4
    cfg = folder / "run.yaml"
    cfg.write_text(yaml.safe_dump(config))
    return cfg, folder, [r["url"] for r in originals]


def kill_when_put(cfg, uri: str, env: dict, puts: list[str], marker: str, suffix: str) -> None:
    """Start the run; SIGKILL it and its Ray the moment a file under `marker` ending in `suffix`
    is put (not one of the empty folder markers pyarrow also puts)."""
    seen = len(puts)
    proc = start_run(cfg, uri, env)
    deadline = time.monotonic() + 600
    try:
        while not any(marker in k and k.endswith(suffix) for k in puts[seen:]):
            assert proc.poll() is None, f"the run ended before it put {marker}"
            assert time.monotonic() < deadline, f"no {marker} object within 10 minutes"
            time.sleep(0.005)
    finally:
        kill_session(proc)


@pytest.fixture(scope="module")
def runs(inputs, s3):
    """The same run on local disk and on S3, started together; the S3 one killed in the filter
    phase, re-run and killed in the dedup shuffle, then re-run to the end. Returns the local
    output, and for the S3 run: its output, the keys under it after each kill, and the keys its
    last attempt put."""
    cfg, folder, _ = inputs
    env, fs, puts = s3
    prefix = f"{BUCKET}/runs/resumed"
    uri = f"s3://{prefix}"

    def on_s3():
        after = {}
        kill_when_put(cfg, uri, env, puts, f"{prefix}/_parts/", ".json")
        after["filter"] = objects(fs, prefix)
        kill_when_put(cfg, uri, env, puts, f"{prefix}/_buckets/", ".parquet")
        after["shuffle"] = objects(fs, prefix)
        seen = len(puts)
        proc = run_cli("run", str(cfg), "--output", uri, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return after, puts[seen:]

    with ThreadPoolExecutor(2) as pool:
        local = pool.submit(run_cli, "run", str(cfg), "--output", str(folder / "local"), env=LOOPBACK)
        remote = pool.submit(on_s3)
        proc = local.result()
        assert proc.returncode == 0, proc.stderr[-3000:]
        after, last_puts = remote.result()
    return RunOutput(folder / "local"), RunOutput(prefix, fs), after, last_puts


def test_killed_twice_on_s3_the_run_resumes_to_what_it_gives_on_local_disk(runs):
    local, remote, after, _ = runs
    prefix = remote.root
    # killed after the first committed part, and in the middle of the shuffle: never finished
    assert not any(k.endswith(f"{prefix}/stats.json") for k in after["filter"] + after["shuffle"])
    assert any("/_parts/" in k and k.endswith(".json") for k in after["filter"])
    assert any("/_buckets/" in k and k.endswith(".parquet") for k in after["shuffle"])
    assert remote.outcome() == local.outcome()


def test_the_dedup_shuffle_goes_through_the_bucket_and_is_cleared(runs, s3):
    _, remote, _, last_puts = runs
    _, fs, _ = s3
    prefix = remote.root
    stats = remote.stats()
    shuffled = {}
    for k in last_puts:
        if f"{prefix}/_buckets/" in k and k.endswith(".parquet"):  # not the folder markers pyarrow puts
            stage, partition = k.split(f"{prefix}/_buckets/")[1].split("/")[:2]
            shuffled.setdefault(stage, set()).add(partition)
    # each stage's folder (MinHash's Jaccard pass for the removed rows: `minhash-jaccard`)
    assert "minhash" in shuffled and {s.removesuffix("-jaccard") for s in shuffled} <= set(stats["dedup"])
    assert shuffled["minhash"] <= {f"{i:05d}" for i in range(4)}, shuffled  # the config's 4 partitions
    assert stats["dedup"]["minhash"]["partitions"] == 4
    leftovers = [k for k in objects(fs, prefix) if any(f"/{d}/" in k for d in ("_buckets", "_filtered", "_staging", "_attempts"))]
    assert leftovers == []


def test_dedup_on_s3_removes_the_planted_copies_by_its_rules(runs, inputs):
    _, remote, _, _ = runs
    cfg, _, originals = inputs
    stats = remote.stats()
    check_funnel_against_files(remote, stats)
    removed = check_dedup_removals(remote, load_config(cfg), stats)
    assert removed["minhash"] >= 3
    kept = set(remote.table("shards", ["url"]).column("url").to_pylist())
    for i, url in enumerate(originals):
        assert len({url, copy_url(i, url)} & kept) == 1
