"""C4 rules (as FineWeb uses them) and FineWeb's own quality rules, each at its bound."""
from __future__ import annotations

import json
from pathlib import Path

import pydantic
import pytest

from refinery.filters.c4 import C4Params, c4_filter, count_sentences
from refinery.filters.fineweb import FineWebQualityParams, fineweb_quality

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
GROUND_TRUTH = DATA / "article-extraction-benchmark" / "ground-truth.json"
QUANTA_URL = "https://www.quantamagazine.org/tuft-cells-that-taste-danger-set-off-immune-responses-20191115/"

C4 = C4Params()
BODY = [f"This is sentence number {w} of the body." for w in ("one", "two", "three", "four", "five")]


def c4_extra(*extra: str, p: C4Params = C4) -> list[str]:
    """Lines C4 keeps besides the 5-sentence body (asserting the document is kept)."""
    text, reason = c4_filter("\n".join([*BODY[:2], *extra, *BODY[2:]]), p)
    assert reason is None, reason
    return [line for line in text.split("\n") if line not in BODY]


def c4_reason(*extra: str, p: C4Params = C4) -> str | None:
    return c4_filter("\n".join([*BODY, *extra]), p)[1]


# ---------------------------------------------------------------- C4


def test_body_passes_and_lines_are_stripped():
    text, reason = c4_filter("  " + "\n\n".join(BODY) + "  \n", C4)
    assert (text, reason) == ("\n".join(BODY), None)


def test_min_words_per_line():
    assert c4_extra("Two words.") == []
    assert c4_extra("Three words here.") == ["Three words here."]


def test_max_word_length():
    ok = "a " + "x" * 1000 + " b"
    assert c4_extra(ok) == [ok]
    assert c4_extra("a " + "x" * 1001 + " b") == []


def test_javascript_lines_removed():
    assert c4_extra("Please enable JavaScript to continue.") == []


@pytest.mark.parametrize("notice", ["terms of use", "Privacy Policy", "cookie policy", "uses cookies",
                                    "use of cookies", "use cookies"])
def test_policy_lines_removed(notice):
    assert c4_extra(f"Please read the {notice} now.") == []


def test_cookies_alone_are_fine():
    assert c4_extra("We love cookies and milk.") == ["We love cookies and milk."]


def test_lorem_ipsum_drops_document():
    assert c4_reason("Lorem ipsum dolor sit amet.") == "c4:lorem_ipsum"
    assert c4_reason("Lorem ipsum dolor sit amet.").detail == '"lorem ipsum" in line 6'
    # C4/datatrove order: a line already removed for being short is not looked at
    assert c4_extra("Lorem ipsum") == []


def test_curly_bracket_drops_document():
    assert c4_reason("function f() { return 1; }") == "c4:curly_bracket"
    assert c4_reason("function f() { return 1; }").detail == '"{" in line 6'
    assert c4_extra("{x} y") == []  # a 2-word line is removed before the check


def test_terminal_punctuation_flag():
    assert c4_extra("This line has no end") == ["This line has no end"]  # off by default
    p = C4Params(filter_no_terminal_punct=True)
    assert c4_extra("This line has no end", p=p) == []
    assert c4_extra("It trails off like this...", p=p) == []
    assert c4_extra('He said "yes to that."', p=p) == ['He said "yes to that."']


def test_too_few_sentences():
    assert c4_filter("\n".join(BODY), C4)[1] is None  # 5
    assert c4_filter("\n".join(BODY[:4]), C4)[1] == "c4:too_few_sentences"  # 4
    five_in_a_line = "One is here. Two is here! Three is here? Four is here. Five is here"
    assert c4_filter(five_in_a_line, C4)[1] is None
    assert c4_filter(five_in_a_line.rsplit(".", 1)[0] + ".", C4)[1] == "c4:too_few_sentences"


