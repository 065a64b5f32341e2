"""The `refinery` command: `run` a pipeline config, `pretrain` the bundled GPT. Thin: parse,
load and validate config, call. Exit codes: 0 ok, 1 no input could be read, 2 bad config or usage,
3 inputs failed on the network (re-run to read on, or finish with --accept-failed-inputs)."""
from __future__ import annotations

import argparse
import logging
import sys

from refinery.config import ConfigError, load_config


def _run(args: argparse.Namespace) -> int:
    overrides = {"input": args.input, "output": args.output, "limit": args.limit, "workers": args.workers}
    if args.write_removed:
        overrides["write_removed"] = True
    try:
        cfg = load_config(args.config, overrides)
    except ConfigError as e:
        print(f"refinery: {e}", file=sys.stderr)
        return 2
    if not cfg.input:
        print(f"refinery: {args.config} names no input: pass --input PATH_OR_GLOB", file=sys.stderr)
        return 2
    from refinery import pipeline
    from refinery.io.sources import InputError
    from refinery.resume import FAILED_INPUTS, InputsFailed

    try:
        stats = pipeline.run(cfg, overwrite=args.overwrite, accept_failed=args.accept_failed_inputs)
    except (InputError, FileExistsError) as e:
        print(f"refinery: {e}", file=sys.stderr)
        return 2
    except InputsFailed as e:
        print(f"refinery: {len(e.failed)} input(s) failed on the network after their retries; their committed "
              f"records are kept, and no shards or stats.json were written (list: {e.output}/{FAILED_INPUTS}):", file=sys.stderr)
        for f in e.failed:
            print(f"  {f['path']}: {f['error']}", file=sys.stderr)
        print("refinery: re-run the same command to read them on from where they stopped, "
              "or add --accept-failed-inputs to finish the run without the rest of them", file=sys.stderr)
        return 3
    print(pipeline.summary(stats))
    print(f"\nshards and stats.json in {cfg.output}")
    read_anything = stats["records_read"] > len(stats["errors"])
    return 0 if read_anything else 1


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
    run.add_argument(
        "--accept-failed-inputs", action="store_true",
        help="finish the run although inputs failed on the network (now or in the run resumed): "
        "the rest of each counts as one read:network_failed row; without it such a run exits 3",
    )
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
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else list(argv)
    # `pretrain` imports torch (over a second): not for `refinery run`, which never needs it
    args = build_parser(pretrain=argv[:1] != ["run"]).parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
