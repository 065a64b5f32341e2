"""The Arrow schemas of a document row as it moves through the stages, of an output shard row,
and of a removed row. Every batch in the pipeline has `ROW` exactly, so stages compose freely."""
import pyarrow as pa
import xxhash

# A row moving through the filter phase. `removed_by`/`reason` are null while the document is
# alive; the stage that drops it sets them, and later stages pass it through untouched, so every
# input record reaches the end with exactly one outcome.
ROW = pa.schema(
    [
        ("id", pa.string()),  # WARC-Record-ID, or sha1(url + date) when a record has none
        ("url", pa.string()),
        ("domain", pa.string()),
        ("date", pa.string()),  # WARC-Date, ISO 8601 as written in the record
        ("source", pa.string()),  # the WARC file the record came from
        ("source_offset", pa.int64()),  # byte offset of the record in that (compressed) file
        ("source_record", pa.int64()),  # ordinal of the record in that file, from 0: what a resumed run skips
        ("record_type", pa.string()),  # WARC-Type
        ("http_status", pa.int32()),
        ("content_type", pa.string()),
        ("charset", pa.string()),  # the charset the HTML was decoded with
        ("html", pa.large_string()),  # decoded HTML; null once text is extracted
        ("text", pa.large_string()),
        ("language", pa.string()),
        ("language_score", pa.float32()),
        ("n_words", pa.int64()),
        ("n_chars", pa.int64()),
        ("removed_by", pa.string()),  # stage name, or null while kept
        ("reason", pa.string()),  # "<stage>:<rule>", or null while kept
    ]
)

# Columns of an output shard (zstd Parquet), in order.
SHARD_COLUMNS = [
    "id", "url", "domain", "date", "source", "source_offset",
    "text", "language", "language_score", "n_words", "n_chars",
]
SHARD = pa.schema([ROW.field(c) for c in SHARD_COLUMNS])

# Columns of a file under removed/<stage>/.
REMOVED_COLUMNS = ["id", "url", "source", "source_offset", "removed_by", "reason", "text"]
REMOVED = pa.schema([ROW.field(c) for c in REMOVED_COLUMNS])


def empty_rows() -> pa.Table:
    return ROW.empty_table()


def rows_from_pylist(rows: list[dict]) -> pa.Table:
    """Rows given as dicts (missing keys are null) as a table with the ROW schema."""
    return pa.Table.from_pylist(rows, schema=ROW)


def ids_hash(batch: pa.Table) -> str:
    """A name for a batch from its documents' ids: the same batch, retried, gets the same name."""
    h = xxhash.xxh64()
    for rid in batch.column("id").to_pylist():
        h.update(((rid or "") + "\n").encode())
    return h.hexdigest()
