"""The only module that knows Ray: it starts or joins Ray and wires the stages into a Ray Data
plan. Reading is one task per WARC file streaming blocks of records; the stages and the commit
of each batch run fused, one task per block, on every worker; a final pass (dedup, or plain
compaction) writes the shards. What is committed where, for resuming: refinery.resume."""
from __future__ import annotations

import json
import logging
import os
import time
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from refinery.ablation import Arm, arm_views, discard_parts_not_in
from refinery.config import RunConfig
from refinery.io.sources import list_inputs, open_input
from refinery.io.storage import Output
from refinery.io.warc import ReadParams, read_warc
from refinery.dedup.clusters import doc_ids_from_strings
from refinery.dedup.phase import EDGE_SCHEMA, REASONS, UrlDedupParams, bucket_rows, partition_edges, removals
from refinery.crash_guard import ATTEMPTS_DIR, guarded
from refinery.resume import (
    COMPLETE, FILTERED_DIR, INPUTS_DIR, PARTS_DIR, REMOVED_LINES_DIR, RESUME, STAGING_DIR,
    as_ranges, discard_unfinished, inputs_to_do, open_run, part_name,
)
from refinery.schema import REMOVED_COLUMNS, REMOVED_LINES, SHARD, SHARD_COLUMNS, ids_hash
from refinery.stages import apply_stage
from refinery.stats import KEPT, batch_counts, format_table, funnel, merge_counts

log = logging.getLogger(__name__)

# Ray rewrites 127.0.0.1 to the host's interface address; any other loopback address is kept,
# so a local run talks to nothing but loopback. (Ray 2.60's own servers still listen on all
# interfaces: its gRPC ports, behind token auth, and its Prometheus metrics ports.)
LOCAL_NODE_IP = os.environ.get("REFINERY_NODE_IP", "127.0.0.2")
DEDUP_PARTS_DIR = "_parts_dedup"
BUCKETS_DIR = "_buckets"
# Ray retries a task whose worker died, by default forever; the crash guard needs two retries
# per record that kills its worker, so this bounds a batch to a few such records.
MAX_TASK_RETRIES = 8
# The final pass reads the committed parts in tasks of consecutive files, at most this many each.
READ_FILES_PER_TASK = 64


def start_ray(workers: int | None) -> None:
    """Join the cluster named by RAY_ADDRESS, or start a local Ray for this run (token auth,
    which Ray 2.60 turns on for new local clusters, is set up by Ray itself)."""
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=False)
    else:
        # a local run phones nowhere: Ray's usage reporting is off unless the user turns it on
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(num_cpus=workers, _node_ip_address=LOCAL_NODE_IP, include_dashboard=False, log_to_driver=False)


def read_files(batch: pa.Table, read: ReadParams, output: str):
    """Records of each input, numbered, less those a previous attempt committed; at the end of
    an input, its record count (which tells a re-run when the input is finished)."""
    out = Output(output)
    for path, name, skip in zip(*(batch.column(c).to_pylist() for c in ("path", "name", "skip"))):
        skip = json.loads(skip)
        n = 0
        with open_input(path) as stream:
            for rows in read_warc(stream, path, read):
                index = np.arange(n, n + rows.num_rows)
                n += rows.num_rows
                rows = rows.set_column(rows.schema.get_field_index("source_record"), "source_record", pa.array(index))
                todo = np.ones(len(index), dtype=bool)
                for a, b in skip:
                    todo &= (index < a) | (index >= b)
                if todo.any():
                    yield rows.filter(pa.array(todo))
        out.write_json(f"{INPUTS_DIR}/{name}.json", {"path": path, "records": n})


# Stages that run native code (lexbor, lxml, fastText), which can take their worker down; the
# guard costs three small requests per batch on object storage, so pure-Python stages go without.
GUARDED_STAGES = {"language_prefilter", "extract", "language"}


