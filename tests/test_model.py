"""The bundled GPT (refinery.model) on real text: WikiText-2 prose and article-extraction-benchmark
articles written to small Parquet shards. CPU only, tiny model, a few seconds per test."""
import gzip
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from refinery.model.cli import main as model_cli_main
from refinery.model.data import PackedBatches, detokenize_wikitext, read_eval_documents, resolve_paths
from refinery.model.evaluate import bits_per_byte, drop_training_overlap, score_documents
from refinery.model.gpt import GPT, config_for
from refinery.model.tokenizer import ByteTokenizer
from refinery.model import train as train_module
from refinery.model.train import SteadyThroughput, TrainConfig, load_model, peak_tflops_for, train

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
WIKITEXT = DATA / "wikitext-2-tokenized" / "valid.txt.gz"
ARTICLES = DATA / "article-extraction-benchmark" / "ground-truth.json"


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models gain nothing from more threads, and on a busy shared CPU OpenMP threads that
    wait on each other make every step many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real test data {path} is absent (expected the shared data folder beside the repo)")
    return path


@pytest.fixture(scope="module")
def wiki_docs() -> list[str]:
    """Detokenized WikiText-2 validation text, one document per blank-line-separated block."""
    with gzip.open(_require(WIKITEXT), "rt", encoding="utf-8") as f:
        text = detokenize_wikitext(f.read())
    return [doc for doc in (block.strip() for block in text.split("\n\n")) if len(doc) > 200]


@pytest.fixture(scope="module")
def articles() -> list[str]:
    truth = json.loads(_require(ARTICLES).read_text(encoding="utf-8"))
    return [page["articleBody"] for page in truth.values() if page["articleBody"].strip()]


@pytest.fixture(scope="module")
def shards(tmp_path_factory, wiki_docs, articles) -> dict[str, Path]:
    """wiki/ (two files, small row groups) and articles.parquet; the last 40 wiki docs stay unseen."""
    root = tmp_path_factory.mktemp("shards")
    (root / "wiki").mkdir()
    train_wiki = wiki_docs[:-40]
    half = len(train_wiki) // 2
    pq.write_table(pa.table({"text": train_wiki[:half]}), root / "wiki" / "part-0.parquet", row_group_size=50)
    pq.write_table(pa.table({"text": train_wiki[half:]}), root / "wiki" / "part-1.parquet", row_group_size=50)
    pq.write_table(pa.table({"text": articles, "url": ["x"] * len(articles)}), root / "articles.parquet")
    return {"wiki": root / "wiki", "articles": root / "articles.parquet"}


def test_detokenize_wikitext():
    tokenized = (
        " = = Life cycle = = \n"
        " The spines are red @-@ tipped , weigh 0 @.@ 7 – 2 @.@ 2 kg ( 1 @.@ 5 lb ) and cost $ 1 @,@ 000 . \n"
        ' The larger one is the " crusher " ; it is n\'t the lobster \'s only claw : see below ! \n'
    )
    assert detokenize_wikitext(tokenized).split("\n") == [
        "Life cycle",
        "The spines are red-tipped, weigh 0.7 – 2.2 kg (1.5 lb) and cost $1,000.",
        'The larger one is the "crusher"; it isn\'t the lobster\'s only claw: see below!',
        "",
    ]


def test_detokenized_wikitext_reads_as_prose(wiki_docs):
    text = "\n\n".join(wiki_docs)
    assert len(wiki_docs) > 300
    for token in (" @-@ ", " @.@ ", " @,@ ", " , ", " . ", "( ", " )", " = = "):
        assert token not in text


def test_read_eval_documents_all_formats(tmp_path):
    docs = ["First document,\nwith two lines.", "Second one.", "Third — non-ASCII ü."]
    (tmp_path / "eval.txt").write_text("\n\n  \n".join(docs) + "\n", encoding="utf-8")
    with gzip.open(tmp_path / "eval.txt.gz", "wt", encoding="utf-8") as f:
        f.write("\n \n".join(docs))
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps({"text": d, "id": i}) + "\n" for i, d in enumerate(docs)))
    pq.write_table(pa.table({"text": docs + [""]}), tmp_path / "eval.parquet")
    for name in ("eval.txt", "eval.txt.gz", "eval.jsonl", "eval.parquet"):
        assert read_eval_documents(tmp_path / name) == docs, name


