"""URL filter, language ID and extraction, each called directly as a user of the library would."""
from __future__ import annotations

import gzip
import time

import pytest

from refinery.extract import ExtractionTimeout, ExtractParams, clean_text, extract_text, time_limit
from refinery.filters.language import LanguageParams, identify_language, language_reason
from refinery.filters.url import UrlFilterParams, url_filter
from refinery.io.warc import decode_html

P = UrlFilterParams()


@pytest.mark.parametrize(
    "url, reason",
    [
        ("https://www.example.com/news/2024/budget", None),
        ("https://en.wikipedia.org/wiki/Mona_Lisa", "url_filter:curated_domain"),
        ("https://de.m.wikipedia.org/wiki/X", "url_filter:curated_domain"),
        ("https://www.pornhub.com/view", "url_filter:blocklisted_domain"),
        ("https://cdn.sub.xvideos.com/a", "url_filter:blocklisted_domain"),
        ("https://example.com/free-porn-videos", "url_filter:hard_word"),
        ("https://example.com/sexy-nude-pics", "url_filter:soft_words"),
        ("https://example.com/sex-education", None),  # one soft word is not enough
        ("https://example.com/best.free.porn.hub", "url_filter:hard_word"),
        ("https://myfreepornstar.example/x", "url_filter:strict_word"),
        ("https://example.com/sussex-county", None),  # substrings of soft words do not count
        ("https://example.com/hot/hot-deals", None),  # one soft word twice is one hit
        ("https://example.com/hot/teen-hot-deals", "url_filter:soft_words"),
    ],
)
def test_url_filter(url, reason):
    from urllib.parse import urlsplit

    assert url_filter(url, urlsplit(url).hostname, P) == reason


@pytest.mark.parametrize(
    "url, detail",
    [
        ("https://de.m.wikipedia.org/wiki/X", "domain de.m.wikipedia.org is under wikipedia.org"),
        ("https://example.com/free-porn-videos", "hard word 'porn'"),
        ("https://example.com/hot/teen-hot-deals", "soft words (hot, teen) 2 >= 2"),
        ("https://myfreepornstar.example/x", "strict word 'freeporn' in the URL"),
    ],
)
def test_url_filter_says_what_it_matched(url, detail):
    from urllib.parse import urlsplit

    assert url_filter(url, urlsplit(url).hostname, P).detail == detail


def test_url_filter_reads_user_lists(tmp_path):
    lst = tmp_path / "domains"
    lst.write_text("# UT1-style list\nbad.example\n")
    p = UrlFilterParams(blocklist_domains=[str(lst)])
    assert url_filter("https://x.bad.example/", "x.bad.example", p) == "url_filter:blocklisted_domain"
    assert url_filter("https://good.example/", "good.example", p) is None


def test_language_id_on_real_text(data_dir):
    import json

    truth = json.loads((data_dir / "article-extraction-benchmark" / "ground-truth.json").read_text())
    english = max((v["articleBody"] for v in truth.values()), key=lambda t: t.count(" the "))
    lang, score = identify_language(english)
    assert lang == "en" and score > 0.9
    assert language_reason(lang, score, LanguageParams()) is None
    assert language_reason("de", 0.99, LanguageParams()) == "language:not_target"
    assert language_reason("en", 0.64, LanguageParams()) == "language:low_score"
    assert language_reason("de", 0.99, LanguageParams()).detail == "language de 0.99, not en"
    assert language_reason("en", 0.42, LanguageParams()).detail == "language en 0.42 < 0.65"
    assert language_reason("en", 0.6499, LanguageParams()).detail == "language en 0.6499 < 0.65"  # never "0.65 < 0.65"
    assert language_reason("de", 0.99, LanguageParams(languages=["en", "de"])) is None


def test_extract_cleans_urls_and_blank_lines():
    assert clean_text("a https://x.com/y b\n\n\n\nc www.z.org") == "a  b\n\nc"


def test_extract_real_page_and_limits(data_dir):
    page = next((data_dir / "article-extraction-benchmark" / "html").glob("*.html.gz"))
    html, _ = decode_html(gzip.decompress(page.read_bytes()), None)
    text, reason = extract_text(html, ExtractParams())
    assert reason is None and len(text) > 200 and "http" not in text
    text, reason = extract_text(html, ExtractParams(max_html_chars=len(html) - 1))
    assert (text, reason) == (None, "extract:html_too_large")
    assert reason.detail == f"HTML chars {len(html):,} > {len(html) - 1:,}"
    assert extract_text("<html><body></body></html>", ExtractParams()) == (None, "extract:empty")


def test_time_limit_interrupts_a_hanging_call():
    start = time.monotonic()
    with pytest.raises(ExtractionTimeout):
        with time_limit(0.2):
            while True:
                pass
    assert time.monotonic() - start < 2


def test_time_limit_counts_cpu_time_so_a_busy_machine_times_out_nothing_more():
    with time_limit(0.2):
        time.sleep(0.5)  # waiting (as on a loaded machine) uses no CPU time of this process
