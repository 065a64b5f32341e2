"""What a run has finished, kept in its output folder so that re-running the same command does
only the rest. Not Ray-specific: names and bookkeeping only.

The unit of work is a *part*: the records of one input that one batch took through every stage.
A part is committed by its counts file `_parts/<input>/<part>.json`, written last, after its kept rows
(`_filtered/<part>.parquet`) and its removed rows (`removed/<stage>/<part>.parquet`, and the
lines text-modifying stages removed, `removed_lines/<stage>/<part>.parquet`). An input is
finished when `_inputs/<input>.json` (written once its reader reached the end) and committed
parts cover all its records. A re-run skips finished inputs, re-reads the others skipping the
records of committed parts, and deletes what uncommitted parts left behind; the final pass
(dedup, or compaction into shards) is always redone whole. `stats.json`, written last, marks a
complete run.

Manifests: a crawl has ~90k inputs and, at small part sizes, hundreds of parts each, too many
small files for the driver to list and read (and again on every resume). So once an input is
finished, Ray tasks fold its parts' counts files into one manifest, `_manifests/<input>.json`
(its path, record count, each part's record ranges, and the parts' counts summed), and delete
them (`fold_input`). The driver then reads one file per finished input, and only the unfinished
inputs' parts. A manifest is written before its parts are deleted; parts an interrupted fold left
beside their manifest are ignored.

An input whose stream failed after its retries (the network, not the data) leaves
`_failed/<input>.json`: the error, and the point to read on from (record ordinal and byte offset).
A run with such inputs runs no final pass: it lists them in `_failed_inputs.json` and stops
(`InputsFailed`). A re-run reads them on from that point, with a ranged read, when every record
before it is committed (else from the start, skipping what is committed). Accepted failures
(`--accept-failed-inputs`) are finished with one `read:network_failed` row each, standing for the
rest of the file, whose size is unknown."""
from __future__ import annotations

import json
import logging

import numpy as np
import xxhash

from refinery.config import RunConfig
from refinery.io.storage import Output
from refinery.stats import fold_counts

log = logging.getLogger(__name__)

RUN_FILE = "_run.json"
INPUTS_DIR = "_inputs"
FAILED_DIR = "_failed"
FAILED_INPUTS = "_failed_inputs.json"
NETWORK_FAILED = "read:network_failed"
PARTS_DIR = "_parts"
MANIFESTS_DIR = "_manifests"
FILTERED_DIR = "_filtered"
REMOVED_LINES_DIR = "removed_lines"  # with --write-removed: the lines text-modifying stages removed, per part
STAGING_DIR = "_staging"
# what the final pass writes; it is redone whole by a re-run, so it is cleared first
FINAL_PASS = ("shards", STAGING_DIR, "_parts_dedup", "_buckets", "_attempts")

NEW, RESUME, COMPLETE = "new", "resume", "complete"


class InputsFailed(Exception):
    """The run stopped before its final pass: these inputs' streams failed after their retries."""

    def __init__(self, failed: list[dict], output: str):
        super().__init__(f"{len(failed)} input(s) failed on the network: {', '.join(f['path'] for f in failed)}")
        self.failed, self.output = failed, output


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
    """What decides a run's output: the whole config but the worker count, part size and retry
    settings (a re-run after an outage may wait longer), and the input files."""
    exclude = {"workers": True, "output": True, "commit_rows": True, "read": {"retry": True}}
    return {"config": cfg.model_dump(mode="json", exclude=exclude), "inputs": files}


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


def stem(rel: str) -> str:
    """`_parts/<input>/<part>.json` -> `<part>`: the name of what a file belongs to."""
    return rel.rsplit("/", 1)[-1].split(".")[0]


def folded(out: Output) -> set[str]:
    """The inputs whose parts are folded into a manifest (one listing)."""
    return {stem(rel) for rel in out.list_files(MANIFESTS_DIR, ".json")}


def loose_part_files(out: Output, skip: set[str]) -> list[str]:
    """The committed parts' counts files, but those of the inputs in `skip` (folded)."""
    return [rel for rel in out.list_files(PARTS_DIR, ".json") if rel.split("/")[1] not in skip]


def committed_records(out: Output, skip: set[str] | None = None) -> dict[str, list[list[int]]]:
    """Per input name not folded (nor in `skip`, default: the folded ones), the record ranges of
    its committed parts."""
    done: dict[str, list[list[int]]] = {}
    for part in out.read_jsons(loose_part_files(out, folded(out) if skip is None else skip)):
        done.setdefault(part["input"], []).extend(part["ranges"])
    return done


def committed_parts(out: Output) -> set[str]:
    """The names of every committed part, folded or not."""
    names = {stem(rel) for rel in out.list_files(PARTS_DIR, ".json")}
    for manifest in out.iter_jsons(out.list_files(MANIFESTS_DIR, ".json")):
        names.update(manifest["parts"])
    return names


