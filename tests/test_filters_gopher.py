"""Gopher repetition and quality: each bound hit exactly (kept) and just passed (dropped)."""
from __future__ import annotations

import json
from itertools import accumulate
from pathlib import Path

import pydantic
import pytest

from refinery.filters import gopher as gopher_mod
from refinery.filters.gopher import (
    GopherQualityParams,
    GopherRepetitionParams,
    gopher_quality,
    gopher_repetition,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
GROUND_TRUTH = DATA / "article-extraction-benchmark" / "ground-truth.json"
QUANTA_URL = "https://www.quantamagazine.org/tuft-cells-that-taste-danger-set-off-immune-responses-20191115/"


def uw(i: int) -> str:
    """A distinct alphabetic word per i, never made only of 'z' (the padding letter)."""
    return "q" + "".join("abcdefghij"[int(d)] for d in str(i))


def pad_to(words: list[str], total: int) -> str:
    """Join words with spaces and append one 'z...' word so the text has exactly `total` chars."""
    text = " ".join(words)
    need = total - len(text) - 1
    assert need >= 1, (len(text), total)
    out = text + " " + "z" * need
    assert len(out) == total
    return out


def pad_words(words: list[str], total: int) -> str:
    """Join words with spaces and append one 'z...' word so the words hold exactly `total`
    chars without the spaces (the denominator of Gopher's n-gram fractions)."""
    need = total - sum(map(len, words))
    assert need >= 1, (sum(map(len, words)), total)
    return " ".join([*words, "z" * need])


def rep_only(*rules: str, counting: str = "paper", **values: float) -> GopherRepetitionParams:
    """Params with every bound off (1.0) except `rules`, which keep their defaults."""
    fields = GopherRepetitionParams.model_fields
    kw = {k: 1.0 for k in fields if k.endswith("_frac")}
    for r in rules:
        kw[r] = fields[r].default
    kw.update(values)
    return GopherRepetitionParams(counting=counting, **kw)


def detail(reason) -> str:
    assert reason is not None
    return reason.detail


# ---------------------------------------------------------------- repetition: paragraphs, lines


def _blocks(n_unique: int, n_dup: int) -> list[str]:
    """n_unique distinct blocks, then n_dup more copies of the first (n_dup + 1 copies in all)."""
    blocks = [f"{uw(i)} {uw(i + 1000)} text" for i in range(n_unique)]
    return blocks + [blocks[0]] * n_dup


# (counting, blocks inside the bound, blocks just past it): 0.30 of the units are copies.
# Gopher counts every copy: 3 copies of 10 (8 distinct + 2 more), then 4 of 13.
# datatrove counts copies after the first: 3 of 10 (7 distinct + 3 more), then 4 of 13.
UNIT_BOUNDS = [("paper", (8, 2), (10, 3)), ("datatrove", (7, 3), (9, 4))]


@pytest.mark.parametrize("counting, inside, outside", UNIT_BOUNDS)
def test_dup_para_frac_bound(counting, inside, outside):
    p = rep_only("dup_para_frac", counting=counting)
    assert gopher_repetition("\n\n".join(_blocks(*inside)), p) is None  # 3/10 = 0.30
    reason = gopher_repetition("\n\n".join(_blocks(*outside)), p)
    assert reason == "gopher_repetition:dup_para_frac" and detail(reason) == "dup_para_frac 0.308 > 0.3"  # 4/13


@pytest.mark.parametrize("counting, inside, outside", UNIT_BOUNDS)
def test_dup_line_frac_bound_ignores_blank_lines(counting, inside, outside):
    p = rep_only("dup_line_frac", counting=counting)
    lines = _blocks(*inside)
    text = "\n".join(lines[:3]) + "\n\n\n  \n" + "\n".join(lines[3:])  # blanks are not lines
    assert gopher_repetition(text, p) is None  # 3/10
    assert gopher_repetition("\n".join(_blocks(*outside)), p) == "gopher_repetition:dup_line_frac"


def test_dup_para_char_frac_bound_counts_every_copy_over_paragraph_chars():
    p = rep_only("dup_para_char_frac")
    dup = "d" * 10
    inside = "a" * 80 + "\n\n" + dup + "\n\n" + dup  # both copies: 20 of 100 paragraph chars
    assert gopher_repetition(inside, p) is None
    reason = gopher_repetition("a" * 79 + "\n\n" + dup + "\n\n" + dup, p)  # 20 / 99
    assert reason == "gopher_repetition:dup_para_char_frac" and detail(reason) == "dup_para_char_frac 0.202 > 0.2"


def test_dup_para_char_frac_bound_datatrove():
    p = rep_only("dup_para_char_frac", counting="datatrove")
    dup = "d" * 20
    inside = "a" * 56 + "\n\n" + dup + "\n\n" + dup  # the second copy: 20 / len(text) 100
    assert len(inside) == 100
    assert gopher_repetition(inside, p) is None
    assert gopher_repetition("a" * 55 + "\n\n" + dup + "\n\n" + dup, p) == "gopher_repetition:dup_para_char_frac"


def test_dup_line_char_frac_bound_counts_every_copy_over_line_chars():
    p = rep_only("dup_line_char_frac")
    dup = "d" * 10
    assert gopher_repetition("a" * 80 + "\n" + dup + "\n\n" + dup, p) is None  # 20 / 100
    assert gopher_repetition("a" * 79 + "\n" + dup + "\n" + dup, p) == "gopher_repetition:dup_line_char_frac"


def test_dup_line_char_frac_bound_datatrove():
    p = rep_only("dup_line_char_frac", counting="datatrove")
    dup = "d" * 20
    inside = "a" * 58 + "\n" + dup + "\n" + dup
    assert len(inside) == 100
    assert gopher_repetition(inside, p) is None
    outside = "a" * 57 + "\n" + dup + "\n" + dup
    assert gopher_repetition(outside, p) == "gopher_repetition:dup_line_char_frac"


# ---------------------------------------------------------------- repetition: n-grams


@pytest.mark.parametrize("counting", ["paper", "datatrove"])
@pytest.mark.parametrize(
    "n, gram, count",
    [
        (2, ["aa", "bb"], 5),  # 4 chars x 5 = 20 -> 0.20 of 100
        (3, ["aa", "bb", "cc"], 3),  # 6 x 3 = 18 -> 0.18
        (4, ["aa", "bb", "cc", "dd"], 2),  # 8 x 2 = 16 -> 0.16
    ],
)
def test_top_ngram_bounds(counting, n, gram, count):
    """Both readings count the top n-gram's every occurrence; the paper's denominator is the
    words' chars, datatrove's the text's (spaces included)."""
    words: list[str] = []
    for k in range(count):
        words += gram + [uw(k)]
    pad = pad_words if counting == "paper" else pad_to
    p = rep_only(f"top_{n}_gram_frac", counting=counting)
    assert gopher_repetition(pad(words, 100), p) is None
    assert gopher_repetition(pad(words, 99), p) == f"gopher_repetition:top_{n}_gram"
    # with defaults too: the shorter n-grams inside the repeated one stay under their bounds
    defaults = GopherRepetitionParams(counting=counting)
    assert gopher_repetition(pad(words, 100), defaults) is None
    assert gopher_repetition(pad(words, 99), defaults) == f"gopher_repetition:top_{n}_gram"


def test_top_ngram_counts_only_repeated_ngrams():
    p = rep_only("top_2_gram_frac", top_2_gram_frac=0.0)
    assert gopher_repetition(" ".join(uw(i) for i in range(30)), p) is None
    assert gopher_repetition(" ".join(uw(i) for i in range(30)) + " q qb q qb", p) == (
        "gopher_repetition:top_2_gram"
    )


def test_top_ngram_tie_takes_largest_coverage():
    words = ["a", "b", "x", "a", "b", "y", "longword", "another", "longword", "another"]
    assert gopher_mod._top_ngram_chars(words, 2) == 2 * len("longwordanother")


def _gram(n: int, chars: int) -> list[str]:
    """n distinct words whose lengths sum to `chars`."""
    base, extra = divmod(chars, n)
    gram = [chr(ord("a") + i) * (base + (1 if i < extra else 0)) for i in range(n)]
    assert sum(map(len, gram)) == chars
    return gram


@pytest.mark.parametrize("n", range(5, 11))
def test_dup_ngram_bounds_count_every_copy(n):
    """An n-gram twice: both copies' words count, over 200 chars of words (no spaces)."""
    field = f"dup_{n}_gram_frac"
    bound = GopherRepetitionParams.model_fields[field].default
    gram = _gram(n, round(bound * 100))  # twice: 2 * bound * 100 of 200
    words = gram + [uw(1)] + gram
    p = rep_only(field)
    assert gopher_repetition(pad_words(words, 200), p) is None
    reason = gopher_repetition(pad_words(words, 199), p)
    assert reason == f"gopher_repetition:dup_{n}_gram"
    assert detail(reason).startswith(f"dup_{n}_gram 0.") and detail(reason).endswith(f" > {bound}")


@pytest.mark.parametrize("n", range(5, 11))
def test_dup_ngram_bounds_datatrove(n):
    """datatrove: only the second copy counts, over len(text)."""
    field = f"dup_{n}_gram_frac"
    gram = _gram(n, round(GopherRepetitionParams.model_fields[field].default * 100))  # 15, 14, ... 10
    words = gram + [uw(1)] + gram
    p = rep_only(field, counting="datatrove")
    assert gopher_repetition(pad_to(words, 100), p) is None
    assert gopher_repetition(pad_to(words, 99), p) == f"gopher_repetition:dup_{n}_gram"


def test_a_span_twice_scores_what_gopher_says_not_half():
    """The issue's example: a 10-word span twice in a 100-word page. Gopher's reading covers both
    copies (20 of 100 words: ~0.2), datatrove's only the second (and spaces in the denominator)."""
    span = [uw(i) for i in range(100, 110)]
    words = span + [uw(i) for i in range(200, 280)] + span
    assert len(words) == 100
    text = " ".join(words)
    paper = gopher_repetition(text, GopherRepetitionParams())
    assert paper == "gopher_repetition:dup_5_gram"
    assert detail(paper) == "dup_5_gram 0.2 > 0.15"  # every word has 4 chars
    assert gopher_repetition(text, GopherRepetitionParams(counting="datatrove")) is None
    cum = [0, *accumulate(map(len, words))]
    assert gopher_mod._covered_chars(words, 10, cum) / cum[-1] == pytest.approx(0.2, abs=0.01)
    assert gopher_mod._dup_ngram_chars(words, 10, cum) / len(text) == pytest.approx(0.084, abs=0.01)


def test_covered_chars_counts_each_word_once():
    words = "a b c d e a b c d e a b c d e".split()
    cum = [0, *accumulate(map(len, words))]
    assert gopher_mod._covered_chars(words, 5, cum) == 15  # every word, overlaps counted once
    words = "x a b c d e y a b c d e z".split()
    cum = [0, *accumulate(map(len, words))]
    assert gopher_mod._covered_chars(words, 5, cum) == 10
    assert gopher_mod._covered_chars(words, 6, cum) is None
    words = ["a"] * 12
    assert gopher_mod._covered_chars(words, 5, [0, *accumulate(map(len, words))]) == 12


def test_dup_ngram_scan_jumps_past_a_repeat():
    words = "a b c d e a b c d e a b c d e".split()
    cum = [0, *accumulate(map(len, words))]
    # positions 0-4 are new; the 5-grams at 5 and 10 repeat: 5 + 5 chars
    assert gopher_mod._dup_ngram_chars(words, 5, cum) == 10
    words = ["a"] * 12
    cum = [0, *accumulate(map(len, words))]
    # "a a a a a" new at 0, repeat at 1 (jump to 6), repeat at 6 (jump to 11, past the end)
    assert gopher_mod._dup_ngram_chars(words, 5, cum) == 10
    assert gopher_mod._dup_ngram_chars([uw(i) for i in range(20)], 5, cum) is None


@pytest.mark.parametrize("counting", ["paper", "datatrove"])
def test_repetition_order_and_reasons_with_defaults(counting):
    p = GopherRepetitionParams(counting=counting)
    line = "the same line of text repeated here"
    assert gopher_repetition("\n\n".join([line] * 10), p) == "gopher_repetition:dup_para_frac"
    assert gopher_repetition("\n".join([line] * 10), p) == "gopher_repetition:dup_line_frac"
    assert gopher_repetition(" ".join([line] * 10), p) == "gopher_repetition:top_2_gram"
    assert gopher_repetition("", p) is None


def test_real_page_where_the_readings_disagree(data_dir):
    """A real news page whose hover cards repeat a long run of headlines: Gopher's reading sees
    its duplicated 5-grams over the bound; datatrove's, counting only the later copies, does not."""
    from refinery.extract import ExtractParams, extract_text
    from refinery.io.warc import ReadParams, read_warc

    url = "https://thehill.com/blogs/blog-briefing-room/news/471031-new-york-man-pleads-guilty-to-threatening-to-kill-omar"
    with open(data_dir / "crawl-sample" / "real-pages.warc.gz", "rb") as f:
        html = next(r["html"] for b in read_warc(f, "crawl-sample", ReadParams()) for r in b.to_pylist() if r["url"] == url)
    text, _ = extract_text(html, ExtractParams())
    paper = gopher_repetition(text, GopherRepetitionParams())
    assert paper == "gopher_repetition:dup_5_gram"
    value = float(detail(paper).split()[1])
    assert 0.15 < value < 0.25
    assert gopher_repetition(text, GopherRepetitionParams(counting="datatrove")) is None
    words = text.split()
    cum = [0, *accumulate(map(len, words))]
    assert gopher_mod._dup_ngram_chars(words, 5, cum) / len(text) < value / 2  # under half of Gopher's value


# ---------------------------------------------------------------- quality


def _q(words: list[str]) -> str | None:
    return gopher_quality(" ".join(words), GopherQualityParams())


STOP2 = ["the", "and"]


def test_min_words_counts_only_non_symbol_words():
    assert _q(STOP2 + ["house"] * 48) is None  # 50
    assert _q(STOP2 + ["house"] * 47 + ["&"]) == "gopher_quality:min_words"  # 49 + a symbol


def test_max_words():
    assert _q(STOP2 + ["house"] * 99_998) is None
    assert _q(STOP2 + ["house"] * 99_999) == "gopher_quality:max_words"


def test_mean_word_length_bounds():
    assert _q(STOP2 + ["cat"] * 98) is None  # mean 3.0
    assert _q(STOP2 + ["cat"] * 97 + ["ox"]) == "gopher_quality:mean_word_length"  # 2.99
    long = STOP2 + ["abcdefghij"] * 48  # 486 chars over 50 words
    assert _q(long + ["x" * 24]) is None  # 510 / 51 = 10.0
    assert _q(long + ["x" * 25]) == "gopher_quality:mean_word_length"


def test_hash_ratio():
    assert _q(STOP2 + ["house"] * 88 + ["#tag"] * 10) is None  # 10 / 100
    assert _q(STOP2 + ["house"] * 87 + ["#tag"] * 11) == "gopher_quality:hash_ratio"


def test_ellipsis_ratio_counts_both_forms():
    assert _q(STOP2 + ["wait..."] * 5 + ["wait…"] * 5 + ["house"] * 88) is None
    assert _q(STOP2 + ["wait..."] * 6 + ["wait…"] * 5 + ["house"] * 87) == "gopher_quality:ellipsis_ratio"


def _lines_doc(n_bullet: int, n_plain: int) -> str:
    body = "the house river stone light green house river stone"
    bullets = ["-", "•", "*", "  ◦", "‣"]
    lines = [f"{bullets[i % len(bullets)]} {body}" for i in range(n_bullet)]
    return "\n".join(lines + [body] * n_plain)


def test_bullet_lines():
    p = GopherQualityParams()
    assert gopher_quality(_lines_doc(9, 1), p) is None  # 0.9
    assert gopher_quality(_lines_doc(19, 1), p) == "gopher_quality:bullet_lines"  # 0.95


def test_ellipsis_lines():
    body = "the house river stone light green house river stone light"
    p = GopherQualityParams()
    inside = [body + "...", body + "…", body + "..."] + [body] * 7
    assert gopher_quality("\n".join(inside), p) is None  # 3 / 10
    outside = inside[:3] + [body + "..."] + [body] * 6
    assert gopher_quality("\n".join(outside), p) == "gopher_quality:ellipsis_lines"  # 4 / 10


def test_alpha_words():
    assert _q(STOP2 + ["house"] * 78 + ["1234"] * 20) is None  # 80 / 100
    assert _q(STOP2 + ["house"] * 77 + ["1234"] * 21) == "gopher_quality:alpha_words"


def test_stop_words_normalized_and_counted():
    assert _q(["The,", "(and)"] + ["house"] * 60) is None
    assert _q(["The,", "Theory"] + ["house"] * 60) == "gopher_quality:stop_words"
    assert _q(["THE"] * 2 + ["house"] * 60) is None  # occurrences, not distinct words


def test_quality_drops_say_what_they_measured():
    assert _q(STOP2 + ["house"] * 47 + ["&"]).detail == "words 49 < 50"
    assert _q(STOP2 + ["cat"] * 97 + ["ox"]).detail == "mean word length 2.99 < 3"
    assert _q(STOP2 + ["house"] * 87 + ["#tag"] * 11).detail == "'#' per word 0.11 > 0.1"
    assert _q(STOP2 + ["house"] * 77 + ["1234"] * 21).detail == "words with a letter 0.79 < 0.8"
    assert _q(["The,", "Theory"] + ["house"] * 60).detail == "stop words 1 < 2"


# ---------------------------------------------------------------- real page and params


def test_real_article_is_kept():
    if not GROUND_TRUTH.exists():
        pytest.skip(f"shared data not found at {GROUND_TRUTH}")
    articles = json.loads(GROUND_TRUTH.read_text(encoding="utf-8"))
    body = next(a["articleBody"] for a in articles.values() if a["url"] == QUANTA_URL)
    assert len(body.split()) > 2000 and "\n\n" in body
    assert gopher_repetition(body, GopherRepetitionParams()) is None
    assert gopher_quality(body, GopherQualityParams()) is None


def test_params_defaults_and_tags():
    r = GopherRepetitionParams()
    assert (r.stage, r.dup_line_frac, r.top_3_gram_frac, r.dup_10_gram_frac) == ("gopher_repetition", 0.30, 0.18, 0.10)
    q = GopherQualityParams(stop_words=["The", "OF"])
    assert q.stage == "gopher_quality" and q.stop_words == ("the", "of")
    assert (q.min_words, q.max_words, q.min_stop_words) == (50, 100_000, 2)


@pytest.mark.parametrize(
    "cls, kw",
    [
        (GopherRepetitionParams, {"dup_line_frac": -0.1}),
        (GopherRepetitionParams, {"top_2_gram_frac": 1.5}),
        (GopherRepetitionParams, {"dup_line_fraction": 0.3}),  # unknown key
        (GopherRepetitionParams, {"stage": "gopher_quality"}),
        (GopherQualityParams, {"min_words": -1}),
        (GopherQualityParams, {"min_words": 60, "max_words": 50}),
        (GopherQualityParams, {"min_mean_word_length": 11}),
        (GopherQualityParams, {"max_bullet_lines_frac": 1.2}),
        (GopherQualityParams, {"stop_words": []}),
        (GopherQualityParams, {"bullet_prefixes": ["-", ""]}),
    ],
)
def test_params_reject_bad_values(cls, kw):
    with pytest.raises(pydantic.ValidationError):
        cls(**kw)


def test_params_frozen():
    with pytest.raises(pydantic.ValidationError):
        GopherQualityParams().min_words = 3
