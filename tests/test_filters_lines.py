"""RefinedWeb line-wise corrections: each line rule at its bound, the patterns, the 5% rule."""
from __future__ import annotations

import pydantic
import pytest

from refinery.filters.lines import LineCorrectionsParams, line_corrections

P = LineCorrectionsParams()
# 100 words of ordinary prose in 10 lines: removing up to 5 words keeps the document.
BODY = [f"this is ordinary line number {w} with some more words here" for w in
        ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")]


def correct(*extra: str, p: LineCorrectionsParams = P) -> tuple[str, str | None]:
    return line_corrections("\n".join([*BODY[:5], *extra, *BODY[5:]]), p)


def kept_lines(*extra: str) -> list[str]:
    text, reason = correct(*extra)
    assert reason is None
    return [line for line in text.split("\n") if line not in BODY]


def test_body_alone_is_unchanged():
    assert line_corrections("\n".join(BODY), P) == ("\n".join(BODY), None)


def test_uppercase_ratio_bound():
    assert kept_lines("ABCDE fghij") == ["ABCDE fghij"]  # 5 / 11 chars
    assert kept_lines("ABCDE fghi") == ["ABCDE fghi"]  # 5 / 10 = 0.5, not > 0.5
    assert kept_lines("ABCDEF ghi") == []  # 6 / 10
    assert kept_lines("NASA and the FBI") == ["NASA and the FBI"]  # 7 / 16


def test_numeric_ratio_bound():
    assert kept_lines("2023 2024") == []
    assert kept_lines("1 2 3 4") == []  # spaces do not count
    assert kept_lines("Page 2 of 10") == ["Page 2 of 10"]
    just_under = "1" * 499_999 + " " + "1" * 499_999 + "a"  # 999,999 of 1,000,000: < 0.999999
    assert kept_lines(just_under) == [just_under]
    all_digits = "1" * 500_000 + " " + "1" * 500_000  # ratio 1
    assert kept_lines(all_digits) == []


@pytest.mark.parametrize(
    "line", ["3 likes", "12 Comments", "1.2K views", "(5 shares)", "10 retweets", "1,204 followers", "1 reply"]
)
def test_counter_lines_removed(line):
    assert kept_lines(line) == []


def test_counter_needs_the_whole_line():
    assert kept_lines("3 likes today") == ["3 likes today"]
    assert kept_lines("likes 3") == ["likes 3"]


def test_min_words_per_line():
    assert kept_lines("Hello") == []
    assert kept_lines("Hello world") == ["Hello world"]


def test_prefix_pattern():
    assert kept_lines("Sign in to see your orders today") == ["to see your orders today"]
    assert kept_lines("sign-in required for checkout") == ["required for checkout"]
    assert kept_lines("Sign inside the box please") == ["Sign inside the box please"]  # whole words only
    assert kept_lines("to sign in you need a password") == ["to sign in you need a password"]  # not a prefix


def test_suffix_pattern():
    assert kept_lines("This is the story of my life. Read more...") == ["This is the story of my life."]
    assert kept_lines("The end of a good story READ MORE") == ["The end of a good story"]
    assert kept_lines("Read more about it later") == ["Read more about it later"]  # not a suffix


def test_anywhere_pattern():
    assert kept_lines("You have 3 items in cart right now") == ["You have 3 right now"]


def test_patterns_only_in_short_lines():
    ten = "Sign in now to read the full text of it"
    eleven = "Sign in now to read the full text of it here"
    assert len(ten.split()) == 10 and len(eleven.split()) == 11
    assert kept_lines(ten) == ["now to read the full text of it"]
    assert kept_lines(eleven) == [eleven]


def test_line_emptied_by_patterns_is_dropped():
    assert kept_lines("Sign in") == []  # passes the line rules (2 words), then emptied
    assert kept_lines("items in cart") == []


def test_five_percent_rule():
    body_95 = " ".join(" ".join(BODY).split()[:95])
    body_94 = " ".join(" ".join(BODY).split()[:94])
    singles = ["Home", "About", "Contact", "Shop", "Blog", "Login"]
    inside = body_95 + "\n" + "\n".join(singles[:5])  # 5 of 100 words removed
    text, reason = line_corrections(inside, P)
    assert reason is None and text == body_95
    outside = body_94 + "\n" + "\n".join(singles)  # 6 of 100
    reason = line_corrections(outside, P)[1]
    assert reason == "line_corrections:too_many_words_removed"
    assert reason.detail == "removed words 0.06 > 0.05 (6 of 100)"


def test_removed_lines_are_recorded_with_their_rule_and_line_number():
    text = "\n".join([BODY[0], "HOME", "NEWS AND SPORTS", "12 comments", "2024", "", "Sign in to read this", BODY[1],
                      "more on this topic Read more...", "3 items in cart now"])
    removed: list = []
    corrected, reason = line_corrections(text, LineCorrectionsParams(max_removed_words_frac=1.0), removed)
    assert reason is None
    assert removed == [
        ("few_words", 1, "HOME"),
        ("uppercase", 2, "NEWS AND SPORTS"),
        ("counter", 3, "12 comments"),
        ("few_words", 4, "2024"),
        ("prefix", 6, "Sign in"),
        ("suffix", 8, "Read more..."),
        ("anywhere", 9, "items in cart"),
    ]
    lines = text.split("\n")
    assert all(what in lines[i] for _, i, what in removed)  # numbers index the text the stage got
    assert corrected.split("\n") == [BODY[0], "", "to read this", BODY[1], "more on this topic", "3 now"]
    assert line_corrections(text, LineCorrectionsParams(max_removed_words_frac=1.0)) == (corrected, None)  # not asked: same result


def test_paragraph_breaks_kept_and_collapsed():
    text = "\n\nfirst paragraph line here\n\n\n\nHOME\n\nsecond paragraph line here\n\n"
    p = LineCorrectionsParams(max_removed_words_frac=1.0)
    assert line_corrections(text, p) == ("first paragraph line here\n\nsecond paragraph line here", None)


def test_empty_text_dropped():
    assert line_corrections("  \n ", P)[1] == "line_corrections:empty"


def test_custom_patterns_and_params():
    p = LineCorrectionsParams(counter_nouns=["stars"], anywhere_patterns=[], max_removed_words_frac=1.0)
    text, reason = line_corrections("5 stars\n3 likes here\nfour items in cart here", p)
    assert reason is None and text == "3 likes here\nfour items in cart here"
    assert p.stage == "line_corrections"
    assert (P.uppercase_frac_threshold, P.numeric_frac_threshold, P.min_words_per_line) == (0.5, 0.999999, 2)
    assert (P.max_words_for_patterns, P.max_removed_words_frac) == (10, 0.05)


@pytest.mark.parametrize(
    "kw",
    [
        {"max_removed_words_frac": -0.01},
        {"max_removed_words_frac": 1.5},
        {"uppercase_frac_threshold": 2},
        {"min_words_per_line": -1},
        {"prefix_patterns": ["sign in", " "]},
        {"counter_nouns": [""]},
        {"suffix_pattern": ["read more"]},  # unknown key
    ],
)
def test_params_reject_bad_values(kw):
    with pytest.raises(pydantic.ValidationError):
        LineCorrectionsParams(**kw)
