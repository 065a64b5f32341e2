"""Shared test helpers: where the real data lives, and running the `refinery` CLI as a user does."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"real test data not found at {DATA} (the shared/ folder beside the repo)")
    return DATA


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
