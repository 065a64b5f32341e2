"""The pieces every Refinery HTML report is built from: a page shell with inline CSS, a
matplotlib figure as inline SVG, and tables whose cells are HTML-escaped. A page made of them
is one file with no network request (no script, font, image or style from elsewhere), so it
opens offline and can be mailed or attached to a PR.

matplotlib is imported inside `new_figure`/`svg`, so importing this module costs nothing."""
from __future__ import annotations

import html
import io
import re
from typing import Iterable, Sequence

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d1d1f;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.25em; margin-top: 1.8em; }
.meta { color: #555; }
table { border-collapse: collapse; margin: 0.8em 0; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3em 0.7em; text-align: left; vertical-align: top; }
th { background: #f4f4f6; } td.num, th.num { text-align: right; }
figure { margin: 1em 0; } figure svg { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 0.9em; }
.note { background: #f7f7e8; border-left: 4px solid #c8c86e; padding: 0.4em 0.8em; }
code { background: #f4f4f6; padding: 0 0.25em; }
"""
_NUM = ' class="num"'
_XML_PROLOGUE = re.compile(r"^.*?(?=<svg)", re.S)  # the XML declaration and DOCTYPE before <svg>


def escape(value: object) -> str:
    return html.escape(str(value), quote=True)


def page(title: str, body: Iterable[str], css: str = CSS) -> str:
    """A complete HTML document: `body` is a sequence of HTML fragments (already escaped)."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{escape(title)}</title>\n<style>{css}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def table(header: Sequence[str], rows: Iterable[Sequence[object]], numeric: Sequence[int] = ()) -> str:
    """An HTML table; every cell is escaped, and the columns numbered in `numeric` align right."""
    numeric = set(numeric)

    def cells(values: Sequence[object], tag: str) -> str:
        return "".join(f"<{tag}{_NUM if i in numeric else ''}>{escape(v)}</{tag}>" for i, v in enumerate(values))

    body = "\n".join(f"<tr>{cells(row, 'td')}</tr>" for row in rows)
    return f"<table>\n<thead><tr>{cells(header, 'th')}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def new_figure(width: float = 8.0, height: float = 4.5):
    """A matplotlib Figure with no pyplot state behind it (nothing global, no GUI backend)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def svg(figure, caption: str = "") -> str:
    """The figure as an inline <svg> element in a <figure>. Text stays text (searchable, small),
    and element ids are salted with the caption, so several figures on one page never share one."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": caption or str(id(figure))}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    element = _XML_PROLOGUE.sub("", buffer.getvalue(), count=1)
    caption_html = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return f"<figure>\n{element}\n{caption_html}</figure>"
