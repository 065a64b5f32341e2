"""The `refinery` command: `run` a pipeline config, `report` and `show` what a run did, `pretrain`
the bundled GPT, `ablate` a config stage by stage. Thin: parse, load and validate config, call.
Exit codes: 0 ok, 1 no input could be read, 2 bad config or usage, 3 inputs failed on the network
(re-run to read on, or, for `run`, finish with --accept-failed-inputs)."""
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
    from refinery import console, pipeline
    from refinery.io.sources import InputError
    from refinery.resume import InputsFailed
    from refinery.io.storage import Output
    from refinery.report.run import REPORT_FILE, report_location

    console.configure(verbose=args.verbose)
    try:
        stats = pipeline.run(cfg, overwrite=args.overwrite, accept_failed=args.accept_failed_inputs)
    except (InputError, FileExistsError) as e:
        print(f"refinery: {e}", file=sys.stderr)
        return 2
    except InputsFailed as e:
        return _failed_inputs(e, "or add --accept-failed-inputs to finish the run without the rest of them")
    print(pipeline.summary(stats))
    print(f"\nshards and stats.json in {cfg.output}")
    out = Output(cfg.output)
    if out.exists(REPORT_FILE):
        print(f"report: {report_location(out)} (open it in a browser; `refinery show {cfg.output}` prints samples)")
    if console.ray_log_path():
        print(f"Ray's log: {console.ray_log_path()} (-v shows it on the terminal)")
    read_anything = stats["records_read"] > len(stats["errors"])
    return 0 if read_anything else 1


def _failed_inputs(e, hint: str) -> int:
    """Exit 3: the run stopped before its final pass because inputs failed on the network."""
    from refinery.resume import FAILED_INPUTS

    print(f"refinery: {len(e.failed)} input(s) failed on the network after their retries; their committed "
          f"records are kept, and no shards or stats.json were written (list: {e.output}/{FAILED_INPUTS}):", file=sys.stderr)
    for f in e.failed:
        print(f"  {f['path']}: {f['error']}", file=sys.stderr)
    print(f"refinery: re-run the same command to read them on from where they stopped, {hint}", file=sys.stderr)
    return 3


def _ablate(args: argparse.Namespace) -> int:
    from refinery.ablation import ablate
    from refinery.io.sources import InputError
    from refinery.model.cli import eval_sets, training_config, write_reports
    from refinery.model.report import render_markdown
    from refinery.resume import InputsFailed

    overrides = {"input": args.input, "workers": args.workers, "output": str(args.out)}
    cfg = _load_config(args.config, overrides)
    if cfg is None:
        return 2
    from refinery import console

    config, evals = training_config(args), eval_sets(args.eval)
    args.out.mkdir(parents=True, exist_ok=True)
    console.configure(verbose=args.verbose)
    try:
        report = ablate(cfg, args.config, args.out, evals, config, args.seeds, overwrite=args.overwrite)
    except (InputError, FileExistsError, FileNotFoundError, ValueError) as e:
        print(f"refinery: {e}", file=sys.stderr)
        return 2
    except InputsFailed as e:
        return _failed_inputs(e, "then the arms are trained")
    write_reports(report, args.out)
    print(render_markdown(report), flush=True)
    print(f"wrote {args.out / 'report.json'}, report.md, report.html")
    if console.ray_log_path():
        print(f"Ray's log: {console.ray_log_path()} (-v shows it on the terminal)")
    return 0


def _report(args: argparse.Namespace) -> int:
    from refinery.report.run import build_report

    try:
        print(f"wrote {build_report(args.output)}")
    except FileNotFoundError as e:
        print(f"refinery: {args.output} holds no finished run (no stats.json): {e}", file=sys.stderr)
        return 2
    return 0


def _show(args: argparse.Namespace) -> int:
    from refinery.report.show import show

    return show(args.output, args.reason, args.n, args.seed, args.chars)


def add_report_parsers(sub) -> None:
    report = sub.add_parser("report", help="rebuild OUT/report.html from a finished run's output (local or s3://)")
    report.add_argument("output", help="the run's output folder")
    report.set_defaults(func=_report)
    show = sub.add_parser("show", help="print samples of what a rule removed: text, measured value, URL",
                          description="Without --reason, lists the run's reasons. Needs a run with --write-removed.")
    show.add_argument("output", help="the run's output folder (local or s3://)")
    show.add_argument("--reason", help="e.g. gopher_quality:alpha_words, or a line rule such as line_corrections:few_words")
    show.add_argument("-n", type=int, default=3, help="how many samples (default 3)")
    show.add_argument("--seed", type=int, default=0, help="which random samples (default 0, as in report.html)")
    show.add_argument("--chars", type=int, default=1500, help="characters of text shown per sample (default 1500; 0: all)")
    show.set_defaults(func=_show)


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
    ablate.add_argument("-v", "--verbose", action="store_true", help="Ray's own logging and progress bars on the terminal "
                        "during the shared pass (by default they go to OUT/logs/ray.log)")
    add_training_options(ablate, default_size=None)
    ablate.set_defaults(func=_ablate)


def build_parser(pretrain: bool = True) -> argparse.ArgumentParser:
    """The `refinery` parser; without `pretrain`, that of `run`, `report` and `show` (no torch import)."""
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
    run.add_argument("-v", "--verbose", action="store_true", help="Ray's own logging and progress bars on the terminal "
                     "(by default they go to a log file, named at the end, and one progress line per phase is shown)")
    run.set_defaults(func=_run)
    add_report_parsers(sub)
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
    # `pretrain` and `ablate` import torch (over a second): not for `run`, `report` or `show`, which never need it
    args = build_parser(pretrain=argv[:1] not in (["run"], ["report"], ["show"])).parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
