"""Runs that survive failure: `refinery run` killed with SIGKILL (driver and local Ray, as when a
machine dies) at several points and re-run gives what an uninterrupted run gives; a changed
config is refused; a worker killed on a record is retried, and a record that kills its worker
every time is removed with a reason instead of being retried forever."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from conftest import REPO, run_cli
from warc_builders import split_warc

RECORDS = 300  # the first 300 records of crawl-sample, in two input files


@pytest.fixture(scope="module")
def setup(data_dir, tmp_path_factory):
    """Two input WARCs, a config (cc.yaml, removed rows written, parts of 64 rows so that an
    input is committed in several, fewer dedup partitions for a small input), and the output of
    one uninterrupted run."""
    folder = tmp_path_factory.mktemp("resume")
    inputs = split_warc(data_dir / "crawl-sample" / "real-pages.warc.gz", folder / "in", RECORDS, 2)
    config = yaml.safe_load((REPO / "pipelines" / "cc.yaml").read_text())
    config.update(input=[str(p) for p in inputs], write_removed=True, shard_rows=50, commit_rows=64)
    for d in config["dedup"]:
        d["partitions"] = 4
        if d["stage"] == "substring_dedup":
            d["min_tokens"] = 12  # so that these 300 records have spans to strike (11 documents; none at 38)
    cfg = folder / "run.yaml"
    cfg.write_text(yaml.safe_dump(config))
    reference = folder / "reference"
    proc = run_cli("run", str(cfg), "--output", str(reference))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cfg, reference


def outcome(out: Path) -> dict:
    """Everything a user reads from a finished run: shard rows, removed rows per stage, stats."""
    stats = json.loads((out / "stats.json").read_text())
    stats.pop("seconds")
    shards = pq.read_table(out / "shards").sort_by("id").to_pylist()
    removed = {}
    for stage in sorted(p.name for p in (out / "removed").iterdir()):
        removed[stage] = sorted(pq.read_table(out / "removed" / stage).sort_by("id").to_pylist(), key=lambda r: r["id"])
    return {"stats": stats, "shards": shards, "removed": removed}


def start_run(cfg: Path, out: Path, env: dict | None = None) -> subprocess.Popen:
    """`refinery run` in a session of its own, so that it and the Ray it starts can be killed together."""
    return subprocess.Popen(
        [sys.executable, "-m", "refinery.cli", "run", str(cfg), "--output", str(out)],
        cwd=REPO, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def kill_session(proc: subprocess.Popen) -> None:
    """SIGKILL every process of the run's session: the CLI, Ray's GCS, raylet and workers."""
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.getsid(int(pid)) == proc.pid:
                    os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    proc.wait(timeout=30)


def files(out: Path, folder: str, suffix: str = "") -> list[Path]:
    return sorted((out / folder).rglob(f"*{suffix}")) if (out / folder).exists() else []


KILL_POINTS = {
    # filter phase under way: some batches committed, most not
    "first_part_committed": lambda out: len(files(out, "_parts", ".json")) >= 1,
    # one input read through, the other not finished
    "first_input_read": lambda out: len(files(out, "_inputs", ".json")) >= 1,
    # substring dedup's candidates found, their verification not finished
    "substring_dedup_under_way": lambda out: len(files(out, "_buckets/substring_dedup/candidates", ".parquet")) >= 1,
    # filter phase done, final pass (dedup) under way
    "final_pass_started": lambda out: len(files(out, "_parts_dedup", ".json")) >= 1 or len(files(out, "_staging")) >= 1,
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_killed_run_resumes_to_the_uninterrupted_result(setup, tmp_path, point):
    cfg, reference = setup
    out = tmp_path / "out"
    proc = start_run(cfg, out)
    deadline = time.monotonic() + 300
    try:
        while not KILL_POINTS[point](out):
            assert proc.poll() is None, f"run ended before {point}"
            assert time.monotonic() < deadline, f"{point} not reached"
            time.sleep(0.02)
    finally:
        kill_session(proc)
    assert not (out / "stats.json").exists()
    # whatever is under a final name is whole: every Parquet file reads, every JSON parses
    # (logs/ray.log, Ray's logging of a quiet run, is a log, appended to as the run goes)
    for f in out.rglob("*"):
        if f.is_file() and ".tmp-" not in f.name and "_staging" not in f.parts and "logs" not in f.parts:
            pq.read_metadata(f) if f.suffix == ".parquet" else json.loads(f.read_text())

    proc = run_cli("run", str(cfg), "--output", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert outcome(out) == outcome(reference)
    assert not [f for f in out.rglob("*") if ".tmp-" in f.name or f.name in ("_staging", "_attempts", "_filtered")]


def test_finished_run_is_not_redone_and_a_changed_config_is_refused(setup, tmp_path):
    cfg, reference = setup
    before = {f: f.stat().st_mtime_ns for f in reference.rglob("*")}
    proc = run_cli("run", str(cfg), "--output", str(reference))
    assert proc.returncode == 0 and "nothing to do" in proc.stderr
    config = yaml.safe_load(cfg.read_text())
    config["stages"][3]["threshold"] = 0.5  # the language stage
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    proc = run_cli("run", str(changed), "--output", str(reference))
    assert proc.returncode == 2 and "different config (changed: stages)" in proc.stderr
    # the part size changes how the output is committed, not what it is: not a different run
    config = yaml.safe_load(cfg.read_text()) | {"commit_rows": 32}
    changed.write_text(yaml.safe_dump(config))
    proc = run_cli("run", str(changed), "--output", str(reference))
    assert proc.returncode == 0 and "nothing to do" in proc.stderr
    assert {f: f.stat().st_mtime_ns for f in reference.rglob("*")} == before


def test_parts_hold_at_most_commit_rows_records_and_cover_every_record(setup):
    """Each finished input's parts are folded into its manifest, which lists them."""
    _, reference = setup
    assert not files(reference, "_parts", ".json")
    covered = {}
    for manifest in files(reference, "_manifests", ".json"):
        info = json.loads(manifest.read_text())
        assert len(info["parts"]) >= 2 and info["records"] == RECORDS // 2
        for ranges in info["parts"].values():
            records = [r for a, b in ranges for r in range(a, b)]
            assert 0 < len(records) <= 64  # the config's commit_rows
            covered.setdefault(info["input"], []).extend(records)
    assert sorted(map(sorted, covered.values())) == [list(range(RECORDS // 2))] * 2


def kept_urls(out: Path) -> list[str]:
    return sorted(pq.read_table(out / "shards", columns=["url"]).column("url").to_pylist())


@pytest.fixture(scope="module")
def crash_runs(setup, tmp_path_factory):
    """The two runs whose `extract` worker dies on the reference's first kept record: once
    (REFINERY_CRASH_ONCE), and on every try. They are independent CLI runs, each with its own
    local Ray and output folder, so they run side by side. Returns ({"once" / "always": (the
    finished process, its output)}, the victim URL, the file the crash-once run leaves)."""
    cfg, reference = setup
    victim = kept_urls(reference)[0]
    folder = tmp_path_factory.mktemp("crashes")
    once = folder / "crashed"
    envs = {"once": {"REFINERY_CRASH_ON_URL": victim, "REFINERY_CRASH_ONCE": str(once)}, "always": {"REFINERY_CRASH_ON_URL": victim}}
    with ThreadPoolExecutor(2) as pool:
        futures = {k: pool.submit(run_cli, "run", str(cfg), "--output", str(folder / k), env=env) for k, env in envs.items()}
        return {k: (f.result(), folder / k) for k, f in futures.items()}, victim, once


def test_worker_killed_once_is_retried_and_the_output_is_unchanged(setup, crash_runs):
    cfg, reference = setup
    runs, victim, once = crash_runs
    proc, out = runs["once"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert once.exists(), "the injected crash did not happen"
    assert outcome(out) == outcome(reference)


def test_record_that_always_kills_its_worker_is_removed_with_a_reason(setup, crash_runs):
    cfg, reference = setup
    runs, victim, _ = crash_runs
    proc, out = runs["always"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    got, want = outcome(out), outcome(reference)
    assert kept_urls(out) == [u for u in kept_urls(reference) if u != victim]
    crashed = [r for r in got["removed"]["extract"] if r["reason"] == "extract:worker_crash"]
    assert [r["url"] for r in crashed] == [victim]
    extract = next(s for s in got["stats"]["stages"] if s["stage"] == "extract")
    assert extract["removed"]["extract:worker_crash"] == 1
    assert got["stats"]["records_read"] == want["stats"]["records_read"]
