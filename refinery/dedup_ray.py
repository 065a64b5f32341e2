"""The dedup phase on Ray (with `pipeline.py`, the only modules that know Ray): the dedup stages
in order over the filter phase's kept rows, each within its scope, then the final pass that
writes the shards. The stages' bodies are Ray-free, in `refinery.dedup`.

Every shuffle goes through storage, not Ray's object store: map tasks write their rows into one
file per partition under `_buckets/<stage>/`, reduce tasks read a partition's files. At 450
bands MinHash's bucket rows are ~18 KB per document, and substring dedup's window rows one per
token: more than a node's memory on a real crawl, and Ray's shuffle keeps per-block state on the
driver that grows with the corpus. The driver holds O(partitions + inputs) plus the removed
documents' ids, never anything per token or per kept document.

Slots: the `_filtered/` files are dealt into slots of consecutive files, a few per CPU
(`file_slots`). A slot is the unit of the per-document passes: substring dedup addresses what
it learns about a document (its candidates, its partners' text, its edits) to the document's
slot, and every pass over a slot reads the same files, so what a task holds is bounded by a
slot, not by the corpus.
"""
from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from refinery.config import RunConfig
from refinery.dedup.clusters import doc_ids_from_strings
from refinery.dedup.minhash import MinHashParams
from refinery.dedup.phase import BUCKET_SCHEMA, EDGE_SCHEMA, REASONS, UrlDedupParams, bucket_rows, partition_edges, removals, stage_partitions
from refinery.dedup.scope import Partitions, Scopes, groups
from refinery.dedup.similarity import JACCARD, SHINGLE_ROWS, cluster_jaccards, member_shingles
from refinery.dedup.substring import (
    CANDIDATE_SCHEMA, EDIT_SCHEMA, REASON_STRUCK, REQUEST_SCHEMA, RUN_SCHEMA, WINDOW_SCHEMA, SubstringDedupParams,
    candidates, request_runs, strike, window_rows,
)
from refinery.io.storage import Output
from refinery.outcomes import write_outcomes
from refinery.resume import FILTERED_DIR, STAGING_DIR, input_name, stem
from refinery.schema import REMOVED_COLUMNS, SHARD, ids_hash
from refinery.stats import batch_counts

log = logging.getLogger(__name__)

DEDUP_PARTS_DIR = "_parts_dedup"
BUCKETS_DIR = "_buckets"
# The final pass reads the committed parts in tasks of consecutive files, at most this many each.
READ_FILES_PER_TASK = 64
SUBSTRING = "substring_dedup"


