"""With `dedup_ray.py` (the dedup phase), the only module that knows Ray: it starts or joins Ray
and wires the stages into a Ray Data plan. Reading is one task per WARC file streaming blocks of records; the stages and the commit
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

from refinery import console
from refinery.ablation import Arm, arm_views, discard_parts_not_in
from refinery.config import RunConfig
from refinery.io.sources import list_inputs, open_input
from refinery.io.storage import Output
from refinery.io.warc import ReadInterrupted, ReadParams, error_row, read_warc
from refinery.dedup_ray import DEDUP_PARTS_DIR, cpus, dedup_phase, drain, file_slots, read_filtered
from refinery.outcomes import write_outcomes
from refinery.crash_guard import ATTEMPTS_DIR, guarded
from refinery.resume import (
    COMPLETE, FAILED_DIR, FAILED_INPUTS, FILTERED_DIR, INPUTS_DIR, NETWORK_FAILED, PARTS_DIR, RESUME, STAGING_DIR,
    InputsFailed, accepted_failures, as_ranges, committed_counts, committed_records, discard_unfinished, failed_inputs,
    fold_input, input_name, inputs_to_do, inputs_to_fold, open_run, part_name, stem,
)
from refinery.schema import SHARD, rows_from_pylist
from refinery.stages import apply_stage
from refinery.report.run import REPORT_FILE, build_report
from refinery.stats import KEPT, format_table, funnel, merge_counts

log = logging.getLogger(__name__)

# Ray rewrites 127.0.0.1 to the host's interface address; any other loopback address is kept,
# so a local run talks to nothing but loopback. (Ray 2.60's own servers still listen on all
# interfaces: its gRPC ports, behind token auth, and its Prometheus metrics ports.)
LOCAL_NODE_IP = os.environ.get("REFINERY_NODE_IP", "127.0.0.2")
# Ray retries a task whose worker died, by default forever; the crash guard needs two retries
# per record that kills its worker, so this bounds a batch to a few such records.
MAX_TASK_RETRIES = 8
# Reading tasks per CPU: each reads its share of the inputs one after the other. Enough to keep
# every CPU fed (at most one runs per CPU; READ_CPUS), few enough that the driver's Ray bookkeeping,
# which grows with every task and block it has run, does not grow with a crawl's ~90k inputs.
READ_TASKS_PER_CPU = 8


def start_ray(workers: int | None, out: Output | None = None) -> None:
    """Join the cluster named by RAY_ADDRESS, or start a local Ray for this run (token auth,
    which Ray 2.60 turns on for new local clusters, is set up by Ray itself). In a quiet run
    (refinery.console), Ray's logging goes to a file, under `out` when it is local. A Ray
    already up in this process is used as it is."""
    import ray

    if ray.is_initialized():
        return
    console.route_ray_logging(out)
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=False)
    else:
        # a local run phones nowhere: Ray's usage reporting is off unless the user turns it on
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(num_cpus=workers, _node_ip_address=LOCAL_NODE_IP, include_dashboard=False, log_to_driver=False)
    console.ray_started()


def read_files(batch: pa.Table, read: ReadParams, output: str):
    """Records of each input from its start point, numbered, less those a previous attempt
    committed; at the end of an input, its record count (which tells a re-run when the input is
    finished). An input whose stream fails after its retries is left unfinished, with a note of
    the error and of where to read on (`_failed/`), and the others go on: raising here would
    fail the whole Ray Data plan. Small inputs' records are yielded together, in blocks of about
    `read.batch_records`: a block per input would cost the driver's bookkeeping per input."""
    pending: list[pa.Table] = []
    for rows in read_inputs(batch, read, output):
        pending.append(rows)
        if sum(t.num_rows for t in pending) >= read.batch_records:
            yield pa.concat_tables(pending)
            pending = []
    if pending:
        yield pa.concat_tables(pending)


