"""Counts of what happened to every record: per-batch counts taken where the rows end, summed
into the run's funnel (RefinedWeb figure 2), `stats.json` and the printed table."""
from __future__ import annotations

from collections import Counter, defaultdict

import pyarrow as pa

# Percent of Common Crawl documents left after each stage in RefinedWeb's figure 2 (REFERENCE.md).
REFINEDWEB_FUNNEL = {
    "url_filter": 97.76,
    "extract": 96.31,
    "language": 47.51,
    "gopher_repetition": 35.97,
    "gopher_quality": 30.15,
    "line_corrections": 23.34,
    "minhash": 14.50,  # fuzzy dedup
    "substring_dedup": 11.67,  # the paper's "exact dedup": repeated spans struck (% of tokens, not documents)
}
KEPT = "kept"


def batch_counts(batch: pa.Table) -> dict:
    """What one finished batch holds: rows by WARC type, and docs/words/chars by outcome
    (`removed_by|reason`, or `kept`). Plain JSON, so parts can be written and summed anywhere."""
    cols = batch.select(
        ["record_type", "removed_by", "reason", "n_words", "n_chars", "language", "source", "source_offset"]
    ).to_pydict()
    outcomes: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    errors = []
    for i, stage in enumerate(cols["removed_by"]):
        key = f"{stage}|{cols['reason'][i]}" if stage else KEPT
        o = outcomes[key]
        o[0] += 1
        o[1] += cols["n_words"][i] or 0
        o[2] += cols["n_chars"][i] or 0
        if cols["record_type"][i] == "error":
            errors.append({"source": cols["source"][i], "offset": cols["source_offset"][i], "reason": cols["reason"][i]})
    return {
        "records": batch.num_rows,
        "record_types": dict(Counter(cols["record_type"])),
        "outcomes": dict(outcomes),
        "languages": dict(Counter(x for x in cols["language"] if x)),
        "errors": errors,
    }


def merge_counts(parts: list[dict]) -> dict:
    total = {"records": 0, "record_types": Counter(), "outcomes": defaultdict(lambda: [0, 0, 0]), "languages": Counter(), "errors": []}
    for part in parts:
        total["records"] += part["records"]
        total["record_types"].update(part["record_types"])
        total["languages"].update(part["languages"])
        total["errors"].extend(part["errors"])
        for key, (d, w, c) in part["outcomes"].items():
            o = total["outcomes"][key]
            o[0] += d
            o[1] += w
            o[2] += c
    return total


def funnel(counts: dict, stage_names: list[str]) -> dict:
    """stats.json's content: records read, the records that were not documents, and per stage
    the documents in and out, removals by reason, words and characters kept, and the percent of
    documents kept beside RefinedWeb's figure. Words and characters are those of each document's
    text when it left the pipeline (kept) or was removed."""
    by_stage: dict[str, dict[str, list[int]]] = defaultdict(dict)
    for key, v in counts["outcomes"].items():
        stage, _, reason = key.partition("|")
        by_stage[stage][reason or KEPT] = v
    not_documents = {r: v[0] for r, v in sorted(by_stage.pop("read", {}).items())}
    documents = counts["records"] - sum(not_documents.values())
    stages = []
    alive_docs = documents
    alive_words = sum(v[1] for s in stage_names + [KEPT] for v in by_stage.get(s, {}).values())
    alive_chars = sum(v[2] for s in stage_names + [KEPT] for v in by_stage.get(s, {}).values())
    for name in stage_names:
        removed = by_stage.get(name, {})
        docs_in = alive_docs
        alive_docs -= sum(v[0] for v in removed.values())
        alive_words -= sum(v[1] for v in removed.values())
        alive_chars -= sum(v[2] for v in removed.values())
        stages.append(
            {
                "stage": name,
                "docs_in": docs_in,
                "docs_out": alive_docs,
                # documents removed by reason (a reason with no documents only struck words: substring dedup)
                "removed": {r: v[0] for r, v in sorted(removed.items(), key=lambda kv: -kv[1][0]) if v[0]},
                "words_out": alive_words,
                "chars_out": alive_chars,
                "percent_of_documents": round(100 * alive_docs / documents, 2) if documents else 0.0,
                "refinedweb_percent": REFINEDWEB_FUNNEL.get(name),
            }
        )
    kept = by_stage.get(KEPT, {}).get(KEPT, [0, 0, 0])
    return {
        "records_read": counts["records"],
        "record_types": dict(sorted(counts["record_types"].items())),
        "not_documents": not_documents,
        "documents": documents,
        "stages": stages,
        "kept": {"docs": kept[0], "words": kept[1], "chars": kept[2]},
        "languages": dict(counts["languages"].most_common()),
        "errors": counts["errors"],
    }


def format_table(stats: dict) -> str:
    """The funnel as a plain-text table, one line per stage, reasons indented below it."""
    lines = [
        f"records read: {stats['records_read']:,}   documents (HTTP 200 HTML responses): {stats['documents']:,}",
        "not documents: " + (", ".join(f"{r.removeprefix('read:')} {n:,}" for r, n in stats["not_documents"].items()) or "none"),
        "",
        f"{'stage':<20}{'docs in':>10}{'docs out':>10}{'words out':>14}{'% docs':>9}{'RefinedWeb %':>14}",
    ]
    for s in stats["stages"]:
        ref = f"{s['refinedweb_percent']:.2f}" if s["refinedweb_percent"] is not None else "-"
        lines.append(
            f"{s['stage']:<20}{s['docs_in']:>10,}{s['docs_out']:>10,}{s['words_out']:>14,}{s['percent_of_documents']:>9.2f}{ref:>14}"
        )
        for reason, n in s["removed"].items():
            lines.append(f"    {reason:<44}{n:>8,}")
    for stage, d in stats.get("dedup", {}).items():
        if "tokens_struck" in d:
            lines.append(f"{stage}: {d['tokens_struck']:,} tokens struck in {d['documents_touched']:,} documents, {d['removed']:,} left too short")
            continue
        sizes = ", ".join(f"{n} of size {size}" for size, n in d["cluster_sizes"].items()) or "none"
        lines.append(f"{stage} clusters: {sizes}")
    k = stats["kept"]
    lines += ["", f"kept: {k['docs']:,} documents, {k['words']:,} words, {k['chars']:,} characters"]
    for e in stats["errors"]:
        lines.append(f"error: {e['source']} at offset {e['offset']}: {e['reason']}")
    return "\n".join(lines)