def cpus() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def file_slots(files: list[str]) -> list[list[str]]:
    """Consecutive files in a few slots per CPU, at most READ_FILES_PER_TASK files each."""
    if not files:
        return []
    n = min(len(files), max(4 * cpus(), -(-len(files) // READ_FILES_PER_TASK)))
    return [list(g) for g in np.array_split(np.array(files, dtype=object), n)]


def drain(ds) -> list[pa.Table]:
    """Run a dataset to the end; its (small) output blocks."""
    return list(ds.iter_batches(batch_size=None, batch_format="pyarrow"))


def over_slots(fn, slots: list[list[str]], **kwargs):
    """A dataset of one task per slot, calling fn(batch of one {slot, files} row, **kwargs)."""
    import ray.data

    items = [{"slot": i, "files": g} for i, g in enumerate(slots)]
    return ray.data.from_items(items, override_num_blocks=len(items)).map_batches(fn, batch_size=1, batch_format="pyarrow", fn_kwargs=kwargs)


# ---------------------------------------------------------------- reading the committed parts


def read_filtered(out: Output, slots: list[list[str]], columns: list[str] | None = None, edits: str | None = None):
    """The kept rows the filter phase committed (the slots' files, under `_filtered/`), in
    order, as a dataset of blocks of about DataContext.target_max_block_size; with `edits`,
    substring dedup's edits of each slot applied (`apply_edits`).

    Not ray.data.read_parquet: Ray 2.60's reader starts a pool of footer-reading actors (new
    worker processes) for every pass over the files, 1-2 s a pass whatever the data size, and
    dedup passes over them once per stage and once or twice more for the shards. Plain tasks
    over the file list cost milliseconds; each reads whole files, so no footer is needed first."""
    import ray.data

    block_bytes = ray.data.DataContext.get_current().target_max_block_size
    return over_slots(read_slot, slots, output=out.uri, columns=columns, block_bytes=block_bytes, edits=edits)


def read_slot(batch: pa.Table, output: str, columns: list[str] | None, block_bytes: int, edits: str | None):
    out = Output(output)
    slot, files = batch.column("slot")[0].as_py(), batch.column("files")[0].as_py()
    slot_edits = read_folder(out, f"{edits}/{slot:05d}", EDIT_SCHEMA) if edits else None
    for table in iter_parts(out, files, columns, block_bytes):
        yield apply_edits(table, slot_edits) if slot_edits is not None else table


def iter_parts(out: Output, files: list[str], columns: list[str] | None, block_bytes: int = 16 << 20):
    """The rows of `files`, in order, in tables of about `block_bytes`."""
    schema = SHARD if columns is None else pa.schema([SHARD.field(c) for c in columns])
    tables, size = [], 0
    for rel in files:
        table = out.read_parquet(rel, schema.names).cast(schema)
        tables.append(table)
        size += table.nbytes
        if size >= block_bytes:
            yield pa.concat_tables(tables)
            tables, size = [], 0
    if tables:
        yield pa.concat_tables(tables)


def read_folder(out: Output, folder: str, schema: pa.Schema) -> pa.Table:
    """Every Parquet file under `folder` as one table (empty when there are none)."""
    files = out.list_files(folder, ".parquet")
    return pa.concat_tables([schema.empty_table()] + [out.read_parquet(f).cast(schema) for f in files])


# ---------------------------------------------------------------- the phase


def dedup_phase(cfg: RunConfig, out: Output, inputs: list[str], kept: dict[str, list[int]]) -> dict:
    """The dedup stages in order (a stage sees what the earlier ones kept), each within its
    scope, then one pass that writes the final shards and the removed rows. `inputs`: the
    run's input files (what scopes are made of); `kept`: per input file, the documents and words
    it brings into dedup (for `parts: auto` and `partitions: auto`). Returns stats.json's `dedup`
    section."""
    import ray.data

    sizes = np.array([kept.get(path, [0, 0])[:2] for path in inputs], dtype=np.float64).reshape(-1, 2)
    scopes = Scopes(inputs, [p.scope for p in cfg.dedup], int(sizes[:, 1].sum()),
                    crawls=any(p.scope == "crawl" or isinstance(p, UrlDedupParams) for p in cfg.dedup))
    order_of = {path: scopes.part[path] * len(scopes.crawl_order) + scopes.crawl_order[scopes.crawl[path]] for path in inputs}
    slots = file_slots(by_group(out.list_files(FILTERED_DIR, ".parquet"), inputs, order_of))
    info: dict = {}
    removed = {"doc": [np.empty(0, np.int64)], "kept": [np.empty(0, np.int64)], "stage": [np.empty(0, np.int64)], "jaccard": [np.empty(0)]}
    edits = None
    for i, p in enumerate(cfg.dedup):
        excluded = np.concatenate(removed["doc"])
        group_of = scopes.group_of(p.scope)
        group = np.array([group_of[path] for path in inputs], dtype=np.int64)
        n_groups = len(scopes.names(p.scope))
        partitions = stage_partitions(p, *(np.bincount(group, weights=sizes[:, i], minlength=n_groups) for i in (0, 1)))
        if not slots:  # nothing was kept by the filter phase
            doc = kept_in_place = np.empty(0, np.int64)
            stage_info = {"removed": 0} | ({"documents_touched": 0, "tokens_struck": 0} if isinstance(p, SubstringDedupParams) else {"cluster_sizes": {}})
        elif isinstance(p, SubstringDedupParams):
            edits = f"{BUCKETS_DIR}/{p.stage}/edits"
            doc, stage_info = substring_dedup(p, out, slots, excluded, group_of, edits, partitions)
            kept_in_place = doc  # a document dropped for what was struck out of it duplicates nothing whole
        else:
            doc, kept_in_place, clusters = document_dedup(p, out, excluded, group_of, order_of, slots, partitions)
            stage_info = {"removed": int(len(doc)), "cluster_sizes": {str(k): v for k, v in sorted(clusters.items())}}
        removed["doc"].append(doc)
        removed["kept"].append(kept_in_place)
        removed["stage"].append(np.full(len(doc), i, dtype=np.int64))
        with_jaccard = cfg.write_removed and isinstance(p, MinHashParams) and len(doc)
        removed["jaccard"].append(jaccard_pass(p, out, slots, doc, kept_in_place, partitions.total) if with_jaccard else np.full(len(doc), np.nan))
        info[p.stage] = stage_info | scopes.describe(p.scope) | {"partitions": partitions.total, "partitions_asked": p.partitions}
    doc = np.concatenate(removed["doc"])
    order = np.argsort(doc)
    plan = {
        "doc": doc[order],
        "kept": np.concatenate(removed["kept"])[order],
        "stage": np.concatenate(removed["stage"])[order],
        "jaccard": np.concatenate(removed["jaccard"])[order],
        "stages": [p.stage for p in cfg.dedup],
        "ngrams": [getattr(p, "ngram", None) for p in cfg.dedup],
    }
    if cfg.write_removed and slots:
        plan["kept_names"] = kept_doc_names(read_filtered(out, slots, ["id"]), plan["kept"])
    grouping = {p.stage: {"of": scopes.group_of(p.scope), "names": scopes.names(p.scope)} for p in cfg.dedup}
    final = read_filtered(out, slots, edits=edits) if slots else ray.data.from_arrow(SHARD.empty_table())
    final = final.map_batches(mark_duplicates, batch_format="pyarrow", fn_kwargs={"plan": ray.put(plan), "keep_removed_text": cfg.write_removed})
    final = final.map_batches(dedup_outcomes, batch_format="pyarrow", fn_kwargs={"output": out.uri, "write_removed": cfg.write_removed, "grouping": grouping})
    final.write_parquet(out.path(STAGING_DIR), filesystem=out.fs, min_rows_per_file=cfg.shard_rows, compression="zstd")
    out.delete(BUCKETS_DIR)
    return summarize_groups(info, out.read_jsons(out.list_files(DEDUP_PARTS_DIR, ".json")))


def by_group(files: list[str], inputs: list[str], order_of: dict[str, int]) -> list[str]:
    """The filter phase's files (`<input>-<first record>-<hash>.parquet`) ordered by their input's
    part and crawl, then by name: a slot then holds the documents of one scope group or two, so
    with `partitions: auto` its map task writes into that group's partitions only, not into every
    partition of the run (the shuffle's files are map tasks x the partitions each writes)."""
    names = {input_name(i, path): path for i, path in enumerate(inputs)}

    def group(rel: str) -> int:
        return order_of.get(names.get(stem(rel).rsplit("-", 2)[0]), 0)

    return sorted(files, key=lambda rel: (group(rel), rel))


def document_dedup(p, out: Output, excluded: np.ndarray, group_of: dict, order_of: dict, slots: list[list[str]], partitions: Partitions):
    """MinHash, exact or URL dedup: workers turn documents into bucket rows and write them to
    the output, one file per shuffle partition (`_buckets/<stage>/<partition>/`); then one task
    per few partitions reduces them to edges (duplicate -> kept doc); only the edges reach the
    driver, which finds clusters (O(duplicates)). Returns (removed docs, kept docs, cluster sizes)."""
    import ray.data

    columns = ["id", "url", "date", "source"] if isinstance(p, UrlDedupParams) else ["id", "text", "source"]
    folder = f"{BUCKETS_DIR}/{p.stage}"
    kwargs = {"p": p, "excluded": excluded, "output": out.uri, "folder": folder, "group_of": group_of, "order_of": order_of,
              "partitions": partitions}
    drain(read_filtered(out, slots, columns).map_batches(write_buckets, batch_format="pyarrow", fn_kwargs=kwargs))
    edges = drain(over_partitions(reduce_partitions, partitions.total, output=out.uri, folder=folder, rows=_BUCKET_SCHEMA_NO_PART,
                                  reduce=partition_edges, empty=EDGE_SCHEMA))
    out.delete(folder)
    pairs = [np.stack([b.column("doc").to_numpy(), b.column("kept").to_numpy()], axis=1) for b in edges if b.num_rows]
    return removals(p, np.concatenate(pairs) if pairs else np.empty((0, 2), np.int64))


def over_partitions(fn, partitions: int, **kwargs):
    """A few reduce tasks per CPU, each taking its partitions one after the other: one task per
    partition would cost more in scheduling than small partitions take to reduce."""
    import ray.data

    tasks = min(partitions, 4 * cpus())
    items = [{"part": i} for i in range(partitions)]
    return ray.data.from_items(items, override_num_blocks=tasks).map_batches(fn, batch_size=None, batch_format="pyarrow", fn_kwargs=kwargs)


def write_partitions(out: Output, folder: str, rows: pa.Table, name: str, column: str = "part") -> None:
    """The map side of a shuffle: `rows` split by `column`, one file per value under
    `folder/<value>/<name>.parquet` (the column itself is not written)."""
    if not rows.num_rows:
        return
    part = rows.column(column).to_numpy()
    order = np.argsort(part, kind="stable")
    rows, part = rows.take(order).drop_columns([column]), part[order]
    starts = np.flatnonzero(np.r_[True, part[1:] != part[:-1]])
    for start, end in zip(starts, [*starts[1:], len(part)]):
        out.write_parquet(f"{folder}/{part[start]:05d}/{name}.parquet", rows.slice(start, end - start))


def write_buckets(batch: pa.Table, p, excluded: np.ndarray, output: str, folder: str, group_of: dict, order_of: dict,
                  partitions: Partitions) -> pa.Table:
    """The map side of a document-level stage: a batch's bucket rows, one file per partition."""
    rows = bucket_rows(batch, p, excluded, group_of, order_of, partitions)
    write_partitions(Output(output), folder, rows, ids_hash(batch))
    return pa.table({"rows": [rows.num_rows]})


def reduce_partitions(batch: pa.Table, output: str, folder: str, rows: pa.Schema, reduce, empty: pa.Schema) -> pa.Table:
    """The reduce side: `reduce` of the rows (of schema `rows`) of each partition of the batch
    (bucket rows to edges, cluster members to their Jaccard); `empty`: its output schema."""
    out = Output(output)
    results = [empty.empty_table()]
    for part in batch.column("part").to_pylist():
        found = read_folder(out, f"{folder}/{part:05d}", rows)
        if found.num_rows:
            results.append(reduce(found))
    return pa.concat_tables(results)


def jaccard_pass(p: MinHashParams, out: Output, slots: list[list[str]], doc: np.ndarray, kept: np.ndarray, partitions: int) -> np.ndarray:
    """The Jaccard similarity of each removed `doc` with the `kept` document in its place
    (refinery.dedup.similarity), through a shuffle of the cluster members' shingle sets in
    `partitions` (only with --write-removed: it is for the removed rows, and the report)."""
    import ray

    order = np.argsort(doc)
    folder = f"{BUCKETS_DIR}/{p.stage}-jaccard"
    members = ray.put({"removed": doc[order], "kept": kept[order]})
    kwargs = {"p": p, "members": members, "output": out.uri, "folder": folder, "partitions": partitions}
    drain(read_filtered(out, slots, ["id", "text"]).map_batches(write_member_shingles, batch_format="pyarrow", fn_kwargs=kwargs))
    found = drain(over_partitions(reduce_partitions, partitions, output=out.uri, folder=folder, rows=_without(SHINGLE_ROWS, "part"),
                                  reduce=cluster_jaccards, empty=JACCARD))
    out.delete(folder)
    similarity = dict(zip(*(np.concatenate([b.column(c).to_numpy() for b in found] or [np.empty(0)]) for c in ("doc", "jaccard"))))
    return np.array([similarity.get(int(d), np.nan) for d in doc])


def write_member_shingles(batch: pa.Table, p: MinHashParams, members, output: str, folder: str, partitions: int) -> pa.Table:
    """The map side of the Jaccard shuffle: a batch's cluster members, one file per partition."""
    import ray

    members = ray.get(members) if isinstance(members, ray.ObjectRef) else members
    rows = member_shingles(batch, p, members["removed"], members["kept"], partitions)
    write_partitions(Output(output), folder, rows, ids_hash(batch))
    return pa.table({"rows": [rows.num_rows]})


# ---------------------------------------------------------------- substring dedup


def substring_dedup(p: SubstringDedupParams, out: Output, slots: list[list[str]], excluded: np.ndarray, group_of: dict, edits: str,
                    partitions: Partitions):
    """The four passes of `refinery.dedup.substring` (its module doc), through storage under
    `_buckets/substring_dedup/`: windows/<partition>/, candidates/<slot>/, requests/<slot>/,
    runs/<slot>/ (deleted when done), and edits/<slot>/ (read by the final pass). Returns
    (the ids of the documents it drops, its stats)."""
    folder = f"{BUCKETS_DIR}/{p.stage}"
    common = {"p": p, "output": out.uri, "folder": folder}
    written = drain(over_slots(write_windows, slots, excluded=excluded, group_of=group_of, partitions=partitions, **common))
    found = drain(over_partitions(reduce_windows, partitions.total, **common))
    out.delete(f"{folder}/windows")
    drain(over_slots(send_runs, slots, **common))
    out.delete(f"{folder}/requests")
    results = pa.concat_tables(drain(over_slots(strike_slot, slots, excluded=excluded, **common)))
    for sub in ("candidates", "runs"):
        out.delete(f"{folder}/{sub}")
    dropped = np.concatenate([np.asarray(d, dtype=np.int64) for d in results.column("dropped").to_pylist()] or [np.empty(0, np.int64)])
    return np.sort(dropped), {
        "removed": int(len(dropped)),
        "windows": sum(total(t, "windows") for t in written),
        "candidate_windows": sum(total(t, "candidates") for t in found),
        "rejected_candidates": total(results, "rejected"),
        "documents_touched": total(results, "touched"),
        "tokens_struck": total(results, "tokens_struck"),
        "min_tokens": p.min_tokens,
        "keep": p.keep,
    }


def total(table: pa.Table, column: str) -> int:
    return int(pc.sum(table.column(column)).as_py() or 0)


def write_windows(batch: pa.Table, p: SubstringDedupParams, output: str, folder: str, excluded: np.ndarray, group_of: dict,
                  partitions: Partitions) -> pa.Table:
    """Pass 1, per slot: the window rows of its documents, one file per hash partition."""
    out = Output(output)
    slot, files = batch.column("slot")[0].as_py(), batch.column("files")[0].as_py()
    n = 0
    for table in iter_parts(out, files, ["id", "text", "source"]):
        docs = doc_ids_from_strings(table.column("id").to_pylist())
        alive = ~np.isin(docs, excluded)
        table, docs = table.filter(pa.array(alive)), docs[alive]
        rows = window_rows(table.column("text"), docs, groups(table.column("source").to_pylist(), group_of), slot, p, partitions)
        write_partitions(out, f"{folder}/windows", rows, ids_hash(table))
        n += rows.num_rows
    return pa.table({"windows": [n]})


def reduce_windows(batch: pa.Table, p: SubstringDedupParams, output: str, folder: str) -> pa.Table:
    """Pass 2: the batch's hash partitions reduced to candidates and requests, each written
    to the slot it concerns (candidates: the copy's; requests: the partner's)."""
    out = Output(output)
    cands, reqs = [CANDIDATE_SCHEMA.empty_table()], [REQUEST_SCHEMA.empty_table()]
    parts = batch.column("part").to_pylist()
    for part in parts:
        rows = read_folder(out, f"{folder}/windows/{part:05d}", _WINDOW_SCHEMA_NO_PART)
        if rows.num_rows:
            c, r = candidates(rows, p.keep)
            cands.append(c)
            reqs.append(r)
    name = f"parts-{parts[0]:05d}-{parts[-1]:05d}"
    cand, req = pa.concat_tables(cands), pa.concat_tables(reqs)
    write_partitions(out, f"{folder}/candidates", cand, name, "slot")
    write_partitions(out, f"{folder}/requests", req, name, "slot")
    return pa.table({"candidates": [cand.num_rows]})


def send_runs(batch: pa.Table, p: SubstringDedupParams, output: str, folder: str) -> pa.Table:
    """Pass 3, per slot: the text its documents were asked for, to the slots that asked."""
    out = Output(output)
    slot, files = batch.column("slot")[0].as_py(), batch.column("files")[0].as_py()
    requests = read_folder(out, f"{folder}/requests/{slot:05d}", _REQUEST_FILE)
    if not requests.num_rows:
        return pa.table({"runs": [0]})
    wanted = np.unique(requests.column("doc").to_numpy())
    runs = [RUN_SCHEMA.empty_table()]
    for table in iter_parts(out, files, ["id", "text"]):
        docs = doc_ids_from_strings(table.column("id").to_pylist())
        keep = np.isin(docs, wanted)
        if keep.any():
            runs.append(request_runs(table.filter(pa.array(keep)), docs[keep], requests, p.min_tokens))
    runs = pa.concat_tables(runs)
    write_partitions(out, f"{folder}/runs", runs, f"from-{slot:05d}", "to_slot")
    return pa.table({"runs": [runs.num_rows]})


def strike_slot(batch: pa.Table, p: SubstringDedupParams, output: str, folder: str, excluded: np.ndarray) -> pa.Table:
    """Pass 4, per slot: candidates verified against their partners' text and struck; the
    slot's edits written for the final pass; the ids of the documents left too short."""
    out = Output(output)
    slot, files = batch.column("slot")[0].as_py(), batch.column("files")[0].as_py()
    cand = read_folder(out, f"{folder}/candidates/{slot:05d}", _CANDIDATE_FILE)
    runs = read_folder(out, f"{folder}/runs/{slot:05d}", _RUN_FILE)
    wanted = np.unique(cand.column("doc").to_numpy())
    edits, rejected = [EDIT_SCHEMA.empty_table()], 0
    for table in iter_parts(out, files, ["id", "text"]) if len(wanted) else ():
        docs = doc_ids_from_strings(table.column("id").to_pylist())
        keep = np.isin(docs, wanted)
        if keep.any():
            e, r = strike(table.filter(pa.array(keep)), docs[keep], cand, runs, p)
            edits.append(e)
            rejected += r
    edits = pa.concat_tables(edits)
    if edits.num_rows:
        out.write_parquet(f"{folder}/edits/{slot:05d}/edits.parquet", edits)
    dropped = edits.filter(edits.column("dropped")).column("doc").to_numpy()
    return pa.table(
        {
            "dropped": [dropped.tolist()], "rejected": [rejected], "touched": [edits.num_rows],
            "tokens_struck": [total(edits, "tokens_struck")],
        },
        schema=pa.schema([("dropped", pa.list_(pa.int64())), ("rejected", pa.int64()), ("touched", pa.int64()), ("tokens_struck", pa.int64())]),
    )


def apply_edits(table: pa.Table, edits: pa.Table) -> pa.Table:
    """Rows with substring dedup's edits: a kept document's text, n_words and n_chars are
    replaced, a dropped one keeps its own (it leaves whole); every edited row gets its spans,
    tokens struck, original text and the words and chars struck (kept ones only)."""
    docs = doc_ids_from_strings(table.column("id").to_pylist())
    e_doc = edits.column("doc").to_numpy()
    order = np.argsort(e_doc)
    at = np.minimum(np.searchsorted(e_doc, docs, sorter=order), max(len(e_doc) - 1, 0))
    hit = (e_doc[order[at]] == docs) if len(e_doc) else np.zeros(len(docs), dtype=bool)
    idx = pa.array(np.where(hit, order[at], 0)) if len(e_doc) else None
    taken = edits.take(idx) if idx is not None else None
    kept_edit = pa.array(hit) if taken is None else pc.and_(pa.array(hit), pc.invert(taken.column("dropped")))

    def pick(column: str, own: pa.ChunkedArray, mask) -> pa.Array:
        return own if taken is None else pc.if_else(mask, taken.column(column), own)

    n_words, n_chars = table.column("n_words"), table.column("n_chars")
    new_words, new_chars = pick("n_words", n_words, kept_edit), pick("n_chars", n_chars, kept_edit)
    none = pa.nulls(len(docs))
    extra = {
        "_original_text": pc.if_else(pa.array(hit), table.column("text"), none.cast(pa.large_string())),
        "_spans": pick("spans", none.cast(EDIT_SCHEMA.field("spans").type), pa.array(hit)),
        "_tokens_struck": pick("tokens_struck", none.cast(pa.int64()), pa.array(hit)),
        "_detail": pick("detail", none.cast(pa.string()), pa.array(hit)),
        "_words_struck": pc.subtract(n_words, new_words),
        "_chars_struck": pc.subtract(n_chars, new_chars),
    }
    for name, column in (("text", pick("text", table.column("text"), kept_edit)), ("n_words", new_words), ("n_chars", new_chars)):
        table = table.set_column(table.schema.get_field_index(name), name, column)
    for name, column in extra.items():
        table = table.append_column(name, column)
    return table


# ---------------------------------------------------------------- the final pass


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
    document kept in their place (none for substring dedup's drops), in the columns the outcome
    recorder counts."""
    import ray

    plan = ray.get(plan) if isinstance(plan, ray.ObjectRef) else plan
    ints = doc_ids_from_strings(batch.column("id").to_pylist())
    pos = np.minimum(np.searchsorted(plan["doc"], ints), max(len(plan["doc"]) - 1, 0))
    hit = (plan["doc"][pos] == ints) if len(plan["doc"]) else np.zeros(len(ints), dtype=bool)
    stages = [plan["stages"][plan["stage"][i]] if h else None for i, h in zip(pos, hit)]
    names = plan.get("kept_names", {})
    duplicate_of = [
        names.get(int(plan["kept"][i]), str(int(plan["kept"][i]))) if h and s != SUBSTRING else None for i, h, s in zip(pos, hit, stages)
    ]
    detail = [f"jaccard {plan['jaccard'][i]:.3f} with the kept document (word {plan['ngrams'][plan['stage'][i]]}-gram shingles)"
              if h and not np.isnan(plan["jaccard"][i]) else None for i, h in zip(pos, hit)]
    text = batch.column("text")
    if not keep_removed_text:
        text = pc.if_else(pa.array(hit), pa.scalar(None, text.type), text)
    return batch.set_column(batch.schema.get_field_index("text"), "text", text).append_column(
        "record_type", pa.array(["response"] * batch.num_rows)
    ).append_column("removed_by", pa.array(stages, pa.string())).append_column(
        "reason", pa.array([REASONS[s] if s else None for s in stages], pa.string())
    ).append_column("reason_detail", pa.array(detail, pa.string())).append_column("duplicate_of", pa.array(duplicate_of, pa.string()))


def dedup_outcomes(batch: pa.Table, output: str, write_removed: bool, grouping: dict) -> pa.Table:
    """The final pass's end for a batch: substring dedup's rows (with their spans) under
    `removed/substring_dedup/`, the other stages' removed rows, and the counts, with the words
    struck from kept documents as an outcome of substring dedup and per stage and scope group
    the documents in and out. Returns the kept rows."""
    out = Output(output)
    name = ids_hash(batch)
    counts = batch_counts(batch)
    if "_spans" in batch.column_names:
        touched = pc.is_valid(batch.column("_spans"))
        left = pc.and_(touched, pc.not_equal(pc.fill_null(batch.column("removed_by"), ""), SUBSTRING))
        struck = [int(pc.sum(batch.column(c).filter(left)).as_py() or 0) for c in ("_words_struck", "_chars_struck")]
        if any(struck):  # struck from documents that stay: the funnel subtracts them at this stage
            counts["struck"][SUBSTRING] = struck
        if write_removed and pc.any(touched).as_py():
            out.write_parquet(f"removed/{SUBSTRING}/{name}.parquet", substring_removed_rows(batch.filter(touched)))
        batch = batch.drop_columns(["_original_text", "_spans", "_tokens_struck", "_detail", "_words_struck", "_chars_struck"])
    counts["dedup_groups"] = group_counts(batch, grouping)
    return write_outcomes(out, name, batch, write_removed, DEDUP_PARTS_DIR, counts=counts, removed_elsewhere=frozenset({SUBSTRING}))


def substring_removed_rows(rows: pa.Table) -> pa.Table:
    """removed/substring_dedup/: one row per document substring dedup touched, dropped
    (`too_few_words`) or kept (`spans_struck`; its text in the shards is what is left), with its
    text before striking, the struck spans (character offsets into that text) and, per span,
    one other place the span's first window occurs (document id and offset)."""
    dropped = pc.equal(pc.fill_null(rows.column("removed_by"), ""), SUBSTRING)
    columns = {c: rows.column(c) for c in ("id", "url", "source", "source_offset")} | {
        "removed_by": pa.array([SUBSTRING] * rows.num_rows, pa.string()),
        "reason": pc.if_else(dropped, REASONS[SUBSTRING], REASON_STRUCK),
        "reason_detail": rows.column("_detail"),  # e.g. "93 tokens struck in 1 spans, 471 words left"
        "text": rows.column("_original_text"),
    }
    assert list(columns) == REMOVED_COLUMNS  # the columns every removed/<stage>/ file starts with
    return pa.table(columns | {"tokens_struck": rows.column("_tokens_struck"), "spans": rows.column("_spans")})


def group_counts(batch: pa.Table, grouping: dict) -> dict:
    """Per stage and scope group: [documents in, documents removed]."""
    stages = list(grouping)
    removed_by = batch.column("removed_by").to_pylist()
    at = np.array([stages.index(s) if s in stages else len(stages) for s in removed_by], dtype=np.int64)
    sources = batch.column("source").to_pylist()
    out = {}
    for i, stage in enumerate(stages):
        group = groups(sources, grouping[stage]["of"])
        names = grouping[stage]["names"]
        alive, gone = np.bincount(group[at >= i], minlength=len(names)), np.bincount(group[at == i], minlength=len(names))
        out[stage] = {names[g]: [int(alive[g]), int(gone[g])] for g in np.flatnonzero(alive)}
    return out


def summarize_groups(info: dict, parts: list[dict]) -> dict:
    """stats.json's dedup section: each stage's own figures plus, under `groups`, the documents
    in and removed per scope group, and for substring dedup the words and characters struck
    from the documents it kept (summed over the final pass's parts)."""
    totals: dict = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for part in parts:
        for stage, by_group in part.get("dedup_groups", {}).items():
            for group, (n_in, n_out) in by_group.items():
                totals[stage][group][0] += n_in
                totals[stage][group][1] += n_out
    for stage, stage_info in info.items():
        stage_info["groups"] = {g: {"docs_in": v[0], "removed": v[1]} for g, v in sorted(totals[stage].items())}
    if SUBSTRING in info:  # the words and chars struck from the documents that stay
        struck = [p.get("struck", {}).get(SUBSTRING, [0, 0]) for p in parts]
        info[SUBSTRING]["words_struck"], info[SUBSTRING]["chars_struck"] = (sum(x[i] for x in struck) for i in (0, 1))
    return info


def _without(schema: pa.Schema, name: str) -> pa.Schema:
    """What a shuffle file holds: the rows' schema less the column it was split by."""
    return pa.schema([f for f in schema if f.name != name])


_BUCKET_SCHEMA_NO_PART = _without(BUCKET_SCHEMA, "part")
_WINDOW_SCHEMA_NO_PART = _without(WINDOW_SCHEMA, "part")
_CANDIDATE_FILE = _without(CANDIDATE_SCHEMA, "slot")
_REQUEST_FILE = _without(REQUEST_SCHEMA, "slot")
_RUN_FILE = _without(RUN_SCHEMA, "to_slot")
