"""A comparison's report.json rendered for people: report.md (tables) and report.html (one
self-contained page: the bpb tables, bpb per arm with the seed spread, the training-loss
curves, and for an ablation the per-stage deltas). Reads only the report dict."""
from __future__ import annotations

import math

from refinery.report.page import escape, new_figure, page, svg, table

MAX_CURVE_POINTS = 400  # per run in the loss figure: longer curves are averaged over windows


def format_delta(delta: dict | None, relative: bool = True) -> str:
    """`-0.1234 ± 0.0100 bpb (-3.1% ± 0.3%)`, plus ` *` when significant (beyond 2 SE)."""
    if delta is None:
        return "reference"
    se = f" ± {delta['bpb_se']:.4f}" if delta["bpb_se"] is not None else ""
    text = f"{delta['bpb']:+.4f}{se}"
    if relative:
        rel_se = f" ± {100 * delta['relative_se']:.1f}%" if delta["relative_se"] is not None else ""
        text += f" ({100 * delta['relative']:+.1f}%{rel_se})"
    return text + (" *" if delta["significant"] else "")


def _mean_spread(summary: dict) -> str:
    std = f" ± {summary['bpb_std']:.4f}" if summary["bpb_std"] is not None else ""
    return f"{summary['mean']['bpb']:.4f}{std}"


def _summary_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    evals = list(report["evals"])
    header = ["arm", "docs", "epochs"]
    for name in evals:
        header += [f"{name} bpb (mean ± sd)", f"{name} Δ vs {report['reference_arm']}"]
    rows = []
    for arm, summary in report["arms"].items():
        row = [arm + (f" (= {summary['reused_from']})" if summary["reused_from"] else ""), f"{summary['docs']:,}", f"{summary['epochs']:.2f}"]
        for name in evals:
            row += [_mean_spread(summary["evals"][name]), format_delta(summary["evals"][name]["delta"])]
        rows.append(row)
    return header, rows


def _stage_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    ablation = report["ablation"]
    evals = list(report["evals"])
    header = ["arm", "stages added", "docs"] + [f"{name}: Δ bpb vs previous arm" for name in evals]
    rows = []
    for arm, info in ablation["arms"].items():
        deltas = ablation["stage_deltas"].get(arm)
        row = [arm, ", ".join(info["added"]), f"{info['docs']:,}"]
        row += [format_delta(deltas[name]) if deltas else "(first arm)" for name in evals]
        rows.append(row)
    return header, rows


def _markdown_table(header: list[str], rows: list[list[str]], numeric_from: int = 1) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" if i < numeric_from else "---:" for i in range(len(header))) + " |"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _intro(report: dict) -> list[str]:
    training = report["training"]
    return [
        f"Model `{report['model']['size']}` ({report['model']['params']:,} parameters), byte-level tokenizer, "
        f"{training['tokens_per_run']:,} training tokens per run, seeds {', '.join(map(str, training['seeds']))}, "
        f"device {training['device']}.",
        "Eval sets: " + "; ".join(
            f"`{name}` ({e['path']}): {e['docs_scored']} documents ({e['bytes_scored']:,} bytes) scored, "
            f"{e['docs_dropped']} dropped as near-duplicates of training text" for name, e in report["evals"].items()) + ".",
    ]


NOTES = [
    "Δ: bpb of the arm minus bpb of the other arm, paired by seed, mean ± its standard error over seeds "
    "(negative: the arm trains a better model). `*`: significant, |Δ| > 2 SE.",
]


def render_markdown(report: dict) -> str:
    title = "Ablation: what each stage buys" if "ablation" in report else "Pretraining comparison"
    lines = [f"# {title}", "", *_intro(report), ""]
    if "ablation" in report:
        lines += [f"Config `{report['ablation']['config']}` on {len(report['ablation']['inputs'])} input file(s); "
                  "arm k keeps the config's stages up to step k (a standalone `refinery run` of that prefix).", "",
                  "## What each stage buys", "", *_markdown_table(*_stage_rows(report), numeric_from=2), ""]
    lines += ["## bpb per arm", "", *_markdown_table(*_summary_rows(report)), ""]
    reused = [f"`{arm}` reuses `{s['reused_from']}`'s runs (identical training text)" for arm, s in report["arms"].items() if s["reused_from"]]
    lines += [*NOTES, *(["; ".join(reused) + "."] if reused else []), ""]
    evals = list(report["evals"])
    lines += ["## Runs", ""]
    header = ["arm", "seed", "tokens seen"] + [f"{name} bpb" for name in evals] + [f"{evals[0]} perplexity (per token)"]
    rows = []
    for arm, summary in report["arms"].items():
        for run in summary["runs"]:
            rows.append([arm, str(run["seed"]), f"{run['tokens_seen']:,}", *(f"{run['evals'][n]['bpb']:.4f}" for n in evals),
                         f"{run['perplexity']:.3f}"])
    lines += _markdown_table(header, rows, numeric_from=1)
    if report.get("bpb_relative_difference") is not None:
        lines += ["", f"bpb relative difference, refined vs baseline ({evals[0]}): **{report['bpb_relative_difference']:+.2%}** "
                      "(negative: the refined data trains a better model)."]
    return "\n".join(lines) + "\n"


