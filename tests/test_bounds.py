"""Every threshold a user may rely on, tested on both sides of its bound: the value at the bound
and the nearest value past it. Real text and real pages where the rule reads them; the bounds
are those of the papers (REFERENCE.md) or of the setting's own description."""
from __future__ import annotations

import gzip
import io
import json
import re

import numpy as np
import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from refinery.extract import ExtractParams, extract_text
from refinery.filters.language import LanguageParams, LanguagePrefilterParams, identify_language, language_prefilter, language_reason
from refinery.filters.lines import LineCorrectionsParams, line_corrections
from refinery.io.warc import ReadParams, read_warc
from refinery.model.evaluate import MAX_OVERLAP, NGRAM, drop_training_overlap
from refinery.schema import rows_from_pylist
from refinery.stages import apply_stage
from warc_builders import real_pages, record_bytes, response_record


def above(x: float) -> float:
    """The nearest float past `x`: the first value on the other side of a bound at `x`."""
    return float(np.nextafter(x, np.inf))


def below(x: float) -> float:
    return float(np.nextafter(x, -np.inf))


@pytest.fixture(scope="module")
def article(data_dir) -> str:
    """A real English news article (article-extraction-benchmark's gold text)."""
    truth = json.loads((data_dir / "article-extraction-benchmark" / "ground-truth.json").read_text())
    return max((v["articleBody"] for v in truth.values()), key=lambda t: t.count(" the "))


@pytest.fixture(scope="module")
def pages(data_dir) -> list[tuple[str, bytes]]:
    return real_pages(data_dir / "crawl-sample" / "real-pages.warc.gz", 40)


# --- language ID: a document scoring exactly the threshold is kept (RefinedWeb: score >= 0.65) ----


def test_language_threshold_is_065_and_a_score_of_exactly_it_is_kept():
    p = LanguageParams()
    assert p.threshold == 0.65
    assert language_reason("en", 0.65, p) is None
    assert language_reason("en", below(0.65), p) == "language:low_score"


def language_stage(text: str, threshold: float) -> dict:
    batch = rows_from_pylist([{"id": "doc", "url": "https://example.com/", "text": text}])
    return apply_stage(batch, LanguageParams(threshold=threshold), keep_removed_text=True).to_pylist()[0]


def test_language_stage_keeps_a_real_document_at_its_own_score_and_drops_it_just_above(article):
    _, score = identify_language(article)
    kept = language_stage(article, threshold=score)
    assert kept["removed_by"] is None and kept["language"] == "en"
    dropped = language_stage(article, threshold=above(score))
    assert (dropped["removed_by"], dropped["reason"]) == ("language", "language:low_score")


# --- the language prefilter drops a page only when another language scores >= reject_score (0.8) ---


def test_prefilter_rejects_a_real_page_at_exactly_its_score_and_passes_it_just_below(pages):
    p = LanguagePrefilterParams()
    assert p.reject_score == 0.8
    german = []
    for _, html in pages:
        reason, language, score = language_prefilter(html.decode("utf-8", "replace"), p)
        if language == "de":
            german.append((html.decode("utf-8", "replace"), score))
    assert german, "crawl-sample is mostly German"
    html, score = german[0]
    assert language_prefilter(html, LanguagePrefilterParams(reject_score=score))[0] == "language_prefilter:not_target"
    assert language_prefilter(html, LanguagePrefilterParams(reject_score=above(score)))[0] is None
    # a page in a target language passes however confident the model is
    assert language_prefilter(html, LanguagePrefilterParams(languages=["de"], reject_score=0.0))[0] is None


# --- counter lines: "<number> <noun>" is removed only in a line of <= 4 words and <= 64 chars -----

BODY = [f"this is ordinary line number {w} with some more words here" for w in
        ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")]


def survives(line: str) -> bool:
    """Whether `line`, put among 100 words of ordinary prose, is still there after the corrections
    (the prose keeps the document under the 5% rule either way)."""
    text, reason = line_corrections("\n".join([*BODY[:5], line, *BODY[5:]]), LineCorrectionsParams())
    assert reason is None
    return line in text.split("\n")


def test_counter_line_of_four_words_is_removed_and_of_five_is_kept():
    four, five = "- 12 likes -", "- - 12 likes -"
    assert (len(four.split()), len(five.split())) == (4, 5)
    assert not survives(four)
    assert survives(five)


def test_counter_line_of_64_chars_is_removed_and_of_65_is_kept():
    at, past = "12 likes" + "!" * 56, "12 likes" + "!" * 57
    assert (len(at), len(past)) == (64, 65)
    assert not survives(at)
    assert survives(past)


# --- pretraining eval: a document is dropped when MORE than half its 13-grams were trained on -----


def test_eval_document_sharing_exactly_half_its_13_grams_is_kept_and_one_more_drops_it(article):
    words = re.findall(r"\w+", article)
    start = next(i for i in range(len(words)) if len({w.lower() for w in words[i : i + 26]}) == 26)
    words = words[start : start + 26]  # 26 distinct words: 14 distinct 13-grams
    doc = " ".join(words)
    assert MAX_OVERLAP == 0.5 and NGRAM == 13
    half = " ".join(words[:19])  # 7 of the 14 13-grams
    assert drop_training_overlap([doc], [half]) == ([doc], [])
    more = " ".join(words[:20])  # 8 of 14
    assert drop_training_overlap([doc], [more]) == ([], [0])


# --- extraction: a page of exactly max_html_chars is extracted -------------------------------------


def test_page_of_exactly_max_html_chars_is_extracted_and_one_char_more_is_not(data_dir):
    page = next((data_dir / "article-extraction-benchmark" / "html").glob("*.html.gz"))
    html = gzip.decompress(page.read_bytes()).decode("utf-8", "replace")
    text, reason = extract_text(html, ExtractParams(max_html_chars=len(html)))
    assert reason is None and len(text) > 200
    assert extract_text(html, ExtractParams(max_html_chars=len(html) - 1)) == (None, "extract:html_too_large")


# --- reading: a payload of exactly max_record_bytes is read ----------------------------------------


def read_reasons(data: bytes, limit: int) -> list[str | None]:
    return [r["reason"] for t in read_warc(io.BytesIO(data), "mem", ReadParams(max_record_bytes=limit)) for r in t.to_pylist()]


@pytest.mark.parametrize("gz", [True, False])
def test_payload_of_exactly_max_record_bytes_is_read_and_one_byte_more_is_skipped(pages, gz):
    """The payload's size as declared by the record (its Content-Length less the HTTP headers)."""
    url, html = pages[0]
    data = record_bytes(lambda w: response_record(w, url, html), gz)
    assert read_reasons(data, len(html)) == [None]
    assert read_reasons(data, len(html) - 1) == ["read:record_too_large"]


def test_decoded_payload_of_exactly_max_record_bytes_is_read_and_one_byte_more_is_skipped(pages):
    """A gzip Content-Encoding declares the compressed size; the limit holds for what it decodes to."""
    url, html = pages[0]
    body = gzip.compress(html)
    assert len(body) < len(html) // 2

    def record(w: WARCWriter):
        http = StatusAndHeaders("200 OK", [("Content-Type", "text/html"), ("Content-Encoding", "gzip")], protocol="HTTP/1.1")
        return w.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=http)

    data = record_bytes(record)
    assert read_reasons(data, len(html)) == [None]
    assert read_reasons(data, len(html) - 1) == ["read:record_too_large"]
