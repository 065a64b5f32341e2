"""Language ID before extraction: it must skip most non-target pages and keep what the full
pipeline keeps."""
from __future__ import annotations

import pyarrow.parquet as pq
import yaml

from refinery.filters.language import LanguagePrefilterParams, language_prefilter, page_text
from refinery.io.warc import ReadParams, read_warc
from conftest import run_cli


def test_prefilter_rejects_confident_other_languages_only(data_dir):
    p = LanguagePrefilterParams()
    with open(data_dir / "crawl-sample" / "real-pages.warc.gz", "rb") as f:
        rows = next(read_warc(f, "s", ReadParams(batch_records=60))).to_pylist()
    german = [r for r in rows if r["url"].endswith(".de") or ".de/" in r["url"]]
    assert german and all(len(page_text(r["html"])) > 100 for r in german)
    verdicts = [language_prefilter(r["html"], p) for r in german]
    assert sum(reason == "language_prefilter:not_target" for reason, _, _ in verdicts) >= len(german) * 0.8
    assert all(language != "en" and score >= p.reject_score for reason, language, score in verdicts if reason)
    english = "<html><body><p>" + "The committee met on Tuesday to discuss the budget. " * 20 + "</p></body></html>"
    assert language_prefilter(english, p)[:2] == (None, "en")


def test_prefilter_keeps_what_the_full_pipeline_keeps(crawl_run, data_dir, tmp_path):
    out, _, stats = crawl_run
    config = yaml.safe_load(open("pipelines/cc.yaml"))
    assert any(s["stage"] == "language_prefilter" for s in config["stages"]), "on by default in cc.yaml"
    config["stages"] = [s for s in config["stages"] if s["stage"] != "language_prefilter"]
    config["input"] = [str(data_dir / "crawl-sample" / "real-pages.warc.gz")]
    (tmp_path / "slow.yaml").write_text(yaml.safe_dump(config))
    proc = run_cli("run", str(tmp_path / "slow.yaml"), "--output", str(tmp_path / "slow"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    fast = set(pq.read_table(out / "shards", columns=["url"]).column("url").to_pylist())
    slow = set(pq.read_table(tmp_path / "slow" / "shards", columns=["url"]).column("url").to_pylist())
    agreement = len(fast & slow) / len(fast | slow)
    assert agreement >= 0.98, (agreement, sorted(slow - fast), sorted(fast - slow))
    prefilter = next(s for s in stats["stages"] if s["stage"] == "language_prefilter")
    assert prefilter["docs_in"] - prefilter["docs_out"] > 0.5 * stats["documents"]  # most pages never reach trafilatura


def test_prefilter_is_linear_on_deep_and_huge_pages(data_dir):
    """lexbor's tree builder is quadratic in nesting depth (100k nested <div>s: about a minute);
    a 30 MB page is parsed only up to max_html_chars. Both must cost well under a second."""
    import time

    from warc_builders import nested, real_pages

    (url, html), = real_pages(data_dir / "crawl-sample" / "real-pages.warc.gz", 1)
    deep = nested(html, 100_000).decode("utf-8", "replace")
    huge = html.decode("utf-8", "replace") * (30_000_000 // len(html) + 1)
    p = LanguagePrefilterParams()
    started = time.monotonic()
    verdicts = [language_prefilter(deep, p)[0], language_prefilter(huge, p)[0]]
    assert time.monotonic() - started < 3
    # the same verdict as on the page itself: the cheap rendering still tells the language
    assert verdicts == [language_prefilter(html.decode("utf-8", "replace"), p)[0]] * 2
    assert "<div>" not in page_text(deep)


def test_nesting_estimate_is_the_open_and_close_tag_count(data_dir):
    """The shortcut (no scan when `<` less `</` is within the limit) gives the scan's answer:
    checked against the depth by definition on real pages, at limits where each path is taken."""
    from refinery.filters.language import _TAG, _VOID, nested_deeper_than
    from warc_builders import real_pages

    def deepest(html: str) -> int:
        depth = most = 0
        for m in _TAG.finditer(html):
            if not (m.group(3) or m.group(2).lower() in _VOID):
                depth += -1 if m.group(1) else 1
                most = max(most, depth)
        return most

    pages = [html.decode("utf-8", "replace") for _, html in real_pages(data_dir / "crawl-sample" / "real-pages.warc.gz", 60)]
    pages += ["<br>" * 6_000, "<div>" * 6_000, "<p>a</p>" * 6_000, "<div><span>" * 3_000]
    for html in pages:
        for limit in (20, 100, 1_000, 5_000):
            assert nested_deeper_than(html, limit) == (deepest(html) > limit), (limit, html[:80])
