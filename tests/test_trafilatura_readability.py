"""Refinery's readability methods (refinery/trafilatura_readability.py) give exactly the HTML of
trafilatura's own `Document.summary()` on real pages and on the corner cases they rely on, the
same extracted text with Refinery's settings, and are left out where trafilatura's sources differ
from the ones copied."""
from __future__ import annotations

import gzip
from contextlib import contextmanager
from copy import copy
from itertools import islice

import pytest
import trafilatura
from lxml import html
from trafilatura import readability_lxml
from trafilatura.readability_lxml import Document
from trafilatura.utils import load_html

import refinery.extract  # noqa: F401  (installs the replacements, as every run does)
from refinery.extract import ExtractParams
from refinery.io.warc import ReadParams, read_warc
from refinery.trafilatura_readability import ORIGINALS, REPLACEMENTS, install


@contextmanager
def trafilatura_own_methods():
    with pytest.MonkeyPatch.context() as patch:
        for name, original in ORIGINALS.items():
            patch.setattr(Document, name, original)
        yield


def same_summary(tree: html.HtmlElement) -> str:
    with trafilatura_own_methods():
        expected = Document(copy(tree)).summary()
    assert Document(copy(tree)).summary() == expected
    return expected


def test_installed_on_this_trafilatura():
    """This trafilatura's sources are the ones copied, so every method is replaced."""
    assert install() == list(REPLACEMENTS)
    assert all(getattr(Document, name) is replacement for name, (replacement, _) in REPLACEMENTS.items())


@pytest.fixture(scope="module")
def pages(data_dir) -> list[str]:
    """128 crawl-sample pages and 64 of the article-extraction benchmark's news pages."""
    with (data_dir / "crawl-sample" / "real-pages.warc.gz").open("rb") as stream:
        crawl = [h for h in next(read_warc(stream, "crawl-sample", ReadParams())).column("html").to_pylist() if h]
    articles = sorted((data_dir / "article-extraction-benchmark" / "html").glob("*.html.gz"))[:64]
    return crawl[:128] + [gzip.decompress(path.read_bytes()).decode("utf-8", "replace") for path in articles]


def test_same_summary_as_trafilatura_on_real_pages(pages):
    summaries = [same_summary(tree) for tree in map(load_html, pages) if tree is not None]
    assert len(summaries) > 150 and sum(len(s) > 1000 for s in summaries) > 100


def test_same_text_as_trafilatura_with_refinery_settings(pages):
    """trafilatura runs readability on its own copy of the page: the whole extraction is compared."""
    p = ExtractParams()
    options = dict(fast=False, favor_precision=p.favor_precision, include_comments=p.include_comments,
                   include_tables=p.include_tables, deduplicate=False)
    for page in islice(pages, 0, None, 3):
        with trafilatura_own_methods():
            expected = trafilatura.extract(page, **options)
        assert trafilatura.extract(page, **options) == expected


CORNERS = """<html><body><div class="article-body">
<p>A paragraph long enough to score, with commas, and <a href="#">a link</a>, and
<a href="#">another <b>link</b> with markup</a>.</p><p>Second\u00a0paragraph,\u2009with unusual   white space
<a href="#"><!-- a comment in a link -->commented link</a> and more text after it.</p>
<a href="#"><p>A paragraph inside a link, so the link is a candidate of its own, long enough.</p></a>
<div class="sidebar-menu"><p>An unlikely candidate, dropped before scoring, though long enough.</p></div>
<div id="comments" class="article"><p>Unlikely by its id, kept by its class: long enough too.</p></div>
<h2 class="comment">A header of negative weight</h2><h3><a href="#">A header that is a link</a></h3>
<ul><li><a href="#">one</a></li><li><a href="#">two</a></li></ul><form><p>a form</p></form>
<div><input type="hidden"><p>Kept: its only input is a hidden one, and its text is long enough.</p></div>
<div><input type="text"><p>Dropped: it has a visible input for one paragraph, though long enough.</p></div>
<table><tr><td>A cell with enough text to become a paragraph's candidate, inside a table.</td></tr></table>
<div class="Content"><p><a href="#">Only links in this paragraph, it is long enough to score.</a></p></div>
<div>Loose text in a div<br>and after a line break</div><div></div>
</div></body></html>"""


def test_same_summary_on_corner_cases():
    """Links with markup and comments, a link holding a paragraph (a candidate nested in a link's
    parent), Unicode white space, unlikely and negative classes, hidden inputs, empty divs."""
    summary = same_summary(html.fromstring(CORNERS))
    assert "A paragraph long enough" in summary and "Kept: its only input" in summary
    assert not any(s in summary for s in ("An unlikely candidate", "negative weight", "Dropped: it has", "Only links"))


def test_install_keeps_trafilatura_methods_whose_sources_changed():
    """A trafilatura with another `sanitize`, or another `text_length` (which two replacements
    inline), keeps its own for what depends on it."""

    def sanitize(self, node, candidates):
        return ORIGINALS["sanitize"](self, node, candidates)

    def text_length(elem):
        return len(elem.text_content())

    with trafilatura_own_methods(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(Document, "sanitize", sanitize)
        assert install() == ["class_weight", "remove_unlikely_candidates", "score_paragraphs"]
        assert Document.sanitize is sanitize
    with trafilatura_own_methods(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(readability_lxml, "text_length", text_length)
        assert install() == ["class_weight", "remove_unlikely_candidates"]
        assert Document.score_paragraphs is ORIGINALS["score_paragraphs"] and Document.sanitize is ORIGINALS["sanitize"]
    assert install() == list(REPLACEMENTS)
