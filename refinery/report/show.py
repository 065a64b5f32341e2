"""`refinery show OUT --reason REASON -n N`: samples of what a rule removed, in the terminal:
the measured value, the URL and id, and the text. The same samples as report.html's for the
same seed. A line rule (`line_corrections:few_words`) shows the lines it removed."""
from __future__ import annotations

import sys

from refinery.io.storage import Output
from refinery.report.samples import REMOVED_DIR, REMOVED_LINES_DIR, line_stages, removed_stages, sample_rows


def _clip(text: str | None, chars: int) -> str:
    if text is None:
        return "(no extracted text at this stage)"
    if chars and len(text) > chars:
        return f"{text[:chars]}\n[... {len(text) - chars:,} more characters]"
    return text


def _reasons(stats: dict) -> list[tuple[str, int]]:
    return [(reason, n) for s in stats["stages"] for reason, n in s["removed"].items()]


def show(output: str, reason: str | None, n: int, seed: int = 0, chars: int = 1500, file=None) -> int:
    """Print the samples; 0, or 2 when the output or the reason has none to show."""
    file = file or sys.stdout
    out = Output(output)
    stats = out.read_json_if_exists("stats.json")
    if stats is None:
        print(f"refinery: {output} holds no finished run (no stats.json)", file=sys.stderr)
        return 2
    if not removed_stages(out) and not line_stages(out):
        print(f"refinery: {output} has no removed documents: re-run with --write-removed to keep them", file=sys.stderr)
        return 2
    if reason is None:
        print("reasons (documents removed); pick one with --reason:", file=file)
        for r, count in _reasons(stats):
            print(f"  {r:<48}{count:>9,}", file=file)
        for stage in line_stages(out):
            print(f"  line rules of {stage}: --reason {stage}:<rule> (see report.html)", file=file)
        return 0
    stage, _, rule = reason.partition(":")
    rows = sample_rows(out, f"{REMOVED_DIR}/{stage}", "reason", n, wanted=[reason], seed=seed).get(reason, [])
    if not rows and stage in line_stages(out):
        lines = sample_rows(out, f"{REMOVED_LINES_DIR}/{stage}", "rule", n, wanted=[rule], seed=seed).get(rule, [])
        for i, row in enumerate(lines, 1):
            print(f"--- {i}. {reason}: line {row['line']} of {row['url']} ({row['id']})\n{row['text']}\n", file=file)
        if lines:
            return 0
    if not rows:
        known = ", ".join(r for r, _ in _reasons(stats)) or "none"
        print(f"refinery: no removed document with reason {reason!r} in {output} (reasons: {known})", file=sys.stderr)
        return 2
    for i, row in enumerate(rows, 1):
        detail = row.get("reason_detail") or ""
        extra = f"  duplicate of {row['duplicate_of']}" if row.get("duplicate_of") else ""
        print(f"--- {i}. {reason}  {detail}{extra}\n{row['url']}  ({row['id']})\n{_clip(row.get('text'), chars)}\n", file=file)
    return 0
