"""What lets a run scale to a full crawl (issue 18): per-input manifests instead of one counts
file per part, shuffle partitions sized from the run, and a driver whose memory does not grow
with the number of inputs (a real run over thousands of small WARCs dealt from crawl-sample)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from conftest import REPO
from warc_builders import raw_records
from refinery.dedup.phase import ExactDedupParams, bucket_rows, stage_partitions
from refinery.dedup.minhash import MinHashParams
from refinery.dedup.scope import TARGET_SHUFFLE_BYTES, Partitions
from refinery.io.storage import Output
from refinery.outcomes import write_outcomes
from refinery.resume import (
    INPUTS_DIR, MANIFESTS_DIR, PARTS_DIR, committed_counts, committed_parts, fold_input, input_name, inputs_to_do,
    inputs_to_fold, part_name, as_ranges,
)
from refinery.schema import rows_from_pylist
from refinery.stats import merge_counts


# ---------------------------------------------------------------- manifests


def commit(out: Output, name: str, path: str, records: range, kept_every: int = 2) -> None:
    """Commit records of an input as one part, as the filter phase does (write_outcomes)."""
    ordinals = np.arange(records.start, records.stop)
    rows = rows_from_pylist([
        {"id": f"{name}-{i}", "source": path, "source_record": int(i), "record_type": "response", "domain": f"d{i % 3}.example",
         "n_words": 10 + int(i), "n_chars": 50, "text": "x",
         "removed_by": None if i % kept_every == 0 else "url_filter", "reason": None if i % kept_every == 0 else "url_filter:blocklist"}
        for i in ordinals
    ])
    write_outcomes(out, part_name(name, ordinals), rows, False, f"{PARTS_DIR}/{name}", {"input": name, "ranges": as_ranges(ordinals)})


def finish(out: Output, name: str, path: str, records: int) -> None:
    out.write_json(f"{INPUTS_DIR}/{name}.json", {"path": path, "records": records})


def totals(out: Output) -> dict:
    counts = merge_counts(c for _, c in committed_counts(out))
    return {"records": counts["records"], "outcomes": dict(counts["outcomes"]), "domains": counts["kept_domains"].top(10)}


def test_a_finished_inputs_parts_fold_into_one_manifest_and_resume_reads_on(tmp_path):
    """Three inputs: A finished (folded), B finished but not folded yet, C half read. The counts
    are the same before and after folding; the resume check skips A and B, and gives C its
    committed ranges; a fold cut short (manifest written, parts not deleted) counts nothing twice."""
    out = Output(str(tmp_path / "out"))
    paths = [f"/data/{c}.warc.gz" for c in "abc"]
    a, b, c = (input_name(i, p) for i, p in enumerate(paths))
    for name, path in ((a, paths[0]), (b, paths[1])):
        commit(out, name, path, range(0, 4))
        commit(out, name, path, range(4, 7))
        finish(out, name, path, 7)
    commit(out, c, paths[2], range(0, 3))  # C: 3 records committed, not read to the end
    before = totals(out)
    assert before["records"] == 17 and inputs_to_fold(out) == [a, b]

    assert fold_input(out, a) and not fold_input(out, c)  # C has no marker: not finished
    assert out.list_files(f"{PARTS_DIR}/{a}") == [] and out.exists(f"{MANIFESTS_DIR}/{a}.json")
    manifest = out.read_json(f"{MANIFESTS_DIR}/{a}.json")
    assert manifest["path"] == paths[0] and manifest["records"] == 7
    assert sorted(manifest["parts"].values()) == [[[0, 4]], [[4, 7]]]
    assert totals(out) == before
    assert inputs_to_fold(out) == [b]
    assert len(committed_parts(out)) == 5  # A's two (in its manifest), B's two, C's one

    todo = inputs_to_do(out, paths)
    assert [t["name"] for t in todo] == [c] and json.loads(todo[0]["skip"]) == [[0, 3]]

    # a fold cut short: B's manifest written, its parts still there; they are counted once
    parts_of_b = {rel: out.read_json(rel) for rel in out.list_files(f"{PARTS_DIR}/{b}", ".json")}
    assert fold_input(out, b)
    for rel, record in parts_of_b.items():
        out.write_json(rel, record)
    assert totals(out) == before and [t["name"] for t in inputs_to_do(out, paths)] == [c]


def test_an_input_whose_parts_do_not_cover_its_records_is_not_folded(tmp_path):
    """A marker says 7 records but only 4 are committed (a batch lost with its worker): the input
    stays unfinished, its parts loose, and the resume check re-reads the rest."""
    out = Output(str(tmp_path / "out"))
    path = "/data/a.warc.gz"
    name = input_name(0, path)
    commit(out, name, path, range(0, 4))
    finish(out, name, path, 7)
    assert not fold_input(out, name) and not out.exists(f"{MANIFESTS_DIR}/{name}.json")
    assert json.loads(inputs_to_do(out, [path])[0]["skip"]) == [[0, 4]]


# ---------------------------------------------------------------- partitions


def test_auto_partitions_give_each_scope_group_its_own_about_one_gib_each():
    p = MinHashParams()  # 450 bands, partitions: auto
    per_doc = 40 * p.bands
    docs = np.array([3.5 * TARGET_SHUFFLE_BYTES / per_doc, 10, 0])  # ~3.5 GiB, a few docs, none
    layout = stage_partitions(p, docs, np.zeros(3))
    assert layout.counts.tolist() == [4, 1, 1] and layout.offsets.tolist() == [0, 4, 5] and layout.total == 6
    # a 1B-document crawl in 100 parts: ~17k partitions of ~1 GiB
    crawl = stage_partitions(p, np.full(100, 1e7), np.zeros(100))
    assert 16_000 < crawl.total < 17_500 and (crawl.counts == crawl.counts[0]).all()
    # an integer is shared by every group, as before
    fixed = stage_partitions(p.model_copy(update={"partitions": 7}), docs, np.zeros(3))
    assert fixed.total == 7 and fixed.offsets.tolist() == [0, 0, 0]


def test_a_groups_rows_stay_in_its_own_partitions_and_equal_buckets_meet():
    """Bucket rows of two scope groups with auto partitions: group 0's in 0..2, group 1's in 3;
    the same text in one group lands in the same partition (so it is found), across groups never."""
    p = ExactDedupParams()
    texts = [f"text {i % 50}" for i in range(400)]
    sources = ["a.warc.gz" if i < 300 else "b.warc.gz" for i in range(400)]
    table = pa.table({"id": [f"doc-{i}" for i in range(400)], "text": texts, "source": sources})
    layout = Partitions(np.array([0, 3]), np.array([3, 1]))
    rows = bucket_rows(table, p, np.empty(0, np.int64), {"a.warc.gz": 0, "b.warc.gz": 1}, None, layout)
    part, band, key = (rows.column(c).to_numpy() for c in ("part", "band", "key"))
    assert set(part[band == 0]) == {0, 1, 2} and set(part[band == 1]) == {3}
    for k in np.unique(key):
        for g in (0, 1):
            assert len(set(part[(key == k) & (band == g)])) <= 1


def test_dedup_slots_hold_one_scope_group_after_another():
    """The filtered files are dealt into slots by their input's part (then name), so a map task
    writes into its group's partitions, not into every one of the run's."""
    from refinery.dedup.scope import part_of
    from refinery.dedup_ray import by_group

    inputs = [f"/crawl/file-{i}.warc.gz" for i in range(12)]
    order_of = {path: part_of(path, 3) for path in inputs}
    files = [f"_filtered/{part_name(input_name(i, path), np.arange(k * 10, k * 10 + 10))}.parquet" for i, path in enumerate(inputs) for k in range(2)]
    ordered = by_group(sorted(files), inputs, order_of)
    groups = [order_of[inputs[int(rel.split("/")[1][:6])]] for rel in ordered]
    assert sorted(ordered) == sorted(files) and groups == sorted(groups) and len(set(groups)) == 3


def test_partitions_must_be_a_positive_number_or_auto():
    from pydantic import ValidationError

    assert MinHashParams(partitions=3).partitions == 3 and MinHashParams().partitions == "auto"
    for bad in (0, -2, "many"):
        with pytest.raises(ValidationError):
            MinHashParams(partitions=bad)


# ---------------------------------------------------------------- driver memory


DRIVER = textwrap.dedent('''
    """Two runs in one driver process: a warm-up of FEW inputs, then MANY; the driver's RSS
    sampled every 50 ms during each (its peak), printed as JSON."""
    import json, sys, threading
    from refinery import cli

    def rss():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))

    def run(config, output):
        peak, stop = [0], threading.Event()
        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], rss())
                stop.wait(0.05)
        t = threading.Thread(target=sample)
        t.start()
        rc = cli.main(["run", config, "--output", output, "--workers", "2"])
        stop.set()
        t.join()
        assert rc == 0, rc
        return {"peak": peak[0], "after": rss()}

    print(json.dumps([run(c, o) for c, o in zip(sys.argv[1::2], sys.argv[2::2])]))
''')


def deal_inputs(crawl_sample: Path, folder: Path, n: int) -> list[str]:
    """n one-record WARC files, crawl-sample's records dealt in turn (reused past its 1,171)."""
    records = raw_records(crawl_sample)
    folder.mkdir(parents=True)
    for i in range(n):
        (folder / f"in-{i:05d}.warc.gz").write_bytes(records[i % len(records)])
    return [str(folder / "*.warc.gz")]


