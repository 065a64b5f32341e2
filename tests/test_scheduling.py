"""How the filter phase cuts its work into tasks (the part size derived from the inputs and CPUs)
and how its tasks share the CPUs."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from refinery.pipeline import MAX_COMMIT_ROWS, RECORD_BYTES, commit_rows


def test_few_large_files_spread_in_one_batch_parts():
    """crawl-sample x8 in 2 files (276 MB, 9,368 records) on 2 CPUs: one batch per part, so the
    records of each file spread over every CPU."""
    assert commit_rows(None, 128, 276_000_000, 2, 2) == 128
    assert commit_rows(None, 100, 276_000_000, 64, 200) == 100  # fewer than 8 files per CPU


def test_many_small_files_keep_one_batch_per_part():
    """2,000 one-record files (~60 MB): a file's records fit one batch."""
    assert commit_rows(None, 128, 2_000 * RECORD_BYTES, 2, 2_000) == 128


def test_many_large_files_make_about_a_file_per_part():
    assert commit_rows(None, 128, 100 * 1_000 * RECORD_BYTES, 2, 100) == 1_024  # ~1,000 records per file
    crawl = 90_000 * 1_000_000_000  # 90k WARCs of ~1 GB: ~33k records each
    assert commit_rows(None, 128, crawl, 64, 90_000) == MAX_COMMIT_ROWS
    assert commit_rows(64, 128, crawl, 64, 90_000) == 64  # commit_rows in the config wins
    assert commit_rows(None, 100, None, 2, 90_000) == 100  # sizes unknown (http inputs): one batch


# A reading operator like the filter phase's (pipeline.read_task_options) whose readers stream
# until the stage tasks after them were seen running two at a time, on a local Ray of 2 CPUs.
READERS_AND_STAGES = """
import os, sys, time
from pathlib import Path
import pyarrow as pa
import ray.data
from refinery import pipeline

marks = Path(sys.argv[1])
GAVE_UP = marks / "readers-gave-up"
OVERLAP = marks / "overlap"

def reader(batch):
    deadline = time.monotonic() + 60
    i = 0
    while not OVERLAP.exists():
        if time.monotonic() > deadline:
            GAVE_UP.touch()
            return
        yield pa.table({"x": [i]})
        i += 1
        time.sleep(0.2)

def stage(batch):
    me = marks / f"running-{os.getpid()}"
    me.touch()
    if not GAVE_UP.exists() and any(p.name.startswith("running-") and p != me for p in marks.iterdir()):
        OVERLAP.touch()  # two stage tasks at once while the readers stream
    time.sleep(0 if GAVE_UP.exists() else 0.5)  # once the readers gave up, the test has failed: finish fast
    me.unlink()
    return batch

pipeline.start_ray(2)
pipeline.configure_data_context()
ray.data.DataContext.get_current().target_max_block_size = 1  # each yield its own block, as a WARC reader's 16 MB
ds = ray.data.from_items([{"i": 0}, {"i": 1}], override_num_blocks=2)
ds = ds.map_batches(reader, batch_size=None, batch_format="pyarrow", **pipeline.read_task_options(2))
ds = ds.map_batches(stage, batch_size=1, batch_format="pyarrow")
for _ in ds.iter_batches(batch_size=None):
    pass
print("OVERLAP" if OVERLAP.exists() else "READERS GAVE UP" if GAVE_UP.exists() else "NEITHER")
ray.shutdown()
"""


def test_readers_leave_every_cpu_to_the_stage_tasks(tmp_path):
    """While the readers of the filter phase stream, the stage tasks run on every CPU: a reader's
    CPU request, however small, would leave 2 CPUs one stage task (Ray's accounting and Ray Data's
    budget both take it out of what the 1-CPU stage tasks can have), for as long as files are read."""
    env = os.environ.copy()
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([sys.executable, "-c", READERS_AND_STAGES, str(tmp_path)], capture_output=True, text=True,
                          timeout=300, cwd=Path(__file__).resolve().parents[1], env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "OVERLAP", proc.stdout[-2000:] + proc.stderr[-2000:]