def render_html(report: dict) -> str:
    ablation = "ablation" in report
    title = "Ablation: what each stage buys" if ablation else "Pretraining comparison"
    body = [f"<h1>{escape(title)}</h1>"] + [f"<p class=\"meta\">{_inline_code(line)}</p>" for line in _intro(report)]
    if ablation:
        header, rows = _stage_rows(report)
        body += ["<h2>What each stage buys</h2>",
                 f"<p>Config <code>{escape(report['ablation']['config'])}</code>. Arm k keeps the config's stages up to step k; "
                 "each Δ compares an arm with the arm before it.</p>", table(header, rows, numeric=range(2, len(header)))]
    header, rows = _summary_rows(report)
    body += ["<h2>bpb per arm</h2>", table(header, rows, numeric=range(1, len(header))),
             *(f"<p class=\"note\">{_inline_code(note)}</p>" for note in NOTES),
             svg(bpb_figure(report), "Held-out bits per byte per arm: each dot a seed, the bar the mean ± one standard deviation "
                                     "over seeds (lower is better). Arms in order, as in an ablation's cumulative steps."),
             "<h2>Training loss</h2>",
             svg(loss_figure(report), "Training loss vs tokens seen, one line per run (seeds of an arm share its colour; "
                                      "an arm that reuses another's runs is not drawn again).")]
    evals = list(report["evals"])
    runs = [[arm, run["seed"], f"{run['tokens_seen']:,}", *(f"{run['evals'][n]['bpb']:.4f}" for n in evals),
             "" if run["train_tokens_per_s"] is None else f"{run['train_tokens_per_s']:,.0f}"]
            for arm, summary in report["arms"].items() for run in summary["runs"]]
    body += ["<h2>Runs</h2>", table(["arm", "seed", "tokens seen", *(f"{n} bpb" for n in evals), "train tokens/s"], runs, numeric=range(1, 4 + len(evals)))]
    return page(title, body)


def _inline_code(text: str) -> str:
    """Markdown `code` spans of an escaped line as <code>."""
    parts = escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def bpb_figure(report: dict):
    evals = list(report["evals"])
    arms = list(report["arms"])
    figure = new_figure(max(6.0, 1.1 * len(arms) + 2), 3.6 * len(evals))
    for row, name in enumerate(evals):
        ax = figure.add_subplot(len(evals), 1, row + 1)
        means, spreads = [], []
        for x, arm in enumerate(arms):
            summary = report["arms"][arm]["evals"][name]
            bpbs = [run["evals"][name]["bpb"] for run in report["arms"][arm]["runs"]]
            ax.scatter([x] * len(bpbs), bpbs, s=14, color="0.55", zorder=3)
            means.append(summary["mean"]["bpb"])
            spreads.append(summary["bpb_std"] or 0.0)
        ax.errorbar(range(len(arms)), means, yerr=spreads, fmt="o-", color="tab:blue", capsize=5, lw=1.5, zorder=2)
        ax.set_xticks(range(len(arms)), arms, rotation=20 if len(arms) > 3 else 0, ha="right" if len(arms) > 3 else "center")
        ax.set_ylabel("bits per byte")
        ax.set_title(f"eval set {name}", fontsize=11)
        ax.grid(axis="y", alpha=0.3)
    return figure


def loss_figure(report: dict):
    figure = new_figure(8, 4.5)
    ax = figure.add_subplot()
    colours = [f"C{i}" for i in range(10)]
    for i, (arm, summary) in enumerate(report["arms"].items()):
        if summary["reused_from"]:
            continue  # the same curves as the arm it reuses
        for j, run in enumerate(summary["runs"]):
            tokens, losses = _thin([point[0] for point in run["loss_curve"]], [point[1] for point in run["loss_curve"]])
            ax.plot(tokens, losses, color=colours[i % 10], lw=1, alpha=0.8, label=arm if j == 0 else None)
    ax.set_xlabel("tokens seen")
    ax.set_ylabel("training loss (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    return figure


def _thin(xs: list[float], ys: list[float]) -> tuple[list[float], list[float]]:
    """At most MAX_CURVE_POINTS points: window means (the last point of each window for x)."""
    if len(xs) <= MAX_CURVE_POINTS:
        return xs, ys
    window = math.ceil(len(xs) / MAX_CURVE_POINTS)
    return ([xs[min(i + window, len(xs)) - 1] for i in range(0, len(xs), window)],
            [sum(ys[i:i + window]) / len(ys[i:i + window]) for i in range(0, len(ys), window)])
