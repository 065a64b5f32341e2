"""`pretrain`: what does the cleaning buy? Train the same GPT with the same token budget and seeds
on the refined shards and (optionally) on baseline shards, score every run on one held-out set
with near-duplicates of either arm's training text removed, and report bits per byte.

Outputs in --out: report.json, report.md, loss_curves.png, and per run <arm>/seed<k>/ with
checkpoint.pt (rerunning the same command resumes unfinished runs and skips finished ones) and
run.json (scores plus the full training-loss curve).
"""
import argparse
import json
import re
import statistics
import sys
from dataclasses import replace
from pathlib import Path

from .data import iter_parquet_texts, read_eval_documents, resolve_paths
from .evaluate import MAX_OVERLAP, NGRAM, drop_training_overlap, score_documents
from .gpt import SIZES
from .train import H100_BF16_PEAK_TFLOPS, TrainConfig, resolve_device, train

ARM_COLORS = {"refined": (31, 119, 180), "baseline": (255, 127, 14)}


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


def add_pretrain_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "pretrain",
        help="train a GPT on refined (and baseline) shards and compare held-out bits per byte",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--shards", action="append", required=True, metavar="DIR_OR_GLOB",
                        help="refined Parquet shards (a `text` column): a file, directory or glob; repeatable")
    parser.add_argument("--baseline", action="append", metavar="DIR_OR_GLOB",
                        help="baseline shards to compare against, same forms; repeatable")
    parser.add_argument("--eval", required=True, metavar="PATH",
                        help="held-out set: .txt/.txt.gz (documents separated by blank lines), "
                             ".jsonl (`text` field) or Parquet (`text` column)")
    parser.add_argument("--tokens", type=parse_count, default=parse_count("10M"),
                        help="training tokens per arm per seed, e.g. 50M (default 10M)")
    parser.add_argument("--seeds", type=parse_seeds, default=[0],
                        help="number of seeds (3 = seeds 0,1,2) or a comma-separated list (0,5); default 1")
    parser.add_argument("--size", choices=list(SIZES), default="small")
    parser.add_argument("--out", type=Path, default=Path("pretrain-out"))
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--batch-size", type=int, help="sequences per micro-batch (default depends on --size)")
    parser.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    parser.add_argument("--seq-len", type=int, help="training and eval sequence length (default: the model's context)")
    parser.add_argument("--lr", type=float, help="peak learning rate (default depends on --size)")
    parser.add_argument("--peak-tflops", type=float, default=H100_BF16_PEAK_TFLOPS,
                        help="accelerator peak for MFU (default: H100 bf16 dense, 989)")
    parser.set_defaults(func=run_pretrain)
    return parser


def run_pretrain(args: argparse.Namespace) -> int:
    arms = {"refined": args.shards} | ({"baseline": args.baseline} if args.baseline else {})
    arm_files = {arm: resolve_paths(specs) for arm, specs in arms.items()}
    device = resolve_device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)

    eval_docs = read_eval_documents(args.eval)
    training_files = sorted(set().union(*arm_files.values()))
    print(f"eval: {len(eval_docs)} documents; checking them against {len(training_files)} training shards", flush=True)
    scored_docs, dropped = drop_training_overlap(eval_docs, iter_parquet_texts(training_files))
    print(f"eval: dropped {len(dropped)} documents sharing >{MAX_OVERLAP:.0%} of their {NGRAM}-grams "
          f"with training text; scoring {len(scored_docs)}", flush=True)
    if not scored_docs:
        print("error: no eval documents left to score", file=sys.stderr)
        return 2

    base_config = TrainConfig(size=args.size, tokens=args.tokens, seq_len=args.seq_len, batch_size=args.batch_size,
                              grad_accum=args.grad_accum, lr=args.lr, device=device, compile=args.compile,
                              peak_tflops=args.peak_tflops).resolved()
    runs: dict[str, list[dict]] = {arm: [] for arm in arms}
    curves: dict[tuple[str, int], list] = {}
    for seed in args.seeds:  # arms interleaved, so an interrupted sweep still has comparable pairs
        for arm in arms:
            run_dir = args.out / arm / f"seed{seed}"
            result = train(replace(base_config, seed=seed), arm_files[arm], run_dir / "checkpoint.pt",
                           label=f"[{arm} seed {seed}] ")
            score = score_documents(result.model, result.tokenizer, scored_docs,
                                    base_config.seq_len, base_config.batch_size, device)
            run = {
                "seed": seed,
                "bpb": score.bpb,
                "perplexity": score.perplexity,
                "tokens_seen": result.tokens_seen,
                "steps": result.steps,
                "final_train_loss": result.losses[-1][1],
                "train_tokens_per_s": result.tokens_per_s,
                "mfu": result.mfu,
            }
            print(f"[{arm} seed {seed}] eval bpb {score.bpb:.4f} | perplexity {score.perplexity:.3f}", flush=True)
            (run_dir / "run.json").write_text(json.dumps({**run, "eval": score.to_dict(), "loss_curve": result.losses}))
            runs[arm].append(run)
            curves[arm, seed] = result.losses

    report = {
        "model": {
            "size": args.size,
            "params": result.model.num_params(),
            "flops_per_token": result.model.flops_per_token(base_config.seq_len),
        },
        "tokenizer": result.tokenizer.state_dict(),
        "training": {
            "tokens_per_run": args.tokens,
            "seeds": args.seeds,
            "seq_len": base_config.seq_len,
            "batch_size": base_config.batch_size,
            "grad_accum": base_config.grad_accum,
            "lr": base_config.lr,
            "device": device,
        },
        "eval": {
            "path": str(args.eval),
            "docs_total": len(eval_docs),
            "docs_scored": len(scored_docs),
            "bytes_scored": score.bytes,
            "dedup": f"dropped if more than {MAX_OVERLAP:.0%} of a document's distinct word {NGRAM}-grams "
                     "occur in any arm's training text",
        },
        "eval_docs_dropped": len(dropped),
        "arms": {arm: _summarize_arm(arms[arm], arm_files[arm], runs[arm]) for arm in arms},
        "bpb_relative_difference": None,
    }
    if "baseline" in arms:
        refined, baseline = (report["arms"][arm]["mean"]["bpb"] for arm in ("refined", "baseline"))
        report["bpb_relative_difference"] = (refined - baseline) / baseline
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "report.md").write_text(render_markdown(report))
    if not plot_loss_curves(curves, args.out / "loss_curves.png"):
        print("note: Pillow is not installed, loss_curves.png not drawn (curves are in each run.json)")
    print(render_markdown(report), flush=True)
    print(f"wrote {args.out / 'report.json'}, report.md, loss_curves.png")
    return 0


