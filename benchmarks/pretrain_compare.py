"""What the cleaning buys (issue 4): the same GPT trained on raw (extraction-only) and refined text
from one crawl, scored on WikiText-2 in bits per byte.

    python benchmarks/pretrain_compare.py                      # tiny model, 3M tokens, 2 seeds, CPU
    python benchmarks/pretrain_compare.py --tokens 5M --seeds 3 --work out/pretrain-compare

Steps, each through the `refinery` CLI as a user would run it:
1. `refinery run` on ../shared/data/crawl-sample/real-pages.warc.gz twice: pipelines/cc.yaml (the
   refined arm) and pipelines/extract-only.yaml (the baseline arm: the same crawl, extraction only).
   A run whose output folder already has stats.json is skipped unless --rerun.
2. WikiText-2 test (tokenized) -> WORK/wikitext-2-test.txt: each article (a " = Title = " heading and
   everything up to the next one) detokenized with refinery.model.data.detokenize_wikitext and
   written as one document, articles separated by blank lines (the .txt form `pretrain --eval`
   reads; refinery.model.data.wikitext_articles). `<unk>` markers stay: the words are lost in the tokenized release.
3. `refinery pretrain --shards REFINED --baseline BASELINE --eval WORK/wikitext-2-test.txt` with the
   same model size, token budget and seeds for both arms, into WORK/pretrain/<size>-<tokens>-seeds<...>/
   (pretrain resumes unfinished runs and skips finished ones, so an interrupted benchmark continues).
4. Prints the arms' sizes, the report table and the command that reproduces it all; writes
   WORK/summary.json (sizes, epochs, timings, the report).

The tokenizer is byte-level (one token per UTF-8 byte, plus one separator per document), so an
arm's size in bytes is its size in tokens per epoch; the script prints how many epochs of each arm
the budget is. The default budget, 3M tokens, is under two epochs of the refined arm (~1.6 MB) and
about half an epoch of the baseline (~5.8 MB). On a shared 2-core CPU the whole benchmark took
24.5 minutes (3.6 for the two pipeline runs, ~5 per tiny training run); see BENCHMARKS.md.
"""
import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.parquet as pq

from refinery.model.cli import parse_count
from refinery.model.data import wikitext_articles

