"""Train the same GPT on several named arms of training text and score every run on every eval
set: the engine of `refinery pretrain` and `refinery ablate`.

- Every arm is trained with the same settings, token budget and seeds; an arm smaller than the
  budget is repeated (more epochs), and the report says how many.
- An arm whose training text is identical to an earlier arm's (same documents in the same shard
  layout, so training would be the same bit for bit) reuses that arm's runs, and says so.
- Each eval set is checked against the training text of every arm: a document sharing more than
  MAX_OVERLAP of its 13-grams with any arm is dropped for all arms, so all are scored on one set.
  The per-arm scan (n-grams seen, documents, tokens per epoch, content hash) is cached in
  OUT/_cache, keyed by the files' paths, sizes and mtimes and by the eval documents, so a resumed
  or extended comparison does not re-read the training text.
- Runs live in RUNS/<arm>/seed<k>/ (checkpoint.pt, run.json). A run whose run.json holds scores
  for the current eval sets is skipped; a finished run lacking one is loaded and scored; an
  unfinished one resumes from its checkpoint.
- Deltas between arms pair the runs by seed: delta = mean over seeds of (bpb_arm - bpb_ref), its
  standard error = stdev of the per-seed differences / sqrt(seeds). A delta is called
  significant only when it exceeds twice its standard error.
"""
import hashlib
import json
import math
import os
import statistics
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow.parquet as pq
import torch

from .data import DOCS_PER_RECORD_BATCH, TEXT_COLUMN, read_eval_documents, resolve_paths
from .evaluate import MAX_OVERLAP, NGRAM, eval_ngrams, overlapping_documents, score_documents, seen_ngrams
from .gpt import GPT, config_for
from .tokenizer import ByteTokenizer
from .train import _EXECUTION_FIELDS, TrainConfig, load_model, train

CACHE_DIR = "_cache"
# Scoring needs no gradients, so it takes more sequences at a time than training does: on a CPU a
# tiny model's 8-sequence training batch leaves eval half as fast as 64 sequences (the same scores).
EVAL_BATCH_TOKENS = 16384


@dataclass(frozen=True)
class EvalSet:
    name: str
    path: Path


@dataclass
class ArmText:
    """What one pass over an arm's training text tells: its size and a hash of its content."""

    files: int
    docs: int
    bytes: int
    content_hash: str  # of the texts, file by file in training order: equal hashes train identically

    @property
    def tokens_per_epoch(self) -> int:
        return self.bytes + self.docs  # byte tokenizer: one token per byte, one separator per document


