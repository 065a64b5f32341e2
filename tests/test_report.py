"""report.html as a reader sees it: a real headless Chromium (Debian's `chromium`, driven by
Playwright) opens the report of a real `refinery run --write-removed` on crawl-sample; and
`refinery report` / `refinery show` on that output, local and on S3 (moto)."""
from __future__ import annotations

import io
import json
import re
import shutil

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from conftest import run_cli
from refinery.report.browser import CHROMIUM
from refinery.report.run import REPORT_FILE, build_report
from refinery.report.show import show

CHARTS = 7  # funnel, kept per stage, removals, languages, language scores, lengths, domains


@pytest.fixture(scope="module")
def page_facts(crawl_run, tmp_path_factory):
    """What a browser saw of the crawl run's report: console errors, requests, the charts'
    rendered sizes, the funnel table, the samples per reason, and a screenshot."""
    pytest.importorskip("playwright", reason="playwright (the test extra) is not installed")
    if not shutil.which(CHROMIUM):
        pytest.fail(f"no Chromium at {CHROMIUM}: setup.sh installs Debian's chromium package")
    from refinery.report.browser import chromium

    out, _, _ = crawl_run
    errors, requests = [], []
    with chromium(1200, 900) as page:
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto((out / REPORT_FILE).as_uri(), wait_until="load")
        charts = page.evaluate("""[...document.querySelectorAll('figure svg')].map(s => {
            const box = s.getBoundingClientRect();
            return {width: box.width, height: box.height, marks: s.querySelectorAll('path, use, rect, text').length};
        })""")
        funnel = page.evaluate("""[...document.querySelectorAll('#funnel tbody tr')].map(
            tr => [...tr.querySelectorAll('td')].map(td => td.textContent))""")
        samples = page.evaluate("""Object.fromEntries([...document.querySelectorAll('.reason[data-reason]')].map(
            d => [d.dataset.reason, {samples: d.querySelectorAll('.sample').length, struck: d.querySelectorAll('del').length,
                                     marked: d.querySelectorAll('mark').length,
                                     panels: d.querySelectorAll('.side > div').length, text: d.textContent}]))""")
        screenshot = page.screenshot(full_page=False)
        (tmp_path_factory.mktemp("browser") / "report.png").write_bytes(screenshot)
    return {"errors": errors, "requests": requests, "charts": charts, "funnel": funnel, "samples": samples, "screenshot": screenshot}


def test_report_opens_offline_without_errors(crawl_run, page_facts):
    out, _, _ = crawl_run
    assert page_facts["errors"] == []
    assert page_facts["requests"] and all(url.startswith("file://") for url in page_facts["requests"]), page_facts["requests"]
    assert (out / REPORT_FILE).stat().st_size < 5_000_000


def test_every_chart_is_drawn(page_facts):
    charts = page_facts["charts"]
    assert len(charts) == CHARTS
    for chart in charts:
        assert chart["width"] > 100 and chart["height"] > 100 and chart["marks"] > 10, chart


def test_funnel_on_the_page_is_stats_json(crawl_run, page_facts):
    _, _, stats = crawl_run

    def cell(value, fmt=","):
        return "-" if value is None else format(value, fmt)

    expected = []
    for s in stats["stages"]:
        figure = "in language" if s["figure2_percent"] is None else f"{s['figure2_percent']:.2f} {s['figure2_measure']}"
        expected.append([s["stage"], s["phase"], cell(s["docs_in"]), cell(s["docs_out"]), cell(s["percent_of_documents"], ".2f"),
                         cell(s["words_out"]), cell(s["percent_of_words"], ".2f"), figure, cell(s["refinedweb_percent"], ".2f")])
    assert page_facts["funnel"] == expected


