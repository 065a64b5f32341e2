"""The `refinery` command: `run` a pipeline config, `pretrain` the bundled GPT, `ablate` a config
stage by stage. Thin: parse, load and validate config, call. Exit codes: 0 ok, 1 no input could
be read, 2 bad config or usage."""
from __future__ import annotations

import argparse
import logging
import sys

from refinery.config import ConfigError, load_config


def _load_config(path: str, overrides: dict):
    """The validated config with its input, or None after saying on stderr what is wrong."""
    try:
        cfg = load_config(path, overrides)
    except ConfigError as e:
        print(f"refinery: {e}", file=sys.stderr)
        return None
    if not cfg.input:
        print(f"refinery: {path} names no input: pass --input PATH_OR_GLOB", file=sys.stderr)
        return None
    return cfg


def _run(args: argparse.Namespace) -> int:
    overrides = {"input": args.input, "output": args.output, "limit": args.limit, "workers": args.workers}
    if args.write_removed:
        overrides["write_removed"] = True
    cfg = _load_config(args.config, overrides)
    if cfg is None:
        return 2
    from refinery import pipeline
    from refinery.io.sources import InputError

    try:
        stats = pipeline.run(cfg, overwrite=args.overwrite)
    except (InputError, FileExistsError) as e:
        print(f"refinery: {e}", file=sys.stderr)
        return 2
    print(pipeline.summary(stats))
    print(f"\nshards and stats.json in {cfg.output}")
    read_anything = stats["records_read"] > len(stats["errors"])
    return 0 if read_anything else 1


def _ablate(args: argparse.Namespace) -> int:
    from refinery.ablation import ablate
    from refinery.io.sources import InputError
    from refinery.model.cli import eval_sets, training_config, write_reports
    from refinery.model.report import render_markdown

    overrides = {"input": args.input, "workers": args.workers, "output": str(args.out)}
    cfg = _load_config(args.config, overrides)
    if cfg is None:
        return 2
    config, evals = training_config(args), eval_sets(args.eval)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        report = ablate(cfg, args.config, args.out, evals, config, args.seeds, overwrite=args.overwrite)
    except (InputError, FileExistsError, FileNotFoundError, ValueError) as e:
        print(f"refinery: {e}", file=sys.stderr)
        return 2
    write_reports(report, args.out)
    print(render_markdown(report), flush=True)
    print(f"wrote {args.out / 'report.json'}, report.md, report.html")
    return 0


def add_ablate_parser(sub) -> None:
    from pathlib import Path

    from refinery.model.cli import add_training_options

    ablate = sub.add_parser(
        "ablate",
        help="what each stage of a config buys: train the same GPT on every stage prefix, compare held-out bpb",
        description="Arm 0 is CONFIG's extract stage alone; arm k adds CONFIG's stages in order up to step k "
                    "(URL filter + language prefilter + LID are one step; then every later stage, then every "
                    "dedup stage). Each arm equals a standalone `refinery run` of OUT/arms/<arm>.yaml; one "
                    "pass reads and extracts the input for all. Every arm is trained with the same token budget "
                    "and seeds. Writes OUT/report.json, report.md, report.html; a re-run skips finished work.",
    )
    ablate.add_argument("config", help="pipeline YAML, e.g. pipelines/cc.yaml")
    ablate.add_argument("--input", action="extend", nargs="+", help="WARC paths or globs (replace the config's)")
    ablate.add_argument("--out", type=Path, required=True, help="output folder (arms/, runs/, reports)")
    ablate.add_argument("--workers", type=int, help="CPUs for the local Ray (default: all)")
    ablate.add_argument("--overwrite", action="store_true", help="redo the arms' data in a folder holding another ablation")
    add_training_options(ablate, default_size=None)
    ablate.set_defaults(func=_ablate)


def build_parser(pretrain: bool = True) -> argparse.ArgumentParser:
    """The `refinery` parser; without `pretrain`, the parser of `run` alone (no torch import)."""
    parser = argparse.ArgumentParser(prog="refinery", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a pipeline config over WARC files")
    run.add_argument("config", help="pipeline YAML, e.g. pipelines/cc.yaml")
    run.add_argument("--input", action="extend", nargs="+", help="WARC paths or globs (replace the config's)")
    run.add_argument("--output", help="output folder")
    run.add_argument("--limit", type=int, help="stop after N WARC records")
    run.add_argument("--workers", type=int, help="CPUs for the local Ray (default: all)")
    run.add_argument("--write-removed", action="store_true", help="write removed documents per stage")
    run.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    run.set_defaults(func=_run)
    if not pretrain:
        return parser
    try:
        from refinery.model.cli import add_pretrain_parser, run_pretrain
    except ImportError:  # the pretraining module is optional at import time
        pass
    else:
        add_pretrain_parser(sub)
        sub.choices["pretrain"].set_defaults(func=run_pretrain)
        add_ablate_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else list(argv)
    # `pretrain` and `ablate` import torch (over a second): not for `refinery run`, which never needs it
    args = build_parser(pretrain=argv[:1] != ["run"]).parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
