"""trafilatura's `tree_cleaning` without the deletions that change nothing: the same tree out,
without the quadratic time it takes on pages of nested tables.

trafilatura deletes each unwanted tag with `for element in tree.iter(tag): delete_element(element)`.
When a deleted element holds another element of that tag, lxml's iterator has already stepped to
the inner one: it goes on inside the detached subtree and ends there. So the pass stops (the tag's
later elements stay in the tree, and the extracted text depends on that), and every deletion after
it happens in a subtree already out of the tree. Each of those frees an lxml proxy whose
deallocation walks the whole detached subtree: on archive.org's forum pages (21k cells inside one
table cell) a single pass took 0.7 s; tree_cleaning was 17% of extraction on the English-heavy input.
`delete_tags` stops the pass at the same element without the deletions that follow.

Installed only when trafilatura's `tree_cleaning` has exactly the source this copy was made
from (another trafilatura keeps its own); the copy differs only in calling `delete_tags`."""
from __future__ import annotations

import inspect
from copy import deepcopy

from lxml.etree import strip_tags
from lxml.html import HtmlElement
from trafilatura import core, external, htmlprocessing
from trafilatura.htmlprocessing import (
    MANUALLY_CLEANED,
    MANUALLY_STRIPPED,
    PRESERVE_IMG_CLEANING,
    _handle_forms,
    delete_element,
    prune_html,
    recover_math,
)
from trafilatura.settings import Extractor

from refinery.trafilatura_pruning import fingerprint

# sha256 prefix of trafilatura 2.3.1's `inspect.getsource(htmlprocessing.tree_cleaning)`
TREE_CLEANING_SOURCE = "828e83a7393082de"


def delete_tags(tree: HtmlElement, tags: list[str]) -> None:
    """`for tag in tags: for element in tree.iter(tag): delete_element(element)`, the same
    deletions in the same order, ending a tag's pass where lxml's iterator leaves the tree:
    after deleting an element (other than `tree` itself) that holds another of its tag."""
    for tag in tags:
        for element in tree.iter(tag):
            nested = element is not tree and len(element) > 0 and next(element.iterdescendants(tag), None) is not None
            delete_element(element)
            if nested:
                break


def tree_cleaning(tree: HtmlElement, options: Extractor) -> HtmlElement:
    "Prune the tree by discarding unwanted elements."
    # trafilatura 2.3.1's tree_cleaning without its comments, and `delete_tags` for its deletion loop
    recover_math(tree)
    cleaning_list, stripping_list = MANUALLY_CLEANED.copy(), MANUALLY_STRIPPED.copy()
    clean_forms = "form" in cleaning_list
    if clean_forms:
        cleaning_list.remove("form")
    if not options.tables:
        cleaning_list.extend(["table", "td", "th", "tr"])
    else:
        for elem in tree.iter("figure", "table"):
            if elem.find(".//table") is not None if elem.tag == "figure" else elem.get("role") in ("presentation", "none"):
                elem.tag = "div"
    if options.images:
        cleaning_list = [e for e in cleaning_list if e not in PRESERVE_IMG_CLEANING]
        stripping_list.remove("img")

    strip_tags(tree, stripping_list)

    tcopy = None
    if (
        options.focus == "recall"
        and tree.find(".//p") is not None
        and ("p" in cleaning_list or not any(next(p.iterancestors(cleaning_list), tree) is tree for p in tree.iter("p")))
    ):
        tcopy = deepcopy(tree)
    delete_tags(tree, cleaning_list)
    if tcopy is not None and tree.find(".//p") is None:
        tree = tcopy

    if clean_forms:
        _handle_forms(tree)

    return prune_html(tree, options.focus)


ORIGINAL = htmlprocessing.tree_cleaning


def install() -> bool:
    """Use this `tree_cleaning` in the trafilatura modules that call it, if trafilatura's is the
    one copied; returns whether it was installed."""
    if fingerprint(inspect.getsource(ORIGINAL)) != TREE_CLEANING_SOURCE:
        return False
    for module in (htmlprocessing, core, external):
        if getattr(module, "tree_cleaning", None) is ORIGINAL:
            module.tree_cleaning = tree_cleaning
    return True