def test_samples_cover_every_reason_and_show_what_was_measured(crawl_run, page_facts):
    out, _, stats = crawl_run
    samples = page_facts["samples"]
    reasons = {reason: n for s in stats["stages"] for reason, n in s["removed"].items()}
    for reason, n in reasons.items():
        assert samples[reason]["samples"] == min(n, 3), reason
    # besides, the documents substring dedup kept with spans struck (they are in removed/ too)
    assert set(samples) - set(reasons) == {"substring_dedup:spans_struck"}
    struck_spans = samples["substring_dedup:spans_struck"]
    assert struck_spans["samples"] == min(3, stats["dedup"]["substring_dedup"]["documents_touched"]) and struck_spans["marked"] >= struck_spans["samples"]
    # each sample shows the measurement its removed row recorded
    details = set(pq.read_table(out / "removed" / "gopher_quality", columns=["reason_detail"]).column(0).to_pylist())
    shown = samples["gopher_quality:min_words"]["text"]
    assert any(d in shown for d in details if d.startswith("words "))
    # the document line corrections dropped is shown with the lines it removed struck through
    assert samples["line_corrections:too_many_words_removed"]["struck"] >= 2
    # a near-duplicate beside the document kept in its place, with their Jaccard similarity
    near = samples["minhash:near_duplicate"]
    assert near["panels"] == 2 and re.search(r"jaccard \d\.\d+", near["text"])


def test_screenshot_is_not_blank(page_facts):
    from PIL import Image, ImageStat

    image = Image.open(io.BytesIO(page_facts["screenshot"])).convert("L")
    assert image.size == (1200, 900)
    dark = sum(image.histogram()[:200]) / (image.size[0] * image.size[1])
    assert dark > 0.02 and ImageStat.Stat(image).stddev[0] > 10


def test_report_rebuilds_the_same_page(crawl_run, tmp_path):
    out, proc, _ = crawl_run
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    (copy / REPORT_FILE).unlink()
    rebuilt = run_cli("report", str(copy), timeout=300)
    assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
    assert str(copy / REPORT_FILE) in rebuilt.stdout
    assert (copy / REPORT_FILE).read_text().replace(str(copy), "OUT") == (out / REPORT_FILE).read_text().replace(str(out), "OUT")
    assert f"report: {out / REPORT_FILE}" in proc.stdout


def test_show_prints_text_measurement_and_url(crawl_run, capsys):
    out, _, stats = crawl_run
    shown = run_cli("show", str(out), "--reason", "gopher_quality:min_words", "-n", "2", timeout=300)
    assert shown.returncode == 0, shown.stderr
    rows = {r["id"]: r for r in pq.read_table(out / "removed" / "gopher_quality").to_pylist() if r["reason"] == "gopher_quality:min_words"}
    printed = re.findall(r"^--- \d\. gopher_quality:min_words  (.+)\n(\S+)  \((\S+)\)\n", shown.stdout, re.M)
    assert len(printed) == min(2, len(rows))
    for detail, url, doc_id in printed:
        assert rows[doc_id]["reason_detail"] == detail and rows[doc_id]["url"] == url
        assert rows[doc_id]["text"][:40] in shown.stdout
    # in-process from here: the CLI's `show` is this function
    assert show(str(out), None, 3) == 0 and "gopher_quality:min_words" in capsys.readouterr().out
    assert show(str(out), "gopher_quality:no_such_rule", 3) == 2 and "gopher_quality:min_words" in capsys.readouterr().err
    assert show(str(out), "line_corrections:few_words", 2) == 0
    assert re.findall(r"^--- \d\. line_corrections:few_words: line \d+ of ", capsys.readouterr().out, re.M)


@pytest.fixture(scope="module")
def s3_output(crawl_run):
    """The crawl run's output copied to a bucket of a moto server on loopback."""
    moto_server = pytest.importorskip("moto.server", reason="moto[server] (a test dependency) is not installed")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true", "no_proxy": "*", "NO_PROXY": "*"}
        fs = pafs.S3FileSystem(endpoint_override=f"{host}:{port}", scheme="http", region="us-east-1", access_key="testing", secret_key="testing",
                               allow_bucket_creation=True)
        fs.create_dir("reports")
        out, _, _ = crawl_run
        for path in out.rglob("*"):
            if path.is_file() and path.name != REPORT_FILE:
                with fs.open_output_stream(f"reports/run/{path.relative_to(out)}") as f:
                    f.write(path.read_bytes())
        yield fs, env
    finally:
        server.stop()


