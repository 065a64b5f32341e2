"""A headless Chromium for looking at reports as a reader does (the browser tests, the README's
screenshot): Playwright for Python driving the system's Chromium (Debian's `chromium` package;
Playwright's own browser download is not used), with everything that phones out turned off.
Needs the `playwright` package (the `test` extra)."""
from __future__ import annotations

import os
import shutil
from contextlib import contextmanager

CHROMIUM = os.environ.get("REFINERY_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# --no-sandbox: Chromium's sandbox refuses to run as root (CI containers)
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextmanager
def chromium(width: int = 1200, height: int = 900):
    """A new page of a headless Chromium, closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()