def test_resolve_paths_accepts_dir_glob_and_file(shards):
    wiki_files = resolve_paths([shards["wiki"]])
    assert [p.name for p in wiki_files] == ["part-0.parquet", "part-1.parquet"]
    assert resolve_paths([str(shards["wiki"] / "part-*.parquet"), wiki_files[0]]) == wiki_files
    with pytest.raises(FileNotFoundError):
        resolve_paths([str(shards["wiki"] / "nothing-*.parquet")])


def _lettered_shards(root: Path, shards: int = 3, docs_per_letter: int = 300) -> dict[int, int]:
    """`shards` Parquet files, each two runs of documents written in one letter (a run per
    letter, so the first half of a file is one letter and the second half another); returns
    each letter's byte count. A sequence's letters say where in the arm it was drawn from."""
    counts = {}
    for shard in range(shards):
        texts = []
        for letter in "ab":
            byte = ord(letter) + 2 * shard
            texts += [chr(byte) * (60 + i % 80) for i in range(docs_per_letter)]
            counts[byte] = sum(60 + i % 80 for i in range(docs_per_letter))
        pq.write_table(pa.table({"text": texts}), root / f"part-{shard}.parquet", row_group_size=128)
    return counts


def test_a_fraction_of_an_epoch_samples_the_whole_arm_evenly(tmp_path):
    counts = _lettered_shards(tmp_path)
    loader = PackedBatches(resolve_paths([tmp_path]), ByteTokenizer(), seq_len=64, batch_size=4, seed=0)
    total = sum(counts.values())
    drawn = np.concatenate([loader.next_batch()[1].numpy().ravel() for _ in range(loader.sequences_per_epoch // 40)])
    assert loader.epoch == 0  # a tenth of an epoch
    for byte, count in counts.items():  # every shard, both halves of each, near their share
        share = np.count_nonzero(drawn == byte) / len(drawn)
        assert 0.7 < share / (count / total) < 1.3, (chr(byte), share, count / total)

    # the rest of the epoch: every sequence once, so every byte of the arm once but the epoch's last < 64 tokens
    while loader.epoch == 0:
        drawn = np.concatenate([drawn, loader.next_batch()[1].numpy().ravel()])
    epoch = drawn[: loader.sequences_per_epoch * 64]
    for byte, count in counts.items():
        assert count - 64 <= np.count_nonzero(epoch == byte) <= count


def test_packing_is_seeded_and_resumes_mid_epoch(shards):
    paths = resolve_paths([shards["wiki"]])
    tokenizer = ByteTokenizer()

    def loader(seed):
        return PackedBatches(paths, tokenizer, seq_len=64, batch_size=4, seed=seed)

    first, same, other = loader(1), loader(1), loader(2)
    steps = first.sequences_per_epoch // 4 + 20  # into the second epoch
    batches = [first.next_batch() for _ in range(steps)]
    assert first.epoch == 1
    for inputs, targets in batches[:3]:
        assert inputs.shape == targets.shape == (4, 64)
        assert torch.equal(inputs[:, 1:], targets[:, :-1])
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, (same.next_batch() for _ in range(steps))))
    assert not torch.equal(torch.cat([b[0] for b in batches[:20]]), torch.cat([other.next_batch()[0] for _ in range(20)]))
    # the second epoch is another order
    assert not torch.equal(torch.cat([b[0] for b in batches[:10]]), torch.cat([b[0] for b in batches[-10:]]))

    for stop in (30, steps - 10):  # within the first epoch, and within the second
        interrupted = loader(1)
        for _ in range(stop):
            interrupted.next_batch()
        resumed = loader(1)
        resumed.load_state_dict(interrupted.state_dict())
        assert all(torch.equal(batches[i][0], resumed.next_batch()[0]) for i in range(stop, steps))
    with pytest.raises(ValueError, match="documents"):
        PackedBatches(resolve_paths([shards["articles"]]), tokenizer, 64, 4, 1).load_state_dict(first.state_dict())


def test_model_sizes_are_named_by_their_parameter_count():
    expected = {"tiny": (0.1e6, 0.2e6), "mini": (0.45e6, 0.55e6), "small": (28e6, 36e6), "gpt2-86m": (85e6, 87e6)}
    for size, (low, high) in expected.items():
        with torch.device("meta"):
            model = GPT(config_for(size, ByteTokenizer.vocab_size))
        assert low < model.num_params() < high, size
        # the byte vocabulary's 257 rows padded to a multiple of 64; the tied head has the same rows
        assert model.token_embedding.weight.shape[0] == 320 and model.lm_head.weight is model.token_embedding.weight
    assert (model.config.n_layer, model.config.n_embd, model.config.n_head, model.config.block_size) == (12, 768, 12, 1024)
    non_embedding = model.num_params(with_position_embedding=False)
    assert model.flops_per_token(1024) == 6 * non_embedding + 12 * 12 * 768 * 1024
    with pytest.raises(ValueError, match="now 'gpt2-86m'"):
        config_for("gpt2-124m", ByteTokenizer.vocab_size)


def test_padded_vocabulary_rows_get_no_probability():
    torch.manual_seed(0)
    model = GPT(config_for("tiny", ByteTokenizer.vocab_size))
    idx = torch.randint(0, 257, (2, 16))
    logits, loss = model(idx, idx)
    assert logits.shape == (2, 16, 257)  # cut back to the real symbols: a proper distribution over them
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(logits.reshape(-1, 257), idx.reshape(-1)).item())


