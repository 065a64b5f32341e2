"""`refinery ablate`: what each stage of a config buys, as held-out bits per byte.

Arm 0 is the config's `extract` stage alone; arm k adds the config's stages in order up to step
k. The URL filter, the language prefilter and LID are one step (they decide the language mix
together); every later filter stage is a step, then every dedup stage. Arm k is exactly a
standalone `refinery run` of that prefix of the config (OUT/arms/<arm>/config.yaml), and its
output folder is laid out as one (shards/, stats.json).

The arms share the expensive work. One pass reads and extracts every page (arm 0 needs the text
of pages the URL filter and language prefilter would never extract) and runs each later stage
once, on what the stages before it kept: the pages dropped before extraction are put back as
dropped, so each arm's view of a batch is the batch as its prefix run leaves it (`arm_views`).
Each view is committed to its arm's folder; then each arm gets the final pass of a normal run
(dedup with its prefix of the dedup stages, or compaction). Ray stays in refinery.pipeline;
this module plans and reads.

Training and scoring are refinery.model.compare's: the same token budget and seeds for every
arm, identical arms reuse runs, finished runs are skipped on a re-run.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc
import yaml

from refinery.config import RunConfig
from refinery.extract import ExtractParams
from refinery.filters.language import LanguageParams
from refinery.io.sources import list_inputs
from refinery.io.storage import Output
from refinery.resume import FILTERED_DIR, PARTS_DIR
from refinery.stages import StageParams, apply_stage

ARMS_DIR = "arms"
RUNS_DIR = "runs"


@dataclass(frozen=True)
class Arm:
    name: str  # its folder under OUT/arms and its name in the report: "<k>-<last stage added>"
    added: tuple[str, ...]  # the stages this step adds to the arm before it
    config: RunConfig  # the standalone run this arm equals
    stages_run: int  # length of the prefix of the config's filter stages it runs (0 for arm 0)


def plan_arms(cfg: RunConfig, root: Path | str) -> list[Arm]:
    """The arms of an ablation of `cfg`, their outputs under `root`."""
    stages = list(cfg.stages)
    extract = next(i for i, p in enumerate(stages) if isinstance(p, ExtractParams))
    language = next((i for i, p in enumerate(stages) if isinstance(p, LanguageParams)), None)
    # filter steps, as prefix lengths of the stage list: the first takes everything up to LID
    ends = []
    if language is not None:
        ends.append(language + 1)
    elif extract > 0:
        ends.append(extract + 1)
    ends += range((ends[0] if ends else extract + 1) + 1, len(stages) + 1)

    def arm(added: list[StageParams], stage_list: list[StageParams], dedup: list, stages_run: int) -> Arm:
        name = f"{len(arms)}-{added[-1].stage}"
        config = cfg.model_copy(update={"stages": stage_list, "dedup": dedup, "output": str(Path(root) / name)})
        return Arm(name, tuple(p.stage for p in added), RunConfig.model_validate(config.model_dump()), stages_run)

    arms: list[Arm] = []
    arms.append(arm([stages[extract]], [stages[extract]], [], 0))
    previous = extract + 1
    for end in ends:
        added = stages[:extract] + stages[extract + 1 : end] if previous == extract + 1 else stages[previous:end]
        arms.append(arm(added, stages[:end], [], end))
        previous = end
    for j, dedup in enumerate(cfg.dedup):
        arms.append(arm([dedup], stages, list(cfg.dedup[: j + 1]), len(stages)))
    return arms


def arm_views(batch: pa.Table, stages: list[StageParams], arms: list[Arm], keep_removed_text: bool,
              apply: Callable[[pa.Table, StageParams], pa.Table] | None = None) -> list[pa.Table]:
    """The batch as each arm's prefix run leaves it after its filter stages (ROW schema, with
    removed_by/reason and text as that run has them), running every stage once. `apply`
    runs one stage (default apply_stage; the pipeline passes its crash-guarded version)."""
    apply = apply or (lambda b, p: apply_stage(b, p, keep_removed_text))
    extract = next(i for i, p in enumerate(stages) if isinstance(p, ExtractParams))
    extracted = apply(batch, stages[extract])  # every page: arm 0
    prefiltered = batch
    for p in stages[:extract]:
        prefiltered = apply(prefiltered, p)
    # what the prefix runs have after extraction: the pages their URL filter or prefilter dropped
    # as those left them (never extracted, no HTML), the others as extraction left them
    dropped_before = pc.is_valid(prefiltered.column("removed_by"))
    current = pa.table(
        {name: extracted.column(name) if name == "html" else pc.if_else(dropped_before, prefiltered.column(name), extracted.column(name))
         for name in batch.column_names},
        schema=batch.schema,
    )
    done, views = extract + 1, []
    for arm in arms:
        if arm.stages_run == 0:
            views.append(extracted)
            continue
        for p in stages[done : arm.stages_run]:
            current = apply(current, p)
        done = max(done, arm.stages_run)
        views.append(current)
    return views


def write_arm_configs(arms: list[Arm], root: Path) -> None:
    """Each arm's config as ROOT/<arm>.yaml: `refinery run` of it is the standalone run it equals."""
    root.mkdir(parents=True, exist_ok=True)
    for arm in arms:
        text = yaml.safe_dump(arm.config.model_dump(mode="json", exclude_none=True), sort_keys=False)
        (root / f"{arm.name}.yaml").write_text(f"# arm {arm.name} of an ablation: adds {', '.join(arm.added)}\n{text}")


