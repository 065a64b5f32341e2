"""trafilatura's readability fallback without its repeated measuring: the same HTML out.

trafilatura runs `readability_lxml.Document(tree).summary()` on every page it does not extract in
fast mode, ~1/5 of an extraction's CPU on the English input. Most of that goes to measuring text:
`get_link_density` measures every link below each candidate, and a link below both a paragraph's
parent and grandparent (or a nested candidate) is measured again for each; each measure runs an
XPath (`text_content()`) even on an element with only text, whose text is its `.text`. These
methods measure each link once per scoring, read `.text` where that is the text, reuse a text
already read and skip the link measure where its verdict is not reached, weigh each class and id
once, and test for unlikely candidates only the elements that have a class or an id, once per
class and id. Measured inside trafilatura.extract with Refinery's options (and its parser's C
class lookup): summary 1.46x less CPU on the English input (extraction 1.05x), 1.16x on
crawl-sample, whose pages spend less in readability (extraction 1.01x).

Each method is installed only when the sources it copies (`COPIED`) are exactly trafilatura 2.3.1's:
another trafilatura keeps its own."""
from __future__ import annotations

import inspect
from collections import Counter
from functools import lru_cache

from lxml.etree import tostring
from lxml.html import HtmlElement
from trafilatura import readability_lxml
from trafilatura.readability_lxml import (
    FRAME_TAGS,
    LIST_TAGS,
    LOGGER,
    REGEXES,
    TEXT_CLEAN_ELEMS,
    Candidate,
    Document,
    text_length,
    trim,
)

from refinery.trafilatura_pruning import fingerprint


def _text(elem: HtmlElement) -> str:
    """`elem.text_content()` for an element: without child nodes (other than text) it is `.text`."""
    return elem.text_content() if len(elem) else elem.text or ""


def _link_text_length(link: HtmlElement) -> int:
    """`text_length(link)`."""
    return len(trim(_text(link)))


def _link_length(elem: HtmlElement) -> int:
    """The text length of the links below `elem` (`get_link_density`'s numerator)."""
    return sum(map(_link_text_length, elem.iterdescendants("a")))


class _LinkLengths(dict):
    """Each link's text length, measured once."""

    def __missing__(self, link: HtmlElement) -> int:
        length = self[link] = _link_text_length(link)
        return length


@lru_cache(maxsize=4096)
def _class_weight(class_: str | None, id_: str | None) -> int:
    weight = 0
    for attribute in filter(None, (class_, id_)):
        if REGEXES["negativeRe"].search(attribute):
            weight -= 25
        if REGEXES["positiveRe"].search(attribute):
            weight += 25
    return weight


def class_weight(self: Document, elem: HtmlElement) -> int:
    """trafilatura's, decided once per class and id: pages repeat them, and its case-insensitive
    regular expressions are slow on long class lists."""
    return _class_weight(elem.get("class"), elem.get("id"))


@lru_cache(maxsize=4096)
def _unlikely(class_: str | None, id_: str | None) -> bool:
    attrs = " ".join(filter(None, (class_, id_)))
    low = attrs.lower()
    return (
        len(attrs) >= 2
        and bool(REGEXES["unlikelyCandidatesRe"].search(low))
        and not REGEXES["okMaybeItsACandidateRe"].search(low)
    )


def remove_unlikely_candidates(self: Document) -> None:
    """trafilatura's, over the elements with a class or an id (the others are never unlikely),
    decided once per class and id."""
    for elem in self.doc.xpath("descendant::*[@class or @id]"):
        if _unlikely(elem.get("class"), elem.get("id")) and elem.tag not in FRAME_TAGS:
            elem.drop_tree()


def score_paragraphs(self: Document) -> dict[HtmlElement, Candidate]:
    """trafilatura's, with `get_link_density` inlined: each link measured once (the tree does not
    change while scoring; the lengths' dict keeps the links' proxies, and so their identity)."""
    candidates = {}

    for elem in self.doc.iter("p", "pre", "td"):
        parent_node = elem.getparent()
        if parent_node is None:
            continue
        grand_parent_node = parent_node.getparent()

        elem_text = trim(_text(elem))
        elem_text_len = len(elem_text)

        if elem_text_len < self.min_text_length:
            continue

        for node in (parent_node, grand_parent_node):
            if node is not None and node not in candidates:
                candidates[node] = self.score_node(node)

        score = 1 + len(elem_text.split(",")) + min((elem_text_len / 100), 3)

        candidates[parent_node].score += score
        if grand_parent_node is not None:
            candidates[grand_parent_node].score += score / 2

    link_length = _LinkLengths().__getitem__
    for elem, candidate in candidates.items():
        candidate.score *= 1 - sum(map(link_length, elem.iterdescendants("a"))) / (text_length(elem) or 1)

    return candidates