def _summarize_arm(specs: list[str], files: list[Path], runs: list[dict]) -> dict:
    bpbs = [run["bpb"] for run in runs]
    return {
        "shards": specs,
        "shard_files": len(files),
        "runs": runs,
        "mean": {
            "bpb": statistics.fmean(bpbs),
            "perplexity": statistics.fmean(run["perplexity"] for run in runs),
            "tokens_seen": statistics.fmean(run["tokens_seen"] for run in runs),
        },
        "bpb_std": statistics.stdev(bpbs) if len(bpbs) > 1 else None,
    }


def render_markdown(report: dict) -> str:
    training, evaluation = report["training"], report["eval"]
    lines = [
        "# Pretraining comparison",
        "",
        f"Model `{report['model']['size']}` ({report['model']['params']:,} parameters), byte-level tokenizer, "
        f"{training['tokens_per_run']:,} training tokens per run, seeds {', '.join(map(str, training['seeds']))}.",
        f"Eval set `{evaluation['path']}`: {evaluation['docs_scored']} documents ({evaluation['bytes_scored']:,} bytes) scored, "
        f"{report['eval_docs_dropped']} dropped as near-duplicates of training text.",
        "",
        "| arm | seed | tokens seen | bpb | perplexity (per token) |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for arm, summary in report["arms"].items():
        for run in summary["runs"]:
            lines.append(f"| {arm} | {run['seed']} | {run['tokens_seen']:,} | {run['bpb']:.4f} | {run['perplexity']:.3f} |")
        mean = summary["mean"]
        spread = f" ± {summary['bpb_std']:.4f}" if summary["bpb_std"] is not None else ""
        lines.append(f"| **{arm}** | mean | {mean['tokens_seen']:,.0f} | **{mean['bpb']:.4f}**{spread} | {mean['perplexity']:.3f} |")
    if report["bpb_relative_difference"] is not None:
        lines += ["", f"bpb relative difference, refined vs baseline: **{report['bpb_relative_difference']:+.2%}** "
                      "(negative: the refined data trains a better model)."]
    return "\n".join(lines) + "\n"


def plot_loss_curves(curves: dict[tuple[str, int], list[tuple[int, float]]], path: Path) -> bool:
    """Training loss vs tokens seen, one line per arm and seed. Pillow is imported here, not at the
    top, because model/ must import with torch, numpy and pyarrow alone; False if it is missing."""
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        return False
    width, height, left, right, top, bottom = 960, 540, 80, 190, 40, 60
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    points = [point for curve in curves.values() for point in curve]
    x_max = max(tokens for tokens, _ in points)
    y_min, y_max = min(loss for _, loss in points), max(loss for _, loss in points)
    y_min, y_max = (y_min - 0.05, y_max + 0.05) if y_max - y_min < 0.1 else (y_min, y_max)

    def pixel(tokens: float, loss: float) -> tuple[float, float]:
        x = left + (width - left - right) * tokens / x_max
        return x, top + (height - top - bottom) * (y_max - loss) / (y_max - y_min)

    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    for i in range(6):
        tokens, loss = x_max * i / 5, y_min + (y_max - y_min) * i / 5
        x, _ = pixel(tokens, y_min)
        _, y = pixel(0, loss)
        draw.line([x, height - bottom, x, height - bottom + 5], fill="black")
        draw.text((x - 15, height - bottom + 8), _short_count(tokens), fill="black")
        draw.line([left - 5, y, left, y], fill="black")
        draw.text((left - 45, y - 6), f"{loss:.2f}", fill="black")
    draw.text((left, 12), "training loss (nats/token) vs tokens seen", fill="black")
    draw.text(((width - right + left) // 2 - 30, height - 25), "tokens seen", fill="black")

    seeds_per_arm: dict[str, int] = {}
    for row, ((arm, seed), curve) in enumerate(curves.items()):
        shade = seeds_per_arm.get(arm, 0)
        seeds_per_arm[arm] = shade + 1
        base = ARM_COLORS.get(arm, (44, 160, 44))
        color = tuple(int(c + (255 - c) * min(0.7, 0.35 * shade)) for c in base)  # later seeds lighter
        draw.line([pixel(tokens, loss) for tokens, loss in curve], fill=color, width=2)
        legend_y = top + 10 + 18 * row
        draw.line([width - right + 15, legend_y + 6, width - right + 40, legend_y + 6], fill=color, width=3)
        draw.text((width - right + 46, legend_y), f"{arm} seed {seed}", fill="black")
    image.save(path)
    return True


def _short_count(value: float) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m refinery.model.cli")
    add_pretrain_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