def read_inputs(batch: pa.Table, read: ReadParams, output: str):
    out = Output(output)
    # failure notes of an earlier run (or attempt of this task), deleted when their input is read through
    notes = {stem(rel) for rel in out.list_files(FAILED_DIR, ".json")}
    for path, name, skip, start in zip(*(batch.column(c).to_pylist() for c in ("path", "name", "skip", "start"))):
        skip = json.loads(skip)
        n, offset = json.loads(start)
        try:
            with open_input(path, read.retry, offset) as stream:
                for rows in read_warc(stream, path, read, n, offset):
                    index = np.arange(n, n + rows.num_rows)
                    n += rows.num_rows
                    rows = rows.set_column(rows.schema.get_field_index("source_record"), "source_record", pa.array(index))
                    todo = np.ones(len(index), dtype=bool)
                    for a, b in skip:
                        todo &= (index < a) | (index >= b)
                    if todo.all():  # none of these rows committed before: no copy (a filter per small input costs 0.25 ms)
                        yield rows
                    elif todo.any():
                        yield rows.filter(pa.array(todo))
        except ReadInterrupted as e:
            log.error("%s: %s", path, e)
            out.write_json(f"{FAILED_DIR}/{name}.json", {"path": path, "error": str(e.error), "record": e.record, "offset": e.offset})
            continue
        if name in notes:
            out.delete(f"{FAILED_DIR}/{name}.json")  # first: a note left beside a finished input would read as accepted
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


# what commit_parts returns to the driver, per input of a batch: the filter phase's progress
PROGRESS = pa.schema([("source", pa.string()), ("records", pa.int64()), ("kept", pa.int64()), ("offset", pa.int64())])


def commit_parts(batch: pa.Table, output: str, names: dict[str, str], write_removed: bool) -> pa.Table:
    """Commit a batch of the filter phase, one part per input it holds (see refinery.resume);
    returns per input its records, kept documents and the furthest offset reached (progress)."""
    out = Output(output)
    sources = batch.column("source")
    progress = []
    for source in pc.unique(sources).to_pylist():
        rows = batch.filter(pc.equal(sources, source))
        records = rows.column("source_record").to_numpy()
        name = part_name(names[source], records)
        kept = write_outcomes(out, name, rows, write_removed, f"{PARTS_DIR}/{names[source]}", {"input": names[source], "ranges": as_ranges(records)})
        progress.append({"source": source, "records": rows.num_rows, "kept": kept.num_rows, "offset": pc.max(rows.column("source_offset")).as_py()})
    return pa.Table.from_pylist(progress, schema=PROGRESS)


def run(cfg: RunConfig, overwrite: bool = False, accept_failed: bool = False) -> dict:
    """Run the filter phase over the inputs not finished yet, then the final pass (dedup if
    configured, else compaction into shards); returns the stats also written to OUTPUT/stats.json.
    Re-running the command of an interrupted run resumes it (refinery.resume). Inputs whose
    stream failed after its retries stop the run before the final pass (InputsFailed), unless
    `accept_failed`: then each is counted as one `read:network_failed` row and the run finishes."""
    files = list_inputs(cfg.input, check_urls=not accept_failed)
    out = Output(cfg.output)
    state = open_run(out, cfg, files, overwrite)
    if state == COMPLETE:
        log.warning("%s holds a finished run of this config: nothing to do", out.uri)
        if not out.exists(REPORT_FILE):
            write_report(out)
        return out.read_json("stats.json")
    if state == RESUME:
        discard_unfinished(out, [p.stage for p in cfg.dedup])
    start_ray(cfg.workers, out)
    configure_data_context()

    started = time.monotonic()
    fold_inputs(out)  # a resumed run's inputs finished before it stopped
    todo = inputs_to_do(out, files, accept_failed)
    if todo:
        filter_phase(cfg, todo, out)
        fold_inputs(out)
    stop_on_failed_inputs(out, files, accept_failed, cfg.write_removed)
    stats = final_pass(cfg, out, files, {"filter_phase": round(time.monotonic() - started, 2)})
    write_report(out)
    return stats


def write_report(out: Output) -> None:
    """report.html from the finished output; a report that fails costs the report, not the run."""
    try:
        build_report(out)
    except Exception:  # noqa: BLE001  (the run's output is complete without it)
        log.exception("report.html could not be written; `refinery report %s` retries it", out.uri)


def stop_on_failed_inputs(out: Output, files: list[str], accept_failed: bool, write_removed: bool) -> None:
    """After the filter phase: inputs whose stream failed stop the run before its final pass
    (their list in `_failed_inputs.json`), or, when accepted, are finished as failed."""
    failed = failed_inputs(out, files)
    if failed and not accept_failed:
        out.write_json(FAILED_INPUTS, failed)
        raise InputsFailed(failed, out.uri)
    accept_failures(out, failed, write_removed)
    out.delete(FAILED_INPUTS)


