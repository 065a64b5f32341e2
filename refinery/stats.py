"""Counts of what happened to every record: per-batch counts taken where the rows end, summed
into the run's funnel (RefinedWeb figure 2), `stats.json` and the printed table.

`stats.json` (schema_version 3; later versions add keys, never rename one):
- `schema_version`, `token_unit` (tokens are whitespace-separated words of the extracted text).
- `records_read`, `record_types` (WARC records by type), `not_documents` (records that are not
  HTTP 200 HTML responses, by reason), `documents` (the rest: what the funnel starts from).
- `words_extracted`: words of all extracted text, before any stage removed a document or a line.
- `stages`: one entry per stage, in run order (filter phase, then dedup phase):
  - `stage`, `phase` ("filter" or "dedup"), `docs_in`, `docs_out`, `removed` ({reason: docs}),
    `removed_detail` ({reason: {docs, words, chars}}: the removed documents' text at that stage);
  - `words_in`, `words_out`, `chars_in`, `chars_out`: text of the documents alive before/after
    the stage, after its edits (null before extraction: there is no text yet);
  - `words_struck`, `chars_struck`: what a text-modifying stage took out of documents it kept
    (line corrections, C4's line rules, substring dedup), counted at that stage;
  - `percent_of_documents` (docs_out / documents), `percent_of_words` (words_out /
    words_extracted);
  - `figure2_measure`, `figure2_percent`, `refinedweb_percent`: this run as RefinedWeb's figure 2
    measures it, beside the paper's figure (REFERENCE.md): documents through the filter phase,
    then tokens (words), chained from the filter phase's last figure as the paper's bars are. The
    language prefilter is language ID done early, so its removals count in the `language` row
    (its own figure2_percent is null): `extract` compares with 96.31, `language` with 47.51.
- `kept` ({docs, words, chars}), `languages` (documents by identified language), `errors`
  (unreadable records: source, offset, reason). The pipeline adds `dedup` (per dedup stage: its
  scope, its shuffle's `partitions` and `partitions_asked` (N or auto), removed, and per scope group `groups` {docs_in, removed}; MinHash, exact and URL dedup
  add cluster sizes, substring dedup tokens_struck, words_struck, chars_struck,
  documents_touched, windows, candidate_windows, rejected_candidates), `inputs`, `failed_inputs`
  (inputs finished with --accept-failed-inputs: path, error, and where reading stopped; the rest
  of each is one `read:network_failed` record) and `seconds` (per phase).
- `distributions` (schema 3), what the run report charts, counted here like everything else:
  - `words_per_document`: `bins` (lower edges; the last bin is open) and, per outcome, documents
    by their words: `kept` (the final text) and each stage's removed documents (their text
    where the stage removed them; documents removed before extraction have none);
  - `language_score`: `bins` and, per identified language, documents by fastText score (the
    page text's score for the pages `language_prefilter` removed, the extracted text's else);
  - `kept_domains`: `words` ({domain: words kept}, the top DOMAINS_LISTED by words), `tracked`
    and `max_error_words`: the domains are summed in a Misra-Gries summary of DOMAINS_TRACKED
    entries, so a run with more kept domains than that lists lower bounds, each at most
    `max_error_words` under the true figure (0: exact).

Words a text-modifying stage strikes do not show in a row's final n_words: each such stage
records them on the row (`struck`, refinery.schema), `batch_counts` sums them per stage and the
funnel subtracts them at the stage that struck them."""
from __future__ import annotations

from bisect import bisect_right
from collections import Counter, defaultdict

import pyarrow as pa

SCHEMA_VERSION = 3
TOKEN_UNIT = "words: whitespace-separated tokens of the extracted text"
# Percent of Common Crawl kept after each stage in RefinedWeb's figure 2 (REFERENCE.md).
REFINEDWEB_FUNNEL = {
    "url_filter": 97.76,
    "extract": 96.31,
    "language": 47.51,
    "gopher_repetition": 35.97,
    "gopher_quality": 30.15,
    "line_corrections": 23.34,
    "minhash": 14.50,  # fuzzy dedup
    # the paper's "exact dedup" is span-level: repeated spans struck (MDR stage 8), not exact_dedup's
    # whole documents, which removes nothing after MinHash
    "substring_dedup": 11.67,
}
# Stages whose removals figure 2 counts in a later stage's bar.
FIGURE2_ROW = {"language_prefilter": "language"}
KEPT = "kept"
# Lower bin edges of the words-per-document histograms (1-2-5 steps; the last bin is open).
WORD_BINS = [0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000]
SCORE_BINS = [round(0.05 * i, 2) for i in range(20)]  # fastText scores, [0.95, 1.0] in the last bin
DOMAINS_TRACKED = 1000  # entries of the kept-domain summary
DOMAINS_LISTED = 100  # of which stats.json lists the top ones


