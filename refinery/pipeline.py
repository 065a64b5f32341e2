"""The only module that knows Ray: it starts or joins Ray and wires the stages into a Ray Data
plan. Reading is one task per WARC file streaming blocks of records; the stages and the
outcome recorder run fused, one task per block, on every worker; kept rows go to Parquet."""
from __future__ import annotations

import logging
import os

import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from refinery.config import RunConfig
from refinery.io.sources import list_inputs, open_input
from refinery.io.storage import Output
from refinery.io.warc import ReadParams, read_warc
from refinery.schema import REMOVED_COLUMNS, SHARD_COLUMNS
from refinery.stages import apply_stage
from refinery.stats import batch_counts, format_table, funnel, merge_counts

log = logging.getLogger(__name__)

# Ray rewrites 127.0.0.1 to the host's interface address; any other loopback address is kept,
# so a local run never listens on or talks to anything but loopback.
LOCAL_NODE_IP = os.environ.get("REFINERY_NODE_IP", "127.0.0.2")
PARTS_DIR = "_parts"


def start_ray(workers: int | None) -> None:
    """Join the cluster named by RAY_ADDRESS, or start a local Ray for this run (token auth,
    which Ray 2.60 turns on for new local clusters, is set up by Ray itself)."""
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=False)
    else:
        ray.init(num_cpus=workers, _node_ip_address=LOCAL_NODE_IP, include_dashboard=False, log_to_driver=False)


def read_files(batch: pa.Table, read: ReadParams):
    for path in batch.column("path").to_pylist():
        with open_input(path) as stream:
            yield from read_warc(stream, path, read)


def named_stage(name: str):
    """apply_stage under the stage's name, so Ray's progress bars say which stage is which."""

    def stage(batch: pa.Table, p, keep_removed_text: bool) -> pa.Table:
        return apply_stage(batch, p, keep_removed_text)

    stage.__name__ = stage.__qualname__ = name
    return stage


def _batch_key(batch: pa.Table) -> str:
    h = xxhash.xxh64()
    for rid in batch.column("id").to_pylist():
        h.update(((rid or "") + "\n").encode())
    return h.hexdigest()


def record_outcomes(batch: pa.Table, output: str, write_removed: bool) -> pa.Table:
    """The end of the filter phase for one batch: write its counts (and, if asked, its removed
    rows per stage) under names derived from its ids, so a retried task overwrites rather than
    doubles them; pass the kept rows on to the shard writer."""
    out = Output(output)
    key = _batch_key(batch)
    out.write_json(f"{PARTS_DIR}/{key}.json", batch_counts(batch))
    removed_by = batch.column("removed_by")
    if write_removed:
        for stage in set(removed_by.to_pylist()) - {None}:
            rows = batch.filter(pc.equal(removed_by, stage)).select(REMOVED_COLUMNS)
            out.write_parquet(f"removed/{stage}/part-{key}.parquet", rows)
    return batch.filter(pc.is_null(removed_by)).select(SHARD_COLUMNS)


def prepare_output(out: Output, overwrite: bool) -> None:
    if not out.is_empty():
        if not overwrite:
            raise FileExistsError(f"output {out.uri} is not empty: pass --overwrite to replace it")
        out.clear()


def run(cfg: RunConfig, overwrite: bool = False) -> dict:
    """Run the filter phase; returns the stats also written to OUTPUT/stats.json."""
    import ray
    import ray.data

    files = list_inputs(cfg.input)
    out = Output(cfg.output)
    prepare_output(out, overwrite)
    start_ray(cfg.workers)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # same inputs, same shards
    ctx.target_max_block_size = 16 * 1024 * 1024  # several blocks per WARC file, so one file spreads over workers

    ds = ray.data.from_items([{"path": f} for f in files], override_num_blocks=max(1, len(files)))
    # A fractional CPU keeps reading from fusing with the stages, so the blocks of one file
    # are processed in parallel rather than in the reading task.
    ds = ds.map_batches(read_files, batch_size=1, batch_format="pyarrow", fn_kwargs={"read": cfg.read}, num_cpus=0.25)
    if cfg.limit:
        ds = ds.limit(cfg.limit)
    for params in cfg.stages:
        ds = ds.map_batches(
            named_stage(params.stage),
            batch_size=cfg.read.batch_records,
            batch_format="pyarrow",
            fn_kwargs={"p": params, "keep_removed_text": cfg.write_removed},
        )
    ds = ds.map_batches(
        record_outcomes,
        batch_size=cfg.read.batch_records,
        batch_format="pyarrow",
        fn_kwargs={"output": out.uri, "write_removed": cfg.write_removed},
    )
    ds.write_parquet(out.path("shards"), filesystem=out.fs, min_rows_per_file=cfg.shard_rows, compression="zstd")
    parts = [out.read_json(rel) for rel in out.list_files(PARTS_DIR, ".json")]
    stats = funnel(merge_counts(parts), [s.stage for s in cfg.stages])
    stats["inputs"] = files
    out.write_json("stats.json", stats)
    return stats


def summary(stats: dict) -> str:
    return format_table(stats)
