"""`refinery ablate` on a real crawl: the first records of crawl-sample, pipelines/cc.yaml, a tiny
model. One ablation is run (killed once after its first training run, then resumed) and shared by
the tests that read it; a Ray-free test checks every arm's view of a batch against the stages
applied one after another, and standalone `refinery run`s of three arms' configs are compared
with the ablation's arms."""
from __future__ import annotations

import collections
import gzip
import json
import math
import os
import signal
import subprocess
import sys
import time
from functools import reduce
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from warcio.archiveiterator import ArchiveIterator

from conftest import REPO, run_cli
from refinery.ablation import arm_views, plan_arms
from refinery.config import load_config
from refinery.io.warc import ReadParams, read_warc
from refinery.model.data import detokenize_wikitext, read_eval_documents
from refinery.stages import apply_stage

RECORDS = 150
TRAINING = ["--size", "tiny", "--tokens", "300k", "--seeds", "1", "--seq-len", "128", "--batch-size", "8", "--device", "cpu"]
TOKENS_SEEN = math.ceil(300_000 / (128 * 8)) * 128 * 8  # whole steps of 8 sequences of 128


@pytest.fixture(scope="module")
def small_crawl(data_dir, tmp_path_factory) -> Path:
    """The first RECORDS records of crawl-sample, byte for byte (each record is a gzip member)."""
    source = data_dir / "crawl-sample" / "real-pages.warc.gz"
    with open(source, "rb") as f:
        records = ArchiveIterator(f)
        for i, _ in enumerate(records):
            if i == RECORDS:
                end = records.get_record_offset()
                break
    path = tmp_path_factory.mktemp("crawl") / "first-records.warc.gz"
    with open(source, "rb") as f:
        path.write_bytes(f.read(end))
    return path


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    """cc.yaml with a generous extraction time limit: on a loaded machine a page near the 1 s
    default could time out in one run and not in another, which is not what these tests check."""
    raw = yaml.safe_load((REPO / "pipelines" / "cc.yaml").read_text())
    next(s for s in raw["stages"] if s["stage"] == "extract")["timeout_s"] = 120
    path = tmp_path_factory.mktemp("config") / "cc.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def eval_file(data_dir, tmp_path_factory) -> Path:
    with gzip.open(data_dir / "wikitext-2-tokenized" / "valid.txt.gz", "rt", encoding="utf-8") as f:
        paragraphs = [p.strip() for p in detokenize_wikitext(f.read()).split("\n\n") if len(p.strip()) > 200]
    path = tmp_path_factory.mktemp("eval") / "wiki-valid.txt"
    path.write_text("\n\n".join(paragraphs[:40]), encoding="utf-8")
    return path


def unigram_entropy_bits(docs: list[str]) -> float:
    """Bits per byte of the best model that ignores context: an untrained model cannot beat it."""
    counts = collections.Counter(b"".join(doc.encode("utf-8") for doc in docs))
    total = sum(counts.values())
    return -sum(n / total * math.log2(n / total) for n in counts.values())


