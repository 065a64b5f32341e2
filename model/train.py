"""Pretraining loop: AdamW, linear warmup then cosine decay, gradient clipping and accumulation,
bf16 autocast and torch.compile on CUDA (fp32, eager on CPU), and checkpoints that resume the
exact run: model, optimizer, step, RNG state, data position, loss history and tokenizer.

On CPU a run is repeatable from its seed (model init and data order both derive from it), and a
run resumed from a checkpoint produces the same losses as one that was never interrupted.
Checkpoints are written every `checkpoint_every` seconds of wall time (and at the end), so a
large model on a fast GPU does not spend a fixed share of its steps writing them. Throughput is
the steady state: timing starts at a device sync after `throughput_warmup_steps` steps (compile,
allocator and caches), and stops while a checkpoint is written.
"""
import math
import os
import time
from dataclasses import asdict, dataclass, fields, replace
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import torch

from .data import PackedBatches, resolve_paths
from .gpt import GPT, GPTConfig, check_size, config_for
from .tokenizer import ByteTokenizer

# Dense bf16 peak TFLOPS by device name (NVIDIA datasheets), for MFU; first match wins, so the
# PCIe H100 comes before the generic H100 (SXM). Other devices need --peak-tflops.
PEAK_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("A100", 312.0))

# Used where the config leaves them unset: micro-batch in sequences, and peak learning rate.
SIZE_DEFAULTS = {
    "tiny": dict(batch_size=8, lr=3e-3),
    "mini": dict(batch_size=16, lr=2e-3),
    "small": dict(batch_size=16, lr=1e-3),
    "gpt2-86m": dict(batch_size=32, lr=6e-4),
}
CHECKPOINT_FORMAT = 3  # 2: padded vocabulary rows, RNG of the current CUDA device only; 3: global data order


@dataclass(frozen=True)
class TrainConfig:
    size: str = "tiny"
    tokens: int = 1_000_000  # budget; the run takes whole optimizer steps, rounding it up
    seq_len: int | None = None  # None: the model's block_size
    batch_size: int | None = None  # sequences per micro-batch; None: SIZE_DEFAULTS
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float | None = None  # peak; None: SIZE_DEFAULTS
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_fraction: float = 0.05  # of all steps, at most MAX_WARMUP_STEPS
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    seed: int = 0
    # How to run, not what is computed: these may differ between a run and its resumption.
    device: str = "auto"
    compile: bool | None = None  # None: on CUDA
    peak_tflops: float | None = None  # None: from the device name (PEAK_TFLOPS); no MFU if unknown
    log_every: int = 10
    checkpoint_every: float = 600.0  # seconds of wall time between checkpoints
    throughput_warmup_steps: int = 10  # steps of each invocation left out of tokens/s and MFU

    def resolved(self) -> "TrainConfig":
        """This config with every None replaced by its default for the model size and device."""
        defaults = SIZE_DEFAULTS[check_size(self.size)]
        device = resolve_device(self.device)
        return replace(
            self,
            seq_len=self.seq_len or config_for(self.size, ByteTokenizer.vocab_size).block_size,
            batch_size=self.batch_size or defaults["batch_size"],
            lr=self.lr or defaults["lr"],
            device=device,
            compile=device.startswith("cuda") if self.compile is None else self.compile,
            peak_tflops=self.peak_tflops or device_peak_tflops(device),
        )


MAX_WARMUP_STEPS = 1000
_EXECUTION_FIELDS = {"device", "compile", "peak_tflops", "log_every", "checkpoint_every", "throughput_warmup_steps"}


@dataclass
class TrainResult:
    model: GPT
    tokenizer: ByteTokenizer
    config: TrainConfig
    losses: list[tuple[int, float]]  # (tokens seen after the step, mean training loss of the step)
    steps: int
    tokens_seen: int
    train_seconds: float  # of this invocation, checkpoint writes excluded
    tokens_per_s: float | None  # steady state; None when this invocation ran no step past the warm-up
    mfu: float | None  # steady state, where the device's peak is known


def resolve_device(device: str) -> str:
    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


def peak_tflops_for(device_name: str) -> float | None:
    """The dense bf16 peak of an accelerator from its name (torch.cuda.get_device_name), or None."""
    return next((peak for key, peak in PEAK_TFLOPS if key.lower() in device_name.lower()), None)


def device_peak_tflops(device: str) -> float | None:
    return peak_tflops_for(torch.cuda.get_device_name(torch.device(device))) if device.startswith("cuda") else None


def synchronize(device: str) -> None:
    """Wait for the device's queued work, so a clock read after it times finished work."""
    if device.startswith("cuda"):
        torch.cuda.synchronize(torch.device(device))


