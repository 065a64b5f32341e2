"""A run's `report.html`: what each stage did and why, in one self-contained page.

It reads only the run's output folder (local or s3://): `stats.json` for every figure (the funnel
against RefinedWeb's figure 2, removals by stage and reason, the distributions, the run's facts),
`_run.json` for the config, and, when the run wrote them (`--write-removed`), a few samples per
reason from `removed/` and `removed_lines/`. It counts nothing itself: every number on the page is
one of stats.json's. `refinery report OUT` rebuilds it; `pipeline.run` writes it at the end."""
from __future__ import annotations

import json
from collections import defaultdict

from refinery.io.storage import Output
from refinery.report.page import CSS, escape, new_figure, page, svg, table
from refinery.report.samples import (
    REMOVED_DIR, REMOVED_LINES_DIR, SEED, SHARDS_DIR, find_rows, line_stages, removed_lines_of, removed_stages, rows_where, sample_rows,
)

REPORT_FILE = "report.html"
SAMPLES_PER_REASON = 3
MEMBERS_SHOWN = 3  # near-duplicate members shown beside the document kept in their place
MAX_TEXT_CHARS = 2500  # of a sample's text; a document with struck lines shows up to 4x that
TOP_LANGUAGES, TOP_DOMAINS, SCORE_LANGUAGES = 15, 20, 6
# filters that stop at their first failing rule: the sample's measurement is that rule's
FIRST_FAILING_RULE = ("gopher_repetition", "gopher_quality", "c4", "fineweb_quality", "url_filter")
SAMPLE_CSS = """
.sample { border: 1px solid #ddd; border-radius: 4px; margin: 0.6em 0; padding: 0.4em 0.7em; }
.sample .meta { font-size: 0.88em; word-break: break-all; }
.doc { white-space: pre-wrap; font: 13px/1.4 ui-monospace, Menlo, Consolas, monospace; background: #fafafa;
       max-height: 22em; overflow: auto; padding: 0.4em; margin: 0.3em 0; }
.doc del { background: #fde2e2; color: #8a1c1c; } .doc mark { background: #ffe58a; }
.side { display: grid; grid-template-columns: repeat(auto-fit, minmax(280px, 1fr)); gap: 0.6em; }
.reason { margin-left: 0.5em; } .detail { background: #eef3fb; padding: 0 0.3em; border-radius: 3px; }
nav a { margin-right: 0.8em; }
"""


def build_report(out: Output | str) -> str:
    """Write OUT/report.html from a finished run's output; returns where it went."""
    out = out if isinstance(out, Output) else Output(out)
    out.write_text(REPORT_FILE, render(out))
    return report_location(out)


def report_location(out: Output) -> str:
    return out.path(REPORT_FILE) if out.local else f"{out.uri.rstrip('/')}/{REPORT_FILE}"


def render(out: Output) -> str:
    stats = out.read_json("stats.json")
    run = out.read_json_if_exists("_run.json") or {}
    config = run.get("config", {})
    has_removed = bool(removed_stages(out))
    body = [
        "<h1>Refinery run report</h1>",
        f"<p class=\"meta\">{escape(out.uri)} · {stats['records_read']:,} records read, {stats['documents']:,} documents, "
        f"{stats['kept']['docs']:,} kept ({stats['kept']['words']:,} words) · stats.json schema {stats.get('schema_version')}</p>",
        "<nav><a href=\"#funnel-section\">Funnel</a><a href=\"#removals\">Removals</a><a href=\"#samples\">Samples</a>"
        "<a href=\"#distributions\">Distributions</a><a href=\"#facts\">Run facts</a></nav>",
    ]
    body += funnel_section(stats)
    body += removals_section(stats)
    body += samples_section(out, stats, has_removed)
    body += distributions_section(stats, config)
    body += facts_section(stats, run)
    return page("Refinery run report", body, CSS + SAMPLE_CSS)