def test_tiny_model_loss_falls_on_real_text(shards):
    config = TrainConfig(size="tiny", tokens=40 * 8 * 128, seq_len=128, batch_size=8, log_every=100)
    result = train(config, [shards["wiki"]], log=lambda line: None)
    losses = [loss for _, loss in result.losses]
    assert len(losses) == 40 and result.tokens_seen == 40 * 8 * 128
    assert abs(losses[0] - math.log(257)) < 0.15  # starts near uniform over the 257 symbols
    assert np.mean(losses[-5:]) < losses[0] - 1.5


def test_resume_continues_the_same_loss_curve(shards, tmp_path):
    config = TrainConfig(size="tiny", tokens=12 * 2 * 4 * 64, seq_len=64, batch_size=4, grad_accum=2, seed=3)
    shards_ = [shards["wiki"], shards["articles"]]
    quiet = lambda line: None  # noqa: E731
    uninterrupted = train(config, shards_, tmp_path / "whole.pt", log=quiet)

    first_part = train(config, shards_, tmp_path / "split.pt", log=quiet, stop_after_step=5)
    assert first_part.steps == 5
    resumed = train(config, shards_, tmp_path / "split.pt", log=quiet)

    assert resumed.steps == uninterrupted.steps == 12
    assert [t for t, _ in resumed.losses] == [t for t, _ in uninterrupted.losses]
    np.testing.assert_allclose([l for _, l in resumed.losses], [l for _, l in uninterrupted.losses], rtol=0, atol=1e-6)
    for name, param in uninterrupted.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], param, rtol=0, atol=1e-6)

    model, tokenizer = load_model(tmp_path / "split.pt")
    assert tokenizer.state_dict() == resumed.tokenizer.state_dict()
    torch.testing.assert_close(model.state_dict(), resumed.model.state_dict())
    with pytest.raises(ValueError, match="different settings"):
        train(replace(config, lr=1e-4), shards_, tmp_path / "split.pt", log=quiet)


def test_byte_tokenizer_round_trip():
    tokenizer = ByteTokenizer()
    text = "Homarus gammarus — le homard européen"
    document = tokenizer.encode_document(text)
    assert document[0] == tokenizer.eos_id and len(document) == len(text.encode("utf-8")) + 1
    assert tokenizer.decode(document) == text
    assert ByteTokenizer.from_state_dict(tokenizer.state_dict()).vocab_size == 257


class UniformModel(torch.nn.Module):
    """Equal logits for all 257 symbols: log(257) nats for every token, computable by hand."""

    def forward(self, idx):
        return torch.zeros(*idx.shape, ByteTokenizer.vocab_size), None


