"""Shared test helpers: where the real data lives, running the `refinery` CLI as a user does, and
the rule that a CI run has no skips.

With `CI` set (any value but empty, "0" or "false"; `.ci/run` sets CI=true), a skipped test is a
failed one: a test that cannot run there hides a hole, whatever the reason. Without `CI`, tests
whose real data (../shared/data beside the repo) is missing skip with a message naming the folder."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false")


def missing_data() -> str:
    return f"real test data not found at {DATA} (the shared/data folder beside the repo)"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip(missing_data())
    return DATA


def pytest_report_header(config) -> list[str]:
    data = f"real data: {DATA}" + ("" if DATA.is_dir() else " MISSING")
    return [data, "CI: a skipped test fails the run" if in_ci() else "not CI: tests without their data skip"]


def pytest_terminal_summary(terminalreporter) -> None:
    if not DATA.is_dir():
        outcome = "failed: CI is set" if in_ci() else "were skipped"
        terminalreporter.write_line(f"{missing_data()}; the tests that read it {outcome}", red=in_ci(), yellow=not in_ci())


def _fail_if_ci(report) -> None:
    """Under CI, turn a skip (not an xfail) into a failure that says why the test did not run."""
    if report.skipped and in_ci() and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped with CI={os.environ['CI']}, where a skip fails the run: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_if_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_if_ci(outcome.get_result())


def run_cli(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`refinery ARGS` in a subprocess with a local Ray, output captured; `env` adds to (or,
    e.g. with RAY_ADDRESS, sets in) the inherited environment."""
    extra = env or {}
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    env.update(extra)
    return subprocess.run(
        [sys.executable, "-m", "refinery.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def crawl_run(data_dir, tmp_path_factory):
    """One `refinery run pipelines/cc.yaml --write-removed` over crawl-sample, shared by the tests
    that read its output: (output folder, the finished process, stats.json)."""
    out = tmp_path_factory.mktemp("crawl") / "out"
    proc = run_cli("run", "pipelines/cc.yaml", "--input", str(data_dir / "crawl-sample" / "real-pages.warc.gz"), "--output", str(out), "--write-removed")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc, json.loads((out / "stats.json").read_text())