def final_pass(cfg: RunConfig, out: Output, files: list[str], seconds: dict) -> dict:
    """After the filter phase: dedup (if configured) or compaction, the shards, stats.json."""
    counts, kept_by_input = filter_counts(out, files)
    dedup_info = {}
    started = time.monotonic()
    docs_in = counts["outcomes"].get(KEPT, [0])[0]
    progress = console.progress(f"{'dedup' if cfg.dedup else 'final'} phase ({docs_in:,} documents in)", counting=False)
    if cfg.dedup:
        dedup_info = dedup_phase(cfg, out, files, kept_by_input)
        seconds["dedup_phase"] = round(time.monotonic() - started, 2)
        dedup_counts = merge_counts(out.read_jsons(out.list_files(DEDUP_PARTS_DIR, ".json")))
        counts = replace_kept(counts, dedup_counts)
    else:
        compact(cfg, out)
        seconds["compaction"] = round(time.monotonic() - started, 2)
    publish_shards(out)
    kept = counts["outcomes"].get(KEPT, [0])[0]
    progress.update(records=docs_in, kept=kept)
    progress.close(f"{kept:,} documents kept of {docs_in:,}")
    stats = funnel(counts, [s.stage for s in cfg.stages], [p.stage for p in cfg.dedup])
    stats["dedup"] = dedup_info
    stats["inputs"] = files
    stats["failed_inputs"] = accepted_failures(out)
    stats["seconds"] = seconds
    out.write_json("stats.json", stats)
    Output.each(out.delete, [FILTERED_DIR, ATTEMPTS_DIR, STAGING_DIR])
    return stats


def filter_counts(out: Output, files: list[str]) -> tuple[dict, dict[str, list[int]]]:
    """The filter phase's counts summed (a manifest or part at a time), and per input file the
    documents and words it kept (what dedup's `auto` parts and partitions are sized from)."""
    paths = {input_name(i, path): path for i, path in enumerate(files)}
    kept: dict[str, list[int]] = {}

    def each():
        for name, counts in committed_counts(out):
            docs, words = counts["outcomes"].get(KEPT, [0, 0, 0])[:2]
            total = kept.setdefault(paths.get(name, name), [0, 0])
            total[0] += docs
            total[1] += words
            yield counts

    return merge_counts(each()), kept


def accept_failures(out: Output, failed: list[dict], write_removed: bool) -> None:
    """Finish each failed input with one `read:network_failed` row after its committed records,
    standing for the rest of the file (how many records that is cannot be known), committed as
    a part, so the funnel counts it; the input's failure note stays, for stats.json."""
    done = committed_records(out) if failed else {}
    for f in failed:
        ranges = done.get(f["name"], [])
        ordinal = max([b for _, b in ranges], default=0)
        row = error_row(f["path"], f["read_on_from"]["offset"], NETWORK_FAILED) | {"source_record": ordinal}
        log.warning("%s: accepted as failed (%s): counted as %s after %d records", f["path"], f["error"], NETWORK_FAILED, f["records_committed"])
        write_outcomes(out, part_name(f["name"], np.array([ordinal])), rows_from_pylist([row]), write_removed, f"{PARTS_DIR}/{f['name']}",
                       {"input": f["name"], "ranges": [[ordinal, ordinal + 1]]})
        out.write_json(f"{INPUTS_DIR}/{f['name']}.json", {"path": f["path"], "records": f["records_committed"] + 1})


def run_ablation(cfg: RunConfig, arms: list[Arm], overwrite: bool = False, log_to: Output | None = None) -> list[dict]:
    """The data of an ablation of `cfg` (refinery.ablation): one filter phase that reads and
    extracts every record once and commits each arm's view of every batch to the arm's output,
    then each arm's final pass. Each arm's output is that of a standalone run of its config and
    resumes like one; the last arm's committed parts say what the shared pass has done. In a
    quiet run Ray's logging goes under `log_to` (refinery.console)."""
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
    start_ray(cfg.workers, log_to)
    configure_data_context()
    started = time.monotonic()
    todo = inputs_to_do(outs[-1], files)
    if todo:
        size = console.input_bytes([t["path"] for t in todo])
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
        follow(ds, console.progress(f"shared pass ({len(arms)} arms; kept: the last arm's)", size))
    stop_on_failed_inputs(outs[-1], files, accept_failed=False, write_removed=cfg.write_removed)  # a re-run reads them on
    seconds = {"filter_phase_shared": round(time.monotonic() - started, 2)}
    stats = [out.read_json("stats.json") if state == COMPLETE else final_pass(arm.config, out, files, dict(seconds))
             for out, arm, state in zip(outs, arms, states)]
    import ray

    ray.shutdown()  # training comes next, in this process: a local Ray's workers would only take memory
    return stats


