"""Main text of an HTML page with trafilatura, bounded in input size and time because
trafilatura can take minutes on huge or pathological pages."""
from __future__ import annotations

import re
import signal
import threading
from contextlib import contextmanager
from typing import Literal

import trafilatura
from pydantic import Field

from refinery import trafilatura_cleaning, trafilatura_parser, trafilatura_pruning, trafilatura_readability
from refinery.params import Params
from refinery.reason import Reason, measured, number

trafilatura_pruning.install()  # same output, ~1/4 less CPU per page (refinery/trafilatura_pruning.py)
trafilatura_cleaning.install()  # same output, no quadratic time on nested tables (refinery/trafilatura_cleaning.py)
trafilatura_parser.install()  # same trees, lxml's element classes chosen in C (refinery/trafilatura_parser.py)
trafilatura_readability.install()  # same output, ~1/3 less CPU in the readability fallback on English pages (refinery/trafilatura_readability.py)

_URL = re.compile(r"(?:https?://|www\.)\S+", re.I)
_BLANK_LINES = re.compile(r"\n{3,}")
_SPACES_BEFORE_NEWLINE = re.compile(r"[ \t]+\n")


class ExtractParams(Params):
    stage: Literal["extract"] = "extract"
    timeout_s: float = Field(1.0, gt=0, description="per-page CPU-time limit (needs the worker's main thread)")
    max_html_chars: int = Field(5_000_000, ge=1, description="longer pages are dropped, not extracted")
    favor_precision: bool = True
    include_tables: bool = False
    include_comments: bool = False
    min_chars: int = Field(1, ge=0, description="shorter extracted texts count as empty")
    fast: bool = Field(
        False,
        description="trafilatura's fast mode: no readability/justext fallbacks. Less CPU per page, but other text "
        "on some pages (and lower extraction F1): an opt-in departure from RefinedWeb's trafilatura (BENCHMARKS.md)",
    )


class ExtractionTimeout(Exception):
    pass


@contextmanager
def time_limit(seconds: float):
    """Raise ExtractionTimeout in the block after `seconds` of the process's CPU time, not wall
    time, so that what times out does not depend on how busy the machine is. The signal only
    reaches the main thread; elsewhere (rare: Ray runs tasks on the main thread) the block runs
    unbounded."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        raise ExtractionTimeout()

    previous = signal.signal(signal.SIGPROF, _raise)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


def clean_text(text: str) -> str:
    """RefinedWeb's post-processing: URLs removed, at most 2 consecutive newlines."""
    text = _URL.sub("", text)
    text = _SPACES_BEFORE_NEWLINE.sub("\n", text)
    return _BLANK_LINES.sub("\n\n", text).strip()


def extract_text(html: str, p: ExtractParams) -> tuple[str | None, Reason | None]:
    """(text, None) on success, or (None, reason) when the page yields no text."""
    if len(html) > p.max_html_chars:
        return None, Reason("extract:html_too_large", measured("HTML chars", len(html), ">", p.max_html_chars))
    try:
        with time_limit(p.timeout_s):
            text = trafilatura.extract(
                html,
                fast=p.fast,
                favor_precision=p.favor_precision,
                include_comments=p.include_comments,
                include_tables=p.include_tables,
                deduplicate=False,  # trafilatura's dedup cache is per process: results would depend on scheduling
            )
    except ExtractionTimeout:
        return None, Reason("extract:timeout", f"over {number(p.timeout_s)} s of CPU time")
    except Exception as e:  # lxml and trafilatura raise many types on malformed pages
        return None, Reason("extract:error", f"{type(e).__name__}: {e}"[:200])
    text = clean_text(text or "")
    if len(text) < max(p.min_chars, 1):
        return None, Reason("extract:empty", measured("text chars", len(text), "<", max(p.min_chars, 1)))
    return text, None
