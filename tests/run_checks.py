"""Checks of a finished `refinery run` (written with --write-removed) against what its output files
hold, counted here rather than taken from stats.py, and against each stage's rule recomputed on
the documents it removed. Shared by the tests of every preset, local or on object storage."""
from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from warcio.archiveiterator import ArchiveIterator

from refinery.config import RunConfig
from refinery.dedup.minhash import MinHashParams, minhash_signatures, normalize_texts
from refinery.extract import ExtractParams, extract_text
from refinery.io.warc import ReadParams, read_warc
from refinery.schema import rows_from_pylist
from refinery.stages import apply_stage


class RunOutput:
    """A run's output folder, local or on any pyarrow filesystem."""

    def __init__(self, root: str | Path, fs: pafs.FileSystem | None = None):
        self.fs = fs or pafs.LocalFileSystem()
        self.root = str(root).rstrip("/")

    def files(self, rel: str, suffix: str = ".parquet") -> list[str]:
        base = f"{self.root}/{rel}"
        if self.fs.get_file_info(base).type == pafs.FileType.NotFound:
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(base, recursive=True))
        return sorted(i.path for i in infos if i.is_file and i.path.endswith(suffix))

    def table(self, rel: str, columns: list[str] | None = None) -> pa.Table | None:
        """Every Parquet file under `rel` as one table; None when there is none."""
        files = self.files(rel)
        return pa.concat_tables(pq.read_table(f, columns=columns, filesystem=self.fs) for f in files) if files else None

    def stats(self) -> dict:
        with self.fs.open_input_stream(f"{self.root}/stats.json") as f:
            return json.loads(f.read())

    def outcome(self) -> dict:
        """Everything a user reads from a finished run: stats (less timings), shard rows and the
        removed rows of each stage, in id order."""
        stats = self.stats()
        stats.pop("seconds")
        removed = {}
        for f in self.files("removed"):
            removed.setdefault(f.split("/removed/")[1].split("/")[0], []).append(f)
        return {
            "stats": stats,
            "shards": self.table("shards").sort_by("id").to_pylist(),
            "removed": {s: pa.concat_tables(pq.read_table(f, filesystem=self.fs) for f in fs).sort_by("id").to_pylist() for s, fs in sorted(removed.items())},
        }


def _tally(texts: list[str | None]) -> np.ndarray:
    """(documents, words, characters) of texts; a removed row without text counts 0 words."""
    present = [t for t in texts if t]
    return np.array([len(texts), sum(len(t.split()) for t in present), sum(len(t) for t in present)])


def check_funnel_against_files(out: RunOutput, stats: dict) -> None:
    """Every number of the funnel against the output files: a stage's output is what is kept
    plus what later stages removed (documents, and the words and characters of their text as
    written: str.split words, Python characters, counted here), plus what later text-modifying
    stages struck from documents they kept. Those struck words and characters are the numbers
    taken from stats.json (a struck line's newline, or a citation struck from inside a word, is
    not in the file), held to the lines in removed_lines/<stage>/: a document loses at most the
    words of its struck lines, and at least their characters."""
    names = [s["stage"] for s in stats["stages"]]
    texts = lambda t: t.column("text").to_pylist() if t is not None else []  # noqa: E731
    kept = _tally(texts(out.table("shards", ["text"])))
    assert stats["kept"] == dict(zip(["docs", "words", "chars"], kept.tolist()))
    removed, struck = {}, {}
    for s in stats["stages"]:
        rows = out.table(f"removed/{s['stage']}", ["id", "reason", "text"])
        rows = rows.to_pylist() if rows is not None else []
        removed[s["stage"]] = _tally([r["text"] for r in rows])
        by_reason = {}
        for reason in {r["reason"] for r in rows}:
            docs, words, chars = _tally([r["text"] for r in rows if r["reason"] == reason]).tolist()
            by_reason[reason] = {"docs": docs, "words": words, "chars": chars}
        assert s["removed_detail"] == by_reason, s["stage"]
        lines = out.table(f"removed_lines/{s['stage']}", ["id", "text"])
        dropped = {r["id"] for r in rows}
        kept_lines = [r["text"] for r in (lines.to_pylist() if lines is not None else []) if r["id"] not in dropped]
        struck[s["stage"]] = np.array([0, s["words_struck"], s["chars_struck"]])
        assert bool(kept_lines) == (s["chars_struck"] > 0), s["stage"]
        assert s["words_struck"] <= sum(len(t.split()) for t in kept_lines), s["stage"]
        assert s["chars_struck"] >= sum(len(t) for t in kept_lines), s["stage"]
    alive = kept + sum(removed.values()) + sum(struck.values())
    assert stats["documents"] == alive[0]
    not_documents = out.table("removed/read", ["reason"])
    assert stats["not_documents"] == (dict(Counter(not_documents.column("reason").to_pylist())) if not_documents else {})
    assert stats["records_read"] == stats["documents"] + (not_documents.num_rows if not_documents else 0)
    for s in stats["stages"]:
        before = alive
        alive = alive - removed[s["stage"]] - struck[s["stage"]]
        assert (s["docs_in"], s["docs_out"]) == (before[0], alive[0]), s["stage"]
        if s["words_in"] is not None:
            assert (s["words_in"], s["chars_in"]) == tuple(before[1:]), s["stage"]
        if s["words_out"] is not None:
            assert (s["words_out"], s["chars_out"]) == tuple(alive[1:]), s["stage"]
        if s["stage"] == "extract":
            assert stats["words_extracted"] == alive[1]
    assert alive.tolist() == kept.tolist()


# --- each stage's rule, recomputed on what it removed -----------------------------------------------


