"""The Arrow schemas of a document row as it moves through the stages, of an output shard row,
and of a removed row. Every batch in the pipeline has `ROW` exactly, so stages compose freely."""
import pyarrow as pa
import xxhash

# What a text-modifying stage took out of a document it kept: one entry per stage that struck
# anything. The funnel counts these words and chars at that stage (refinery.stats), so "words
# kept after each stage" is right although a row's n_words is that of its final text. A stage
# of either phase that strikes text (line corrections, C4's line rules, substring dedup) appends
# its entry and updates n_words/n_chars.
STRUCK = pa.list_(pa.struct([("stage", pa.string()), ("words", pa.int64()), ("chars", pa.int64())]))
# What the line rules of a text-modifying stage removed, recorded only when the run writes
# removed documents: the rule, the line's number in the text the stage received (split on
# "\n"), and the removed text (a whole line, or the substring a pattern matched).
REMOVED_LINE = pa.struct([("stage", pa.string()), ("rule", pa.string()), ("line", pa.int32()), ("text", pa.string())])

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
        ("reason_detail", pa.string()),  # what the rule measured against its bound: "dup_5_gram 0.171 > 0.15"
        ("struck", STRUCK),  # words/chars each text-modifying stage took out of it
        ("removed_lines", pa.list_(REMOVED_LINE)),  # the lines they took, with --write-removed
    ]
)

# Columns of an output shard (zstd Parquet), in order.
SHARD_COLUMNS = [
    "id", "url", "domain", "date", "source", "source_offset",
    "text", "language", "language_score", "n_words", "n_chars",
]
SHARD = pa.schema([ROW.field(c) for c in SHARD_COLUMNS])

# Columns of a file under removed/<stage>/.
REMOVED_COLUMNS = ["id", "url", "source", "source_offset", "removed_by", "reason", "reason_detail", "text"]
REMOVED = pa.schema([ROW.field(c) for c in REMOVED_COLUMNS])

# Columns of a file under removed_lines/<stage>/: one row per line (or substring) a text-modifying
# stage removed, from documents it kept and from those it dropped (whose text in removed/<stage>/ is
# the text the line numbers count in).
REMOVED_LINES = pa.schema([ROW.field(c) for c in ("id", "url", "source", "source_offset")] + list(REMOVED_LINE))


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