class SteadyThroughput:
    """tokens/s of the steady state: the clock starts at a synchronized point after the first
    `warmup_steps` steps of an invocation, and pauses while a checkpoint is written."""

    def __init__(self, device: str, warmup_steps: int, tokens_per_step: int, clock: Callable[[], float] = time.perf_counter):
        self.device, self.warmup_steps, self.tokens_per_step, self.clock = device, warmup_steps, tokens_per_step, clock
        self.steps_run = 0  # in this invocation
        self.seconds = 0.0  # timed, steady state
        self.timed_steps = 0
        self._since: float | None = None  # clock when timing (re)started; None while not timing
        self._since_step = 0
        if warmup_steps == 0:
            self.resume()

    def step_done(self) -> None:
        self.steps_run += 1
        if self.steps_run == self.warmup_steps:
            self.resume()

    def pause(self) -> None:
        """Add the time since the last (re)start, after the queued steps have finished."""
        if self._since is not None:
            synchronize(self.device)
            self.seconds += self.clock() - self._since
            self.timed_steps += self.steps_run - self._since_step
            self._since = None

    def resume(self) -> None:
        if self.steps_run >= self.warmup_steps:
            synchronize(self.device)
            self._since, self._since_step = self.clock(), self.steps_run

    @property
    def tokens_per_s(self) -> float | None:
        return self.timed_steps * self.tokens_per_step / self.seconds if self.timed_steps and self.seconds > 0 else None


def autocast(device: str):
    """bf16 autocast on CUDA; fp32 elsewhere (bf16 on CPU is slow and changes the numbers)."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda"))


def fused_adamw(device: str) -> bool:
    return device.startswith("cuda")


def make_optimizer(model: GPT, config: TrainConfig, device: str) -> torch.optim.AdamW:
    """AdamW decaying only matrices (not norms), fused into one kernel on CUDA."""
    params = list(model.parameters())
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, fused=fused_adamw(device))


def load_optimizer_state(optimizer: torch.optim.AdamW, state: dict, device: str) -> None:
    """A saved optimizer state, run the way this device wants: the saved groups carry the
    `fused` flag of the device they were saved on (a CPU checkpoint says False), and
    load_state_dict would keep it, and place the step counters for it, so it is set first."""
    fused = fused_adamw(device)
    groups = [{**group, "fused": fused, **({"foreach": None} if fused else {})} for group in state["param_groups"]]
    optimizer.load_state_dict({**state, "param_groups": groups})


def model_flops_utilization(tokens_per_s: float, flops_per_token: float, peak_tflops: float) -> float:
    """Achieved model FLOP/s as a fraction of the accelerator's peak (MFU, PaLM appendix B)."""
    return tokens_per_s * flops_per_token / (peak_tflops * 1e12)


def learning_rate(step: int, total_steps: int, config: TrainConfig) -> float:
    warmup = min(MAX_WARMUP_STEPS, max(1, int(config.warmup_fraction * total_steps)))
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    min_lr = config.lr * config.min_lr_ratio
    return min_lr + 0.5 * (config.lr - min_lr) * (1 + math.cos(math.pi * progress))


def train(
    config: TrainConfig,
    shards: Sequence[str | Path],
    checkpoint_path: str | Path | None = None,
    log: Callable[[str], None] = partial(print, flush=True),
    label: str = "",
    stop_after_step: int | None = None,
) -> TrainResult:
    """Train on `shards` (Parquet files, dirs or globs) for config.tokens tokens. With a
    checkpoint_path, resume from it if it exists and save to it every config.checkpoint_every
    seconds and at the end. `stop_after_step` ends this invocation early (the schedule still
    spans the full budget), which is how an interruption is simulated."""
    config = config.resolved()
    device = config.device
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    tokenizer = ByteTokenizer()
    model_config = config_for(config.size, tokenizer.vocab_size)
    if config.seq_len > model_config.block_size:
        raise ValueError(f"seq_len {config.seq_len} exceeds the {config.size} block_size {model_config.block_size}")

    torch.manual_seed(config.seed)
    model = GPT(model_config).to(device)
    optimizer = make_optimizer(model, config, device)
    # the token file goes beside the checkpoint (the run's disk), else to the system's temp folder
    temp_dir = Path(checkpoint_path).parent if checkpoint_path is not None else None
    if temp_dir is not None:
        temp_dir.mkdir(parents=True, exist_ok=True)
    loader = PackedBatches(resolve_paths(shards), tokenizer, config.seq_len, config.batch_size, config.seed, temp_dir)
    tokens_per_step = config.batch_size * config.grad_accum * config.seq_len
    total_steps = max(1, math.ceil(config.tokens / tokens_per_step))
    step, losses = 0, []
    if checkpoint_path is not None and Path(checkpoint_path).exists():
        step, losses = _restore(checkpoint_path, config, model, optimizer, loader)
        log(f"{label}resumed from {checkpoint_path} at step {step}/{total_steps}")

    forward = torch.compile(model) if config.compile else model
    flops_per_token = model.flops_per_token(config.seq_len)
    end_step = total_steps if stop_after_step is None else min(total_steps, stop_after_step)
    meter = SteadyThroughput(device, config.throughput_warmup_steps, tokens_per_step, clock=time.perf_counter)
    unfetched: list[torch.Tensor] = []  # step losses left on the device until the next log, to avoid a sync per step
    model.train()
    started = last_checkpoint = time.perf_counter()
    while step < end_step:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, total_steps, config)
        step_loss = torch.zeros((), device=device)
        for _ in range(config.grad_accum):
            inputs, targets = (t.to(device, non_blocking=True) for t in loader.next_batch())
            with autocast(device):
                _, loss = forward(inputs, targets)
            (loss / config.grad_accum).backward()
            step_loss += loss.detach() / config.grad_accum
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        unfetched.append(step_loss)
        meter.step_done()

        log_due = step % config.log_every == 0 or step == end_step
        checkpoint_due = checkpoint_path is not None and (
            step == end_step or time.perf_counter() - last_checkpoint >= config.checkpoint_every)
        if not (log_due or checkpoint_due):
            continue
        meter.pause()  # timing stops at a sync: the steps so far count, the log and checkpoint do not
        first = step - len(unfetched) + 1
        losses.extend(((first + i) * tokens_per_step, v) for i, v in enumerate(torch.stack(unfetched).tolist()))
        unfetched = []
        if log_due:
            tokens_per_s = meter.tokens_per_s
            line = f"{label}step {step}/{total_steps} ({100 * step / total_steps:.0f}%) | loss {losses[-1][1]:.4f} | " \
                   f"lr {optimizer.param_groups[0]['lr']:.2e}"
            if tokens_per_s is None:
                line += " | warming up"
            else:
                line += f" | {tokens_per_s:,.0f} tok/s"
                if config.peak_tflops:
                    line += f" | MFU {100 * model_flops_utilization(tokens_per_s, flops_per_token, config.peak_tflops):.1f}%"
                line += f" | eta {(total_steps - step) * tokens_per_step / tokens_per_s:.0f}s"
            log(line + f" | {step * tokens_per_step:,}/{total_steps * tokens_per_step:,} tokens")
        if checkpoint_due:
            save_checkpoint(checkpoint_path, model, optimizer, loader, tokenizer, config, step, losses)
            last_checkpoint = time.perf_counter()
        meter.resume()

    meter.pause()
    loader.close()
    tokens_per_s = meter.tokens_per_s
    return TrainResult(
        model=model,
        tokenizer=tokenizer,
        config=config,
        losses=losses,
        steps=step,
        tokens_seen=step * tokens_per_step,
        train_seconds=time.perf_counter() - started,
        tokens_per_s=tokens_per_s,
        mfu=model_flops_utilization(tokens_per_s, flops_per_token, config.peak_tflops)
        if tokens_per_s and config.peak_tflops else None,
    )