def compare(
    arms: dict[str, list[str]],
    evals: list[EvalSet],
    config: TrainConfig,
    seeds: list[int],
    out: Path,
    runs_dir: Path | None = None,
    log: Callable[[str], None] = lambda line: print(line, flush=True),
) -> dict:
    """Train and score every arm and seed; returns the report (report.json's content)."""
    config = config.resolved()
    runs_dir = runs_dir or out
    arm_files = {name: resolve_paths(specs) for name, specs in arms.items()}
    eval_docs = {e.name: read_eval_documents(e.path) for e in evals}
    eval_grams = {name: eval_ngrams(docs) for name, docs in eval_docs.items()}
    texts, seen = {}, {name: [] for name in eval_docs}
    for arm, files in arm_files.items():
        texts[arm], arm_seen = scan_arm(files, eval_docs, eval_grams, out / CACHE_DIR, log)
        for name, hashes in arm_seen.items():
            seen[name].append(hashes)
    eval_info, scored = {}, {}
    for e in evals:
        doc_grams, _ = eval_grams[e.name]
        dropped = set(overlapping_documents(doc_grams, np.concatenate(seen[e.name])))
        scored[e.name] = [doc for i, doc in enumerate(eval_docs[e.name]) if i not in dropped]
        if not scored[e.name]:
            raise ValueError(f"eval set {e.name}: every document overlaps the training text; nothing to score")
        eval_info[e.name] = {
            "path": str(e.path),
            "docs_total": len(eval_docs[e.name]),
            "docs_scored": len(scored[e.name]),
            "docs_dropped": len(dropped),
            "bytes_scored": sum(len(doc.encode("utf-8")) for doc in scored[e.name]),
            "fingerprint": _hash_texts(scored[e.name]),
        }
        log(f"eval {e.name}: {len(eval_docs[e.name])} documents, {len(dropped)} dropped as sharing "
            f">{MAX_OVERLAP:.0%} of their {NGRAM}-grams with some arm's training text; scoring {len(scored[e.name])}")

    first_with: dict[str, str] = {}  # content hash -> first arm with it
    reused_from = {}
    for arm in arms:
        reused_from[arm] = first_with.setdefault(texts[arm].content_hash, arm)
        if reused_from[arm] != arm:
            log(f"[{arm}] training text identical to {reused_from[arm]}'s: its runs are reused")
    runs: dict[str, list[dict]] = {arm: [] for arm in arms}
    for seed in seeds:  # arms interleaved, so an interrupted sweep still has comparable sets
        for arm in arms:
            if reused_from[arm] != arm:
                runs[arm].append(next(r for r in runs[reused_from[arm]] if r["seed"] == seed))
                continue
            runs[arm].append(_run(arm, seed, arm_files[arm], replace(config, seed=seed), scored, eval_info,
                                  runs_dir / arm / f"seed{seed}", log))

    reference = next(iter(arms))
    report = {
        "model": model_info(config),
        "tokenizer": ByteTokenizer().state_dict(),
        "training": {
            "tokens_per_run": config.tokens,
            "seeds": seeds,
            "seq_len": config.seq_len,
            "batch_size": config.batch_size,
            "grad_accum": config.grad_accum,
            "lr": config.lr,
            "device": config.device,
            "compile": config.compile,
        },
        "evals": eval_info,
        # the first eval set's, under the names reports had before eval sets were repeatable
        "eval": eval_info[evals[0].name],
        "eval_docs_dropped": eval_info[evals[0].name]["docs_dropped"],
        "eval_dedup": f"an eval document is dropped if more than {MAX_OVERLAP:.0%} of its distinct word "
                      f"{NGRAM}-grams occur in any arm's training text",
        "reference_arm": reference,
        "arms": {},
    }
    for arm in arms:
        arm_runs, text = runs[arm], texts[arm]
        tokens_seen = statistics.fmean(r["tokens_seen"] for r in arm_runs)
        by_eval = {}
        for name in eval_info:
            bpbs = [r["evals"][name]["bpb"] for r in arm_runs]
            by_eval[name] = {
                "mean": {"bpb": statistics.fmean(bpbs), "perplexity": statistics.fmean(r["evals"][name]["perplexity"] for r in arm_runs)},
                "bpb_std": statistics.stdev(bpbs) if len(bpbs) > 1 else None,
                "delta": None if arm == reference else paired_delta(runs[reference], arm_runs, name, reference),
            }
        first = by_eval[evals[0].name]
        report["arms"][arm] = {
            "shards": arms[arm],
            "shard_files": text.files,
            "docs": text.docs,
            "bytes": text.bytes,
            "tokens_per_epoch": text.tokens_per_epoch,
            "epochs": tokens_seen / text.tokens_per_epoch,
            "reused_from": None if reused_from[arm] == arm else reused_from[arm],
            "runs": arm_runs,
            # the first eval set's figures, where a single number is wanted
            "mean": {**first["mean"], "tokens_seen": tokens_seen},
            "bpb_std": first["bpb_std"],
            "delta": first["delta"],
            "evals": by_eval,
        }
    return report


def paired_delta(reference_runs: list[dict], runs: list[dict], eval_name: str, reference: str) -> dict:
    """bpb of `runs` minus bpb of `reference_runs`, paired by seed, with its standard error."""
    ref = {r["seed"]: r["evals"][eval_name]["bpb"] for r in reference_runs}
    diffs = [r["evals"][eval_name]["bpb"] - ref[r["seed"]] for r in runs if r["seed"] in ref]
    ref_mean = statistics.fmean(ref.values())
    delta = statistics.fmean(diffs)
    se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else None
    return {
        "vs": reference,
        "seeds": len(diffs),
        "bpb": delta,
        "bpb_se": se,
        "relative": delta / ref_mean,
        "relative_se": None if se is None else se / ref_mean,
        "significant": None if se is None else abs(delta) > 2 * se,
    }


def model_info(config: TrainConfig) -> dict:
    with torch.device("meta"):  # shapes only, no memory
        model = GPT(config_for(config.size, ByteTokenizer.vocab_size))
    return {"size": config.size, "params": model.num_params(), "flops_per_token": model.flops_per_token(config.seq_len)}