def test_driver_memory_stays_flat_from_200_to_2200_inputs(data_dir, tmp_path):
    """`refinery run` over 200 then 2,200 one-record WARCs in one driver (URL filter only: the
    per-input work, not the stages, is what is measured). The driver's peak RSS may not grow by
    more than 12 KB per added input; before issue 18 (a reading task and a block per input, the
    driver reading every part's counts) it grew by ~57 KB per input."""
    crawl_sample = data_dir / "crawl-sample" / "real-pages.warc.gz"
    argv = []
    for n in (200, 2200):
        config = tmp_path / f"run-{n}.yaml"
        config.write_text(json.dumps({"input": deal_inputs(crawl_sample, tmp_path / f"in-{n}", n), "stages": [{"stage": "url_filter"}]}))
        argv += [str(config), str(tmp_path / f"out-{n}")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", DRIVER, *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    few, many = json.loads(proc.stdout.strip().splitlines()[-1])
    for n in (200, 2200):
        stats = json.loads((tmp_path / f"out-{n}" / "stats.json").read_text())
        assert stats["records_read"] == n and len(stats["inputs"]) == n
        assert len(list((tmp_path / f"out-{n}" / MANIFESTS_DIR).iterdir())) == n  # every input folded
    growth = (many["peak"] - few["peak"]) / 2000
    print(f"driver peak RSS {few['peak'] / 2**20:.0f} MB at 200 inputs, {many['peak'] / 2**20:.0f} MB at 2,200: {growth / 1024:+.1f} KB per input")
    assert growth < 12 * 1024, f"the driver grew {growth / 1024:.1f} KB per input ({few} -> {many})"