def _plain_ticks(axis) -> None:
    """Tick labels of a log axis as plain numbers (1, 10, 100), not TeX-style powers of ten,
    which matplotlib parses as mathtext: a third of a report's rendering time."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    axis.set_minor_formatter(NullFormatter())


def _num(value, fmt: str = ",") -> str:
    return "-" if value is None else format(value, fmt)


def _figure2_label(stats: dict, stage: str) -> str:
    names = [s["stage"] for s in stats["stages"]]
    if stage == "language" and "language_prefilter" in names:
        return "language (+ prefilter)"
    return stage


# ---------------------------------------------------------------- funnel
def funnel_section(stats: dict) -> list[str]:
    rows = []
    for s in stats["stages"]:
        figure = "in language" if s["figure2_percent"] is None else f"{s['figure2_percent']:.2f} {s['figure2_measure']}"
        rows.append([s["stage"], s["phase"], _num(s["docs_in"]), _num(s["docs_out"]), _num(s["percent_of_documents"], ".2f"),
                     _num(s["words_out"]), _num(s["percent_of_words"], ".2f"), figure, _num(s["refinedweb_percent"], ".2f")])
    return [
        "<h2 id=\"funnel-section\">The funnel, against RefinedWeb's figure 2</h2>",
        "<p>Figure 2 of the RefinedWeb paper counts documents through the filter phase, then tokens through "
        "deduplication, each bar a percent of the crawl's documents, chained from the filter phase's last bar. "
        "This run is measured the same way; tokens are words (whitespace-separated). language_prefilter is "
        "language ID done before extraction, so its removals count in the language bar, beside the paper's LID bar.</p>",
        svg(funnel_figure(stats), "Percent of documents (filter phase) then tokens (dedup phase) kept after each stage: "
                                  "this run beside RefinedWeb's figure 2."),
        svg(kept_figure(stats), "Documents and words alive after each stage, as a percent of the documents and of the "
                                "words extracted (what stats.json's percent_of_documents and percent_of_words say)."),
        table(["stage", "phase", "docs in", "docs out", "% docs", "words out", "% words", "as figure 2", "RefinedWeb %"],
              rows, numeric=range(2, 9), table_id="funnel"),
    ]


def funnel_figure(stats: dict):
    stages = [s for s in stats["stages"] if s["figure2_percent"] is not None]
    figure = new_figure(8.5, 0.42 * len(stages) + 1.4)
    ax = figure.add_subplot()
    y = list(range(len(stages)))
    ours = [s["figure2_percent"] for s in stages]
    paper = [s["refinedweb_percent"] if s["refinedweb_percent"] is not None else 0 for s in stages]
    ax.barh([v - 0.2 for v in y], ours, height=0.38, color="tab:blue", label="this run")
    ax.barh([v + 0.2 for v in y], paper, height=0.38, color="0.7", label="RefinedWeb (figure 2)")
    for v, s in zip(y, stages):
        ax.text(s["figure2_percent"] + 1, v - 0.2, f"{s['figure2_percent']:.1f}% {'docs' if s['figure2_measure'] == 'documents' else 'tokens'}",
                va="center", fontsize=8)
        paper = f"{s['refinedweb_percent']:.1f}%" if s["refinedweb_percent"] is not None else "not in figure 2"
        ax.text((s["refinedweb_percent"] or 0) + 1, v + 0.2, paper, va="center", fontsize=8, color="0.35")
    first_dedup = next((i for i, s in enumerate(stages) if s["figure2_measure"] == "tokens"), None)
    if first_dedup:
        ax.axhline(first_dedup - 0.5, color="0.4", lw=0.8, ls="--")
    ax.set_yticks(y, [_figure2_label(stats, s["stage"]) for s in stages])
    ax.invert_yaxis()
    ax.set_xlim(0, 118)
    ax.set_xlabel("% of the crawl kept (documents, then tokens after the dashed line)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return figure


def kept_figure(stats: dict):
    stages = stats["stages"]
    figure = new_figure(8.5, 0.36 * len(stages) + 1.4)
    axes = figure.subplots(1, 2, sharey=True)
    y = list(range(len(stages)))
    for ax, key, title, colour in ((axes[0], "percent_of_documents", "documents kept (% of documents)", "tab:blue"),
                                   (axes[1], "percent_of_words", "words kept (% of words extracted)", "tab:green")):
        values = [s[key] or 0 for s in stages]
        ax.barh(y, values, color=colour, height=0.6)
        for v, s in zip(y, stages):
            ax.text((s[key] or 0) + 1, v, "-" if s[key] is None else f"{s[key]:.1f}", va="center", fontsize=8)
        ax.set_xlim(0, 115)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, [s["stage"] for s in stages])
    axes[0].invert_yaxis()
    return figure


# ---------------------------------------------------------------- removals
def removals_section(stats: dict) -> list[str]:
    rows = []
    for s in stats["stages"]:
        detail = s.get("removed_detail", {})
        for reason, docs in s["removed"].items():
            share = 100 * docs / s["docs_in"] if s["docs_in"] else 0.0
            rows.append([s["stage"], reason, f"{docs:,}", f"{share:.2f}", _num(detail.get(reason, {}).get("words"))])
        if s.get("words_struck"):
            rows.append([s["stage"], "(words struck from documents kept)", "", "", f"{s['words_struck']:,}"])
    for reason, docs in stats.get("not_documents", {}).items():
        rows.append(["read", reason, f"{docs:,}", "", "-"])
    return [
        "<h2 id=\"removals\">Removals by stage and reason</h2>",
        svg(removals_figure(stats), "Documents removed by each rule (log scale), coloured by stage."),
        table(["stage", "reason", "documents", "% of the stage's input", "words removed"], rows, numeric=(2, 3, 4), table_id="removals-table"),
    ]


def removals_figure(stats: dict):
    bars = [(s["stage"], reason, docs) for s in stats["stages"] for reason, docs in s["removed"].items() if docs]
    figure = new_figure(8.5, 0.3 * max(len(bars), 1) + 1.2)
    ax = figure.add_subplot()
    colours = {stage: f"C{i % 10}" for i, stage in enumerate(s["stage"] for s in stats["stages"])}
    y = list(range(len(bars)))
    ax.barh(y, [docs for _, _, docs in bars], color=[colours[stage] for stage, _, _ in bars], height=0.65)
    for v, (_, _, docs) in zip(y, bars):
        ax.text(docs * 1.08, v, f"{docs:,}", va="center", fontsize=8)
    ax.set_yticks(y, [reason for _, reason, _ in bars], fontsize=8)
    ax.invert_yaxis()
    if bars:
        ax.set_xscale("log")  # a log axis with no positive value cannot be drawn
        _plain_ticks(ax.xaxis)
        ax.set_xlim(0.8, max(docs for _, _, docs in bars) * 3)
    else:
        ax.text(0.5, 0.5, "nothing removed", transform=ax.transAxes, ha="center")
    ax.set_xlabel("documents removed")
    ax.grid(axis="x", alpha=0.3)
    return figure


# ---------------------------------------------------------------- samples
def samples_section(out: Output, stats: dict, has_removed: bool) -> list[str]:
    html = ["<h2 id=\"samples\">Samples of what each rule removed</h2>"]
    if not has_removed:
        return html + ["<p class=\"note\">This run did not write its removed documents. Re-run it with "
                       "<code>--write-removed</code> (<code>refinery run CONFIG --input ... --output OUT --write-removed</code>), "
                       "then <code>refinery report OUT</code> rebuilds this page with samples; "
                       "<code>refinery show OUT --reason REASON</code> prints them in the terminal.</p>"]
    html.append(f"<p class=\"note\">Up to {SAMPLES_PER_REASON} documents per reason, chosen at random with a fixed seed "
                f"({SEED}), each with what the rule measured against its bound. Filters that stop at their first "
                f"failing rule ({', '.join(FIRST_FAILING_RULE)}) show that rule's measurement: the rules after it "
                "were not evaluated. Text is shown as the stage saw it; documents removed before extraction have none. "
                "<code>refinery show OUT --reason REASON -n N</code> prints more.</p>")
    stages = [s["stage"] for s in stats["stages"]]
    with_lines, with_removed = set(line_stages(out)), set(removed_stages(out))
    for s in stats["stages"]:
        # a stage that struck text from documents it kept may list them in removed/ too, under reasons
        # of their own (substring dedup's spans_struck): all of its reasons are sampled then
        struck_listed = bool(s.get("words_struck")) and s["stage"] in with_removed
        if not s["removed"] and not struck_listed and s["stage"] not in with_lines:
            continue
        html.append(f"<h3>{escape(s['stage'])}</h3>")
        wanted = None if struck_listed else list(s["removed"])
        samples = sample_rows(out, f"{REMOVED_DIR}/{s['stage']}", "reason", SAMPLES_PER_REASON, wanted) if s["removed"] or struck_listed else {}
        later = [f"{REMOVED_DIR}/{name}" for name in stages[stages.index(s["stage"]) + 1:]]
        render_sample = _sample_renderer(out, s["stage"], samples, later)
        headings = {reason: f"{docs:,} documents" for reason, docs in s["removed"].items()}
        headings |= {reason: f"documents it kept, with text struck ({s['words_struck']:,} words in all)" for reason in sorted(set(samples) - set(headings))}
        for reason, heading in headings.items():
            rows = samples.get(reason, [])
            html.append(f"<div class=\"reason\" data-reason=\"{escape(reason)}\"><h4>{escape(reason)}: {escape(heading)}</h4>")
            html += [render_sample(row) for row in rows] or ["<p>(no sample: its rows are not in removed/)</p>"]
            html.append("</div>")
        if s["stage"] in with_lines:
            html += line_samples(out, s["stage"])
    return html


def _sample_renderer(out: Output, stage: str, samples: dict[str, list[dict]], later: list[str]):
    """How a stage's samples are drawn: with their struck lines, their struck spans, or beside
    the document kept in their place, as the stage's removed rows allow."""
    rows = [row for found in samples.values() for row in found]
    if any(row.get("duplicate_of") for row in rows):
        return _cluster_renderer(out, stage, rows, later)
    lines = removed_lines_of(out, stage, {row["id"] for row in rows})
    return lambda row: _sample(row, _text_html(row, lines.get(row["id"], [])))