def _run(arm, seed, files, config, scored, eval_info, run_dir: Path, log) -> dict:
    """One arm and seed: trained (or resumed, or skipped when finished) and scored on every eval set."""
    label = f"[{arm} seed {seed}] "
    checkpoint = run_dir / "checkpoint.pt"
    settings = {k: v for k, v in asdict(config).items() if k not in _EXECUTION_FIELDS}
    previous = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").exists() else None
    if previous is not None and previous.get("settings") != json.loads(json.dumps(settings)):
        raise ValueError(f"{run_dir} holds a run with other settings; use another output folder or the same settings")
    finished = previous is not None and checkpoint.exists()
    if finished:
        result, model, tokenizer = None, None, None
        log(f"{label}finished before: skipped")
    else:
        result = train(config, files, checkpoint, label=label)
        model, tokenizer = result.model, result.tokenizer
        previous = {
            "seed": seed,
            "settings": settings,
            "tokens_seen": result.tokens_seen,
            "steps": result.steps,
            "final_train_loss": result.losses[-1][1],
            "train_seconds": result.train_seconds,
            "train_tokens_per_s": result.tokens_per_s,
            "mfu": result.mfu,
            "loss_curve": result.losses,
            "evals": {},
        }
    scores = previous["evals"]
    for name, docs in scored.items():
        if scores.get(name, {}).get("fingerprint") == eval_info[name]["fingerprint"]:
            continue
        if model is None:
            model, tokenizer = load_model(checkpoint, config.device)
        eval_batch = max(config.batch_size, EVAL_BATCH_TOKENS // config.seq_len)
        score = score_documents(model, tokenizer, docs, config.seq_len, eval_batch, config.device)
        scores[name] = {**score.to_dict(), "fingerprint": eval_info[name]["fingerprint"]}
        log(f"{label}{name}: bpb {score.bpb:.4f} | perplexity {score.perplexity:.3f}")
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_atomically(run_dir / "run.json", lambda f: f.write(json.dumps(previous).encode()))  # it marks the run finished
    first = next(iter(scored))
    run = {k: previous[k] for k in ("seed", "tokens_seen", "steps", "final_train_loss", "train_tokens_per_s", "mfu")}
    run.update(bpb=scores[first]["bpb"], perplexity=scores[first]["perplexity"],
               evals={name: {"bpb": scores[name]["bpb"], "perplexity": scores[name]["perplexity"]} for name in scored},
               loss_curve=previous["loss_curve"])
    return run


def scan_arm(files: list[Path], eval_docs: dict[str, list[str]], eval_grams: dict, cache: Path, log) -> tuple[ArmText, dict]:
    """An arm's ArmText and, per eval set, the eval n-grams its text contains: from the cache,
    or from one pass over the text (which then fills the cache)."""
    files_key = _hash_json([[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files])
    text_path = cache / f"arm-{files_key}.json"
    seen_paths = {name: cache / f"seen-{files_key}-{_hash_texts(docs)}.npy" for name, docs in eval_docs.items()}
    missing = [name for name, path in seen_paths.items() if not path.exists()]
    if text_path.exists() and not missing:
        return ArmText(**json.loads(text_path.read_text())), {name: np.load(p) for name, p in seen_paths.items()}

    wanted = np.unique(np.concatenate([eval_grams[name][1] for name in missing] or [np.empty(0, np.uint64)]))
    counts = {"docs": 0, "bytes": 0}
    content = hashlib.blake2b(digest_size=16)

    def texts():  # streamed once: counted and hashed on the way to the n-gram check
        for path in files:
            file_hash = hashlib.blake2b(digest_size=16)
            for batch in pq.ParquetFile(path).iter_batches(batch_size=DOCS_PER_RECORD_BATCH, columns=[TEXT_COLUMN]):
                for text in batch.column(0).to_pylist():
                    if text:
                        encoded = text.encode("utf-8")
                        counts["docs"] += 1
                        counts["bytes"] += len(encoded)
                        file_hash.update(hashlib.blake2b(encoded, digest_size=16).digest())
                        yield text
            content.update(file_hash.digest())

    found = seen_ngrams(wanted, texts())
    docs, text_bytes = counts["docs"], counts["bytes"]
    text = ArmText(files=len(files), docs=docs, bytes=text_bytes, content_hash=content.hexdigest())
    cache.mkdir(parents=True, exist_ok=True)
    for name in missing:
        _write_atomically(seen_paths[name], lambda f, name=name: np.save(f, found[np.isin(found, eval_grams[name][1])]))
    _write_atomically(text_path, lambda f: f.write(json.dumps(asdict(text)).encode()))
    log(f"scanned {len(files)} training files ({docs:,} documents, {text_bytes:,} bytes); cached in {cache}")
    return text, {name: np.load(p) for name, p in seen_paths.items()}


def _write_atomically(path: Path, write: Callable) -> None:
    """`write(file)` into a temp file renamed over `path`: a reader never sees a partial file,
    even after a kill mid-write; the temp name is this process's, so runs of other seeds into
    the same folder at the same time do not rename each other's."""
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as f:
        write(f)
    os.replace(temporary, path)


def _hash_texts(texts: list[str]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for text in texts:
        h.update(hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest())
    return h.hexdigest()


def _hash_json(value) -> str:
    return hashlib.blake2b(json.dumps(value).encode(), digest_size=16).hexdigest()
