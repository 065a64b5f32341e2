"""`pretrain`: what does the cleaning buy? Train the same GPT with the same token budget and seeds
on each named arm of training text (`--arm NAME=DIR_OR_GLOB`; `--shards` and `--baseline` are the
arms `refined` and `baseline`), score every run on each held-out set (`--eval`, repeatable) with
near-duplicates of any arm's training text removed, and report bits per byte, with each arm's
difference from the first arm (the baseline, when there is one) and its standard error over seeds.

Outputs in --out: report.json, report.md, report.html (one self-contained page: tables, bpb per
arm with the seed spread, training-loss curves), and per run <arm>/seed<k>/ with checkpoint.pt and
run.json (scores and the training-loss curve). Rerunning the same command skips finished runs and
resumes unfinished ones from their last checkpoint (written every --checkpoint-every and at the end).
"""
import argparse
import json
import re
import sys
from pathlib import Path

import torch

from .compare import EvalSet, compare
from .gpt import GPT, SIZES, config_for
from .tokenizer import ByteTokenizer
from .report import render_html, render_markdown
from .train import TrainConfig, resolve_device


def parse_count(text: str) -> int:
    """10000, 1e6, 10M, 2.5B -> an int."""
    match = re.fullmatch(r"\s*([0-9.eE+]+)\s*([kKmMbB]?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a count: {text!r}")
    scale = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9}[match.group(2).lower()]
    return int(float(match.group(1)) * scale)


def parse_seeds(text: str) -> list[int]:
    """`3` means three seeds, 0, 1, 2; `0,5,7` (any comma) means exactly those."""
    if "," in text:
        return [int(seed) for seed in text.split(",") if seed.strip()]
    if int(text) < 1:
        raise argparse.ArgumentTypeError("--seeds needs at least one seed")
    return list(range(int(text)))