def _cluster_renderer(out: Output, stage: str, rows: list[dict], later: list[str]):
    """Near- and exact-duplicate samples: the document kept in their place, then up to
    MEMBERS_SHOWN removed members of its cluster, side by side, each with what the stage
    recorded (e.g. its Jaccard similarity with the kept document)."""
    kept_ids = {row["duplicate_of"] for row in rows if row.get("duplicate_of")}
    members: dict[str, list[dict]] = defaultdict(list)
    for row in rows_where(out, f"{REMOVED_DIR}/{stage}", "duplicate_of", kept_ids, ["id", "url", "reason_detail", "text"]):
        members[row["duplicate_of"]].append(row)
    kept = find_rows(out, [SHARDS_DIR, *later], kept_ids, ["url", "text"])

    def render(row: dict) -> str:
        cluster = sorted(members.get(row["duplicate_of"], [row]), key=lambda m: (m["id"] != row["id"], m["id"]))
        first = kept.get(row["duplicate_of"])
        cells = [_panel("kept", first["url"] if first else "", row["duplicate_of"],
                        first["text"] if first else "(the kept document is not in shards/ nor removed by a later stage)")]
        cells += [_panel("removed", m["url"], m["id"], m.get("text"), m.get("reason_detail")) for m in cluster[:MEMBERS_SHOWN]]
        more = f"<p class=\"meta\">and {len(cluster) - MEMBERS_SHOWN:,} more members</p>" if len(cluster) > MEMBERS_SHOWN else ""
        return (f"<div class=\"sample\"><div class=\"meta\">cluster of {len(cluster) + 1:,} documents: one kept, "
                f"{len(cluster):,} removed</div><div class=\"side\">{''.join(cells)}</div>{more}</div>")

    return render


