"""What `refinery run` prints, as a user sees it: a short stderr with one progress display per
phase (live on a terminal), the funnel and where the report and Ray's log went; `-v` brings
Ray's own output back. The quiet run is conftest's `crawl_run` (cc.yaml on crawl-sample)."""
from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import REPO, run_cli
from refinery.report.run import REPORT_FILE

RAY_SAYS = ("Started a local Ray instance", "Execution plan of Dataset")


def run_on_terminal(args: list[str], timeout: float = 600) -> tuple[int, str]:
    """`refinery ARGS` with stdin, stdout and stderr on a pseudo-terminal; (exit code, all it wrote)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"COLUMNS": "120", "LINES": "40"}
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "refinery.cli", *args], cwd=REPO, env=env,
                            stdin=follower, stdout=follower, stderr=follower, close_fds=True)
    os.close(follower)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([leader], [], [], timeout)
            if not ready:
                proc.kill()
                raise TimeoutError(f"refinery {' '.join(args)} wrote nothing for {timeout} s")
            try:
                data = os.read(leader, 1 << 16)
            except OSError:  # EIO: every writer has closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(leader)
    return proc.wait(timeout=60), b"".join(chunks).decode(errors="replace")


@pytest.fixture(scope="module")
def small_runs(data_dir, tmp_path_factory):
    """Two small runs at once (most of each is Ray starting): cc.yaml on a terminal, without
    --write-removed, and extract-only.yaml with -v, output captured."""
    tmp = tmp_path_factory.mktemp("terminal")
    warc = str(data_dir / "crawl-sample" / "real-pages.warc.gz")
    with ThreadPoolExecutor(2) as pool:
        on_terminal = pool.submit(run_on_terminal, ["run", "pipelines/cc.yaml", "--input", warc, "--output", str(tmp / "tty"), "--limit", "100"])
        verbose = pool.submit(run_cli, "run", "pipelines/extract-only.yaml", "--input", warc, "--output", str(tmp / "verbose"), "--limit", "10", "-v")
        return {"tty": (*on_terminal.result(), tmp / "tty"), "verbose": verbose.result()}


def test_a_quiet_run_prints_little_and_names_its_log(crawl_run):
    out, proc, stats = crawl_run
    lines = proc.stderr.splitlines()
    assert len(lines) < 20, proc.stderr
    assert not any(said in proc.stderr for said in RAY_SAYS + ("Token authentication",)), proc.stderr
    assert any(line.startswith("filter phase: 1,171 records read") for line in lines)
    assert any(line.startswith("dedup phase") for line in lines)
    log = re.search(r"^Ray's log: (\S+)", proc.stdout, re.M)
    assert log and Path(log.group(1)) == out / "logs" / "ray.log"
    ray_log = Path(log.group(1)).read_text()
    assert all(said in ray_log for said in RAY_SAYS + ("Token authentication",))
    assert f"kept: {stats['kept']['docs']:,} documents" in proc.stdout
    assert f"report: {out / REPORT_FILE}" in proc.stdout


def test_verbose_shows_rays_output(small_runs):
    proc = small_runs["verbose"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert all(said in proc.stderr for said in RAY_SAYS), proc.stderr[-3000:]
    assert "Ray's log" not in proc.stdout


def test_a_terminal_gets_a_live_progress_display(small_runs):
    code, output, out = small_runs["tty"]
    assert code == 0, output[-3000:]
    # tqdm redraws its line in place: the filter phase's bar, against --limit's 100 records
    assert re.search(r"\rfilter phase +\d+%\|.*\| \d+/100 records \[", output), output[:3000]
    assert re.search(r"\rdedup phase \(\d+ documents in\) \[", output), output[:3000]
    assert "filter phase: 100 records read" in output
    assert not any(said in output for said in RAY_SAYS)


def test_without_write_removed_the_report_has_every_chart_and_says_how_to_get_samples(small_runs):
    _, _, out = small_runs["tty"]
    page = (out / REPORT_FILE).read_text()
    assert page.count("<svg") == 7
    assert "--write-removed" in page and 'class="sample"' not in page
