"""How the filter phase cuts its work into tasks: the part size derived from the inputs and CPUs."""
from __future__ import annotations

from refinery.pipeline import MAX_COMMIT_ROWS, RECORD_BYTES, TASKS_PER_CPU, commit_rows


def tasks(records: int, rows: int) -> int:
    return -(-records // rows)


def test_few_large_files_spread_over_every_cpu():
    """crawl-sample x8 in 2 files (276 MB, 9,368 records) on 2 CPUs: parts several batches long,
    and enough of them (about TASKS_PER_CPU per CPU) that no CPU idles long at the end."""
    rows = commit_rows(None, 128, 276_000_000, 2)
    assert rows % 128 == 0 and 128 < rows <= 1024
    assert TASKS_PER_CPU * 2 - 2 <= tasks(9_368, rows) <= TASKS_PER_CPU * 2 + 2
    # twice the CPUs, smaller parts: still about TASKS_PER_CPU tasks per CPU (parts are whole batches)
    assert TASKS_PER_CPU * 4 - 8 <= tasks(9_368, commit_rows(None, 128, 276_000_000, 4)) <= TASKS_PER_CPU * 4


def test_many_small_files_keep_one_batch_per_part():
    """2,000 one-record files (~60 MB): the smallest part, one batch, so every CPU has work."""
    assert commit_rows(None, 128, 2_000 * RECORD_BYTES, 2) == 128


def test_a_crawl_is_capped_and_the_config_wins():
    crawl = 90_000 * 1_000_000_000  # 90k WARCs of ~1 GB
    assert commit_rows(None, 128, crawl, 64) == MAX_COMMIT_ROWS
    assert commit_rows(64, 128, crawl, 64) == 64  # commit_rows in the config
    assert commit_rows(None, 100, None, 2) == 100  # sizes unknown (http inputs): one batch per part