def _panel(role: str, url: str, doc_id: str, text: str | None, detail: str | None = None) -> str:
    detail_html = f" · <span class=\"detail\">{escape(detail)}</span>" if detail else ""
    return (f"<div><div class=\"meta\"><b>{role}</b>{detail_html}<br>{escape(url)}<br><code>{escape(doc_id)}</code></div>"
            f"<div class=\"doc\">{_clip(text)}</div></div>")


def _sample(row: dict, text_html: str) -> str:
    detail = row.get("reason_detail")
    detail_html = f"<span class=\"detail\">{escape(detail)}</span> · " if detail else ""
    return (f"<div class=\"sample\"><div class=\"meta\">{detail_html}{escape(row.get('url') or '')} "
            f"<code>{escape(row.get('id') or '')}</code></div>{text_html}</div>")


def _clip(text: str | None, limit: int = MAX_TEXT_CHARS) -> str:
    if text is None:
        return "<i>(no extracted text at this stage)</i>"
    if len(text) <= limit:
        return escape(text)
    return escape(text[:limit]) + f"<i> … ({len(text) - limit:,} more characters)</i>"


def _text_html(row: dict, lines: list[dict]) -> str:
    if row.get("spans"):
        return spans_html(row["text"], row["spans"])
    if lines and row.get("text") is not None:
        return f"<div class=\"doc\">{struck_lines_html(row['text'], lines)}</div>"
    return f"<div class=\"doc\">{_clip(row.get('text'))}</div>"