def _rng_state(device: str) -> dict:
    """The CPU generator and, on CUDA, the generator of this run's device only: a run resumed
    on a machine with fewer visible GPUs must still find a state for its device."""
    cuda = torch.cuda.get_rng_state(torch.device(device)) if device.startswith("cuda") else None
    return {"torch": torch.get_rng_state(), "cuda": cuda}


def _set_rng_state(state: dict, device: str) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and device.startswith("cuda"):
        torch.cuda.set_rng_state(state["cuda"], torch.device(device))


def save_checkpoint(path, model, optimizer, loader, tokenizer, config, step, losses) -> None:
    """Everything needed to continue the run bit for bit; written atomically (temp file + rename),
    so an interruption during the write leaves the previous checkpoint intact."""
    state = {
        "format": CHECKPOINT_FORMAT,
        "model": model.state_dict(),
        "model_config": asdict(model.config),
        "optimizer": optimizer.state_dict(),
        "train_config": asdict(config),
        "step": step,
        "losses": losses,
        "data": loader.state_dict(),
        "tokenizer": tokenizer.state_dict(),
        "rng": _rng_state(config.device),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    torch.save(state, temporary)
    os.replace(temporary, path)


def load_checkpoint(path: str | Path) -> dict:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint {path} is of an older format (vocabulary padding, RNG state, data order): "
                         "train again into another output folder")
    return checkpoint


def load_model(path: str | Path, device: str = "cpu") -> tuple[GPT, ByteTokenizer]:
    """The trained model and its tokenizer from a checkpoint, for evaluation or sampling."""
    checkpoint = load_checkpoint(path)
    model = GPT(GPTConfig(**checkpoint["model_config"]))
    model.load_state_dict(checkpoint["model"])
    return model.to(device), ByteTokenizer.from_state_dict(checkpoint["tokenizer"])


def _restore(path, config, model, optimizer, loader) -> tuple[int, list[tuple[int, float]]]:
    checkpoint = load_checkpoint(path)
    saved, current = checkpoint["train_config"], asdict(config)
    changed = [f.name for f in fields(TrainConfig) if f.name not in _EXECUTION_FIELDS and saved[f.name] != current[f.name]]
    if changed:
        raise ValueError(f"checkpoint {path} was made with different settings ({', '.join(changed)}); "
                         "use another output path or the same settings")
    ByteTokenizer.from_state_dict(checkpoint["tokenizer"])
    model.load_state_dict(checkpoint["model"])
    load_optimizer_state(optimizer, checkpoint["optimizer"], config.device)
    loader.load_state_dict(checkpoint["data"])
    _set_rng_state(checkpoint["rng"], config.device)
    return checkpoint["step"], [tuple(entry) for entry in checkpoint["losses"]]