def batch_counts(batch: pa.Table) -> dict:
    """What one finished batch holds: rows by WARC type, docs/words/chars by outcome
    (`removed_by|reason`, or `kept`), and words/chars struck per text-modifying stage. Plain
    JSON, so parts can be written and summed anywhere."""
    cols = batch.select(
        ["record_type", "removed_by", "reason", "n_words", "n_chars", "language", "language_score", "domain", "source", "source_offset"]
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
    struck: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    if "struck" in batch.column_names:
        for entries in batch.column("struck").to_pylist():
            for e in entries or ():
                s = struck[e["stage"]]
                s[0] += e["words"]
                s[1] += e["chars"]
    return {
        "records": batch.num_rows,
        "record_types": dict(Counter(cols["record_type"])),
        "outcomes": dict(outcomes),
        "struck": dict(struck),
        "languages": dict(Counter(x for x in cols["language"] if x)),
        "errors": errors,
    } | distribution_counts(cols)


def _histogram(values, bins: list) -> list[int]:
    counts = [0] * len(bins)
    for v in values:
        counts[bisect_right(bins, v) - 1] += 1
    return counts


def distribution_counts(cols: dict) -> dict:
    """A batch's share of `distributions`: words per document by outcome, language scores
    by language, words kept per domain (all of the batch's kept domains: parts are small)."""
    words: dict[str, list[int]] = defaultdict(list)
    scores: dict[str, list[float]] = defaultdict(list)
    domains: Counter = Counter()
    for stage, n, language, score, domain in zip(cols["removed_by"], cols["n_words"], cols["language"], cols["language_score"], cols["domain"]):
        if n is not None:
            words[stage or KEPT].append(n)
        if language and score is not None:
            scores[language].append(score)
        if stage is None and n is not None:
            domains[domain or ""] += n
    return {
        "words_hist": {k: _histogram(v, WORD_BINS) for k, v in words.items()},
        "score_hist": {k: _histogram(v, SCORE_BINS) for k, v in scores.items()},
        "kept_domains": dict(domains),
    }


def _add_into(total: dict[str, list[int]], part: dict[str, list[int]]) -> None:
    for key, counts in part.items():
        into = total.setdefault(key, [0] * len(counts))
        for i, c in enumerate(counts):
            into[i] += c


class DomainSummary:
    """Words kept per domain in at most `size` entries (Misra-Gries, merged as in Agarwal et al.
    2012): past `size` domains, every count is lowered by the (size+1)-th largest and those
    left at zero go. The driver's memory stays bounded however many domains a crawl has; a
    listed count is at most `error` under the truth (0 while nothing was dropped). The result
    depends on the order parts are added in: merge_counts adds them sorted by name."""

    def __init__(self, size: int = DOMAINS_TRACKED, counts: dict | None = None, error: int = 0):
        self.size, self.counts, self.error = size, Counter(counts or {}), error

    def __eq__(self, other: object) -> bool:
        """Equal when they list the same domains: merged counts of the same records compare equal."""
        if not isinstance(other, DomainSummary):
            return NotImplemented
        return (self.size, self.error, self.top(self.size)) == (other.size, other.error, other.top(other.size))

    def add(self, counts: dict[str, int]) -> None:
        self.counts.update(counts)
        if len(self.counts) > 2 * self.size:
            self.prune()

    def prune(self) -> None:
        if len(self.counts) <= self.size:
            return
        cut = sorted(self.counts.values(), reverse=True)[self.size]
        self.error += cut
        self.counts = Counter({d: n - cut for d, n in self.counts.items() if n > cut})

    def top(self, n: int) -> dict[str, int]:
        self.prune()
        return dict(sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n])


