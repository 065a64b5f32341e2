"""Shared test helpers: where the real data lives, and running the `refinery` CLI as a user does."""
from __future__ import annotations

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
