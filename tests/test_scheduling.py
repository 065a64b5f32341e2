"""How the filter phase cuts its work into tasks: the part size derived from the inputs and CPUs."""
from __future__ import annotations

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
