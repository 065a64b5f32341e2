"""Training throughput of the bundled GPT: steady-state tokens/s and MFU, timed from a device
sync after the warm-up steps (compilation, allocator, caches) to a sync after the timed steps.

    python benchmarks/pretrain_throughput.py                          # gpt2-86m on CUDA, tiny on CPU
    python benchmarks/pretrain_throughput.py --size small --no-compile --batch-size 32

A step is what `pretrain` does: forward and backward (bf16 autocast, fused flash attention and
torch.compile on CUDA; fp32, eager on CPU), gradient clipping and an AdamW step (fused on CUDA).
The tokens are random: throughput does not depend on the text. MFU uses the model's
flops_per_token (PaLM counting) against the device's bf16 peak, known from its name (H100
SXM/H200 989, H100 PCIe 756, A100 312 TFLOPS) or given with --peak-tflops.
"""
import argparse
import shlex
import sys
import time

import torch

from refinery.model.gpt import GPT, SIZES, config_for
from refinery.model.tokenizer import ByteTokenizer
from refinery.model.train import (
    TrainConfig, autocast, make_optimizer, model_flops_utilization, resolve_device, synchronize,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=list(SIZES), help="default: gpt2-86m on CUDA, tiny on CPU")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--batch-size", type=int, help="sequences per step (default depends on --size)")
    parser.add_argument("--seq-len", type=int, help="default: the model's context length")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup-steps", type=int, default=5, help="untimed steps first (compilation, allocator, caches)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile (default: on CUDA, off on CPU)")
    parser.add_argument("--peak-tflops", type=float, help="default: from the device name")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = resolve_device(args.device)
    size = args.size or ("gpt2-86m" if device == "cuda" else "tiny")
    config = TrainConfig(size=size, seq_len=args.seq_len, batch_size=args.batch_size, device=device,
                         compile=args.compile, peak_tflops=args.peak_tflops).resolved()
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    torch.manual_seed(0)
    model = GPT(config_for(size, ByteTokenizer.vocab_size)).to(device)
    optimizer = make_optimizer(model, config, device)
    forward = torch.compile(model) if config.compile else model
    tokens = torch.randint(0, ByteTokenizer.vocab_size, (config.batch_size, config.seq_len + 1), device=device)
    inputs, targets = tokens[:, :-1], tokens[:, 1:].contiguous()

    def step() -> None:
        with autocast(device):
            _, loss = forward(inputs, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(args.warmup_steps):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    synchronize(device)
    seconds = time.perf_counter() - start

    tokens_per_step = config.batch_size * config.seq_len
    tokens_per_s = args.steps * tokens_per_step / seconds
    flops_per_token = model.flops_per_token(config.seq_len)
    print(f"device      {torch.cuda.get_device_name() if device == 'cuda' else f'cpu, {torch.get_num_threads()} threads'}"
          f", torch {torch.__version__}")
    print(f"model       {size}: {model.num_params():,} parameters, {flops_per_token / 1e6:.1f} MFLOPs/token (train)")
    print(f"step        {config.batch_size} x {config.seq_len} tokens, {'bf16 autocast' if device == 'cuda' else 'fp32'}"
          f"{', torch.compile' if config.compile else ''}; {args.steps} timed after {args.warmup_steps} warmup")
    print(f"step time   {1000 * seconds / args.steps:.1f} ms")
    print(f"throughput  {tokens_per_s:,.0f} tokens/s")
    if config.peak_tflops:
        mfu = model_flops_utilization(tokens_per_s, flops_per_token, config.peak_tflops)
        print(f"MFU         {100 * mfu:.1f}% of {config.peak_tflops:g} TFLOPS (steady state)")
    elif device == "cuda":
        print("MFU         unknown peak for this device: pass --peak-tflops")
    if device == "cuda":
        print(f"peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    command = ["python", "benchmarks/pretrain_throughput.py", "--size", size, "--device", device,
               "--batch-size", str(config.batch_size), "--seq-len", str(config.seq_len),
               "--steps", str(args.steps), "--warmup-steps", str(args.warmup_steps)]
    command += ["--compile" if config.compile else "--no-compile"]
    command += ["--peak-tflops", f"{config.peak_tflops:g}"] if config.peak_tflops else []
    command += ["--threads", str(args.threads)] if args.threads else []
    print(f"reproduce   {shlex.join(command)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
