"""Which sentence splitter C4's "fewer than 5 sentences" rule should use: spaCy's rule-based
sentencizer on spacy.blank("en") (what Refinery uses, as datatrove does), pysbd when it is
importable, and the regex Refinery used before, on

- sentences where abbreviations, decimals and initials must not end a sentence;
- the lines C4 would count in crawl-sample's English pages (extraction + LID in-process, no Ray):
  CPU time, and how many documents each splitter puts under 5 sentences;
- single long lines (a page without newlines; "a. a. a. ..."), where a splitter's cost must stay
  linear.

pysbd is not a dependency; to compare with it:
    pip install --target /tmp/pysbd pysbd
    PYTHONPATH=/tmp/pysbd .venv/bin/python benchmarks/sentence_splitters.py
"""
from __future__ import annotations

import re
import time
from pathlib import Path

from refinery.config import load_config
from refinery.filters.c4 import count_sentences
from refinery.io.warc import ReadParams, read_warc
from refinery.stages import apply_stage

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CASES = [
    ("Dr. Smith met Mr. Jones at 3 p.m. on the U.S. coast today.", 1),
    ("The price rose 3.5 percent in 2023. It fell 0.7 percent after that.", 2),
    ("J. R. R. Tolkien wrote books. He died in 1973.", 2),
    ("Use a tool, e.g. a hammer, i.e. something heavy. Then stop.", 2),
    ("She paid $4.99 for it. What a deal! Would you buy one?", 3),
    ('He said "Stop!" and left. Then he came back.', 2),
    ("Visit example.com for details. Thanks for reading.", 2),
    ("The meeting is at 10 a.m. on Jan. 5 in St. Louis, Mo. near the river.", 1),
    ("A line with no terminal punctuation at all", 1),
    ("Prof. A. B. Smith, Ph.D., spoke. Everyone listened.", 2),
    ("It cost approx. 20 dollars vs. 30 last year. No. 5 was sold out.", 2),
    ("The woman kills him, then comes for me. I realise this plan had no phase two.", 2),
]
_OLD_END = re.compile(r"(?<![.!?])[.!?]+[\"'”’)\]]*(?:\s+|$)")
_ALNUM = re.compile(r"[^\W_]").search


def old_regex(line: str) -> int:
    return sum(1 for piece in _OLD_END.split(line) if _ALNUM(piece))


def splitters() -> dict:
    found = {"spacy sentencizer": count_sentences, "old regex": old_regex}
    try:
        import pysbd
    except ImportError:
        print("pysbd not importable: skipped (see the docstring)")
    else:
        seg = pysbd.Segmenter(language="en", clean=False)
        found["pysbd"] = lambda line: sum(1 for s in seg.segment(line) if _ALNUM(s))
    return found


def english_pages(limit: int | None = None) -> list[str]:
    stages = {p.stage: p for p in load_config("pipelines/cc.yaml").stages}
    texts = []
    with open(DATA / "crawl-sample" / "real-pages.warc.gz", "rb") as f:
        for batch in read_warc(f, "crawl-sample", ReadParams(batch_records=128)):
            for name in ("url_filter", "language_prefilter", "extract", "language"):
                batch = apply_stage(batch, stages[name])
            texts += [r["text"] for r in batch.to_pylist() if r["removed_by"] is None]
    return texts[:limit]


def c4_lines(text: str) -> list[str]:
    """The lines C4's sentence count sees (>= 3 words, no javascript), simplified."""
    return [s for s in (x.strip() for x in text.split("\n")) if len(s.split()) >= 3 and "javascript" not in s.lower()]


def main() -> None:
    found = splitters()
    count_sentences("Warm up.")  # builds the spaCy pipeline once
    print("\nsentences right of", len(CASES), "crafted cases:")
    for name, split in found.items():
        wrong = [line for line, n in CASES if split(line) != n]
        print(f"  {name:<18} {len(CASES) - len(wrong):>2}   wrong on: {wrong}")

    pages = english_pages()
    lines = [c4_lines(t) for t in pages]
    chars = sum(len(x) for ls in lines for x in ls)
    print(f"\ncrawl-sample: {len(pages)} English pages, {sum(map(len, lines)):,} lines, {chars:,} chars")
    for name, split in found.items():
        t = time.process_time()
        per_doc = [sum(split(x) for x in ls) for ls in lines]
        cpu = time.process_time() - t
        under = sum(1 for n in per_doc if n < 5)
        print(f"  {name:<18} {cpu:6.2f} CPU s  {chars / cpu / 1e6:6.2f} MB/s  {sum(per_doc):>7,} sentences  {under} docs under 5")

    prose = " ".join(x for ls in lines for x in ls)
    print("\none long line, CPU s:")
    for label, line in (("10,000 chars of prose", prose[:10_000]), ("200,000 chars of prose", prose[:200_000]),
                        ('"a. " x 10,000', "a. " * 10_000)):
        cells = []
        for name, split in found.items():
            t = time.process_time()
            split(line)
            cells.append(f"{name} {time.process_time() - t:.3f}")
        print(f"  {label:<24} " + "   ".join(cells))


if __name__ == "__main__":
    main()