def test_bits_per_byte_hand_checked():
    assert bits_per_byte(total_nats=20 * math.log(2), total_bytes=10) == pytest.approx(2.0)
    docs = ["Homarus gammarus is a large crustacean.", "It is blue above.", "x" * 300]
    score = score_documents(UniformModel(), ByteTokenizer(), docs, seq_len=32, batch_size=3, device="cpu")
    ascii_bytes = sum(len(d) for d in docs)
    assert score.bytes == score.tokens == ascii_bytes  # every byte scored once, separators not at all
    assert score.bpb == pytest.approx(math.log2(257))
    assert score.perplexity == pytest.approx(257)

    # "é" is two UTF-8 bytes, so two tokens: still log2(257) bits per byte, 10 bytes for 9 characters
    accented = score_documents(UniformModel(), ByteTokenizer(), ["caf\u00e9 noir"], 4, 2, "cpu")
    assert (accented.bytes, accented.tokens) == (10, 10)
    assert accented.bpb == pytest.approx(math.log2(257))


def test_eval_dedup_drops_documents_seen_in_training(wiki_docs, articles):
    training = articles[:50]
    near_copy = training[7].replace("the", "a", 3) + " An extra closing sentence."
    eval_docs = [training[3], near_copy, wiki_docs[-1], "Too short to have any 13-gram at all."]
    kept, dropped = drop_training_overlap(eval_docs, iter(training))
    assert dropped == [0, 1]
    assert kept == eval_docs[2:]


def test_pretrain_comparison_end_to_end(shards, wiki_docs, articles, tmp_path, capsys):
    # The article is in the training shards, so it must be dropped; its paragraphs are joined by single
    # newlines because the .txt reader splits documents at blank lines.
    eval_docs = wiki_docs[-12:] + [articles[5].replace("\n\n", "\n")]
    (tmp_path / "eval.txt").write_text("\n\n".join(eval_docs), encoding="utf-8")
    out = tmp_path / "out"
    argv = ["pretrain", "--shards", str(shards["articles"]), "--baseline", str(shards["wiki"] / "*.parquet"),
            "--eval", str(tmp_path / "eval.txt"), "--tokens", "3k", "--seeds", "2", "--size", "tiny",
            "--seq-len", "64", "--batch-size", "4", "--out", str(out), "--device", "cpu"]
    assert model_cli_main(argv) == 0

    report = json.loads((out / "report.json").read_text())
    assert report["eval_docs_dropped"] == 1
    assert report["eval"]["docs_scored"] == 12
    assert set(report["arms"]) == {"refined", "baseline"}
    for arm in report["arms"].values():
        assert [run["seed"] for run in arm["runs"]] == [0, 1]
        for run in arm["runs"]:
            assert run["tokens_seen"] == 12 * 4 * 64  # 3k tokens rounded up to whole steps of 256
            assert 0 < run["bpb"] < math.log2(257) + 0.5 and run["perplexity"] > 1
        assert arm["mean"]["bpb"] == pytest.approx(np.mean([run["bpb"] for run in arm["runs"]]))
        assert set(arm["mean"]) == {"bpb", "perplexity", "tokens_seen"}
    refined, baseline = (report["arms"][a]["mean"]["bpb"] for a in ("refined", "baseline"))
    assert report["bpb_relative_difference"] == pytest.approx((refined - baseline) / baseline)
    markdown = (out / "report.md").read_text()
    assert "| refined | 0 |" in markdown and "| baseline | 1 |" in markdown
    page = (out / "report.html").read_text()
    assert page.count("<svg") == 2 and "| refined | 0 |" not in page and "<td>refined</td><td class=\"num\">0</td>" in page

    # Rerunning finds every run's finished checkpoint: nothing retrains, the scores are the same.
    capsys.readouterr()
    assert model_cli_main(argv) == 0
    assert capsys.readouterr().out.count("finished before: skipped") == 4
    rerun = json.loads((out / "report.json").read_text())
    assert rerun["arms"]["refined"]["runs"][1]["bpb"] == report["arms"]["refined"]["runs"][1]["bpb"]


def test_pretrain_single_arm(shards, wiki_docs, tmp_path):
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in wiki_docs[-5:]))
    out = tmp_path / "out"
    argv = ["pretrain", "--shards", str(shards["wiki"]), "--eval", str(tmp_path / "eval.jsonl"), "--tokens", "1000",
            "--size", "tiny", "--seq-len", "64", "--batch-size", "4", "--out", str(out), "--device", "cpu"]
    assert model_cli_main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert list(report["arms"]) == ["refined"] and report["bpb_relative_difference"] is None
    assert report["eval_docs_dropped"] == 0