def merge_counts(parts: list[dict]) -> dict:
    total = {
        "records": 0, "record_types": Counter(), "outcomes": defaultdict(lambda: [0, 0, 0]),
        "struck": defaultdict(lambda: [0, 0]), "languages": Counter(), "errors": [],
        "words_hist": {}, "score_hist": {}, "kept_domains": DomainSummary(),
    }
    for part in parts:
        _add_into(total["words_hist"], part.get("words_hist", {}))  # parts of runs before schema 3 have none
        _add_into(total["score_hist"], part.get("score_hist", {}))
        total["kept_domains"].add(part.get("kept_domains", {}))
        total["kept_domains"].error += part.get("kept_domains_error", 0)  # a folded input's own summary's
        total["records"] += part["records"]
        total["record_types"].update(part["record_types"])
        total["languages"].update(part["languages"])
        total["errors"].extend(part["errors"])
        for key, (d, w, c) in part["outcomes"].items():
            o = total["outcomes"][key]
            o[0] += d
            o[1] += w
            o[2] += c
        for stage, (w, c) in part.get("struck", {}).items():  # parts of runs before schema 2 have none
            s = total["struck"][stage]
            s[0] += w
            s[1] += c
    return total


def fold_counts(parts: list[dict]) -> dict:
    """Parts' counts summed into one record of the same form (an input's manifest,
    refinery.resume), its kept domains summarized as merge_counts does (`kept_domains_error`: how
    far under the truth a listed count may be), so a manifest stays small however many parts and
    domains the input has."""
    total = merge_counts(parts)
    domains = total["kept_domains"]
    domains.prune()
    return {
        "records": total["records"], "record_types": dict(total["record_types"]), "outcomes": dict(total["outcomes"]),
        "struck": dict(total["struck"]), "languages": dict(total["languages"]), "errors": total["errors"],
        "words_hist": total["words_hist"], "score_hist": total["score_hist"],
        "kept_domains": dict(domains.counts), "kept_domains_error": domains.error,
    }


def _percent(part: float, whole: float) -> float:
    return round(100 * part / whole, 2) if whole else 0.0


def funnel(counts: dict, stage_names: list[str], dedup_stages: list[str] | tuple[str, ...] = ()) -> dict:
    """stats.json's content (see the module's docstring) from the summed counts; `stage_names`
    are the filter phase's stages in run order, then `dedup_stages` the dedup phase's."""
    by_stage: dict[str, dict[str, list[int]]] = defaultdict(dict)
    for key, v in counts["outcomes"].items():
        stage, _, reason = key.partition("|")
        by_stage[stage][reason or KEPT] = v
    struck = counts.get("struck", {})
    not_documents = {r: v[0] for r, v in sorted(by_stage.pop("read", {}).items())}
    documents = counts["records"] - sum(not_documents.values())
    names = list(stage_names) + list(dedup_stages)
    text_from = names.index("extract") if "extract" in names else len(names)
    # every document's words as extracted: its final text (kept, or where it was removed) plus
    # what text-modifying stages struck from it on the way
    alive = [documents, 0, 0]
    for s in names + [KEPT]:
        for v in by_stage.get(s, {}).values():
            alive[1] += v[1]
            alive[2] += v[2]
    for w, c in struck.values():
        alive[1] += w
        alive[2] += c
    extracted_words = alive[1] if text_from < len(names) else None
    figure_docs, deferred, last_filter = documents, Counter(), (100.0, alive[1])
    stages = []
    for i, name in enumerate(names):
        removed = by_stage.get(name, {})
        before = list(alive)
        removed_docs = sum(v[0] for v in removed.values())
        struck_words, struck_chars = struck.get(name, (0, 0))
        alive[0] -= removed_docs
        alive[1] -= sum(v[1] for v in removed.values()) + struck_words
        alive[2] -= sum(v[2] for v in removed.values()) + struck_chars
        has_text, had_text = i >= text_from, i > text_from
        if name in dedup_stages:
            measure = "tokens"
            figure = round(last_filter[0] * alive[1] / last_filter[1], 2) if last_filter[1] else 0.0
        else:
            measure = "documents"
            row = FIGURE2_ROW.get(name, name)
            if row != name and row in names[i + 1 :]:
                deferred[row] += removed_docs
                figure = None
            else:
                figure_docs -= removed_docs + deferred.pop(name, 0)
                figure = _percent(figure_docs, documents)
                last_filter = (figure, alive[1])
        stages.append(
            {
                "stage": name,
                "phase": "dedup" if name in dedup_stages else "filter",
                "docs_in": before[0],
                "docs_out": alive[0],
                "removed": {r: v[0] for r, v in sorted(removed.items(), key=lambda kv: -kv[1][0])},
                "removed_detail": {
                    r: {"docs": v[0], "words": v[1], "chars": v[2]} for r, v in sorted(removed.items(), key=lambda kv: -kv[1][0])
                },
                "words_in": before[1] if had_text else None,
                "words_out": alive[1] if has_text else None,
                "chars_in": before[2] if had_text else None,
                "chars_out": alive[2] if has_text else None,
                "words_struck": struck_words,
                "chars_struck": struck_chars,
                "percent_of_documents": _percent(alive[0], documents),
                "percent_of_words": _percent(alive[1], extracted_words) if has_text else None,
                "figure2_measure": measure,
                "figure2_percent": figure,
                "refinedweb_percent": REFINEDWEB_FUNNEL.get(name),
            }
        )
    kept = by_stage.get(KEPT, {}).get(KEPT, [0, 0, 0])
    return {
        "schema_version": SCHEMA_VERSION,
        "token_unit": TOKEN_UNIT,
        "records_read": counts["records"],
        "record_types": dict(sorted(counts["record_types"].items())),
        "not_documents": not_documents,
        "documents": documents,
        "words_extracted": extracted_words,
        "stages": stages,
        "kept": {"docs": kept[0], "words": kept[1], "chars": kept[2]},
        "languages": dict(counts["languages"].most_common()),
        "errors": counts["errors"],
        "distributions": distributions(counts, names),
    }