def parse_duration(text: str) -> float:
    """600, 90s, 10m, 1.5h -> seconds."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([smh]?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 600, 90s, 10m, 1h)")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def parse_named(text: str) -> tuple[str | None, str]:
    """`NAME=VALUE` -> (NAME, VALUE); a plain value -> (None, VALUE). A name is letters, digits, `._-`."""
    name, sep, value = text.partition("=")
    if sep and re.fullmatch(r"[A-Za-z0-9._-]+", name):
        return name, value
    return None, text


def parse_arm(text: str) -> tuple[str, str]:
    name, spec = parse_named(text)
    if name is None or not spec:
        raise argparse.ArgumentTypeError(f"--arm wants NAME=DIR_OR_GLOB, not {text!r}")
    return name, spec


def add_training_options(parser: argparse.ArgumentParser, default_size: str | None) -> None:
    """The options `pretrain` and `ablate` share; `default_size` None: `small` on CUDA, `mini` on the CPU."""
    parser.add_argument("--eval", action="append", required=True, metavar="[NAME=]PATH",
                        help="held-out set, repeatable: .txt/.txt.gz (documents separated by blank lines), "
                             ".jsonl (`text` field) or Parquet (`text` column); NAME defaults to the file name")
    parser.add_argument("--tokens", type=parse_count, default=parse_count("10M"),
                        help="training tokens per arm per seed, e.g. 50M (default 10M)")
    parser.add_argument("--seeds", type=parse_seeds, default=[0],
                        help="number of seeds (3 = seeds 0,1,2) or a comma-separated list (0,5); default 1")
    sizes = ", ".join(f"{name} ({_params(name)})" for name in SIZES)
    parser.add_argument("--size", default=default_size, metavar="SIZE",
                        help=f"model size: {sizes}; default {default_size or 'small on CUDA, mini on the CPU'}")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile the model (default: on CUDA, off on CPU)")
    parser.add_argument("--batch-size", type=int, help="sequences per micro-batch (default depends on --size)")
    parser.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    parser.add_argument("--seq-len", type=int, help="training and eval sequence length (default: the model's context)")
    parser.add_argument("--lr", type=float, help="peak learning rate (default depends on --size)")
    parser.add_argument("--peak-tflops", type=float,
                        help="accelerator peak for MFU (default from the device name: H100 SXM/H200 989, "
                             "H100 PCIe 756, A100 312; no MFU on other devices unless given)")
    parser.add_argument("--checkpoint-every", type=parse_duration, default=parse_duration("10m"),
                        help="wall time between checkpoints, e.g. 600, 90s, 10m (default 10m; always at the end)")


def _params(size: str) -> str:
    """`0.14M parameters`, counted on a shapes-only (meta) model."""
    with torch.device("meta"):
        params = GPT(config_for(size, ByteTokenizer.vocab_size)).num_params()
    return f"{params / 1e6:.2g}M parameters"


def training_config(args: argparse.Namespace) -> TrainConfig:
    size = args.size or ("small" if resolve_device(args.device).startswith("cuda") else "mini")
    try:
        return TrainConfig(size=size, tokens=args.tokens, seq_len=args.seq_len, batch_size=args.batch_size,
                           grad_accum=args.grad_accum, lr=args.lr, device=args.device, compile=args.compile,
                           peak_tflops=args.peak_tflops, checkpoint_every=args.checkpoint_every).resolved()
    except ValueError as e:
        raise SystemExit(f"refinery: {e}") from None


def eval_sets(specs: list[str]) -> list[EvalSet]:
    sets = []
    for spec in specs:
        name, path = parse_named(spec)
        path = Path(path)
        name = name or re.sub(r"\.(txt|jsonl)(\.gz)?$|\.parquet$", "", path.name)
        if any(e.name == name for e in sets):
            raise SystemExit(f"refinery: two eval sets are named {name!r}: name them, --eval NAME=PATH")
        if not path.exists():
            raise SystemExit(f"refinery: eval set {path} does not exist")
        sets.append(EvalSet(name, path))
    return sets


def write_reports(report: dict, out: Path) -> None:
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(render_markdown(report))
    (out / "report.html").write_text(render_html(report), encoding="utf-8")


def add_pretrain_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "pretrain",
        help="train a GPT on named arms of shards (e.g. refined and baseline) and compare held-out bits per byte",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--arm", action="append", type=parse_arm, default=[], metavar="NAME=DIR_OR_GLOB",
                        help="an arm's Parquet shards (a `text` column): a file, directory or glob; repeatable, "
                             "also with one NAME several times; arms are compared in the order given")
    parser.add_argument("--shards", action="append", default=[], metavar="DIR_OR_GLOB",
                        help="shorthand for --arm refined=DIR_OR_GLOB")
    parser.add_argument("--baseline", action="append", default=[], metavar="DIR_OR_GLOB",
                        help="shorthand for --arm baseline=DIR_OR_GLOB; the baseline is the reference arm (first)")
    parser.add_argument("--out", type=Path, default=Path("pretrain-out"))
    add_training_options(parser, default_size="small")
    parser.set_defaults(func=run_pretrain)
    return parser


def pretrain_arms(args: argparse.Namespace) -> dict[str, list[str]]:
    arms: dict[str, list[str]] = {}
    for name, spec in [("baseline", s) for s in args.baseline] + args.arm + [("refined", s) for s in args.shards]:
        arms.setdefault(name, []).append(spec)
    return arms


def run_pretrain(args: argparse.Namespace) -> int:
    arms = pretrain_arms(args)
    if not arms:
        print("refinery pretrain: name at least one arm (--arm NAME=DIR_OR_GLOB, --shards or --baseline)", file=sys.stderr)
        return 2
    config, evals = training_config(args), eval_sets(args.eval)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        report = compare(arms, evals, config, args.seeds, args.out)
    except (FileNotFoundError, ValueError) as e:
        print(f"refinery pretrain: {e}", file=sys.stderr)
        return 2
    report["bpb_relative_difference"] = None
    if {"refined", "baseline"} <= set(arms):
        refined, baseline = (report["arms"][arm]["mean"]["bpb"] for arm in ("refined", "baseline"))
        report["bpb_relative_difference"] = (refined - baseline) / baseline
    write_reports(report, args.out)
    print(render_markdown(report), flush=True)
    print(f"wrote {args.out / 'report.json'}, report.md, report.html")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m refinery.model.cli")
    add_pretrain_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