def struck_lines_html(text: str, removed: list[dict], limit: int = 4 * MAX_TEXT_CHARS) -> str:
    """`text` with the lines (or substrings of lines) a text-modifying stage removed struck
    through, each titled with its rule. Line numbers count in text.split("\\n")."""
    by_line: dict[int, list[dict]] = defaultdict(list)
    for entry in removed:
        by_line[entry["line"]].append(entry)
    html, size = [], 0
    for number, line in enumerate(text.split("\n")):
        if size > limit:
            html.append(f"<i>… ({len(text) - size:,} more characters)</i>")
            break
        size += len(line) + 1
        entries = by_line.get(number, [])
        whole = next((e for e in entries if e["text"] == line.strip()), None)
        if whole is not None:
            html.append(f"<del title=\"{escape(whole['rule'])}\">{escape(line)}</del>")
            continue
        cuts, pos = [], 0
        for e in entries:
            at = line.find(e["text"], pos)
            if at >= 0:
                cuts.append((at, at + len(e["text"]), e["rule"]))
                pos = at + len(e["text"])
        html.append(_marked(line, sorted(cuts), "del"))
    return "\n".join(html)


def spans_html(text: str, spans: list[dict], context: int = 300) -> str:
    """The parts of `text` around the spans substring dedup struck (character offsets), the
    spans highlighted, then a list of where else each occurs."""
    spans = sorted(spans, key=lambda s: s["start"])
    windows: list[list[int]] = []
    for span in spans:
        lo, hi = max(0, span["start"] - context), min(len(text), span["end"] + context)
        if windows and lo <= windows[-1][1]:
            windows[-1][1] = max(windows[-1][1], hi)
        else:
            windows.append([lo, hi])
    parts = []
    for lo, hi in windows:
        cuts = [(max(s["start"], lo) - lo, min(s["end"], hi) - lo, f"also in document {s.get('other_id')}") for s in spans if s["start"] < hi and s["end"] > lo]
        parts.append(("… " if lo else "") + _marked(text[lo:hi], cuts, "mark") + (" …" if hi < len(text) else ""))
    where = "".join(f"<li>characters {s['start']:,}-{s['end']:,}: also in <code>{escape(s.get('other_id'))}</code> at character "
                    f"{_num(s.get('other_start'))}</li>" for s in spans)
    return f"<div class=\"doc\">{chr(10).join(parts)}</div><ul class=\"meta\">{where}</ul>"


def _marked(text: str, cuts: list[tuple[int, int, str]], tag: str) -> str:
    html, pos = [], 0
    for start, end, title in cuts:
        if start < pos:
            continue
        html.append(escape(text[pos:start]))
        html.append(f"<{tag} title=\"{escape(title)}\">{escape(text[start:end])}</{tag}>")
        pos = end
    html.append(escape(text[pos:]))
    return "".join(html)


