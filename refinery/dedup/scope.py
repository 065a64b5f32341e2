"""Where a dedup stage looks for duplicates: its scope. Without Ray; the driver resolves the
scope of every stage once (O(inputs)) and the workers look documents up by their input file.

- `run`: the whole run, as one group.
- `crawl`: one group per crawl. A file's crawl is the Common Crawl id in its path
  (`crawl-data/CC-MAIN-2024-10/...`, `CC-MAIN-2020-34-sample.warc.gz`), else the `isPartOf`
  field of its `warcinfo` record (Common Crawl writes `isPartOf: CC-MAIN-2024-10`; Heritrix and
  Nutch crawls write their crawl's name). Files with neither form one group, `NO_CRAWL`. FineWeb
  deduplicated per crawl: global dedup over 96 dumps kept older dumps' worst pages and gave worse
  models (REFERENCE.md).
- `{parts: N}`: the input files are dealt into N parts by a hash of the file's name (its last
  path segment, so a local mirror and s3:// or https:// give the same parts), so each part holds
  ~1/N of every crawl, as RefinedWeb did (MDR deduplicated within parts of 1/100 of every dump,
  for cost). `{parts: auto}` takes RefinedWeb's part size: one part per `AUTO_PART_WORDS` words
  entering the dedup phase (RefinedWeb: ~10T GPT-2 tokens before dedup in 100 parts, ~100B tokens
  or ~75B words each), at most one per input file, at least one. Any corpus under 75B words is
  then one part, which is what RefinedWeb's density gives it.

One split into parts per run: every stage scoped by parts uses the same N (checked with the
config), and URL dedup ranks copies by that part index (`url_rank`).

Shuffle partitions (a stage's `partitions`, distinct from `parts`: they split the work of one
stage's shuffle, not where duplicates are looked for): `auto`, the default, gives each scope group
its own partitions, as many as its documents' shuffle rows need for about TARGET_SHUFFLE_BYTES (1
GiB) each (`shuffle_partitions`): a reduce task holds one partition at a time, so its memory is
bounded however large the crawl, and a small group is not spread thin. MinHash's rows are ~18 KB
a document at 450 bands, so ~58k documents a partition; a crawl of 1B documents left after the
filters gets ~17k partitions. An integer N is the same N partitions shared by every group.
"""
from __future__ import annotations

import logging
import math
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal, Union

import numpy as np
import xxhash
from pydantic import Field

from refinery.params import Params

log = logging.getLogger(__name__)

NO_CRAWL = "no-crawl-id"
AUTO_PART_WORDS = 75_000_000_000
TARGET_SHUFFLE_BYTES = 1 << 30  # shuffle rows per partition with `partitions: auto`
_CC_MAIN = re.compile(r"CC-MAIN-\d{4}-\d{2}(?![0-9])")
_PEEK_RECORDS = 4  # a crawl's warcinfo record comes first; a few records is enough to give up


class PartsScope(Params):
    """Dedup within each of N parts of the input files (RefinedWeb); `auto`: see the module doc."""

    parts: Union[int, Literal["auto"]] = Field(description="number of parts, >= 1, or auto")

    def model_post_init(self, _) -> None:
        if isinstance(self.parts, int) and self.parts < 1:
            raise ValueError("parts must be >= 1 or auto")


Scope = Union[Literal["run", "crawl"], PartsScope]
# a stage's shuffle partitions: N, or `auto` (see the module doc)
PartitionCount = Union[Annotated[int, Field(ge=1)], Literal["auto"]]


@dataclass(frozen=True)
class Partitions:
    """Where a dedup stage's shuffle rows go: a row of scope group g to one of the `counts[g]`
    partitions from `offsets[g]`, by its hash. Small (O(groups)), sent to every worker."""

    offsets: np.ndarray
    counts: np.ndarray

    @classmethod
    def shared(cls, n: int, groups: int = 1) -> "Partitions":
        """N partitions that every group shares (an integer `partitions`)."""
        return cls(np.zeros(groups, np.int64), np.full(groups, n, np.int64))

    @property
    def total(self) -> int:
        return int((self.offsets + self.counts).max())

    def of(self, group: np.ndarray, h: np.ndarray) -> np.ndarray:
        """The partition of each row, from its group and its uint64 hash."""
        group = np.asarray(group, dtype=np.int64)
        return self.offsets[group] + (h.astype(np.uint64) % self.counts[group].astype(np.uint64)).astype(np.int64)


def shuffle_partitions(asked: Union[int, str], row_bytes: np.ndarray) -> Partitions:
    """A stage's partitions, from `asked` (N or auto) and the bytes of shuffle rows each scope
    group is expected to emit (`auto`: one partition per TARGET_SHUFFLE_BYTES of a group's, at least one)."""
    if asked != "auto":
        return Partitions.shared(int(asked), len(row_bytes))
    counts = np.maximum(1, np.ceil(np.asarray(row_bytes, dtype=np.float64) / TARGET_SHUFFLE_BYTES)).astype(np.int64)
    return Partitions(np.cumsum(counts) - counts, counts)