@pytest.fixture(scope="module")
def ablation(small_crawl, config, eval_file, tmp_path_factory):
    """`refinery ablate` killed (SIGKILL) once its first run is finished, then run again to the
    end: (output folder, the second process)."""
    out = tmp_path_factory.mktemp("ablation") / "out"
    args = ["ablate", str(config), "--input", str(small_crawl), "--out", str(out), "--eval", str(eval_file), *TRAINING]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("RAY_ADDRESS", None)
    first_stderr = out.parent / "first.stderr"
    with first_stderr.open("wb") as stderr:
        first = subprocess.Popen([sys.executable, "-m", "refinery.cli", *args], cwd=REPO, env=env,
                                 stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    finished_run = out / "runs" / "0-extract" / "seed0" / "run.json"
    deadline = time.monotonic() + 600
    while not finished_run.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert first.poll() is None, "the ablation ended before it could be interrupted"
    os.killpg(first.pid, signal.SIGKILL)  # its own session: the CLI and anything it started
    first.wait()
    assert not (out / "report.json").exists()

    second = run_cli(*args, env={"OMP_NUM_THREADS": "1"})
    assert second.returncode == 0, second.stderr[-3000:]
    return out, second


def arm_names(config: Path) -> list[str]:
    """The arms of cc.yaml's ablation: extract, the language step, each later stage, each dedup stage."""
    cfg = load_config(config)
    filters = [p.stage for p in cfg.stages if p.stage not in {"url_filter", "language_prefilter", "extract", "language"}]
    stages = ["extract", "language", *filters, *(p.stage for p in cfg.dedup)]
    return [f"{k}-{stage}" for k, stage in enumerate(stages)]


def test_ablate_end_to_end_every_arm_in_order_beats_the_unigram_entropy(ablation, eval_file, config):
    out, proc = ablation
    report = json.loads((out / "report.json").read_text())
    arms = arm_names(config)
    assert arms[:3] == ["0-extract", "1-language", "2-gopher_repetition"] and len(arms) >= 6
    assert list(report["arms"]) == arms == list(report["ablation"]["arms"])
    entropy = unigram_entropy_bits(read_eval_documents(eval_file))
    for name, arm in report["arms"].items():
        assert 0 < arm["mean"]["bpb"] < entropy, (name, arm["mean"]["bpb"], entropy)
        assert [run["tokens_seen"] for run in arm["runs"]] == [TOKENS_SEEN]  # the same budget for every arm
        assert arm["epochs"] == pytest.approx(TOKENS_SEEN / arm["tokens_per_epoch"])
    # the resumed command skipped the finished run and trained the rest
    assert f"[{arms[0]} seed 0] finished before: skipped" in proc.stdout
    assert f"[{arms[1]} seed 0] step" in proc.stdout
    # the shared pass is quiet, as `refinery run` is: one progress line, Ray's logging in a file
    shared_pass = (out.parent / "first.stderr").read_text()
    assert "shared pass (" in shared_pass and len(shared_pass.splitlines()) < 20, shared_pass[-3000:]
    assert "INFO" not in shared_pass and "Token authentication" not in shared_pass, shared_pass[-3000:]
    assert "Token authentication" in (out / "logs" / "ray.log").read_text()

    docs = [report["ablation"]["arms"][name]["docs"] for name in arms]
    assert docs[0] > docs[1] and docs == sorted(docs, reverse=True)  # every step only removes
    assert [report["ablation"]["arms"][name]["added"] for name in arms[:2]] == [
        ["extract"], ["url_filter", "language_prefilter", "language"]]
    # an arm whose text is the previous arm's reuses its runs, and says so
    for before, name in zip(arms, arms[1:]):
        same = report["arms"][name]["docs"] == report["arms"][before]["docs"] and report["arms"][name]["bytes"] == report["arms"][before]["bytes"]
        if report["arms"][name]["reused_from"]:
            assert same and report["arms"][name]["runs"] == report["arms"][before]["runs"]
            assert report["ablation"]["stage_deltas"][name][eval_file.stem]["bpb"] == 0
        delta = report["ablation"]["stage_deltas"][name][eval_file.stem]
        assert delta["vs"] == before and delta["bpb"] == pytest.approx(report["arms"][name]["mean"]["bpb"] - report["arms"][before]["mean"]["bpb"])

    page = (out / "report.html").read_text()
    assert page.count("<svg") == 2 and "What each stage buys" in page
    assert "http://" not in page.replace("http://www.w3.org/", "").replace("http://purl.org/", "").replace("http://creativecommons.org/ns#", "")
    assert all(f"<td>{name}</td>" in page for name in arms)
    assert "## What each stage buys" in (out / "report.md").read_text()


def test_arm_views_are_the_stages_applied_one_after_another(small_crawl, config):
    """Ray-free: for real records, each arm's view of a batch (extraction run once for all) is
    exactly the batch after that arm's stages, applied in order as a standalone run does."""
    cfg = load_config(config)
    arms = plan_arms(cfg, "/unused")
    with open(small_crawl, "rb") as f:
        batch = next(read_warc(f, str(small_crawl), ReadParams(batch_records=64)))
    views = arm_views(batch, list(cfg.stages), arms, keep_removed_text=False)
    assert len(views) == len(arms)
    for arm, view in zip(arms, views):
        expected = reduce(lambda rows, p: apply_stage(rows, p, False), arm.config.stages, batch)
        assert view.equals(expected), arm.name
    alive = [v.column("removed_by").null_count for v in views]
    assert alive[0] > alive[1] > 0  # the first steps remove pages; some survive them all


def _kept(folder: Path) -> list[tuple[str, str]]:
    rows = []
    for shard in sorted((folder / "shards").glob("*.parquet")):
        table = pq.read_table(shard, columns=["id", "text"])
        rows += zip(table.column("id").to_pylist(), table.column("text").to_pylist())
    return rows


def test_arms_equal_standalone_runs_of_their_configs(ablation, config, tmp_path):
    """`refinery run` of an arm's config (OUT/arms/<arm>.yaml) keeps the same documents with the
    same text as the arm: extraction alone (no filter, no dedup: the compaction pass), and the
    whole config (every filter, line corrections changing text, every dedup stage). One process
    and one Ray for the two."""
    out, _ = ablation
    arms = arm_names(config)
    names = [arms[0], arms[-1]]
    script = (
        "import sys\nfrom refinery import pipeline\nfrom refinery.config import load_config\n"
        "for config, output in zip(sys.argv[1::2], sys.argv[2::2]):\n"
        "    pipeline.run(load_config(config, {'output': output}))\n"
    )
    args = [arg for name in names for arg in (str(out / "arms" / f"{name}.yaml"), str(tmp_path / name))]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run([sys.executable, "-c", script, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in names:
        standalone, arm = _kept(tmp_path / name), _kept(out / "arms" / name)
        assert standalone == arm and standalone, name
        assert json.loads((tmp_path / name / "stats.json").read_text())["stages"] == \
            json.loads((out / "arms" / name / "stats.json").read_text())["stages"]
