"""The end of a phase for a batch of rows: its removed rows per stage (if asked), then its counts,
written last, which commit it. Without Ray; the filter phase and the dedup phase both end here."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from refinery.io.storage import Output
from refinery.resume import FILTERED_DIR, REMOVED_LINES_DIR
from refinery.schema import REMOVED_COLUMNS, REMOVED_LINES, SHARD_COLUMNS
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
        if "removed_lines" in batch.column_names:
            lines = removed_lines(batch)
            for stage in pc.unique(lines.column("stage")).to_pylist():
                out.write_parquet(f"{REMOVED_LINES_DIR}/{stage}/{name}.parquet", lines.filter(pc.equal(lines.column("stage"), stage)))
    kept = batch.filter(pc.is_null(removed_by)).select(SHARD_COLUMNS)
    if extra is not None and kept.num_rows:
        out.write_parquet(f"{FILTERED_DIR}/{name}.parquet", kept)
    out.write_json(f"{parts_dir}/{name}.json", (counts or batch_counts(batch)) | (extra or {}))
    return kept


def removed_lines(batch: pa.Table) -> pa.Table:
    """One row per line a text-modifying stage removed (REMOVED_LINES), from the rows' lists."""
    lists = batch.column("removed_lines").combine_chunks()
    owner = batch.select(["id", "url", "source", "source_offset"]).take(pc.list_parent_indices(lists))
    flat = pc.list_flatten(lists)
    return pa.Table.from_arrays(owner.columns + flat.flatten(), schema=REMOVED_LINES)