@pytest.mark.parametrize(
    "line, n",
    [
        ("Hello there. How are you? Fine!", 3),
        ("No punctuation here", 1),
        ('"Quoted." Then more', 2),
        ("...", 0),  # a sentence needs a letter or digit
        # abbreviations, times and initialisms stay inside their sentence
        ("Dr. Smith met Mr. Jones at 3 p.m. on the U.S. coast today.", 1),
        ("The meeting is at 10 a.m. on Jan. 5 in St. Louis near the river.", 1),
        ("Use a tool, e.g. a hammer, i.e. something heavy. Then stop.", 2),
        # decimals and prices
        ("Version 2.5 is out.", 1),
        ("The price rose 3.5 percent in 2023. It fell 0.7 percent after that.", 2),
        ("She paid $4.99 for it. What a deal! Would you buy one?", 3),
        # initials
        ("J. R. R. Tolkien wrote books. He died in 1973.", 2),
        ("Prof. A. B. Smith, Ph.D., spoke. Everyone listened.", 2),
    ],
)
def test_count_sentences(line, n):
    assert count_sentences(line) == n


def test_a_huge_line_is_counted_in_pieces_until_enough():
    line = "A sentence is here. " * 7000  # 140,000 chars: two pieces
    assert count_sentences(line) in (7000, 7001)  # a sentence cut between pieces may count twice
    assert count_sentences(line, enough=5) == 5000  # the first piece has enough


def test_abbreviations_do_not_make_sentences():
    """The old regex splitter counted this 5-line page's first line as 5 sentences, enough alone."""
    line = "Dr. Smith met Mr. Jones at 3 p.m. on the U.S. coast today."
    reason = c4_filter("\n".join([line, *BODY[:3]]), C4)[1]
    assert reason == "c4:too_few_sentences" and reason.detail == "sentences 4 < 5"
    assert c4_filter("\n".join([line, *BODY[:4]]), C4)[1] is None


def test_citations_removed():
    assert c4_extra("Paris is the capital of France.[1] It is big.[citation needed]") == [
        "Paris is the capital of France. It is big."
    ]


def test_removed_lines_are_recorded_with_their_rule_and_line_number():
    lines = [BODY[0], "Two words.", "Please enable JavaScript to go on.", BODY[1] + "[1]", "Read our privacy policy here.",
             "a " + "x" * 1001, *BODY[2:]]
    removed: list = []
    text, reason = c4_filter("\n".join(lines), C4, removed)
    assert reason is None and text == "\n".join(BODY)
    assert removed == [
        ("few_words", 1, "Two words."),
        ("javascript", 2, "Please enable JavaScript to go on."),
        ("citation", 3, "[1]"),
        ("policy", 4, "Read our privacy policy here."),
        ("long_word", 5, lines[5]),
    ]


def test_empty_after_line_removal():
    assert c4_filter("a b\nc d", C4Params(min_sentences=0))[1] == "c4:empty"
    assert c4_filter("a b\nc d", C4)[1] == "c4:too_few_sentences"


# ---------------------------------------------------------------- FineWeb


FW = FineWebQualityParams()


def fw_line(i: int, length: int = 40, end: str = ".") -> str:
    """A distinct line of exactly `length` chars ending with `end`."""
    head = f"line {i:04d} says "
    return head + "x" * (length - len(head) - len(end)) + end


def test_line_punct_ratio_bound_is_inclusive():
    def doc(n_punct: int) -> str:
        return "\n".join(fw_line(i, end="." if i < n_punct else "x") for i in range(100))

    assert fineweb_quality(doc(13), FW) is None
    assert fineweb_quality(doc(12), FW) == "fineweb_quality:line_punct_ratio"  # 0.12


@pytest.mark.parametrize("end", [".", "!", "?", '"', "'", "”", "…"])
def test_terminal_punctuation_forms(end):
    assert fineweb_quality("\n".join(fw_line(i, end=end) for i in range(10)), FW) is None


def test_short_line_ratio_bound_is_inclusive():
    def doc(n_short: int, short_len: int = 29) -> str:
        return "\n".join(fw_line(i, short_len if i < n_short else 40) for i in range(100))

    assert fineweb_quality(doc(66), FW) is None
    reason = fineweb_quality(doc(67), FW)
    assert reason == "fineweb_quality:short_line_ratio"  # 0.67
    assert reason.detail == "lines of <= 30 chars 0.67 >= 0.67"
    assert fineweb_quality(doc(67, short_len=30), FW) == "fineweb_quality:short_line_ratio"  # 30 is short (`<= 30`)
    assert fineweb_quality(doc(67, short_len=31), FW) is None


