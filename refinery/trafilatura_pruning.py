"""trafilatura's pruning XPaths evaluated in Python: the same elements in the same order for
about a third of the CPU. trafilatura 2.3 spends ~40% of an extraction in seven XPath
expressions that test @id, @class and @style with EXSLT regular expressions (`re:test`), which
libxml2 evaluates through a Python callback per element and attribute. Each is replaced by one
walk over the same elements with the same regular expressions (taken from the expression's
text), and only when the expression's text is exactly the one translated here: a trafilatura
whose XPaths changed keeps its own. trafilatura calls these lists' entries as functions
(`prune_unwanted_nodes`), which is all a replacement has to support."""
from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

from lxml import etree
from trafilatura import xpaths

_RE_TEST = re.compile(r"re:test\(([@a-z|-]+), '([^']*)'\)")

Test = Callable[[etree._Element, dict, list], bool]


def _first(items: list[tuple[str, str]], names: tuple[str, ...]) -> str:
    """The string value of the XPath union `@a|@b`: the first of those attributes in the
    element's attribute order (libxml2's document order for attributes), '' if none is set."""
    return next((v for k, v in items if k in names), "")


class PythonQuery:
    """`.//*[...]` (optionally `self::` one of `tags`) as a walk over the descendants in document
    order, keeping those for which `test(element, attributes, attribute_items)` holds. A test
    that reads only the attributes (`attributes_only`) is decided once per distinct attribute
    list in a call: a page repeats its class/id/style lists many times over (~1/5 less CPU)."""

    def __init__(self, original: etree.XPath, tags: tuple[str, ...], test: Test, attributes_only: bool):
        self.original, self.tags, self.test, self.attributes_only = original, tags, test, attributes_only
        self.path = original.path
        # none of the tests holds on an element without attributes (the regular expressions
        # match no empty string): such elements, most of a page, are skipped unread
        self.needs_attributes = not test(etree.Element(tags[0] if tags else "div"), {}, [])

    def __call__(self, tree: etree._Element) -> list[etree._Element]:
        found, verdicts = [], {}
        test, needs_attributes, attributes_only = self.test, self.needs_attributes, self.attributes_only
        for element in tree.iterdescendants(*self.tags) if self.tags else tree.iterdescendants(etree.Element):
            items = element.items()
            if not items and needs_attributes:
                continue
            if not attributes_only:
                verdict = test(element, dict(items), items)
            elif (verdict := verdicts.get(key := tuple(items))) is None:
                verdict = verdicts[key] = test(element, dict(items), items)
            if verdict:
                found.append(element)
        return found


def _overall_discard(p: list[re.Pattern]) -> Test:
    return lambda e, a, items: (
        "data-lp-replacement-content" in a
        or "nav" in a.get("role", "").replace("N", "n")
        or "MostPopularStories" in a.get("data-component", "")
        or bool(p[0].search(_first(items, ("id", "class"))))
        or bool(p[1].search(a.get("id", "")))
        or bool(p[2].search(a.get("class", "")))
    )


def _overall_discard_hidden(p: list[re.Pattern]) -> Test:
    def test(e, a, items):
        style = a.get("style", "")
        return (
            a.get("class") == "comments-title"
            or _first(items, ("id", "class")).startswith("reply-")
            or bool(p[0].search(_first(items, ("id", "style"))))
            or "display:none" in style
            or "display: none" in style
            or bool(p[1].search(a.get("id", "")))
            or bool(p[2].search(a.get("class", "")))
            or a.get("aria-hidden") == "true"
        )

    return test


def _raw_tree_prune(p: list[re.Pattern]) -> Test:
    return lambda e, a, items: bool(p[0].search(a.get("id", "")) or p[1].search(a.get("class", ""))) and (
        next(e.iterdescendants("h1"), None) is None or bool(p[2].search(a.get("id", "")) or p[3].search(a.get("class", "")))
    )


def _elementor_share(p: list[re.Pattern]) -> Test:
    return lambda e, a, items: "elementor-share-buttons" in a.get("class", "")


def _comments(p: list[re.Pattern]) -> Test:
    return lambda e, a, items: bool(p[0].search(a.get("id", "")) or p[1].search(a.get("class", "")))


def _comments_and_lists(p: list[re.Pattern]) -> Test:
    return lambda e, a, items: bool(p[0].search(a.get("id", "")) or p[1].search(a.get("class", ""))) and (
        e.tag not in ("ol", "ul") or bool(p[2].search(a.get("id", "")) or p[3].search(a.get("class", "")))
    )


def _precision_discard(p: list[re.Pattern]) -> Test:
    def test(e, a, items):
        first = _first(items, ("id", "class"))
        return bool(p[0].search(first) or p[1].search(first)) or "border" in a.get("style", "")

    return test


_BLOCKS = ("div", "item", "list", "p", "section", "span")
# tests that read more than the attributes (descendants, the tag): decided per element
_READ_THE_ELEMENT = (_raw_tree_prune, _comments_and_lists)
_CONTAINERS = ("div", "section", "aside")
# (list in trafilatura.xpaths, index, sha256 prefix of the expression's text, re:test arguments
# in order, tags, the test built from the expression's regular expressions)
TRANSLATED = [
    ("OVERALL_DISCARD_XPATH", 0, "a837e58a1b1ea116", ["@id|@class", "@id", "@class"], _BLOCKS, _overall_discard),
    ("OVERALL_DISCARD_XPATH", 1, "c1d5b70b8cd03783", ["@id|@style", "@id", "@class"], (), _overall_discard_hidden),
    ("RAW_TREE_PRUNE_XPATH", 0, "01e7c660fd6406f2", ["@id", "@class", "@id", "@class"], _CONTAINERS, _raw_tree_prune),
    ("RAW_TREE_PRUNE_XPATH", 1, "3c7afe92279543d5", [], _CONTAINERS, _elementor_share),
    ("REMOVE_COMMENTS_XPATH", 0, "5d97216ca15d0558", ["@id", "@class"], ("div", "list", "section", "details"), _comments),
    (
        "REMOVE_COMMENTS_AND_LISTS_XPATH", 0, "9cc18d34e6e2d258", ["@id", "@class", "@id", "@class"],
        ("div", "list", "section", "details", "ol", "ul"), _comments_and_lists,
    ),
    ("PRECISION_DISCARD_XPATH", 1, "53d31ea1df47920a", ["@id|@class", "@id|@class"], _BLOCKS, _precision_discard),
]


def fingerprint(path: str) -> str:
    return hashlib.sha256(path.encode()).hexdigest()[:16]


def install() -> list[str]:
    """Replace, in trafilatura.xpaths' lists (shared by every module that imported them), each
    translated expression whose text is unchanged; returns the names of those replaced."""
    replaced = []
    for name, index, digest, arguments, tags, build in TRANSLATED:
        expressions = getattr(xpaths, name, None)
        if not isinstance(expressions, list) or index >= len(expressions):
            continue
        original = expressions[index]
        original = getattr(original, "original", original)
        calls = _RE_TEST.findall(getattr(original, "path", ""))
        if fingerprint(getattr(original, "path", "")) != digest or [c[0] for c in calls] != arguments:
            continue
        test = build([re.compile(pattern) for _, pattern in calls])
        expressions[index] = PythonQuery(original, tags, test, attributes_only=build not in _READ_THE_ELEMENT)
        replaced.append(f"{name}[{index}]")
    return replaced
