"""Make docs/report.png, the README's picture of a run report: run cc.yaml with --write-removed
on crawl-sample (or take a finished output), open its report.html in headless Chromium and
screenshot the top of the page and a sample of what a rule removed.

    .venv/bin/python docs/report_screenshot.py                # runs the pipeline into out/report-demo
    .venv/bin/python docs/report_screenshot.py --output OUT   # an existing run's output
"""
from __future__ import annotations

import argparse
import io
import subprocess
import sys
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
WARC = REPO.parent / "shared" / "data" / "crawl-sample" / "real-pages.warc.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, help="a finished run's output folder (default: run one into out/report-demo)")
    parser.add_argument("--png", type=Path, default=REPO / "docs" / "report.png")
    args = parser.parse_args()
    out = args.output
    if out is None:
        out = REPO / "out" / "report-demo"
        subprocess.run([sys.executable, "-m", "refinery.cli", "run", "pipelines/cc.yaml", "--input", str(WARC), "--output", str(out),
                        "--write-removed", "--overwrite"], cwd=REPO, check=True)
    from refinery.report.browser import chromium

    with chromium(1100, 1000) as page:
        page.goto((out.resolve() / "report.html").as_uri(), wait_until="load")
        top = Image.open(io.BytesIO(page.screenshot(clip={"x": 0, "y": 0, "width": 1100, "height": 790})))
        sample = page.locator('.reason[data-reason="line_corrections:too_many_words_removed"]')
        part = Image.open(io.BytesIO(sample.screenshot()))
        part = part.crop((0, 0, part.width, min(part.height, 420)))
    picture = Image.new("RGB", (1100, top.height + part.height + 20), "white")
    picture.paste(top, (0, 0))
    picture.paste(part, (20, top.height + 10))
    picture = picture.resize((picture.width * 4 // 5, picture.height * 4 // 5), Image.LANCZOS)
    picture.quantize(colors=128).save(args.png, optimize=True)
    print(f"wrote {args.png} ({args.png.stat().st_size / 1024:.0f} KB) from {out / 'report.html'}")


if __name__ == "__main__":
    main()
