"""Records that kill their worker (a segfault in a parser, the OOM killer) are isolated, not
retried forever. Not Ray-specific: Ray retries a task whose worker died; this module makes the
retry notice that the batch was tried before, go through it one record at a time, leave a note
of the record in progress, and on the next retry remove the record that was in progress with
the reason `<stage>:worker_crash`. A record that always crashes costs two retries.

Notes live in the run's output folder (`_attempts/`), so a retry on another machine sees them.
For tests and drills, REFINERY_CRASH_ON_URL=<substring> makes the stage named by
REFINERY_CRASH_STAGE (default `extract`, one of pipeline.GUARDED_STAGES) kill its worker on a
live record whose URL contains it; with REFINERY_CRASH_ONCE=<file>, only the first time (the
file records that it happened)."""
from __future__ import annotations

import logging
import os
import signal
from typing import Callable

import pyarrow as pa
from refinery.io.storage import Output
from refinery.schema import ROW, ids_hash

log = logging.getLogger(__name__)

ATTEMPTS_DIR = "_attempts"
CRASH_REASON = "worker_crash"


def guarded(batch: pa.Table, stage: str, run_stage: Callable[[pa.Table], pa.Table], out: Output) -> pa.Table:
    note = f"{ATTEMPTS_DIR}/{stage}-{ids_hash(batch)}.json"
    before = out.read_json_if_exists(note)
    if before is None:
        out.write_json(note, {"crashed": [], "record": None})
        _injected_crash(batch, stage)
        result = run_stage(batch)
    else:
        crashed = before["crashed"] + ([before["record"]] if before["record"] is not None else [])
        result = _one_by_one(batch, stage, run_stage, out, note, crashed)
    out.delete(note)
    return result


def _one_by_one(batch: pa.Table, stage: str, run_stage, out: Output, note: str, crashed: list[int]) -> pa.Table:
    log.warning("%s: a worker died on this batch of %d records before; going one record at a time", stage, batch.num_rows)
    pieces = []
    for i in range(batch.num_rows):
        row = batch.slice(i, 1)
        if i in crashed:
            log.error("%s: record %s (%s) killed its worker twice; removed", stage, row["id"][0], row["url"][0])
            pieces.append(_removed(row, stage))
            continue
        out.write_json(note, {"crashed": crashed, "record": i})
        _injected_crash(row, stage)
        pieces.append(run_stage(row))
    return pa.concat_tables(pieces) if pieces else batch


def _removed(row: pa.Table, stage: str) -> pa.Table:
    r = row.to_pylist()[0]
    if r["removed_by"] is None:
        r.update(removed_by=stage, reason=f"{stage}:{CRASH_REASON}", reason_detail="its worker died on it twice",
                 html=None, text=None, n_words=None, n_chars=None)
    return pa.Table.from_pylist([r], schema=ROW)


def _injected_crash(batch: pa.Table, stage: str) -> None:
    target = os.environ.get("REFINERY_CRASH_ON_URL")
    if not target or stage != os.environ.get("REFINERY_CRASH_STAGE", "extract"):
        return
    live = [u for u, r in zip(batch.column("url").to_pylist(), batch.column("removed_by").to_pylist()) if r is None]
    if not any(u and target in u for u in live):
        return
    once = os.environ.get("REFINERY_CRASH_ONCE")
    if once:
        if os.path.exists(once):
            return
        open(once, "w").close()
    os.kill(os.getpid(), signal.SIGKILL)