def sanitize(self: Document, node: HtmlElement, candidates: dict[HtmlElement, Candidate]) -> str:
    """trafilatura's, reading an element's text once and measuring its links only where its
    verdict reaches the link density (no other check reads it)."""
    for header in list(node.iter("h1", "h2", "h3", "h4", "h5", "h6")):
        if self.class_weight(header) < 0 or _link_length(header) / (len(trim(_text(header))) or 1) > 0.33:
            header.drop_tree()

    for elem in list(node.iter("form", "textarea")):
        elem.drop_tree()

    for elem in list(node.iter("iframe")):
        if "src" in elem.attrib and REGEXES["videoRe"].search(elem.attrib["src"]):
            elem.text = "VIDEO"
        else:
            elem.drop_tree()

    for elem in reversed(list(node.iter("table", "ul", "div", "aside", "header", "footer", "section"))):
        weight = self.class_weight(elem)
        score = candidates[elem].score if elem in candidates else 0
        if weight + score < 0:
            LOGGER.debug("Removed %s with score %6.3f and weight %-3s", elem.tag, score, weight)
            elem.drop_tree()
        elif (text := _text(elem)).count(",") < 10:
            to_remove = True
            counts = Counter(e.tag for e in elem.iterdescendants(*TEXT_CLEAN_ELEMS))
            counts["li"] -= 100
            if counts["input"]:
                counts["input"] -= len(elem.findall('.//input[@type="hidden"]'))

            content_length = len(trim(text))
            if counts["p"] and counts["img"] > 1 + counts["p"] * 1.3:
                reason = f"too many images ({counts['img']})"
            elif counts["li"] > counts["p"] and elem.tag not in LIST_TAGS:
                reason = "more <li>s than <p>s"
            elif counts["input"] > (counts["p"] / 3):
                reason = "less than 3x <p>s than <input>s"
            elif content_length < self.min_text_length and counts["img"] == 0:
                reason = f"too short content length {content_length} without a single image"
            elif content_length < self.min_text_length and counts["img"] > 2:
                reason = f"too short content length {content_length} and too many images"
            elif (link_density := _link_length(elem) / (content_length or 1)) > (0.5 if weight >= 25 else 0.2):
                reason = f"too many links {link_density:.3f} for its weight {weight}"
            elif (counts["embed"] == 1 and content_length < 75) or counts["embed"] > 1:
                reason = "<embed>s with too short content length, or too many <embed>s"
            elif not content_length:
                reason = "no content"
                nearest = (
                    next((n for sib in sibs if (n := text_length(sib))), 0)
                    for sibs in (elem.itersiblings(), elem.itersiblings(preceding=True))
                )
                to_remove = sum(nearest) <= 1000
            else:
                to_remove = False

            if to_remove:
                elem.drop_tree()
                LOGGER.debug("Removed %6.3f %s with weight %s cause it has %s.", score, elem.tag, weight, reason or "")

    return tostring(node, encoding=str, method="xml")


# sha256 prefixes of trafilatura 2.3.1's `inspect.getsource` of what the replacements copy
COPIED = {
    "Document.remove_unlikely_candidates": "6ef38c8475242af9",
    "Document.score_paragraphs": "b767f5bd6460a5b9",
    "Document.sanitize": "84ff3af6fb8bbc7a",
    "Document.class_weight": "d97a398e8ac23fa0",
    "Document.get_link_density": "5c312c5584ed8656",
    "text_length": "74f7faf7008b34b4",
}
# Document's method -> (its replacement, what the replacement copies)
REPLACEMENTS = {
    "class_weight": (class_weight, ("Document.class_weight",)),
    "remove_unlikely_candidates": (remove_unlikely_candidates, ("Document.remove_unlikely_candidates",)),
    "score_paragraphs": (score_paragraphs, ("Document.score_paragraphs", "Document.get_link_density", "text_length")),
    "sanitize": (sanitize, ("Document.sanitize", "Document.get_link_density", "text_length")),
}
# trafilatura's own methods, which the tests compare against
ORIGINALS = {name: getattr(Document, name) for name in REPLACEMENTS}


def _unchanged(path: str) -> bool:
    found = readability_lxml
    for name in path.split("."):
        found = getattr(found, name, None)
    try:
        return fingerprint(inspect.getsource(found)) == COPIED[path]
    except (OSError, TypeError):
        return False


def install() -> list[str]:
    """Replace each of Document's methods whose copied sources are unchanged; returns the names
    of the methods replaced."""
    for name, (replacement, copied) in REPLACEMENTS.items():
        if all(map(_unchanged, copied)):
            setattr(Document, name, replacement)
    return [name for name, (replacement, _) in REPLACEMENTS.items() if getattr(Document, name) is replacement]