def named_stage(name: str):
    """apply_stage under the stage's name (so Ray's progress bars say which stage is which),
    guarded against records that kill their worker."""

    def stage(batch: pa.Table, p, keep_removed_text: bool, output: str) -> pa.Table:
        if name not in GUARDED_STAGES:
            return apply_stage(batch, p, keep_removed_text)
        return guarded(batch, name, lambda b: apply_stage(b, p, keep_removed_text), Output(output))

    stage.__name__ = stage.__qualname__ = name
    return stage


def write_outcomes(out: Output, name: str, batch: pa.Table, write_removed: bool, parts_dir: str, extra: dict | None = None) -> pa.Table:
    """The end of a phase for a batch: its removed rows per stage (if asked), then its counts,
    written last, under `name`; returns the kept rows."""
    removed_by = batch.column("removed_by")
    if write_removed:
        columns = [c for c in REMOVED_COLUMNS + ["duplicate_of"] if c in batch.column_names]
        for stage in set(removed_by.to_pylist()) - {None}:
            rows = batch.filter(pc.equal(removed_by, stage)).select(columns)
            out.write_parquet(f"removed/{stage}/{name}.parquet", rows)
        if "removed_lines" in batch.column_names:
            lines = removed_lines(batch)
            for stage in pc.unique(lines.column("stage")).to_pylist():
                out.write_parquet(f"{REMOVED_LINES_DIR}/{stage}/{name}.parquet", lines.filter(pc.equal(lines.column("stage"), stage)))
    kept = batch.filter(pc.is_null(removed_by)).select(SHARD_COLUMNS)
    if extra is not None and kept.num_rows:
        out.write_parquet(f"{FILTERED_DIR}/{name}.parquet", kept)
    out.write_json(f"{parts_dir}/{name}.json", batch_counts(batch) | (extra or {}))
    return kept


def removed_lines(batch: pa.Table) -> pa.Table:
    """One row per line a text-modifying stage removed (REMOVED_LINES), from the rows' lists."""
    lists = batch.column("removed_lines").combine_chunks()
    owner = batch.select(["id", "url", "source", "source_offset"]).take(pc.list_parent_indices(lists))
    flat = pc.list_flatten(lists)
    return pa.Table.from_arrays(owner.columns + flat.flatten(), schema=REMOVED_LINES)


def commit_parts(batch: pa.Table, output: str, names: dict[str, str], write_removed: bool) -> pa.Table:
    """Commit a batch of the filter phase, one part per input it holds (see refinery.resume)."""
    out = Output(output)
    sources = batch.column("source")
    committed = 0
    for source in pc.unique(sources).to_pylist():
        rows = batch.filter(pc.equal(sources, source))
        records = rows.column("source_record").to_numpy()
        name = part_name(names[source], records)
        write_outcomes(out, name, rows, write_removed, PARTS_DIR, {"input": names[source], "ranges": as_ranges(records)})
        committed += rows.num_rows
    return pa.table({"records": [committed]})


def dedup_outcomes(batch: pa.Table, output: str, write_removed: bool) -> pa.Table:
    return write_outcomes(Output(output), ids_hash(batch), batch, write_removed, DEDUP_PARTS_DIR)


def run(cfg: RunConfig, overwrite: bool = False) -> dict:
    """Run the filter phase over the inputs not finished yet, then the final pass (dedup if
    configured, else compaction into shards); returns the stats also written to OUTPUT/stats.json.
    Re-running the command of an interrupted run resumes it (refinery.resume)."""
    files = list_inputs(cfg.input)
    out = Output(cfg.output)
    state = open_run(out, cfg, files, overwrite)
    if state == COMPLETE:
        log.warning("%s holds a finished run of this config: nothing to do", out.uri)
        return out.read_json("stats.json")
    if state == RESUME:
        discard_unfinished(out, [p.stage for p in cfg.dedup])
    start_ray(cfg.workers)
    configure_data_context()

    started = time.monotonic()
    todo = inputs_to_do(out, files)
    if todo:
        filter_phase(cfg, todo, out)
    return final_pass(cfg, out, files, {"filter_phase": round(time.monotonic() - started, 2)})


