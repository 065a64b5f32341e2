"""The end of a phase for a batch of rows: its removed rows per stage (if asked), then its counts,
written last, which commit it. Without Ray; the filter phase and the dedup phase both end here."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from refinery.io.storage import Output
from refinery.resume import FILTERED_DIR
from refinery.schema import REMOVED_COLUMNS, SHARD_COLUMNS
from refinery.stats import batch_counts


def write_outcomes(out: Output, name: str, batch: pa.Table, write_removed: bool, parts_dir: str, extra: dict | None = None,
                   counts: dict | None = None, removed_elsewhere: frozenset = frozenset()) -> pa.Table:
    """Write, under `name`, the batch's removed rows per stage (if asked; not those of the
    stages in `removed_elsewhere`, which write their own), then its counts (`counts`, default
    `batch_counts(batch)`, plus `extra`); return the kept rows. With `extra` (the filter phase's
    part info), the kept rows are written to `_filtered/` too."""
    removed_by = batch.column("removed_by")
    if write_removed:
        columns = [c for c in REMOVED_COLUMNS + ["duplicate_of"] if c in batch.column_names]
        for stage in set(removed_by.to_pylist()) - {None} - removed_elsewhere:
            rows = batch.filter(pc.equal(removed_by, stage)).select(columns)
            out.write_parquet(f"removed/{stage}/{name}.parquet", rows)
    kept = batch.filter(pc.is_null(removed_by)).select(SHARD_COLUMNS)
    if extra is not None and kept.num_rows:
        out.write_parquet(f"{FILTERED_DIR}/{name}.parquet", kept)
    out.write_json(f"{parts_dir}/{name}.json", (counts or batch_counts(batch)) | (extra or {}))
    return kept
