"""A GPT (decoder-only transformer) in one file, after nanoGPT.

Pre-norm blocks, learned position embeddings, token embedding tied to the output head, and
attention through `F.scaled_dot_product_attention(is_causal=True)`, which on CUDA dispatches
to a fused flash-attention kernel. The embedding has a row count padded to a multiple of 64
(tensor-core friendly shapes for the output matmul); the padding rows are never an input and
the logits are cut back to the real vocabulary, so probabilities are over real symbols only.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int
    block_size: int
    n_layer: int
    n_head: int
    n_embd: int

    @property
    def padded_vocab_size(self) -> int:
        return -(-self.vocab_size // VOCAB_MULTIPLE) * VOCAB_MULTIPLE


VOCAB_MULTIPLE = 64
# Shapes only: the vocabulary comes from the tokenizer. Names say the parameter count with the
# 257-symbol byte vocabulary (padded to 320 rows), position embeddings included.
SIZES = {
    "tiny": dict(n_layer=2, n_head=2, n_embd=64, block_size=256),  # 0.14M: CPU tests in seconds
    "mini": dict(n_layer=4, n_head=4, n_embd=96, block_size=256),  # 0.50M: CPU ablations, minutes per run
    "small": dict(n_layer=10, n_head=8, n_embd=512, block_size=1024),  # 32M: GPU
    "gpt2-86m": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024),  # GPT-2 small's body: 86M, not 124M
}
# Old names, refused with the new one: GPT-2 small's 124M counted its 50k-token embedding (38M).
RENAMED_SIZES = {"gpt2-124m": "gpt2-86m"}


def check_size(size: str) -> str:
    if size in RENAMED_SIZES:
        raise ValueError(f"model size {size!r} is now {RENAMED_SIZES[size]!r}: it has 86M parameters "
                         "with the byte vocabulary (GPT-2's 124M counted a 50k-token embedding)")
    if size not in SIZES:
        raise ValueError(f"unknown model size {size!r}; choose from {sorted(SIZES)}")
    return size


def config_for(size: str, vocab_size: int) -> GPTConfig:
    return GPTConfig(vocab_size=vocab_size, **SIZES[check_size(size)])


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        assert config.n_embd % config.n_head == 0, "n_embd must be a multiple of n_head"
        self.n_head = config.n_head
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=False)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, time, channels = x.shape
        q, k, v = self.qkv(x).split(channels, dim=2)
        # (batch, time, channels) -> (batch, heads, time, head_dim), the layout SDPA expects
        q, k, v = (t.view(batch, time, self.n_head, channels // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).contiguous().view(batch, time, channels))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=False)
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    """Pre-norm residual block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_attn = nn.LayerNorm(config.n_embd, bias=False)
        self.attn = CausalSelfAttention(config)
        self.ln_mlp = nn.LayerNorm(config.n_embd, bias=False)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_attn(x))
        return x + self.mlp(self.ln_mlp(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.padded_vocab_size, config.n_embd)
        self.position_embedding = nn.Embedding(config.block_size, config.n_embd)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_final = nn.LayerNorm(config.n_embd, bias=False)
        self.lm_head = nn.Linear(config.n_embd, config.padded_vocab_size, bias=False)
        self.lm_head.weight = self.token_embedding.weight  # tied: one matrix reads and writes tokens

        self.apply(self._init_weights)
        # GPT-2: scale the projections that write into the residual stream by 1/sqrt(2 * n_layer),
        # so the stream's variance does not grow with depth.
        for name, param in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """Logits (batch, time, vocab) and, given targets, the mean next-token cross-entropy in nats."""
        time = idx.shape[1]
        if time > self.config.block_size:
            raise ValueError(f"sequence of {time} tokens exceeds block_size {self.config.block_size}")
        positions = torch.arange(time, device=idx.device)
        x = self.token_embedding(idx) + self.position_embedding(positions)
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_final(x))[..., : self.config.vocab_size]
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss

    def num_params(self, with_position_embedding: bool = True) -> int:
        """Parameters counted once (the tied embedding is one matrix)."""
        total = sum(p.numel() for p in self.parameters())
        return total if with_position_embedding else total - self.position_embedding.weight.numel()

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs (forward + backward) per token, PaLM appendix B: 6 per weight used in a
        matmul (position embeddings are a lookup, not a matmul; the tied embedding is the output
        matmul) plus 12 * layers * width * seq_len for the attention scores and their use. Causal
        flash attention skips the masked half of that term, but MFU conventionally counts it."""
        config = self.config
        return 6 * self.num_params(with_position_embedding=False) + 12 * config.n_layer * config.n_embd * seq_len