def final_pass(cfg: RunConfig, out: Output, files: list[str], seconds: dict) -> dict:
    """After the filter phase: dedup (if configured) or compaction, the shards, stats.json."""
    counts = merge_counts(out.read_jsons(out.list_files(PARTS_DIR, ".json")))
    dedup_info = {}
    started = time.monotonic()
    if cfg.dedup:
        dedup_info = dedup_phase(cfg, out)
        seconds["dedup_phase"] = round(time.monotonic() - started, 2)
        dedup_counts = merge_counts(out.read_jsons(out.list_files(DEDUP_PARTS_DIR, ".json")))
        counts = replace_kept(counts, dedup_counts)
    else:
        compact(cfg, out)
        seconds["compaction"] = round(time.monotonic() - started, 2)
    publish_shards(out)
    stats = funnel(counts, [s.stage for s in cfg.stages], [p.stage for p in cfg.dedup])
    stats["dedup"] = dedup_info
    stats["inputs"] = files
    stats["seconds"] = seconds
    out.write_json("stats.json", stats)
    for rel in (FILTERED_DIR, ATTEMPTS_DIR, STAGING_DIR):
        out.delete(rel)
    return stats


def run_ablation(cfg: RunConfig, arms: list[Arm], overwrite: bool = False) -> list[dict]:
    """The data of an ablation of `cfg` (refinery.ablation): one filter phase that reads and
    extracts every record once and commits each arm's view of every batch to the arm's output,
    then each arm's final pass. Each arm's output is that of a standalone run of its config and
    resumes like one; the last arm's committed parts say what the shared pass has done."""
    files = list_inputs(cfg.input)
    outs = [Output(arm.config.output) for arm in arms]
    states = [open_run(out, arm.config, files, overwrite) for out, arm in zip(outs, arms)]
    if all(state == COMPLETE for state in states):
        return [out.read_json("stats.json") for out in outs]
    committed = {rel.rsplit("/", 1)[-1].removesuffix(".json") for rel in outs[-1].list_files(PARTS_DIR, ".json")}
    for out, arm, state in zip(outs, arms, states):
        if state == RESUME:
            discard_unfinished(out, [p.stage for p in arm.config.dedup])
            discard_parts_not_in(out, committed)
    start_ray(cfg.workers)
    configure_data_context()
    started = time.monotonic()
    todo = inputs_to_do(outs[-1], files)
    if todo:
        ds = read_records(cfg, todo, outs[-1])
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")  # as in filter_phase
            ds = ds.map_batches(
                commit_arm_parts,
                batch_size=cfg.read.batch_records,
                batch_format="pyarrow",
                fn_kwargs={"stages": list(cfg.stages), "arms": arms, "outputs": [o.uri for o in outs],
                           "names": {t["path"]: t["name"] for t in todo}, "write_removed": cfg.write_removed},
                max_retries=MAX_TASK_RETRIES,
            )
        for _ in ds.iter_batches(batch_size=None):
            pass
    seconds = {"filter_phase_shared": round(time.monotonic() - started, 2)}
    stats = [out.read_json("stats.json") if state == COMPLETE else final_pass(arm.config, out, files, dict(seconds))
             for out, arm, state in zip(outs, arms, states)]
    import ray

    ray.shutdown()  # training comes next, in this process: a local Ray's workers would only take memory
    return stats


def commit_arm_parts(batch: pa.Table, stages: list, arms: list[Arm], outputs: list[str], names: dict[str, str], write_removed: bool) -> pa.Table:
    """A batch of an ablation's shared pass: each arm's view of it committed to the arm's
    output, the last arm last (its parts mark what is done)."""
    views = arm_views(batch, stages, arms, write_removed,
                      apply=lambda b, p: named_stage(p.stage)(b, p, write_removed, outputs[-1]))
    for view, output in zip(views, outputs):
        commit_parts(view, output, names, write_removed)
    return pa.table({"records": [batch.num_rows]})


def configure_data_context() -> None:
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # same inputs, same shards
    ctx.target_max_block_size = 16 * 1024 * 1024  # several blocks per WARC file, so one file spreads over workers