def test_report_and_show_read_an_output_on_s3(crawl_run, s3_output, monkeypatch, capsys):
    fs, env = s3_output
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    out, _, _ = crawl_run
    assert build_report("s3://reports/run") == "s3://reports/run/report.html"
    with fs.open_input_stream("reports/run/report.html") as f:
        page = f.read().decode()
    assert page.replace("s3://reports/run", "OUT") == (out / REPORT_FILE).read_text().replace(str(out), "OUT")
    assert show("s3://reports/run", "language:not_target", 1) == 0
    assert "--- 1. language:not_target  language " in capsys.readouterr().out


def test_stats_json_holds_what_the_charts_draw(crawl_run):
    """The distributions are counted by the pipeline (the report counts nothing): they agree
    with the shards and the funnel."""
    out, _, stats = crawl_run
    dist = stats["distributions"]
    assert sum(dist["words_per_document"]["kept"]) == stats["kept"]["docs"]
    kept = pq.read_table(out / "shards", columns=["domain", "n_words"]).to_pylist()
    by_domain: dict[str, int] = {}
    for row in kept:
        by_domain[row["domain"]] = by_domain.get(row["domain"], 0) + row["n_words"]
    assert dist["kept_domains"]["max_error_words"] == 0
    assert dist["kept_domains"]["words"] == dict(sorted(by_domain.items(), key=lambda kv: (-kv[1], kv[0]))[:100])
    assert {lang: sum(h) for lang, h in dist["language_score"]["by_language"].items()} == stats["languages"]
    json.dumps(dist)


def test_struck_lines_and_spans_are_marked_where_their_stage_says():
    from refinery.report.run import spans_html, struck_lines_html

    text = "Title\nSign in to read the story\nThe story itself, in words.\n3 likes\n<b>"
    removed = [{"rule": "few_words", "line": 0, "text": "Title"}, {"rule": "prefix", "line": 1, "text": "Sign in"},
               {"rule": "counter", "line": 3, "text": "3 likes"}, {"rule": "few_words", "line": 4, "text": "<b>"}]
    assert struck_lines_html(text, removed).split("\n") == [
        '<del title="few_words">Title</del>', '<del title="prefix">Sign in</del> to read the story', "The story itself, in words.",
        '<del title="counter">3 likes</del>', '<del title="few_words">&lt;b&gt;</del>']
    body = "x" * 400 + " a repeated span " + "y" * 700 + " the same span again" + "z" * 10
    spans = [{"start": 401, "end": 416, "other_id": "doc-2", "other_start": 7}, {"start": 1118, "end": 1137, "other_id": "doc-3", "other_start": 0}]
    html = spans_html(body, spans)
    assert '<mark title="also in document doc-2">a repeated span</mark>' in html
    assert '<mark title="also in document doc-3">the same span again</mark>' in html
    assert html.count("… ") == 2 and "x" * 301 not in html  # only the context around each span, 300 characters
    assert "characters 401-416: also in <code>doc-2</code> at character 7" in html


def test_a_run_that_removed_nothing_still_gets_its_report(data_dir, tmp_path):
    """extract-only.yaml on a few pages removes nothing: the removals chart (a log axis) must
    still be drawn, not fail and leave the run without its report."""
    out = tmp_path / "out"
    proc = run_cli("run", "pipelines/extract-only.yaml", "--input", str(data_dir / "crawl-sample" / "real-pages.warc.gz"),
                   "--limit", "20", "--output", str(out), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    stats = json.loads((out / "stats.json").read_text())
    assert not any(s["removed"] for s in stats["stages"]), stats["stages"]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "nothing removed" in (out / REPORT_FILE).read_text()