def line_samples(out: Output, stage: str) -> list[str]:
    samples = sample_rows(out, f"{REMOVED_LINES_DIR}/{stage}", "rule", SAMPLES_PER_REASON, columns=["id", "url", "line", "text"])
    html = [f"<h4>Lines {escape(stage)} removed, by rule</h4>",
            "<p>From documents it kept and documents it dropped alike (removed_lines/); a line rule removes a whole "
            "line, a pattern rule the substring it matched.</p>"]
    for rule, rows in sorted(samples.items()):
        html.append(f"<div class=\"reason\" data-rule=\"{escape(stage)}:{escape(rule)}\"><h4>{escape(rule)}</h4>")
        for row in rows:
            html.append(f"<div class=\"sample\"><div class=\"meta\">line {row['line']} of {escape(row['url'] or '')} "
                        f"<code>{escape(row['id'])}</code></div><div class=\"doc\"><del>{escape(row['text'])}</del></div></div>")
        html.append("</div>")
    return html


# ---------------------------------------------------------------- distributions
def distributions_section(stats: dict, config: dict) -> list[str]:
    html = ["<h2 id=\"distributions\">Distributions</h2>", svg(languages_figure(stats), "Documents by identified language (top languages).")]
    dist = stats.get("distributions")
    if dist is None:
        return html + ["<p class=\"note\">This stats.json (schema "
                       f"{escape(stats.get('schema_version'))}) has no distributions: they came with schema 3. Re-run to get them.</p>"]
    html += [
        svg(scores_figure(dist["language_score"], config), "fastText language score by identified language (top languages); "
                                                          "dashed: the thresholds of the config."),
        svg(lengths_figure(dist["words_per_document"], [s["stage"] for s in stats["stages"]]),
            "Words per document: the documents kept, and those each stage removed (their text where it removed them)."),
    ]
    domains = dist["kept_domains"]
    note = "exact" if not domains["max_error_words"] else (
        f"lower bounds, each at most {domains['max_error_words']:,} words under the truth (a summary of {domains['tracked']:,} domains)")
    html.append(svg(domains_figure(domains["words"]), f"Words kept per domain, top {TOP_DOMAINS} ({note})."))
    return html


def languages_figure(stats: dict):
    languages = list(stats.get("languages", {}).items())[:TOP_LANGUAGES]
    figure = new_figure(8.5, 3.2)
    ax = figure.add_subplot()
    ax.bar([lang for lang, _ in languages], [n for _, n in languages], color="tab:purple")
    for i, (_, n) in enumerate(languages):
        ax.text(i, n, f"{n:,}", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("documents")
    ax.grid(axis="y", alpha=0.3)
    if not languages:
        ax.text(0.5, 0.5, "no language identified", transform=ax.transAxes, ha="center")
    return figure


def _thresholds(config: dict) -> list[tuple[str, float]]:
    found = []
    for stage in config.get("stages", []):
        if stage.get("stage") == "language" and "threshold" in stage:
            found.append(("language threshold", stage["threshold"]))
        if stage.get("stage") == "language_prefilter" and "reject_score" in stage:
            found.append(("prefilter reject score", stage["reject_score"]))
    return found


def scores_figure(scores: dict, config: dict):
    bins = scores["bins"]
    figure = new_figure(8.5, 3.4)
    ax = figure.add_subplot()
    width = bins[1] - bins[0] if len(bins) > 1 else 0.05
    for lang, counts in list(scores["by_language"].items())[:SCORE_LANGUAGES]:
        ax.step([b + width / 2 for b in bins], counts, where="mid", label=lang, lw=1.5)
    for i, (name, value) in enumerate(_thresholds(config)):
        ax.axvline(value, color="0.3", ls="--" if i == 0 else ":", lw=1, label=f"{name} {value}")
    ax.set_xlim(0, 1)
    ax.set_xlabel("language score")
    ax.set_ylabel("documents")
    ax.set_yscale("symlog", linthresh=1)
    _plain_ticks(ax.yaxis)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, ncol=2)
    ax.grid(alpha=0.3)
    return figure


def _bin_labels(bins: list[int]) -> list[str]:
    labels = []
    for lo, hi in zip(bins, bins[1:]):
        labels.append(str(lo) if hi - lo == 1 else f"{lo:,}-{hi - 1:,}")
    return labels + [f"{bins[-1]:,}+"]