ROOT = Path(__file__).resolve().parent.parent
CRAWL = ROOT.parent / "shared" / "data" / "crawl-sample" / "real-pages.warc.gz"
WIKITEXT = ROOT.parent / "shared" / "data" / "wikitext-2-tokenized" / "test.txt.gz"
ARMS = {"refined": ROOT / "pipelines" / "cc.yaml", "baseline": ROOT / "pipelines" / "extract-only.yaml"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("out/pretrain-compare"),
                        help="work folder for the pipeline outputs, the eval file and the pretrain runs "
                             "(default: out/pretrain-compare, git-ignored)")
    parser.add_argument("--size", default="tiny", help="model size for `refinery pretrain` (default: tiny)")
    parser.add_argument("--tokens", default="3M", help="training tokens per arm per seed (default: 3M)")
    parser.add_argument("--seeds", default="2", help="seeds, as `refinery pretrain --seeds` takes them (default: 2)")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"], help="default: cpu")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile the model (default: `refinery pretrain`'s, on CUDA only)")
    parser.add_argument("--rerun", action="store_true",
                        help="redo the pipeline runs (--overwrite) and the pretrain runs even if they are done")
    args = parser.parse_args()

    work = args.work if args.work.is_absolute() else Path.cwd() / args.work
    work.mkdir(parents=True, exist_ok=True)
    reproduce = " ".join(["python", "benchmarks/pretrain_compare.py", "--work", shlex.quote(str(args.work)),
                          "--size", args.size, "--tokens", args.tokens, "--seeds", shlex.quote(args.seeds),
                          *(["--device", args.device] if args.device != "cpu" else []), *_compile_flag(args.compile)])
    print(f"reproduce: (cd {shlex.quote(str(ROOT))} && {reproduce})", flush=True)
    refinery = _refinery_executable()
    timings: dict[str, float] = {}

    # 1. the two arms
    sizes = {}
    for arm, config in ARMS.items():
        out = work / arm
        if (out / "stats.json").exists() and not args.rerun:
            print(f"\n== {arm}: {out}/stats.json exists, skipping `refinery run` (--rerun to redo)", flush=True)
        else:
            command = [refinery, "run", _rel(config), "--input", _rel(CRAWL), "--output", _rel(out), "--overwrite"]
            timings[f"run_{arm}_s"] = _call(command, f"{arm}: refinery run {config.name}")
        sizes[arm] = _arm_size(out)

    # 2. the eval set
    eval_path = work / "wikitext-2-test.txt"
    articles = wikitext_articles(WIKITEXT)
    eval_path.write_text("\n\n".join(articles) + "\n", encoding="utf-8")
    eval_bytes = sum(len(article.encode("utf-8")) for article in articles)
    print(f"\n== eval: {len(articles)} WikiText-2 test articles, {eval_bytes:,} bytes -> {eval_path}", flush=True)

    # 3. pretrain both arms
    tokens = parse_count(args.tokens)
    print("\n== budget: byte-level tokens, so an arm's tokens per epoch = its bytes + one separator per document")
    for arm, size in sizes.items():
        size["epochs"] = tokens / size["tokens_per_epoch"]
        print(f"   {arm:9} {size['docs']:>6,} docs {size['bytes']:>12,} bytes: "
              f"{args.tokens} tokens = {size['epochs']:.2f} epochs", flush=True)
    pretrain_out = work / "pretrain" / f"{args.size}-{args.tokens}-seeds{args.seeds.replace(',', '_')}"
    if args.rerun and pretrain_out.exists():
        shutil.rmtree(pretrain_out)
    command = [refinery, "pretrain", "--shards", _rel(work / "refined" / "shards"),
               "--baseline", _rel(work / "baseline" / "shards"), "--eval", _rel(eval_path),
               "--tokens", args.tokens, "--seeds", args.seeds, "--size", args.size,
               "--device", args.device, "--out", _rel(pretrain_out), *_compile_flag(args.compile)]
    timings["pretrain_s"] = _call(command, "refinery pretrain")

    # 4. report
    report = json.loads((pretrain_out / "report.json").read_text())
    summary = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": reproduce,
        "crawl": str(CRAWL),
        "arms": {arm: {"pipeline": _rel(ARMS[arm]), **size} for arm, size in sizes.items()},
        "eval": {"source": str(WIKITEXT), "path": str(eval_path), "articles": len(articles), "bytes": eval_bytes},
        "timings_s": timings,
        "report": report,
    }
    (work / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")

    print("\n" + "=" * 100)
    print("arms (same crawl: " + _rel(CRAWL) + ")")
    for arm, size in sizes.items():
        print(f"  {arm:9} {_rel(ARMS[arm]):26} {size['docs']:>6,} docs {size['bytes']:>12,} bytes "
              f"({size['epochs']:.2f} epochs at {args.tokens} tokens)")
    print()
    print((pretrain_out / "report.md").read_text().rstrip())
    print(f"\ntimings: " + ", ".join(f"{name} {seconds:.0f}" for name, seconds in timings.items()))
    print(f"outputs: {pretrain_out}/ (report.json, report.md, report.html), {work / 'summary.json'}")
    print(f"reproduce: (cd {shlex.quote(str(ROOT))} && {reproduce})")
    return 0


def _compile_flag(compile: bool | None) -> list[str]:
    return [] if compile is None else ["--compile" if compile else "--no-compile"]


def _arm_size(out: Path) -> dict:
    """Documents and UTF-8 bytes of an arm's shards (stats.json counts characters, not bytes)."""
    stats = json.loads((out / "stats.json").read_text())
    docs = text_bytes = 0
    for shard in sorted((out / "shards").glob("*.parquet")):
        texts = pq.read_table(shard, columns=["text"]).column(0).to_pylist()
        docs += sum(1 for text in texts if text)
        text_bytes += sum(len(text.encode("utf-8")) for text in texts if text)
    return {"docs": docs, "bytes": text_bytes, "chars": stats["kept"]["chars"], "words": stats["kept"]["words"],
            "tokens_per_epoch": text_bytes + docs}


def _call(command: list[str], title: str) -> float:
    print(f"\n== {title}\n$ {' '.join(shlex.quote(part) for part in command)}", flush=True)
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True)
    seconds = time.perf_counter() - start
    print(f"== {title}: {seconds:.0f} s", flush=True)
    return seconds


def _refinery_executable() -> str:
    """The `refinery` console script of this interpreter's environment, else the one on PATH."""
    beside = Path(sys.executable).parent / "refinery"
    found = str(beside) if beside.exists() else shutil.which("refinery")
    if not found:
        sys.exit("error: the `refinery` command is not installed (pip install -e . in the repo)")
    return found


def _rel(path: Path) -> str:
    """A path relative to the repo root where it can be written so (commands run from there)."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(Path("..") / path.relative_to(ROOT.parent)) if path.is_relative_to(ROOT.parent) else str(path)


if __name__ == "__main__":
    sys.exit(main())
