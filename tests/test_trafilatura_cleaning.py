"""Refinery's `tree_cleaning` (refinery/trafilatura_cleaning.py) leaves exactly the tree
trafilatura's own leaves, on real pages with Refinery's options and others, on archive.org's
nested-table forum pages it was written for, and on the corner cases of lxml's iteration it
has to reproduce (a pass ends after deleting an element that holds another of its tag)."""
from __future__ import annotations

from copy import copy
from itertools import islice

import pytest
from lxml import html
from trafilatura import core, external, htmlprocessing
from trafilatura.settings import Extractor
from trafilatura.utils import load_html

import refinery.extract  # noqa: F401  (installs the replacement, as every run does)
from refinery.io.warc import ReadParams, read_warc
from refinery.trafilatura_cleaning import ORIGINAL, tree_cleaning

OPTIONS = {
    "refinery": Extractor(precision=True, tables=False, comments=False),
    "tables, balanced": Extractor(tables=True, comments=True),
    "recall, images": Extractor(recall=True, tables=False, images=True),
}


def test_installed_on_this_trafilatura():
    """This trafilatura's tree_cleaning is the one copied, so every caller gets the replacement."""
    assert core.tree_cleaning is external.tree_cleaning is htmlprocessing.tree_cleaning is tree_cleaning


def same_tree(tree: html.HtmlElement, options: Extractor) -> bytes:
    expected = html.tostring(ORIGINAL(copy(tree), options))
    assert html.tostring(tree_cleaning(copy(tree), options)) == expected
    return expected


@pytest.fixture(scope="module")
def pages(data_dir) -> list[html.HtmlElement]:
    """128 crawl-sample pages and archive.org's forum pages (tables of ~10k-20k cells nested in a cell)."""
    with (data_dir / "crawl-sample" / "real-pages.warc.gz").open("rb") as stream:
        crawl = [h for h in next(read_warc(stream, "crawl-sample", ReadParams())).column("html").to_pylist() if h]
    with (data_dir / "warc-samples" / "archive-crawls" / "IAH-20080430-archive.org-shallow.aut.warc.gz").open("rb") as stream:
        archive = [h for b in read_warc(stream, "archive.org", ReadParams()) for h in b.column("html").to_pylist() if h]
    forums = sorted((h for h in archive if "Forums: View Posts" in h), key=len)[-2:]
    assert forums and all(h.count("<td") > 8_000 for h in forums)
    return [t for t in map(load_html, islice(crawl, 128)) if t is not None] + [load_html(h) for h in forums]


@pytest.mark.parametrize("name", OPTIONS)
def test_same_tree_as_trafilatura_on_real_pages(pages, name):
    for tree in pages:
        same_tree(tree, OPTIONS[name])


NESTED = """<html><head><script>s</script></head><body>
<p>before</p><table id="t1"><tr><td>cell<table id="t2"><tr><td>inner</td></tr></table>after inner</td></tr></table>t1 tail
<p>between</p><table id="t3"><tr><td>t3 stays: the table pass ended inside t1</td></tr></table>t3 tail
<aside>one<aside>two</aside>three</aside>aside tail<aside>left in the tree</aside>
<div><footer>f1</footer>tail one<footer>f2</footer>tail two</div><form><p>a form</p></form>
</body></html>"""


@pytest.mark.parametrize("name", OPTIONS)
def test_same_tree_when_a_deleted_element_holds_another_of_its_tag(name):
    cleaned = same_tree(html.fromstring(NESTED), OPTIONS[name])
    assert b"left in the tree" in cleaned and b"aside tail" in cleaned and b"tail two" in cleaned
    if not OPTIONS[name].tables:
        assert b"<table id=\"t3\">" in cleaned and b"inner" not in cleaned


def test_same_trees_when_the_cleaned_element_has_a_parent_and_a_removed_tag():
    """readability's output can be an element inside a page: when its own tag is one removed,
    trafilatura detaches it from the page and goes on cleaning inside it."""
    for options in OPTIONS.values():
        original, replacement = html.fromstring(NESTED), html.fromstring(NESTED)
        expected = html.tostring(ORIGINAL(original.find(".//aside"), options))
        assert html.tostring(tree_cleaning(replacement.find(".//aside"), options)) == expected
        assert html.tostring(replacement) == html.tostring(original)
