"""trafilatura's pruning XPaths, evaluated in Python (refinery/trafilatura_pruning.py), select
exactly the elements trafilatura's own XPaths select, in the same order, on real pages as parsed
and as trafilatura's cleaning converts them, and on the XPath corner cases the translation has
to get right."""
from __future__ import annotations

from copy import copy
from itertools import islice

import pytest
from lxml import html
from trafilatura import xpaths
from trafilatura.htmlprocessing import convert_tags, tree_cleaning
from trafilatura.settings import Extractor
from trafilatura.utils import load_html

import refinery.extract  # noqa: F401  (installs the Python queries, as every run does)
from refinery.io.warc import ReadParams, read_warc
from refinery.trafilatura_pruning import TRANSLATED, PythonQuery

QUERIES = [(f"{name}[{index}]", xpaths.__dict__[name][index]) for name, index, *_ in TRANSLATED]


def test_every_translation_is_installed_on_this_trafilatura():
    """A trafilatura whose expressions changed keeps its own; this one is the one translated."""
    assert all(isinstance(q, PythonQuery) for _, q in QUERIES), [n for n, q in QUERIES if not isinstance(q, PythonQuery)]


@pytest.fixture(scope="module")
def trees(data_dir):
    """256 crawl-sample pages as trafilatura parses them, and as its precision cleaning and tag
    conversion leave them (where `list`, `item` and the comment sections are tested)."""
    with (data_dir / "crawl-sample" / "real-pages.warc.gz").open("rb") as stream:
        pages = [h for batch in islice(read_warc(stream, "crawl-sample", ReadParams()), 2) for h in batch.column("html").to_pylist() if h]
    parsed = [t for t in map(load_html, pages) if t is not None]
    options = Extractor(precision=True, tables=False, comments=False)
    return parsed + [convert_tags(tree_cleaning(copy(t), options), options) for t in parsed]


@pytest.mark.parametrize("name, query", QUERIES, ids=[n for n, _ in QUERIES])
def test_same_elements_as_trafilatura_on_real_pages(trees, name, query):
    matched = 0
    for tree in trees:
        expected = query.original(tree)
        assert query(tree) == expected, name
        matched += len(expected)
    assert matched > 0 or name.startswith("RAW_TREE_PRUNE"), f"{name} matched nothing: the comparison tested nothing"


CORNERS = """<html><body>
<div class="zz" id="cookie-bar">class first: @id|@class reads the class</div>
<div id="cookie-bar" class="zz">id first: @id|@class reads the id</div>
<span id="x" style="display:none">hidden by style</span>
<p class="reply-to">starts-with on the first of id/class</p><p id="a" class="reply-to">not this one</p>
<div role="NAVIGATION">translate N to n</div><div role="Navigation">N only, not a or v</div>
<div data-lp-replacement-content="">present though empty</div><div aria-hidden="true">aria</div>
<section id="comments">comments</section><div id="disqus_thread">div: pruned</div><ul id="disqus_thread"><li>list: kept</li></ul><ul class="comment-list"><li>x</li></ul><ol id="commentary">no</ol>
<div class="infinite-scroll"><h1>kept: holds the h1</h1></div><aside class="infinite-scroll">pruned</aside>
<div class="mvp-post-add-box"><h1>pruned though it holds an h1</h1></div>
<div class="elementor-share-buttons">share</div><div id="bottom-link" style="border:1px">bottom</div>
<!-- a comment --><svg:div class="share">prefixed tag</svg:div>
</body></html>"""


@pytest.mark.parametrize("name, query", QUERIES, ids=[n for n, _ in QUERIES])
def test_same_elements_on_xpath_corner_cases(name, query):
    tree = html.fromstring(CORNERS)
    converted = html.fromstring(CORNERS.replace("<ul", "<list").replace("</ul>", "</list>").replace("<p", "<item").replace("</p>", "</item>"))
    for t in (tree, converted):
        assert [e.text for e in query(t)] == [e.text for e in query.original(t)]


def test_a_test_that_reads_more_than_the_attributes_is_decided_per_element():
    """The same attributes, other verdicts: a div and an aside of one class, the one holding an
    h1; a div and a ul of one id, which only the div's tag lets through."""
    tree = html.fromstring(CORNERS)
    raw, lists = xpaths.RAW_TREE_PRUNE_XPATH[0], xpaths.REMOVE_COMMENTS_AND_LISTS_XPATH[0]
    assert [e.tag for e in raw(tree) if e.get("class") == "infinite-scroll"] == ["aside"]
    assert [e.tag for e in lists(tree) if e.get("id") == "disqus_thread"] == ["div"]
