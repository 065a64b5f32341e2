"""Samples of what a run removed, read from its output folder (local or s3://): a few rows per
reason of `removed/<stage>/` (or per rule of `removed_lines/<stage>/`), chosen at random with a
fixed seed, so the same output always shows the same samples. Reads one column of each file to
find the candidates, then only the chosen rows' columns; stops listing candidates once every
reason asked for has enough of them."""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from refinery.io.storage import Output

REMOVED_DIR = "removed"
REMOVED_LINES_DIR = "removed_lines"
SHARDS_DIR = "shards"
CANDIDATES = 200  # per reason: enough rows to pick from once every reason asked for has them
SEED = 0


def _read(out: Output, rel: str, columns: list[str] | None) -> pa.Table:
    """The `columns` of a file that it has (all when None): one open, one footer read, then
    the columns (few requests on object storage)."""
    with out.fs.open_input_file(out.path(rel)) as f:
        parquet = pq.ParquetFile(f)
        names = parquet.schema_arrow.names
        return parquet.read(columns=names if columns is None else [c for c in columns if c in names])


def sample_rows(out: Output, folder: str, key: str, n: int, wanted: list[str] | None = None,
                columns: list[str] | None = None, seed: int = SEED) -> dict[str, list[dict]]:
    """Up to `n` rows per value of `key` (a reason, a rule) of the Parquet files under `folder`,
    at random with `seed`; only the values in `wanted` when given. Each row has `columns` (all
    when None) that its file holds."""
    files = out.list_files(folder, ".parquet")
    rng = np.random.default_rng(seed)
    candidates: dict[str, list[tuple[str, int]]] = defaultdict(list)
    want = set(wanted) if wanted is not None else None
    for i in rng.permutation(len(files)):
        rel = files[i]
        values = _read(out, rel, [key])
        for row, value in enumerate(values.column(0).to_pylist() if values.num_columns else []):
            if want is None or value in want:
                candidates[value].append((rel, row))
        if want is not None and all(len(candidates[v]) >= CANDIDATES for v in want):
            break
    by_file: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for value in sorted(v for v in candidates if v is not None):
        found = candidates[value]
        for j in sorted(rng.choice(len(found), size=min(n, len(found)), replace=False)):
            rel, row = found[j]
            by_file[rel].append((value, row))
    chosen: dict[str, list[dict]] = defaultdict(list)
    for rel, picks in sorted(by_file.items()):
        table = _read(out, rel, None if columns is None else list(dict.fromkeys([key, *columns])))
        rows = table.take(pa.array([row for _, row in picks])).to_pylist()
        for (value, _), row in zip(picks, rows):
            chosen[value].append(row)
    return dict(chosen)


def find_rows(out: Output, folders: list[str], ids: set[str], columns: list[str]) -> dict[str, dict]:
    """The rows with these ids in the Parquet files under `folders` (reading their `id` column
    first, then the wanted rows' `columns`), stopping when every id is found."""
    found: dict[str, dict] = {}
    missing = set(ids)
    for folder in folders:
        for rel in out.list_files(folder, ".parquet"):
            if not missing:
                return found
            file_ids = _read(out, rel, ["id"])
            if not file_ids.num_columns:
                continue
            file_ids = file_ids.column(0)
            hit = pc.is_in(file_ids, pa.array(sorted(missing), pa.string()))
            if not pc.any(hit).as_py():
                continue
            rows = _read(out, rel, list(dict.fromkeys(["id", *columns]))).filter(hit).to_pylist()
            for row in rows:
                found[row["id"]] = row
                missing.discard(row["id"])
    return found


def rows_where(out: Output, folder: str, column: str, values: set[str], columns: list[str]) -> list[dict]:
    """The rows of the Parquet files under `folder` whose `column` is one of `values`."""
    if not values:
        return []
    wanted = pa.array(sorted(values), pa.string())
    rows = []
    for rel in out.list_files(folder, ".parquet"):
        table = _read(out, rel, list(dict.fromkeys([column, *columns])))
        rows += table.filter(pc.is_in(table.column(column), wanted)).to_pylist()
    return rows


def removed_lines_of(out: Output, stage: str, ids: set[str]) -> dict[str, list[dict]]:
    """The lines `stage` removed from each of these documents (`removed_lines/<stage>/`)."""
    lines: dict[str, list[dict]] = defaultdict(list)
    for row in rows_where(out, f"{REMOVED_LINES_DIR}/{stage}", "id", ids, ["rule", "line", "text"]):
        lines[row["id"]].append(row)
    return lines


def removed_stages(out: Output) -> list[str]:
    """Stages with a folder under removed/ (a run with --write-removed)."""
    return sorted({rel.split("/")[1] for rel in out.list_files(REMOVED_DIR, ".parquet")})


def line_stages(out: Output) -> list[str]:
    return sorted({rel.split("/")[1] for rel in out.list_files(REMOVED_LINES_DIR, ".parquet")})