def test_mfu_peak_comes_from_the_device_name():
    assert peak_tflops_for("NVIDIA H100 80GB HBM3") == 989.0
    assert peak_tflops_for("NVIDIA H100 PCIe") == 756.0
    assert peak_tflops_for("NVIDIA H200") == 989.0
    assert peak_tflops_for("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak_tflops_for("NVIDIA GeForce RTX 4090") is None
    assert TrainConfig(device="cpu").resolved().peak_tflops is None  # no MFU on the CPU
    assert TrainConfig(device="cpu", peak_tflops=100.0).resolved().peak_tflops == 100.0
    assert TrainConfig(device="cpu").resolved().compile is False


class FakeClock:
    """time.perf_counter for the training loop: advanced by the test, not by the machine."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


def test_checkpoints_follow_wall_time_and_throughput_is_the_steady_state(shards, tmp_path, monkeypatch):
    """Steps take 1 s (the first three, compile-like, 20 s); a checkpoint write takes 50 s. With
    --checkpoint-every 5 s, checkpoints land every 5 s of wall time, and tokens/s counts neither
    the warm-up nor the checkpoint writes: exactly one step's tokens per second."""
    clock = FakeClock()
    monkeypatch.setattr(train_module, "time", clock)
    batches = {"n": 0}
    next_batch = PackedBatches.next_batch

    def timed_batch(self):
        batches["n"] += 1
        clock.now += 20.0 if batches["n"] <= 3 else 1.0
        return next_batch(self)

    saved = []
    save = train_module.save_checkpoint

    def timed_save(path, model, optimizer, loader, tokenizer, config, step, losses):
        saved.append(step)
        save(path, model, optimizer, loader, tokenizer, config, step, losses)
        clock.now += 50.0

    monkeypatch.setattr(PackedBatches, "next_batch", timed_batch)
    monkeypatch.setattr(train_module, "save_checkpoint", timed_save)
    config = TrainConfig(size="tiny", tokens=23 * 4 * 64, seq_len=64, batch_size=4, checkpoint_every=5.0,
                         throughput_warmup_steps=3, log_every=4)
    result = train(config, [shards["wiki"]], tmp_path / "run.pt", log=lambda line: None)
    # steps 1-3 take 20 s each, so each of them is due; then every 5th step of 1 s, and the last
    assert saved == [1, 2, 3, 8, 13, 18, 23]
    assert result.tokens_per_s == pytest.approx(4 * 64 / 1.0)
    assert result.mfu is None  # CPU: no known peak


def test_steady_throughput_meter():
    clock = FakeClock()
    meter = SteadyThroughput("cpu", warmup_steps=2, tokens_per_step=100, clock=clock.perf_counter)
    for seconds in (30, 30, 2, 2):  # two slow warm-up steps, then 2 s a step
        clock.now += seconds
        meter.step_done()
        assert meter.tokens_per_s is None or meter.steps_run > 2
    meter.pause()
    clock.now += 1000  # a checkpoint write
    meter.resume()
    clock.now += 2
    meter.step_done()
    meter.pause()
    assert (meter.timed_steps, meter.seconds, meter.tokens_per_s) == (3, 6.0, pytest.approx(50.0))


def test_resume_on_cuda_gets_the_fused_optimizer_and_one_device_rng(shards, tmp_path):
    """A CPU checkpoint carries fused=False in its AdamW groups; resumed for CUDA it must run
    fused (torch also has a fused AdamW for CPU tensors, so the state is checked by stepping it)."""
    config = TrainConfig(size="tiny", tokens=2 * 4 * 64, seq_len=64, batch_size=4)
    train(config, [shards["wiki"]], tmp_path / "cpu.pt", log=lambda line: None)
    checkpoint = train_module.load_checkpoint(tmp_path / "cpu.pt")
    assert checkpoint["rng"]["cuda"] is None  # saved on the CPU: no CUDA generator
    assert all(group["fused"] is False for group in checkpoint["optimizer"]["param_groups"])

    torch.manual_seed(0)
    model = GPT(config_for("tiny", ByteTokenizer.vocab_size))
    optimizer = train_module.make_optimizer(model, config.resolved(), "cpu")
    train_module.load_optimizer_state(optimizer, checkpoint["optimizer"], "cuda")
    assert all(group["fused"] is True and group["foreach"] is None for group in optimizer.param_groups)
    step_counter = next(iter(optimizer.state.values()))["step"]
    assert step_counter.dtype == torch.float32 and step_counter.item() == 2  # placed for the fused kernel
    model(torch.zeros(1, 8, dtype=torch.long), torch.zeros(1, 8, dtype=torch.long))[1].backward()
    optimizer.step()
    assert next(iter(optimizer.state.values()))["step"].item() == 3


def test_pretrain_named_arms_several_eval_sets_and_a_cached_overlap_check(shards, wiki_docs, articles, tmp_path, monkeypatch, capsys):
    (tmp_path / "wiki.txt").write_text("\n\n".join(wiki_docs[-12:]), encoding="utf-8")
    second = wiki_docs[-20:-12] + [articles[2]]  # the article is training text of the arm `articles`
    (tmp_path / "second.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in second))
    out = tmp_path / "out"
    part0, part1 = resolve_paths([shards["wiki"]])
    argv = ["pretrain", "--arm", f"wiki0={part0}", "--arm", f"wiki1={part1}", "--arm", f"articles={shards['articles']}",
            "--arm", f"copy={shards['wiki']}/part-0.parquet", "--eval", str(tmp_path / "wiki.txt"),
            "--eval", f"other={tmp_path / 'second.jsonl'}", "--tokens", "3k", "--seeds", "2", "--size", "tiny",
            "--seq-len", "64", "--batch-size", "4", "--out", str(out), "--device", "cpu"]
    assert model_cli_main(argv) == 0
    report = json.loads((out / "report.json").read_text())

    assert list(report["arms"]) == ["wiki0", "wiki1", "articles", "copy"] and report["reference_arm"] == "wiki0"
    assert {name: (e["docs_scored"], e["docs_dropped"]) for name, e in report["evals"].items()} == {"wiki": (12, 0), "other": (8, 1)}
    reference = report["arms"]["wiki0"]
    assert reference["delta"] is None and all(e["delta"] is None for e in reference["evals"].values())
    for name in ("wiki1", "articles"):
        arm = report["arms"][name]
        for eval_name in ("wiki", "other"):
            diffs = [run["evals"][eval_name]["bpb"] - ref["evals"][eval_name]["bpb"] for run, ref in zip(arm["runs"], reference["runs"])]
            delta = arm["evals"][eval_name]["delta"]
            assert delta["vs"] == "wiki0" and delta["seeds"] == 2
            assert delta["bpb"] == pytest.approx(np.mean(diffs))
            assert delta["bpb_se"] == pytest.approx(np.std(diffs, ddof=1) / math.sqrt(2))
            assert delta["significant"] == (abs(delta["bpb"]) > 2 * delta["bpb_se"])
            assert delta["relative"] == pytest.approx(delta["bpb"] / reference["evals"][eval_name]["mean"]["bpb"])
        assert arm["mean"]["bpb"] == arm["evals"]["wiki"]["mean"]["bpb"]  # the first eval set is the headline
        assert arm["epochs"] == pytest.approx(12 * 4 * 64 / arm["tokens_per_epoch"])
    # the same text under another name: its runs are the reference's, not trained again
    assert report["arms"]["copy"]["reused_from"] == "wiki0" and report["arms"]["copy"]["runs"] == reference["runs"]
    assert report["arms"]["copy"]["delta"]["bpb"] == 0 and not (out / "copy").exists()
    page = (out / "report.html").read_text()
    assert page.count("<svg") == 2 and "copy (= wiki0)" in page and "other bpb" in page

    # a re-run reads the overlap check from the cache and skips every run
    from refinery.model import compare as compare_module

    def no_scan(*args, **kwargs):
        raise AssertionError("training text scanned again")

    monkeypatch.setattr(compare_module, "seen_ngrams", no_scan)
    capsys.readouterr()
    assert model_cli_main(argv) == 0
    assert capsys.readouterr().out.count("finished before: skipped") == 6
    assert json.loads((out / "report.json").read_text())["arms"] == report["arms"]