def discard_parts_not_in(out: Output, committed: set[str]) -> None:
    """Before resuming the shared pass: an arm's parts that the last arm did not commit (a task
    stopped between its arms' commits) are deleted, to be redone with the others."""
    for rel in out.list_files(PARTS_DIR, ".json") + out.list_files(FILTERED_DIR) + out.list_files("removed"):
        if rel.rsplit("/", 1)[-1].split(".")[0] not in committed:
            out.delete(rel)


def ablate(cfg: RunConfig, config_path: str, out: Path, evals: list, train_config, seeds: list[int], overwrite: bool = False,
           log: Callable[[str], None] = lambda line: print(line, flush=True)) -> dict:
    """The whole ablation: the arms' data (one shared pass), then every arm trained and scored
    (refinery.model.compare); returns the report, with the per-stage deltas (arm k vs k - 1)."""
    from refinery import pipeline
    from refinery.model.compare import compare, paired_delta

    arms = plan_arms(cfg, out / ARMS_DIR)
    write_arm_configs(arms, out / ARMS_DIR)
    log(f"ablation of {len(arms)} arms: " + ", ".join(arm.name for arm in arms))
    stats = pipeline.run_ablation(cfg, arms, overwrite, log_to=Output(str(out)))
    for arm, arm_stats in zip(arms, stats):
        log(f"[{arm.name}] {arm_stats['kept']['docs']:,} documents, {arm_stats['kept']['words']:,} words")
    empty = [arm.name for arm, arm_stats in zip(arms, stats) if not arm_stats["kept"]["docs"]]
    if empty:
        raise ValueError(f"arm(s) {', '.join(empty)} kept no document: nothing to train on (a larger input?)")
    report = compare({arm.name: [str(Path(arm.config.output) / "shards")] for arm in arms}, evals, train_config, seeds,
                     out, runs_dir=out / RUNS_DIR, log=log)
    stage_deltas = {}
    for before, arm in zip(arms, arms[1:]):
        runs_before, runs = report["arms"][before.name]["runs"], report["arms"][arm.name]["runs"]
        stage_deltas[arm.name] = {name: paired_delta(runs_before, runs, name, before.name) for name in report["evals"]}
    report["ablation"] = {
        "config": config_path,
        "settings": cfg.model_dump(mode="json", exclude={"output", "input"}),
        "inputs": list_inputs(cfg.input),
        "arms": {
            arm.name: {
                "added": list(arm.added),
                "stages": [p.stage for p in arm.config.stages] + [p.stage for p in arm.config.dedup],
                "config": str(out / ARMS_DIR / f"{arm.name}.yaml"),
                "output": arm.config.output,
                "docs": arm_stats["kept"]["docs"],
                "words": arm_stats["kept"]["words"],
            }
            for arm, arm_stats in zip(arms, stats)
        },
        "stage_deltas": stage_deltas,
        "significance": "a delta is significant when |delta| > 2 standard errors (paired by seed)",
    }
    return report