def lengths_figure(words: dict, stages: list[str]):
    bins = words["bins"]
    figure = new_figure(8.5, 3.8)
    ax = figure.add_subplot()
    x = list(range(len(bins)))
    bottom = [0] * len(bins)
    for i, stage in enumerate(s for s in stages if s in words["removed"]):
        counts = words["removed"][stage]
        ax.bar(x, counts, bottom=bottom, color=f"C{(i + 1) % 10}", width=0.8, label=f"removed by {stage}")
        bottom = [b + c for b, c in zip(bottom, counts)]
    ax.step(x, words["kept"], where="mid", color="black", lw=2, label="kept")
    ax.set_xticks(x, _bin_labels(bins), rotation=45, ha="right", fontsize=8)
    ax.set_xlabel("words per document")
    ax.set_ylabel("documents")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return figure


def domains_figure(domain_words: dict):
    top = list(domain_words.items())[:TOP_DOMAINS]
    figure = new_figure(8.5, 0.28 * max(len(top), 1) + 1.2)
    ax = figure.add_subplot()
    ax.barh(range(len(top)), [n for _, n in top], color="tab:green")
    ax.set_yticks(range(len(top)), [d or "(no domain)" for d, _ in top], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("words kept")
    ax.grid(axis="x", alpha=0.3)
    if not top:
        ax.text(0.5, 0.5, "nothing kept", transform=ax.transAxes, ha="center")
    return figure


# ---------------------------------------------------------------- run facts
def _describe(info: dict) -> str:
    """A dedup stage's stats.json entry in words: `removed 3; cluster_sizes: 2 x3, 5 x1`."""
    parts = []
    for key, value in info.items():
        if key == "cluster_sizes":
            value = ", ".join(f"{n:,} of size {size}" for size, n in value.items()) or "none"
        elif isinstance(value, dict):
            value = json.dumps(value)
        parts.append(f"{key.replace('_', ' ')}: {value:,}" if isinstance(value, int) else f"{key.replace('_', ' ')}: {value}")
    return "; ".join(parts)


def facts_section(stats: dict, run: dict) -> list[str]:
    seconds = stats.get("seconds", {})
    dedup_in = next((s["docs_in"] for s in stats["stages"] if s["phase"] == "dedup"), stats["kept"]["docs"])
    units = {"filter_phase": stats["records_read"], "filter_phase_shared": stats["records_read"]}
    rows = []
    for phase, secs in seconds.items():
        n = units.get(phase, dedup_in)
        rows.append([phase, f"{secs:,.1f}", f"{n:,}", f"{n / secs:,.1f}" if secs else "-"])
    html = ["<h2 id=\"facts\">Run facts</h2>",
            table(["phase", "seconds", "records or documents in", "per second"], rows, numeric=(1, 2, 3), table_id="phases")]
    html += ["<h3>Inputs</h3>", table(["input"], [[path] for path in stats.get("inputs", run.get("inputs", []))])]
    html += ["<h3>Records</h3>",
             table(["WARC record type", "records"], [[k, f"{v:,}"] for k, v in stats.get("record_types", {}).items()], numeric=(1,)),
             table(["not a document (reason)", "records"], [[k, f"{v:,}"] for k, v in stats.get("not_documents", {}).items()] or [["none", ""]], numeric=(1,))]
    errors = stats.get("errors", [])
    html.append(f"<h3>Errors and unreadable records ({len(errors):,})</h3>")
    html.append(table(["source", "offset", "reason"], [[e["source"], _num(e["offset"]), e["reason"]] for e in errors[:200]], numeric=(1,))
                if errors else "<p>none</p>")
    if len(errors) > 200:
        html.append(f"<p>and {len(errors) - 200:,} more (stats.json lists them all)</p>")
    failed = stats.get("failed_inputs")
    if failed:
        html += ["<h3>Inputs that failed on the network</h3>", f"<pre>{escape(json.dumps(failed, indent=1))}</pre>"]
    dedup = stats.get("dedup", {})
    if dedup:
        html += ["<h3>Dedup</h3>", table(["stage", "what it recorded"], [[stage, _describe(info)] for stage, info in dedup.items()])]
    if run.get("config"):
        import yaml

        html += ["<h3>Config</h3>", f"<pre class=\"doc\">{escape(yaml.safe_dump(run['config'], sort_keys=False))}</pre>"]
    return html
