"""trafilatura's parser with lxml's C class lookup (refinery/trafilatura_parser.py) gives the same
extracted text as lxml.html's Python lookup, on real pages and on pages full of form controls,
the only elements whose class it changes."""
from __future__ import annotations

from itertools import islice

import pytest
import trafilatura
from lxml import etree, html
from trafilatura import utils

import refinery.extract  # noqa: F401  (installs the lookup, as every run does)
from refinery import trafilatura_parser
from refinery.io.warc import ReadParams, read_warc

REFINERY = dict(fast=False, favor_precision=True, include_comments=False, include_tables=False, deduplicate=False)


def test_installed_and_proxies_come_from_the_c_lookup():
    tree = utils.load_html("<html><body><form><label>l</label><input value=v><textarea>t</textarea></form><p>x</p></body></html>")
    assert {type(e) for e in tree.iter()} == {html.HtmlElement}


def test_not_installed_on_a_parser_of_another_kind(monkeypatch):
    monkeypatch.setattr(utils, "HTML_PARSER", etree.HTMLParser())
    assert trafilatura_parser.install() is False


@pytest.fixture(scope="module")
def pages(data_dir) -> list[str]:
    """80 crawl-sample pages, and 60 more with form controls."""
    with (data_dir / "crawl-sample" / "real-pages.warc.gz").open("rb") as stream:
        crawl = [h for b in islice(read_warc(stream, "crawl-sample", ReadParams()), 4) for h in b.column("html").to_pylist() if h]
    forms = [h for h in crawl[80:] if "<input" in h or "<select" in h or "<textarea" in h][:60]
    assert len(forms) == 60
    return crawl[:80] + forms


@pytest.mark.parametrize("options", [REFINERY, dict(REFINERY, fast=True, include_tables=True, favor_precision=False)])
def test_same_text_as_the_python_lookup(pages, options):
    c_lookup = [trafilatura.extract(h, **options) for h in pages]
    utils.HTML_PARSER.set_element_class_lookup(html.HtmlElementClassLookup())  # lxml.html's own
    try:
        stock = [trafilatura.extract(h, **options) for h in pages]
    finally:
        utils.HTML_PARSER.set_element_class_lookup(trafilatura_parser.C_LOOKUP)
    assert sum(t is not None for t in stock) > len(pages) / 2
    assert c_lookup == stock