def crawl_from_path(path: str) -> str | None:
    """The Common Crawl id in a path or URL, if any (the crawl, not a WARC's timestamp name)."""
    m = _CC_MAIN.search(path)
    return m.group(0) if m else None


def crawl_from_warcinfo(path: str) -> str | None:
    """`isPartOf` of the file's warcinfo record (among its first records), or None."""
    from warcio.archiveiterator import ArchiveIterator

    from refinery.io.sources import open_input

    try:
        with open_input(path) as stream:
            for i, record in enumerate(ArchiveIterator(stream)):
                if record.rec_type == "warcinfo":
                    for line in record.content_stream().read(1 << 16).decode("utf-8", "replace").splitlines():
                        key, _, value = line.partition(":")
                        if key.strip().lower() == "ispartof" and value.strip():
                            return value.strip()
                if i + 1 >= _PEEK_RECORDS:
                    break
    except Exception as e:  # an unreadable file is the filter phase's to count; here it has no crawl
        log.info("%s: no crawl id (%s: %s)", path, type(e).__name__, e)
    return None


def crawl_ids(paths: list[str]) -> dict[str, str]:
    """Each input's crawl: from its path, else its warcinfo (read in parallel), else NO_CRAWL."""
    found = {p: crawl_from_path(p) for p in paths}
    missing = [p for p, c in found.items() if c is None]
    with ThreadPoolExecutor(max_workers=16) as pool:
        for p, c in zip(missing, pool.map(crawl_from_warcinfo, missing)):
            found[p] = c
    return {p: c or NO_CRAWL for p, c in found.items()}


def part_of(path: str, parts: int) -> int:
    """The part of an input file: xxh64 of its last path segment, mod `parts`."""
    name = path.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
    return xxhash.xxh64_intdigest(name.encode()) % parts


def auto_parts(words: int | None, n_inputs: int) -> int:
    """`parts: auto`: RefinedWeb's part size (see the module doc)."""
    return max(1, min(n_inputs, math.ceil((words or 0) / AUTO_PART_WORDS)))


def parts_of_run(scopes: list[Scope]) -> Union[int, Literal["auto"], None]:
    """The one `parts` value the stages scoped by parts share, or None when none is."""
    values = {s.parts for s in scopes if isinstance(s, PartsScope)}
    if len(values) > 1:
        raise ValueError(f"every dedup stage scoped by parts must use the same number of parts (found {sorted(map(str, values))})")
    return values.pop() if values else None


class Scopes:
    """The resolved scopes of a run: per input file its crawl and part, and for each scope kind
    the group of every file and the groups' names. Small (O(inputs)), sent to every worker."""

    def __init__(self, paths: list[str], scopes: list[Scope], words: int | None = None, crawls: bool = True):
        """`crawls`: look up each file's crawl (a warcinfo read per file whose path names none);
        without it every file is NO_CRAWL."""
        self.paths = list(paths)
        self.crawl = crawl_ids(self.paths) if crawls else {p: NO_CRAWL for p in self.paths}
        spec = parts_of_run(scopes)
        self.parts = 1 if spec is None else (auto_parts(words, len(self.paths)) if spec == "auto" else spec)
        self.part = {p: part_of(p, self.parts) for p in self.paths}
        ordered = sorted(set(self.crawl.values()) - {NO_CRAWL}) + [NO_CRAWL]
        self.crawl_order = {c: i for i, c in enumerate(ordered)}

    def names(self, scope: Scope) -> list[str]:
        """The groups of a scope, by group index."""
        if scope == "run":
            return ["run"]
        if scope == "crawl":
            return list(self.crawl_order)
        return [f"part-{i:04d}" for i in range(self.parts)]

    def group_of(self, scope: Scope) -> dict[str, int]:
        """The group index of each input file under `scope`."""
        if scope == "run":
            return {p: 0 for p in self.paths}
        if scope == "crawl":
            return {p: self.crawl_order[c] for p, c in self.crawl.items()}
        return dict(self.part)

    def describe(self, scope: Scope) -> dict:
        """What stats.json says about a stage's scope."""
        if isinstance(scope, PartsScope):
            return {"parts": self.parts, "asked": scope.parts}
        return {"scope": scope}


def groups(sources: list[str], group_of: dict[str, int]) -> np.ndarray:
    """int32 group of each document, from its input file (`source`); unknown files: group 0."""
    return np.array([group_of.get(s, 0) for s in sources], dtype=np.int32)


def epoch_seconds(dates: list[str | None]) -> np.ndarray:
    """WARC dates as epoch seconds; a missing or unreadable date is -1."""
    out = np.full(len(dates), -1, dtype=np.int64)
    for i, d in enumerate(dates):
        try:
            out[i] = int(datetime.fromisoformat((d or "").replace("Z", "+00:00")).timestamp())
        except ValueError:
            continue
    return out