def test_dup_line_char_frac_default_is_the_released_codes():
    """0.01, as in the code that produced FineWeb: one repeated 20-char line in 2,000 chars drops."""
    dup = fw_line(9999, 20)

    def doc(last_len: int) -> str:
        return "\n".join([fw_line(i, 100) for i in range(19)] + [fw_line(19, last_len)] + [dup] * 2)

    outside, inside = doc(60), doc(61)
    assert len(outside) - outside.count("\n") == 2000  # the second copy's 20 chars: 0.01
    reason = fineweb_quality(outside, FW)
    assert reason == "fineweb_quality:dup_line_char_frac" and reason.detail == "chars in duplicated lines 0.01 >= 0.01"
    assert fineweb_quality(inside, FW) is None  # 20 / 2001


def test_dup_line_char_frac_bound_is_inclusive():
    dup = fw_line(9999, 50)
    FW = FineWebQualityParams(dup_line_char_frac=0.1)  # the FineWeb paper's text

    def doc(last_len: int) -> str:
        lines = [fw_line(i, 50) for i in range(16)] + [fw_line(16, last_len)] + [dup] * 3
        return "\n".join(lines)

    outside, inside = doc(50), doc(51)
    assert len(outside) - outside.count("\n") == 1000  # 100 duplicated chars: 0.1
    assert fineweb_quality(outside, FW) == "fineweb_quality:dup_line_char_frac"
    assert fineweb_quality(inside, FW) is None  # 100 / 1001
    assert fineweb_quality(outside, FineWebQualityParams(dup_line_char_frac=0.11)) is None
    assert fineweb_quality(outside.replace(dup, fw_line(9998, 50), 1), FW) is None  # 50 of 1000


def test_fineweb_blank_lines_and_empty():
    assert fineweb_quality("\n\n".join(fw_line(i) for i in range(5)) + "\n\n  \n", FW) is None
    assert fineweb_quality(" \n\n", FW) == "fineweb_quality:empty"


# ---------------------------------------------------------------- real page and params


def test_real_article_is_kept():
    if not GROUND_TRUTH.exists():
        pytest.skip(f"shared data not found at {GROUND_TRUTH}")
    articles = json.loads(GROUND_TRUTH.read_text(encoding="utf-8"))
    body = next(a["articleBody"] for a in articles.values() if a["url"] == QUANTA_URL)
    text, reason = c4_filter(body, C4)
    assert reason is None and len(text.split()) > 0.95 * len(body.split())
    assert fineweb_quality(body, FW) is None


def test_params_defaults():
    assert C4.stage == "c4" and not C4.filter_no_terminal_punct
    assert (C4.min_words_per_line, C4.max_word_length, C4.min_sentences) == (3, 1000, 5)
    assert FW.stage == "fineweb_quality"
    assert (FW.line_punct_ratio, FW.dup_line_char_frac, FW.short_line_ratio, FW.short_line_length) == (
        0.12, 0.01, 0.67, 30)
    assert C4Params(policy_substrings=["Cookie Policy"]).policy_substrings == ("cookie policy",)


@pytest.mark.parametrize(
    "cls, kw",
    [
        (C4Params, {"min_sentences": -1}),
        (C4Params, {"max_word_length": 0}),
        (C4Params, {"policy_substrings": [""]}),
        (C4Params, {"filter_terminal_punct": True}),  # unknown key
        (FineWebQualityParams, {"line_punct_ratio": -0.1}),
        (FineWebQualityParams, {"short_line_ratio": 1.5}),
        (FineWebQualityParams, {"terminal_punctuation": []}),
        (FineWebQualityParams, {"stage": "c4"}),
    ],
)
def test_params_reject_bad_values(cls, kw):
    with pytest.raises(pydantic.ValidationError):
        cls(**kw)