def read_records(cfg: RunConfig, todo: list[dict], out: Output):
    """The records of the inputs to do, as a dataset (input markers written to `out`)."""
    import ray.data

    ds = ray.data.from_items(todo, override_num_blocks=len(todo))
    # A fractional CPU keeps reading from fusing with the stages, so the blocks of one file
    # are processed in parallel rather than in the reading task.
    ds = ds.map_batches(read_files, batch_size=1, batch_format="pyarrow", fn_kwargs={"read": cfg.read, "output": out.uri}, num_cpus=0.25)
    return ds.limit(cfg.limit) if cfg.limit else ds


def filter_phase(cfg: RunConfig, todo: list[dict], out: Output) -> None:
    """Every record of the inputs to do through the stages, committed in parts."""
    ds = read_records(cfg, todo, out)
    with warnings.catch_warnings():
        # max_retries has no named parameter in Ray 2.60: it travels in ray_remote_args, which
        # Ray deprecates for 2.64 (pyproject keeps ray below 2.64). Only that warning is silenced.
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        for params in cfg.stages:
            ds = ds.map_batches(
                named_stage(params.stage),
                batch_size=cfg.read.batch_records,
                batch_format="pyarrow",
                fn_kwargs={"p": params, "keep_removed_text": cfg.write_removed, "output": out.uri},
                max_retries=MAX_TASK_RETRIES,
            )
        # Ray Data fuses this step with the stages and gives the fused task the larger batch, so
        # `commit_rows` is also the rows per task (see RunConfig.commit_rows).
        ds = ds.map_batches(
            commit_parts,
            batch_size=cfg.commit_rows or cfg.read.batch_records,
            batch_format="pyarrow",
            fn_kwargs={"output": out.uri, "names": {t["path"]: t["name"] for t in todo}, "write_removed": cfg.write_removed},
            max_retries=MAX_TASK_RETRIES,
        )
    for _ in ds.iter_batches(batch_size=None):
        pass


def compact(cfg: RunConfig, out: Output) -> None:
    """Without dedup, the final pass only gathers the committed parts' kept rows into shards."""
    import ray.data

    files = out.list_files(FILTERED_DIR, ".parquet")
    ds = read_filtered(out, files) if files else ray.data.from_arrow(SHARD.empty_table())
    ds.write_parquet(out.path(STAGING_DIR), filesystem=out.fs, min_rows_per_file=cfg.shard_rows, compression="zstd")


def publish_shards(out: Output) -> None:
    """The final pass writes shards under a staging folder; only whole files move to `shards/`,
    renamed in order, so no reader ever sees a partial shard under its final name."""
    for i, rel in enumerate(out.list_files(STAGING_DIR, ".parquet")):
        out.move(rel, f"shards/part-{i:05d}.parquet")