def commit_arm_parts(batch: pa.Table, stages: list, arms: list[Arm], outputs: list[str], names: dict[str, str], write_removed: bool) -> pa.Table:
    """A batch of an ablation's shared pass: each arm's view of it committed to the arm's
    output, the last arm last (its parts mark what is done); returns the last arm's counts."""
    views = arm_views(batch, stages, arms, write_removed,
                      apply=lambda b, p: named_stage(p.stage)(b, p, write_removed, outputs[-1]))
    for view, output in zip(views, outputs):
        counts = commit_parts(view, output, names, write_removed)
    return counts


def configure_data_context() -> None:
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # same inputs, same shards
    ctx.target_max_block_size = 16 * 1024 * 1024  # several blocks per WARC file, so one file spreads over workers


# What a read task asks of the scheduler: no CPU. Any request at all is taken out of what the
# stage tasks (1 CPU each) can have while the readers stream, in Ray's resource accounting and in
# Ray Data's budget: at 0.01 CPU per reader, 2 CPUs ran one stage task, not two, for as long as the
# readers lived (crawl-sample x8 in 2 files: the first 23 of 125 s). Reading takes ~1/8 of a
# record's CPU time, so the readers share the stage tasks' cores; `concurrency` keeps them to one
# per CPU. A request different from the stages' also keeps Ray Data from fusing the reading into
# the stage tasks (the blocks of one file are then processed in parallel, not in the reading task).
READ_CPUS = 0


def read_task_options(blocks: int) -> dict:
    """Ray Data's options for the reading operator of `blocks` input blocks (READ_CPUS; no more
    readers than blocks, which Ray Data would warn about on the terminal)."""
    return {"num_cpus": READ_CPUS, "concurrency": max(1, min(cpus(), blocks))}


def read_records(cfg: RunConfig, todo: list[dict], out: Output):
    """The records of the inputs to do, as a dataset (input markers written to `out`)."""
    import ray.data

    blocks = min(len(todo), READ_TASKS_PER_CPU * cpus())
    ds = ray.data.from_items(todo, override_num_blocks=blocks)
    ds = ds.map_batches(read_files, batch_size=None, batch_format="pyarrow", fn_kwargs={"read": cfg.read, "output": out.uri},
                        **read_task_options(blocks))
    return ds.limit(cfg.limit) if cfg.limit else ds


# What a record of a WARC file weighs, to estimate an input's records from its size: a Common Crawl
# WARC's gzip member averages ~25 KB (request, response, metadata), crawl-sample's ~30 KB. With at
# least TASKS_PER_CPU inputs per CPU, whole files keep the CPUs busy.
RECORD_BYTES = 30_000
TASKS_PER_CPU = 8
MAX_COMMIT_ROWS = 10_000