def distributions(counts: dict, names: list[str]) -> dict:
    words = counts.get("words_hist", {})
    domains = counts.get("kept_domains") or DomainSummary()
    return {
        "words_per_document": {"bins": WORD_BINS, KEPT: words.get(KEPT, [0] * len(WORD_BINS)),
                               "removed": {s: words[s] for s in names if s in words}},
        "language_score": {"bins": SCORE_BINS, "by_language": dict(sorted(counts.get("score_hist", {}).items(), key=lambda kv: -sum(kv[1])))},
        "kept_domains": {"words": domains.top(DOMAINS_LISTED), "tracked": domains.size, "max_error_words": domains.error},
    }


def _cell(value, fmt: str, width: int) -> str:
    return f"{'-' if value is None else format(value, fmt):>{width}}"


def format_table(stats: dict) -> str:
    """The funnel as a plain-text table, one line per stage, reasons indented below it, and
    this run beside RefinedWeb's figure 2 measured the same way."""
    lines = [
        f"records read: {stats['records_read']:,}   documents (HTTP 200 HTML responses): {stats['documents']:,}",
        "not documents: " + (", ".join(f"{r.removeprefix('read:')} {n:,}" for r, n in stats["not_documents"].items()) or "none"),
        "",
        f"{'stage':<20}{'docs in':>9}{'docs out':>10}{'% docs':>8}{'words out':>13}{'% words':>9}"
        f"{'as figure 2':>16}{'RefinedWeb %':>14}",
    ]
    for s in stats["stages"]:
        if s["figure2_percent"] is None:
            figure = f"in {FIGURE2_ROW.get(s['stage'], '-')}"
        else:
            figure = f"{s['figure2_percent']:.2f} {'docs' if s['figure2_measure'] == 'documents' else 'tokens'}"
        lines.append(
            f"{s['stage']:<20}{s['docs_in']:>9,}{s['docs_out']:>10,}{s['percent_of_documents']:>8.2f}"
            f"{_cell(s['words_out'], ',', 13)}{_cell(s['percent_of_words'], '.2f', 9)}{figure:>16}"
            f"{_cell(s['refinedweb_percent'], '.2f', 14)}"
        )
        for reason, n in s["removed"].items():
            lines.append(f"    {reason:<44}{n:>8,}")
        if s["words_struck"]:
            lines.append(f"    {'(words struck from documents kept)':<44}{s['words_struck']:>8,}")
    for stage, d in stats.get("dedup", {}).items():
        if "tokens_struck" in d:
            lines.append(f"{stage}: {d['tokens_struck']:,} tokens struck in {d['documents_touched']:,} documents, {d['removed']:,} left too short")
            continue
        sizes = ", ".join(f"{n} of size {size}" for size, n in d["cluster_sizes"].items()) or "none"
        lines.append(f"{stage} clusters: {sizes}")
    k = stats["kept"]
    lines += [
        "",
        "Tokens are words (whitespace-separated); % words is of the words extracted. Figure 2 counts documents",
        "through the filter phase, then tokens; language_prefilter's removals count in the language row.",
        f"kept: {k['docs']:,} documents, {k['words']:,} words, {k['chars']:,} characters",
    ]
    for e in stats["errors"]:
        lines.append(f"error: {e['source']} at offset {e['offset']}: {e['reason']}")
    return "\n".join(lines)