def warc_record_row(source: str, offset: int) -> dict:
    """The row the reader makes of the record at `offset` (every record of a .warc.gz is a gzip
    member of its own, so reading can start there)."""
    with open(source, "rb") as f:
        f.seek(offset)
        row = next(read_warc(f, source, ReadParams(batch_records=1))).to_pylist()[0]
    return row | {"source_offset": offset}  # the reader counts from where it started


def warc_payload(source: str, offset: int) -> tuple[str, bytes]:
    """(Content-Type, HTTP payload bytes) of the response record at `offset`, to plant copies of it."""
    with open(source, "rb") as f:
        f.seek(offset)
        record = next(iter(ArchiveIterator(f)))
        return record.http_headers.get_header("Content-Type"), record.content_stream().read()


def rerun_filter_stage(p, removed: dict) -> str | None:
    """The reason `p` gives the removed document when run again on what it saw: its text, or,
    for a stage before text exists, its URL and the HTML of its WARC record."""
    row = {"id": removed["id"], "url": removed["url"], "domain": urlsplit(removed["url"] or "").hostname, "text": removed["text"]}
    if removed["text"] is None:
        row["html"] = warc_record_row(removed["source"], removed["source_offset"])["html"]
    if isinstance(p, ExtractParams) and removed["reason"] == "extract:timeout":
        # CPU time is what times out, not wall time; the page must take at least most of the limit
        started = time.process_time()
        reason = extract_text(row["html"], p)[1]
        return reason if reason == "extract:timeout" or time.process_time() - started < p.timeout_s / 2 else "extract:timeout"
    return apply_stage(rows_from_pylist([row]), p, keep_removed_text=True).column("reason")[0].as_py()


def check_filter_removals(out: RunOutput, cfg: RunConfig, stats: dict, html_sample: int = 40) -> dict[str, Counter]:
    """Each filter stage's removed rows: counted as stats.json says, every reason one of that
    stage's, and the stage's rule reproduces it (on every row with text; on up to `html_sample`
    evenly spread rows of a stage that removes by HTML, which costs a WARC read each). Returns
    the reasons per stage."""
    found = {}
    by_stage = {s["stage"]: s for s in stats["stages"]}
    for p in cfg.stages:
        rows = out.table(f"removed/{p.stage}")
        rows = rows.to_pylist() if rows is not None else []
        reasons = Counter(r["reason"] for r in rows)
        assert reasons == Counter(by_stage[p.stage]["removed"]), p.stage
        assert all(r["removed_by"] == p.stage and r["reason"].startswith(p.stage + ":") for r in rows), p.stage
        with_text = [r for r in rows if r["text"] is not None]
        without = [r for r in rows if r["text"] is None]
        step = max(1, -(-len(without) // html_sample))
        for r in with_text + without[::step]:
            assert rerun_filter_stage(p, r) == r["reason"], (p.stage, r["url"], r["reason"])
        found[p.stage] = reasons
    return found


def lsh_components(texts: list[str], p: MinHashParams) -> np.ndarray:
    """Connected components (a label per text) of the LSH graph: two texts are linked when all
    `rows` signature values of some band are equal. Signatures from refinery (bit-equal to
    datasketch's, test_dedup_minhash.py); the banding and the union-find are this file's."""
    signatures = minhash_signatures(texts, p)
    parent = list(range(len(texts)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for b in range(p.bands):
        first: dict[bytes, int] = {}
        for i, band in enumerate(signatures[:, b * p.rows : (b + 1) * p.rows]):
            j = first.setdefault(band.tobytes(), i)
            parent[root(i)] = root(j)
    return np.array([root(i) for i in range(len(texts))])


def check_dedup_removals(out: RunOutput, cfg: RunConfig, stats: dict) -> dict[str, int]:
    """Each dedup stage's removals recomputed from the documents it saw (the shards plus what it
    and the later dedup stages removed): MinHash, every LSH cluster keeps exactly one document
    and a removed one names a kept document of its cluster; exact dedup, one document per
    normalized text. Returns the removals per stage."""
    shards = out.table("shards", ["id", "text"])
    later: list[pa.Table] = []
    removed_by: dict[str, int] = {}
    for p in reversed(cfg.dedup):
        removed = out.table(f"removed/{p.stage}", ["id", "text", "reason", "duplicate_of"])
        survivors = pa.concat_tables([shards.select(["id", "text"]), *later]) if later else shards.select(["id", "text"])
        gone = removed.select(["id", "text"]) if removed is not None else survivors.schema.empty_table()
        seen = pa.concat_tables([survivors, gone])
        ids, texts = seen.column("id").to_pylist(), seen.column("text").to_pylist()
        survived = np.arange(len(ids)) < survivors.num_rows
        index = {d: i for i, d in enumerate(ids)}
        if p.stage == "minhash":
            label = lsh_components(texts, p)
        elif p.stage == "exact_dedup":
            label = np.unique(normalize_texts(texts), return_inverse=True)[1]
        else:  # a dedup stage these checks do not know: its reasons only
            label = None
        if removed is not None:
            assert all(r.startswith(p.stage + ":") for r in removed.column("reason").to_pylist()), p.stage
            if label is not None:
                for doc, kept in zip(removed.column("id").to_pylist(), removed.column("duplicate_of").to_pylist()):
                    assert survived[index[kept]] and label[index[doc]] == label[index[kept]], (p.stage, doc, kept)
        if label is not None:
            survivors_per_cluster = Counter(label[survived].tolist())
            assert set(survivors_per_cluster.values()) <= {1}
            assert set(label.tolist()) == set(survivors_per_cluster), f"{p.stage}: a cluster lost every document"
        removed_by[p.stage] = removed.num_rows if removed is not None else 0
        assert stats["dedup"][p.stage]["removed"] == removed_by[p.stage]
        later.append(gone)
    return removed_by