def commit_rows(explicit: int | None, batch_records: int, input_bytes: int | None, cpus: int, inputs: int) -> int:
    """Rows per part, and per filter-phase task, unless the config sets `commit_rows`. Fewer than
    TASKS_PER_CPU inputs per CPU: one batch, so each file's records spread over the CPUs (at
    crawl-sample x8 in 2 files, 640-row parts kept the 2 CPUs' slots 71% busy, 128-row parts 82%).
    More: whole files keep the CPUs busy, so a part is about a file's records (estimated from the
    inputs' size), a multiple of `read.batch_records`, at most MAX_COMMIT_ROWS."""
    if explicit:
        return explicit
    if not input_bytes or inputs < TASKS_PER_CPU * max(1, cpus):
        return batch_records
    per_file = input_bytes / inputs / RECORD_BYTES
    return int(min(MAX_COMMIT_ROWS, max(batch_records, -(-per_file // batch_records) * batch_records)))


def filter_phase(cfg: RunConfig, todo: list[dict], out: Output) -> None:
    """Every record of the inputs to do through the stages, committed in parts."""
    size = console.input_bytes([t["path"] for t in todo])
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
            batch_size=commit_rows(cfg.commit_rows, cfg.read.batch_records, size, cpus(), len(todo)),
            batch_format="pyarrow",
            fn_kwargs={"output": out.uri, "names": {t["path"]: t["name"] for t in todo}, "write_removed": cfg.write_removed},
            max_retries=MAX_TASK_RETRIES,
        )
    follow(ds, console.progress("filter phase", size, cfg.limit))
    log.debug("filter phase, Ray Data's stats:\n%s", ds.stats())


def follow(ds, progress) -> None:
    """Run a filter phase to its end, showing its commits' counts (records, kept, input offsets)."""
    offsets: dict[str, int] = {}
    for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        for row in batch.to_pylist():
            offsets[row["source"]] = max(offsets.get(row["source"], 0), row["offset"] or 0)
            progress.update(row["records"], row["kept"], sum(offsets.values()))
    progress.close()


def compact(cfg: RunConfig, out: Output) -> None:
    """Without dedup, the final pass only gathers the committed parts' kept rows into shards."""
    import ray.data

    files = out.list_files(FILTERED_DIR, ".parquet")
    ds = read_filtered(out, file_slots(files)) if files else ray.data.from_arrow(SHARD.empty_table())
    ds.write_parquet(out.path(STAGING_DIR), filesystem=out.fs, min_rows_per_file=cfg.shard_rows, compression="zstd")


def publish_shards(out: Output) -> None:
    """The final pass writes shards under a staging folder; only whole files move to `shards/`,
    numbered in order (moved in parallel: on S3 each is a copy and a delete), so no reader ever
    sees a partial shard under its final name."""
    out.move_files([(rel, f"shards/part-{i:05d}.parquet") for i, rel in enumerate(out.list_files(STAGING_DIR, ".parquet"))])


def fold_inputs(out: Output) -> None:
    """Every input read to the end and not folded yet gets its manifest (refinery.resume), in
    tasks of many inputs each, so the driver reads one file per input rather than one per part."""
    import ray.data

    names = inputs_to_fold(out)
    if not names:
        return
    chunks = [list(c) for c in np.array_split(np.array(names, dtype=object), min(len(names), 4 * cpus()))]
    ds = ray.data.from_items([{"names": c} for c in chunks], override_num_blocks=len(chunks))
    drain(ds.map_batches(fold_task, batch_size=1, batch_format="pyarrow", fn_kwargs={"output": out.uri}, num_cpus=0.25))


def fold_task(batch: pa.Table, output: str) -> pa.Table:
    """Fold a task's inputs: on object storage on threads (each file is a request that waits on
    the network); locally one after the other, since the tasks are parallel already and threads
    only contend (2.5 ms an input serially, 4.4 ms on 32 threads, on this 2-core machine)."""
    out = Output(output)
    names = batch.column("names")[0].as_py()

    def fold(name: str) -> bool:
        """A failed fold (a storage error) leaves the input's parts loose, which every reader of
        them handles: a manifest saves requests, it is never needed."""
        for attempt in (1, 2):
            try:
                return fold_input(out, name)
            except OSError as e:
                log.warning("folding %s (attempt %d): %s", name, attempt, e)
        return False

    folded = [fold(name) for name in names] if out.local else Output.each(fold, names)
    return pa.table({"folded": [sum(folded)]})


def replace_kept(filter_counts: dict, dedup_counts: dict) -> dict:
    """The filter phase's `kept` documents are exactly the dedup phase's input: swap them for
    the dedup phase's outcomes, so the funnel continues through dedup."""
    merged = dict(filter_counts)
    merged["outcomes"] = {k: v for k, v in filter_counts["outcomes"].items() if k != KEPT} | dedup_counts["outcomes"]
    merged["struck"] = filter_counts["struck"] | dedup_counts["struck"]  # each phase strikes in its own stages
    merged["words_hist"] = {k: v for k, v in filter_counts["words_hist"].items() if k != KEPT} | dedup_counts["words_hist"]
    merged["kept_domains"] = dedup_counts["kept_domains"]
    return merged


def summary(stats: dict) -> str:
    return format_table(stats)