def committed_counts(out: Output):
    """The filter phase's counts, as (input name, counts): each folded input's summed counts and each loose part's, in name
    order (an input's manifest, then its parts: what merge_counts adds them in), read a few at a time."""
    manifests = out.list_files(MANIFESTS_DIR, ".json")
    rels = sorted(manifests + loose_part_files(out, {stem(rel) for rel in manifests}), key=stem)
    for record in out.iter_jsons(rels):
        yield record["input"], record.get("counts", record)


def inputs_to_fold(out: Output) -> list[str]:
    """Inputs read to the end (their `_inputs/` marker) that have no manifest yet (two listings)."""
    return sorted({stem(rel) for rel in out.list_files(INPUTS_DIR, ".json")} - folded(out))


def fold_input(out: Output, name: str) -> bool:
    """If the input is finished (its committed parts cover the records its marker counts), write
    its manifest and delete its parts' counts files; the kept and removed rows stay where they
    are. Returns whether it was folded. Runs in a worker, in parallel with other inputs'."""
    marker = out.read_json_if_exists(f"{INPUTS_DIR}/{name}.json")
    if marker is None:
        return False
    rels = out.list_files(f"{PARTS_DIR}/{name}", ".json")
    parts = [out.read_json(rel) for rel in rels]
    if sum(b - a for p in parts for a, b in p["ranges"]) != marker["records"]:
        return False
    out.write_json(f"{MANIFESTS_DIR}/{name}.json", {
        "input": name, "path": marker["path"], "records": marker["records"],
        "parts": {stem(rel): p["ranges"] for rel, p in zip(rels, parts)}, "counts": fold_counts(parts),
    })
    if rels:
        out.delete_folder(f"{PARTS_DIR}/{name}")
    return True


def _unfinished(out: Output, files: list[str]):
    """(name, path, committed ranges, failure marker or None) of each input not finished. Listings
    and the files of unfinished inputs only: no request per finished input."""
    done_inputs = folded(out)
    done = committed_records(out, done_inputs)
    failed = {stem(rel) for rel in out.list_files(FAILED_DIR, ".json")}
    read_through = {stem(rel) for rel in out.list_files(INPUTS_DIR, ".json")} - done_inputs
    names = [input_name(i, path) for i, path in enumerate(files)]
    markers = dict(zip(sorted(read_through), out.read_jsons([f"{INPUTS_DIR}/{n}.json" for n in sorted(read_through)])))
    failures = dict(zip(sorted(failed), out.read_jsons([f"{FAILED_DIR}/{n}.json" for n in sorted(failed)])))
    for name, path in zip(names, files):
        if name in done_inputs:
            continue
        ranges = sorted(done.get(name, []))
        marker = markers.get(name)
        if marker is not None and sum(b - a for a, b in ranges) == marker["records"]:
            continue
        yield name, path, ranges, failures.get(name)


def _covers(ranges: list[list[int]], end: int) -> bool:
    """Whether sorted, disjoint record ranges hold every record before `end`."""
    reached = 0
    for a, b in ranges:
        if a > reached:
            break
        reached = max(reached, b)
    return reached >= end


def inputs_to_do(out: Output, files: list[str], accept_failed: bool = False) -> list[dict]:
    """The inputs a run still has to read: name, path, the record ranges to skip, and where to
    start (record ordinal and byte offset: the point where an earlier run's stream failed, when
    every record before it is committed). With `accept_failed`, such failed inputs are not read
    again (see accept_failures)."""
    todo = []
    for name, path, ranges, failure in _unfinished(out, files):
        start = [0, 0]
        if failure is not None and _covers(ranges, failure["record"]):
            if accept_failed:
                continue
            start = [failure["record"], failure["offset"]]
        todo.append({"path": path, "name": name, "skip": json.dumps(ranges), "start": json.dumps(start)})
    return todo


def failed_inputs(out: Output, files: list[str]) -> list[dict]:
    """The unfinished inputs whose stream failed: path, name, error, records committed, and the
    point a re-run reads on from."""
    return [
        {"path": path, "name": name, "error": f["error"], "records_committed": sum(b - a for a, b in ranges),
         "read_on_from": {"record": f["record"], "offset": f["offset"]}}
        for name, path, ranges, f in _unfinished(out, files) if f is not None
    ]


def accepted_failures(out: Output) -> list[dict]:
    """The failures a finished run accepted (their markers outlive them: inputs read to the end delete theirs)."""
    return out.read_jsons(out.list_files(FAILED_DIR, ".json"))


def discard_unfinished(out: Output, dedup_stages: list[str]) -> None:
    """Before a resumed run: delete the final pass's output and the files of parts that were
    never committed, so nothing is counted or kept twice."""
    Output.each(out.delete, list(FINAL_PASS) + [f"removed/{s}" for s in dedup_stages])
    committed = committed_parts(out)
    orphans = [rel for rel in out.list_files(FILTERED_DIR) + out.list_files("removed") + out.list_files(REMOVED_LINES_DIR) if stem(rel) not in committed]
    orphans += [rel for rel in out.list_files("") if ".tmp-" in rel.rsplit("/", 1)[-1]]  # local writes cut short
    out.delete_files(orphans)
    if orphans:
        log.warning("resuming: deleted %d files of batches that did not finish", len(orphans))
