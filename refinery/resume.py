"""What a run has finished, kept in its output folder so that re-running the same command does
only the rest. Not Ray-specific: names and bookkeeping only.

The unit of work is a *part*: the records of one input that one batch took through every stage.
A part is committed by its counts file `_parts/<part>.json`, written last, after its kept rows
(`_filtered/<part>.parquet`) and its removed rows (`removed/<stage>/<part>.parquet`, and the
lines text-modifying stages removed, `removed_lines/<stage>/<part>.parquet`). An input is
finished when `_inputs/<input>.json` (written once its reader reached the end) and committed
parts cover all its records. A re-run skips finished inputs, re-reads the others skipping the
records of committed parts, and deletes what uncommitted parts left behind; the final pass
(dedup, or compaction into shards) is always redone whole. `stats.json`, written last, marks a
complete run."""
from __future__ import annotations

import json
import logging

import numpy as np
import xxhash

from refinery.config import RunConfig
from refinery.io.storage import Output

log = logging.getLogger(__name__)

RUN_FILE = "_run.json"
INPUTS_DIR = "_inputs"
PARTS_DIR = "_parts"
FILTERED_DIR = "_filtered"
REMOVED_LINES_DIR = "removed_lines"  # with --write-removed: the lines text-modifying stages removed, per part
STAGING_DIR = "_staging"
# what the final pass writes; it is redone whole by a re-run, so it is cleared first
FINAL_PASS = ("shards", STAGING_DIR, "_parts_dedup", "_buckets", "_attempts")

NEW, RESUME, COMPLETE = "new", "resume", "complete"


def input_name(ordinal: int, path: str) -> str:
    """Names sort in input order, and a path cannot be mistaken for another's."""
    return f"{ordinal:06d}-{xxhash.xxh64(path.encode()).hexdigest()}"


def part_name(input: str, records: np.ndarray) -> str:
    """From the records it holds: names sort in record order, and a retried batch gets its own
    name back, overwriting rather than doubling what it wrote."""
    return f"{input}-{int(records.min()):09d}-{xxhash.xxh64(np.sort(records).astype('<i8').tobytes()).hexdigest()}"


def as_ranges(records: np.ndarray) -> list[list[int]]:
    """Sorted record ordinals as [start, end) ranges: a part is usually one range."""
    r = np.sort(records)
    breaks = np.flatnonzero(np.diff(r) != 1) + 1
    return [[int(run[0]), int(run[-1]) + 1] for run in np.split(r, breaks)] if len(r) else []


def fingerprint(cfg: RunConfig, files: list[str]) -> dict:
    """What decides a run's output: the whole config but the worker count and part size, and the input files."""
    return {"config": cfg.model_dump(mode="json", exclude={"workers", "output", "commit_rows"}), "inputs": files}


def open_run(out: Output, cfg: RunConfig, files: list[str], overwrite: bool) -> str:
    """NEW, RESUME or COMPLETE. A folder holding something else, or a run of another config,
    is refused unless `overwrite`, which starts clean."""
    wanted = fingerprint(cfg, files)
    if overwrite:
        out.clear()
    elif not out.is_empty():
        found = out.read_json_if_exists(RUN_FILE)
        if found is None:
            raise FileExistsError(f"output {out.uri} is not empty and holds no Refinery run: pass --overwrite to replace it")
        if found != wanted:
            changed = sorted(k for k in set(found["config"]) | set(wanted["config"]) if found["config"].get(k) != wanted["config"].get(k))
            changed += ["input files"] if found["inputs"] != wanted["inputs"] else []
            raise FileExistsError(
                f"output {out.uri} holds a run of a different config (changed: {', '.join(changed)}): "
                "re-run with the same config to resume it, or pass --overwrite to start clean"
            )
        if out.exists("stats.json"):
            return COMPLETE
        if cfg.limit:
            raise FileExistsError(f"output {out.uri} holds an unfinished run with --limit, which cannot be resumed: pass --overwrite")
        return RESUME
    out.write_json(RUN_FILE, wanted)
    return NEW


def committed_records(out: Output) -> dict[str, list[list[int]]]:
    """Per input name, the record ranges of its committed parts."""
    done: dict[str, list[list[int]]] = {}
    for part in out.read_jsons(out.list_files(PARTS_DIR, ".json")):
        done.setdefault(part["input"], []).extend(part["ranges"])
    return done


def inputs_to_do(out: Output, files: list[str]) -> list[dict]:
    """The inputs a run still has to read: name, path, and the record ranges to skip."""
    done = committed_records(out)
    todo = []
    for i, path in enumerate(files):
        name = input_name(i, path)
        skip = sorted(done.get(name, []))
        marker = out.read_json_if_exists(f"{INPUTS_DIR}/{name}.json")
        if marker is not None and sum(b - a for a, b in skip) == marker["records"]:
            continue
        todo.append({"path": path, "name": name, "skip": json.dumps(skip)})
    return todo


def discard_unfinished(out: Output, dedup_stages: list[str]) -> None:
    """Before a resumed run: delete the final pass's output and the files of parts that were
    never committed, so nothing is counted or kept twice."""
    for rel in FINAL_PASS + tuple(f"removed/{s}" for s in dedup_stages):
        out.delete(rel)
    committed = {rel.rsplit("/", 1)[-1].removesuffix(".json") for rel in out.list_files(PARTS_DIR, ".json")}
    orphans = [rel for rel in out.list_files(FILTERED_DIR) + out.list_files("removed") + out.list_files(REMOVED_LINES_DIR) if rel.rsplit("/", 1)[-1].split(".")[0] not in committed]
    orphans += [rel for rel in out.list_files("") if ".tmp-" in rel.rsplit("/", 1)[-1]]  # local writes cut short
    for rel in orphans:
        out.delete(rel)
    if orphans:
        log.warning("resuming: deleted %d files of batches that did not finish", len(orphans))
