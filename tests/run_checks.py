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
from refinery.dedup.exact import url_key
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


def struck_texts(out: RunOutput, stage: str, kept_ids: set[str]) -> tuple[set[str], list[str]]:
    """What `stage` struck from documents it kept, as the output shows it: (their ids, the
    struck texts), from removed_lines/<stage>/ (lines, substrings) and from the rows of kept
    documents in removed/<stage>/ (substring dedup's spans)."""
    ids, texts = set(), []
    lines = out.table(f"removed_lines/{stage}", ["id", "text"])
    dropped = out.table(f"removed/{stage}", ["id"])
    dropped = set(dropped.column("id").to_pylist()) - kept_ids if dropped is not None else set()
    for r in lines.to_pylist() if lines is not None else []:
        if r["id"] not in dropped:
            ids.add(r["id"])
            texts.append(r["text"])
    rows = out.table(f"removed/{stage}")
    if rows is not None and "spans" in rows.column_names:
        for r in rows.select(["id", "spans"]).to_pylist():
            if r["id"] in kept_ids:
                ids.add(r["id"])
                texts += [span["text"] for span in r["spans"] or []]
    return ids, texts


def check_funnel_against_files(out: RunOutput, stats: dict) -> None:
    """Every number of the funnel against the output files: a stage's output is what is kept
    plus what later stages removed (documents, and the words and characters of their text as
    written: str.split words, Python characters, counted here), plus what later text-modifying
    stages struck from documents they kept. Those struck words and characters are the numbers
    taken from stats.json (a struck line's newline, or a citation struck from inside a word, is
    not in the files), held to what the files show was struck (`struck_texts`): a document loses
    at most the words of its struck texts, and at least their characters. A removed/ row of a
    document that is in the shards (substring dedup's `spans_struck`) is an edit, not a removal."""
    shards = out.table("shards", ["id", "text"])
    kept = _tally(shards.column("text").to_pylist() if shards is not None else [])
    kept_ids = set(shards.column("id").to_pylist()) if shards is not None else set()
    assert stats["kept"] == dict(zip(["docs", "words", "chars"], kept.tolist()))
    removed, struck = {}, {}
    for s in stats["stages"]:
        rows = out.table(f"removed/{s['stage']}", ["id", "reason", "text"])
        rows = [r for r in (rows.to_pylist() if rows is not None else []) if r["id"] not in kept_ids]
        removed[s["stage"]] = _tally([r["text"] for r in rows])
        by_reason = {}
        for reason in {r["reason"] for r in rows}:
            docs, words, chars = _tally([r["text"] for r in rows if r["reason"] == reason]).tolist()
            by_reason[reason] = {"docs": docs, "words": words, "chars": chars}
        assert s["removed_detail"] == by_reason, s["stage"]
        _, texts = struck_texts(out, s["stage"], kept_ids)
        struck[s["stage"]] = np.array([0, s["words_struck"], s["chars_struck"]])
        assert bool(texts) == (s["chars_struck"] > 0), s["stage"]
        assert s["words_struck"] <= sum(len(t.split()) for t in texts), s["stage"]
        assert s["chars_struck"] >= sum(len(t) for t in texts), s["stage"]
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
    and the later dedup stages removed), and every removed one names a document that survived
    it: MinHash, every LSH cluster keeps exactly one document and a removed one names a kept
    document of its cluster; exact dedup, one document per normalized text; URL dedup, the kept
    document has the same normalized URL. A document a later stage struck text from (substring
    dedup; its lines in removed_lines/) no longer has the text MinHash saw, so it takes no part in
    the recomputed clusters. Other stages: their reasons only. Returns the removals per stage."""
    shards = out.table("shards", ["id", "url", "text"])
    kept_ids = set(shards.column("id").to_pylist())
    later: list[pa.Table] = []
    edited: set[str] = set()  # documents whose text a later stage changed
    removed_by: dict[str, int] = {}
    for p in reversed(cfg.dedup):
        rows = out.table(f"removed/{p.stage}")
        if rows is not None:
            assert all(r.startswith(p.stage + ":") for r in rows.column("reason").to_pylist()), p.stage
            rows = rows.filter(pa.array([d not in kept_ids for d in rows.column("id").to_pylist()]))  # not edits
        survivors = pa.concat_tables([shards, *later])
        gone = rows.select(["id", "url", "text"]).cast(shards.schema) if rows is not None else shards.schema.empty_table()
        survivor_ids = set(survivors.column("id").to_pylist())
        named = rows is not None and "duplicate_of" in rows.column_names
        pairs = list(zip(gone.column("id").to_pylist(), rows.column("duplicate_of").to_pylist())) if named else []
        assert all(kept in survivor_ids for _, kept in pairs), f"{p.stage}: a removed document names one that did not survive it"
        seen = pa.concat_tables([survivors, gone])
        if p.stage in ("minhash", "exact_dedup"):
            compared = seen.filter(pa.array([d not in edited for d in seen.column("id").to_pylist()]))
            texts = compared.column("text").to_pylist()
            label = lsh_components(texts, p) if p.stage == "minhash" else np.unique(normalize_texts(texts), return_inverse=True)[1]
            cluster = dict(zip(compared.column("id").to_pylist(), label.tolist()))
            survived = Counter(cluster[d] for d in compared.column("id").to_pylist() if d in survivor_ids)
            assert set(survived.values()) <= {1}, f"{p.stage}: a cluster kept two documents"
            for doc, kept in pairs:
                assert kept in edited or cluster[doc] == cluster[kept], (p.stage, doc, kept)
                assert cluster[doc] in survived or kept in edited, f"{p.stage}: a cluster lost every document"
        elif p.stage == "url_dedup":
            urls = dict(zip(seen.column("id").to_pylist(), seen.column("url").to_pylist()))
            assert all(url_key(urls[doc]) == url_key(urls[kept]) for doc, kept in pairs)
        removed_by[p.stage] = gone.num_rows
        assert stats["dedup"][p.stage]["removed"] == removed_by[p.stage]
        edited |= struck_texts(out, p.stage, kept_ids)[0]
        later.append(gone)
    return removed_by