def dedup_phase(cfg: RunConfig, out: Output) -> dict:
    """Global dedup over the filtered shards, stage after stage (a stage sees only what the
    previous ones kept). Workers turn documents into bucket rows and write them to the output,
    one file per shuffle partition (`_buckets/<stage>/<partition>/`); then one task per
    partition reads its files and reduces them to edges (duplicate -> kept doc); only the edges
    reach the driver, which finds clusters. The shuffle goes through storage, not Ray's object
    store: at 450 bands the bucket rows are ~18 KB per document, more than a node's memory
    on a real crawl, and Ray's shuffle keeps per-block state on the driver that grows with the
    corpus. So the driver holds O(duplicates) ids, never anything per document. Then one
    pass writes the final shards."""
    import ray
    import ray.data

    files = out.list_files(FILTERED_DIR, ".parquet")
    info: dict = {}
    removed = {"doc": [np.empty(0, np.int64)], "kept": [np.empty(0, np.int64)], "stage": []}
    if files:
        for p in cfg.dedup:
            columns = ["id", "url", "date"] if isinstance(p, UrlDedupParams) else ["id", "text"]
            excluded = np.concatenate(removed["doc"])
            folder = f"{BUCKETS_DIR}/{p.stage}"
            written = read_filtered(out, files, columns).map_batches(
                write_buckets, batch_format="pyarrow", fn_kwargs={"p": p, "excluded": excluded, "output": out.uri, "folder": folder}
            )
            for _ in written.iter_batches(batch_size=None):
                pass
            # a few reduce tasks per CPU, each taking its partitions one after the other: one task
            # per partition would cost more in scheduling than small partitions take to reduce
            tasks = min(p.partitions, 4 * max(1, int(ray.cluster_resources().get("CPU", 1))))
            edges = ray.data.from_items([{"part": i} for i in range(p.partitions)], override_num_blocks=tasks).map_batches(
                reduce_buckets, batch_size=None, batch_format="pyarrow", fn_kwargs={"output": out.uri, "folder": folder}
            )
            pairs = [np.stack([b["doc"], b["kept"]], axis=1) for b in edges.iter_batches(batch_format="numpy")]
            out.delete(folder)
            doc, kept, sizes = removals(p, np.concatenate(pairs) if pairs else np.empty((0, 2), np.int64))
            removed["doc"].append(doc)
            removed["kept"].append(kept)
            removed["stage"].append(np.full(len(doc), len(info), dtype=np.int64))
            info[p.stage] = {"removed": int(len(doc)), "cluster_sizes": {str(k): v for k, v in sorted(sizes.items())}}
        doc = np.concatenate(removed["doc"])
        order = np.argsort(doc)
        plan = {
            "doc": doc[order],
            "kept": np.concatenate(removed["kept"])[order],
            "stage": np.concatenate(removed["stage"] or [np.empty(0, np.int64)])[order],
            "stages": [p.stage for p in cfg.dedup],
        }
        if cfg.write_removed:
            plan["kept_names"] = kept_doc_names(read_filtered(out, files, ["id"]), plan["kept"])
        final = read_filtered(out, files).map_batches(
            mark_duplicates, batch_format="pyarrow", fn_kwargs={"plan": ray.put(plan), "keep_removed_text": cfg.write_removed}
        )
    else:
        final = ray.data.from_arrow(SHARD.empty_table())
    final = final.map_batches(dedup_outcomes, batch_format="pyarrow", fn_kwargs={"output": out.uri, "write_removed": cfg.write_removed})
    final.write_parquet(out.path(STAGING_DIR), filesystem=out.fs, min_rows_per_file=cfg.shard_rows, compression="zstd")
    return info


