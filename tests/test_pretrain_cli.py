"""`refinery pretrain` as a user runs it: the installed `refinery` command (its import guard would
hide a broken pretraining module as an unknown subcommand) on the shards of a real `refinery run`
(the session's crawl-sample run), scored on held-out WikiText-2 prose.

The bar is the eval text's own unigram byte entropy, computed here: a model that has learned only
how often each byte occurs scores no better than that, and an untrained one scores about
log2(257) = 8 bits per byte. The budget (200k tokens of a tiny model, one CPU thread) reaches it
with room to spare in well under half a minute on this machine."""
from __future__ import annotations

import gzip
import json
import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from conftest import REPO
from refinery.model.data import detokenize_wikitext, read_eval_documents

REFINERY = Path(sys.executable).with_name("refinery")  # the console script pip installs beside this Python


def unigram_entropy_bits(data: bytes) -> float:
    counts = Counter(data)
    return -sum(n / len(data) * math.log2(n / len(data)) for n in counts.values())


def test_pretrain_on_refinery_run_shards_beats_the_eval_sets_unigram_byte_entropy(crawl_run, data_dir, tmp_path):
    shards = crawl_run[0] / "shards"
    with gzip.open(data_dir / "wikitext-2-tokenized" / "test.txt.gz", "rt", encoding="utf-8") as f:
        prose = [d.strip() for d in detokenize_wikitext(f.read()).split("\n\n") if len(d.strip()) > 200][:40]
    trained_on = next(t for t in pq.read_table(shards, columns=["text"]).column("text").to_pylist() if len(t.split()) > 100)
    eval_path = tmp_path / "eval.jsonl"
    eval_path.write_text("".join(json.dumps({"text": d}) + "\n" for d in [*prose, trained_on]), encoding="utf-8")
    assert read_eval_documents(eval_path) == [*prose, trained_on]
    entropy = unigram_entropy_bits("".join(prose).encode("utf-8"))

    out = tmp_path / "out"
    argv = [str(REFINERY), "pretrain", "--shards", str(shards), "--eval", str(eval_path), "--tokens", "200k",
            "--size", "tiny", "--seq-len", "32", "--batch-size", "8", "--lr", "1e-2", "--out", str(out), "--device", "cpu"]
    # one thread: a tiny model gains nothing from more, and on a busy machine they wait on each other
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]

    report = json.loads((out / "report.json").read_text())
    assert report["eval_docs_dropped"] == 1  # the shard's own document is not scored
    assert report["eval"]["bytes_scored"] == sum(len(d.encode("utf-8")) for d in prose)
    run = report["arms"]["refined"]["runs"][0]
    assert run["tokens_seen"] >= 200_000
    curve = json.loads((out / "refined" / "seed0" / "run.json").read_text())["loss_curve"]
    assert curve[0][1] / math.log(2) > entropy + 2  # the model starts near 8 bits a byte...
    assert run["bpb"] < entropy, (run["bpb"], entropy)  # ...and ends below what byte frequencies give
