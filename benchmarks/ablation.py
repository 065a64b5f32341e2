"""What each stage of pipelines/cc.yaml buys: `refinery ablate` on a real crawl, scored on two
fixed held-out sets of genres no arm trains on.

    python benchmarks/ablation.py --corpus crawl-sample                 # tiny model, 500k tokens, 3 seeds, CPU
    python benchmarks/ablation.py --corpus crawl-sample+archive --tokens 3M --seeds 3

Corpora (../shared/data, see each README):
- crawl-sample: crawl-sample/real-pages.warc.gz (1,171 real pages, ~70% not English);
- crawl-sample+archive: that plus the English crawls of warc-samples/archive-crawls (Heritrix
  crawls of archive.org 2008 and data.gov.uk 2014, a wget crawl of Wikipedia's Mona Lisa page
  2013, dolma's wget sample 2024; the Japanese ClueWeb09 sample is left out).

Eval sets, fixed (WORK/eval/; the script refuses to go on if their content changed):
- wikitext2-test: WikiText-2 test, one detokenized document per article (60 articles, 1,200,213
  bytes; refinery.model.data.wikitext_articles);
- python-reference: the topics of CPython's reference manual shipped in the standard library as
  pydoc_data.topics (Python 3.11.7: 79 topics, 466,117 bytes), one document per topic, in topic
  order. Technical prose with code, offline everywhere Python is, and not a page of any crawl or
  extraction benchmark here.

The ablation runs through the `refinery` CLI as a user would, into WORK/<corpus>/ (resumable: a
re-run skips finished arms and runs); prints the report and the command that reproduces it.
"""
import argparse
import hashlib
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from refinery.model.data import wikitext_articles

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
CORPORA = {
    "crawl-sample": [DATA / "crawl-sample" / "real-pages.warc.gz"],
    "crawl-sample+archive": [DATA / "crawl-sample" / "real-pages.warc.gz"] + [
        DATA / "warc-samples" / "archive-crawls" / name for name in (
            "IAH-20080430-archive.org-shallow.aut.warc.gz",
            "BL-20140325121225068-data.gov.uk.warc.gz",
            "BL-20140325122341434-data.gov.uk-revisits.warc.gz",
            "wikipedia-mona-lisa-2013.warc.gz",
            "dolma-wget-sample-0000.warc.gz",
            "dolma-wget-sample-0001.warc.gz",
        )
    ],
}
# sha256 of each eval file as written: the sets are fixed from the first benchmark on
EVAL_SHA256 = {
    "wikitext2-test.txt": "a2fc5fa3616e1f64c899c52612a47be3ae2bf0fda6c1a59a04a9704c9c0e3e4e",
    "python-reference.jsonl": "4ff8792773508e51f83b16109b2c881e1c3e273baad9f60dae5b72487dc52c31",
}


def write_eval_sets(folder: Path) -> list[str]:
    """The two eval files, written and checked; returns `--eval NAME=PATH` values."""
    import pydoc_data.topics

    folder.mkdir(parents=True, exist_ok=True)
    wiki = folder / "wikitext2-test.txt"
    wiki.write_text("\n\n".join(wikitext_articles(DATA / "wikitext-2-tokenized" / "test.txt.gz")) + "\n", encoding="utf-8")
    python = folder / "python-reference.jsonl"
    topics = pydoc_data.topics.topics
    python.write_text("".join(json.dumps({"topic": k, "text": topics[k]}) + "\n" for k in sorted(topics)), encoding="utf-8")
    for path in (wiki, python):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if EVAL_SHA256[path.name] and digest != EVAL_SHA256[path.name]:
            sys.exit(f"error: {path} differs from the fixed eval set (sha256 {digest}, want {EVAL_SHA256[path.name]}): "
                     "another Python's pydoc_data? Results would not be comparable.")
        print(f"eval {path.name}: sha256 {digest}", flush=True)
    return [f"wikitext2-test={wiki}", f"python-reference={python}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", choices=list(CORPORA), default="crawl-sample")
    parser.add_argument("--work", type=Path, default=Path("out/ablation"), help="default: out/ablation (git-ignored)")
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--tokens", default="500k", help="training tokens per arm and seed (default 500k)")
    parser.add_argument("--seeds", default="3")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()

    reproduce = shlex.join(["python", "benchmarks/ablation.py", "--corpus", args.corpus, "--work", str(args.work),
                            "--size", args.size, "--tokens", args.tokens, "--seeds", args.seeds, "--device", args.device])
    print(f"reproduce: (cd {shlex.quote(str(ROOT))} && {reproduce})", flush=True)
    work = args.work.resolve()
    evals = write_eval_sets(work / "eval")
    out = work / f"{args.corpus}-{args.size}-{args.tokens}-seeds{args.seeds}"
    command = [str(Path(sys.executable).parent / "refinery"), "ablate", "pipelines/cc.yaml",
               "--input", *map(str, CORPORA[args.corpus]), "--out", str(out),
               *(arg for e in evals for arg in ("--eval", e)),
               "--size", args.size, "--tokens", args.tokens, "--seeds", args.seeds, "--device", args.device]
    print("$ " + shlex.join(command), flush=True)
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True)
    print(f"\nwall time {time.perf_counter() - started:.0f} s; report: {out}/report.md, report.html")
    print(f"reproduce: (cd {shlex.quote(str(ROOT))} && {reproduce})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