def read_filtered(out: Output, files: list[str], columns: list[str] | None = None):
    """The kept rows the filter phase committed (`files`, under `_filtered/`), in order, as a
    dataset of blocks of about DataContext.target_max_block_size.

    Not ray.data.read_parquet: Ray 2.60's reader starts a pool of footer-reading actors (new
    worker processes) for every pass over the files, 1-2 s a pass whatever the data size, and
    dedup passes over them once per stage and once or twice more for the shards. Plain tasks
    over the file list cost milliseconds; each reads whole files, so no footer is needed first."""
    import ray
    import ray.data

    # consecutive files per task: a few tasks per CPU, and at most READ_FILES_PER_TASK files each
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    tasks = min(len(files), max(4 * cpus, -(-len(files) // READ_FILES_PER_TASK)))
    groups = [list(g) for g in np.array_split(np.array(files, dtype=object), tasks)]
    block_bytes = ray.data.DataContext.get_current().target_max_block_size
    return ray.data.from_items([{"files": g} for g in groups], override_num_blocks=len(groups)).map_batches(
        read_parts, batch_size=1, batch_format="pyarrow", fn_kwargs={"output": out.uri, "columns": columns, "block_bytes": block_bytes}
    )


def read_parts(batch: pa.Table, output: str, columns: list[str] | None, block_bytes: int):
    """The rows of the batch's files, in order, yielded in tables of about `block_bytes`."""
    out = Output(output)
    schema = SHARD if columns is None else pa.schema([SHARD.field(c) for c in columns])
    tables, size = [], 0
    for rel in batch.column("files")[0].as_py():
        table = pq.read_table(out.path(rel), columns=schema.names, filesystem=out.fs).cast(schema)
        tables.append(table)
        size += table.nbytes
        if size >= block_bytes:
            yield pa.concat_tables(tables)
            tables, size = [], 0
    if tables:
        yield pa.concat_tables(tables)


def write_buckets(batch: pa.Table, p, excluded: np.ndarray, output: str, folder: str) -> pa.Table:
    """The map side of the dedup shuffle: a batch's bucket rows, one file per partition."""
    out = Output(output)
    rows = bucket_rows(batch, p, excluded)
    if not rows.num_rows:
        return pa.table({"rows": [0]})
    part = rows.column("part").to_numpy()
    order = np.argsort(part, kind="stable")
    rows, part = rows.take(order), part[order]
    starts = np.flatnonzero(np.r_[True, part[1:] != part[:-1]])
    name = ids_hash(batch)
    for start, end in zip(starts, [*starts[1:], len(part)]):
        out.write_parquet(f"{folder}/{part[start]:05d}/{name}.parquet", rows.slice(start, end - start))
    return pa.table({"rows": [rows.num_rows]})


def reduce_buckets(batch: pa.Table, output: str, folder: str) -> pa.Table:
    """The reduce side: the bucket rows of each partition of the batch, reduced to edges."""
    out = Output(output)
    edges = [EDGE_SCHEMA.empty_table()]
    for part in batch.column("part").to_pylist():
        files = [out.path(f) for f in out.list_files(f"{folder}/{part:05d}", ".parquet")]
        if files:
            edges.append(partition_edges(pa.concat_tables(pq.read_table(f, filesystem=out.fs) for f in files)))
    return pa.concat_tables(edges)


def kept_doc_names(ids, kept: np.ndarray) -> dict[int, str]:
    """The string ids of the documents kept in duplicates' places (one small pass over ids),
    so removed rows can name what they duplicate."""
    wanted = np.unique(kept)

    def names(batch: pa.Table) -> pa.Table:
        ints = doc_ids_from_strings(batch.column("id").to_pylist())
        hit = np.isin(ints, wanted)
        return pa.table({"int": ints[hit], "id": batch.column("id").filter(pa.array(hit))})

    found = ids.map_batches(names, batch_format="pyarrow")
    return {int(r["int"]): r["id"] for r in found.iter_rows()}


def mark_duplicates(batch: pa.Table, plan, keep_removed_text: bool) -> pa.Table:
    """Shard rows marked with the dedup stage that removes them (if any) and the id of the
    document kept in their place, in the columns the outcome recorder counts."""
    import ray

    plan = ray.get(plan) if isinstance(plan, ray.ObjectRef) else plan
    ints = doc_ids_from_strings(batch.column("id").to_pylist())
    pos = np.minimum(np.searchsorted(plan["doc"], ints), max(len(plan["doc"]) - 1, 0))
    hit = (plan["doc"][pos] == ints) if len(plan["doc"]) else np.zeros(len(ints), dtype=bool)
    stages = [plan["stages"][plan["stage"][i]] if h else None for i, h in zip(pos, hit)]
    names = plan.get("kept_names", {})
    duplicate_of = [names.get(int(plan["kept"][i]), str(int(plan["kept"][i]))) if h else None for i, h in zip(pos, hit)]
    text = batch.column("text")
    if not keep_removed_text:
        text = pc.if_else(pa.array(hit), pa.scalar(None, text.type), text)
    return batch.set_column(batch.schema.get_field_index("text"), "text", text).append_column(
        "record_type", pa.array(["response"] * batch.num_rows)
    ).append_column("removed_by", pa.array(stages, pa.string())).append_column(
        "reason", pa.array([REASONS[s] if s else None for s in stages], pa.string())
    ).append_column("duplicate_of", pa.array(duplicate_of, pa.string()))


def replace_kept(filter_counts: dict, dedup_counts: dict) -> dict:
    """The filter phase's `kept` documents are exactly the dedup phase's input: swap them for
    the dedup phase's outcomes, so the funnel continues through dedup."""
    merged = dict(filter_counts)
    merged["outcomes"] = {k: v for k, v in filter_counts["outcomes"].items() if k != KEPT} | dedup_counts["outcomes"]
    merged["struck"] = filter_counts["struck"] | dedup_counts["struck"]  # each phase strikes in its own stages
    return merged


def summary(stats: dict) -> str:
    return format_table(stats)
