"""Held-out bits per byte and perplexity, after dropping eval documents seen in training.

Bits per byte (bpb) = total nats / ln 2 / total UTF-8 bytes of the scored documents: it does not
depend on the tokenizer, so it is the headline number. Per-token perplexity = exp(nats / scored
tokens) is reported beside it (with the byte tokenizer it equals 2 ** bpb).

Scoring: the documents become one stream `eos d1 eos d2 ...` (as in training), cut into
consecutive windows of seq_len targets; every byte of every document is a target exactly once,
while the separators (and the padding of the last window) are not scored. A window's first
tokens see only the context inside that window.

Dedup: an eval document is dropped when more than MAX_OVERLAP of its distinct word 13-grams
occur anywhere in the training text (the union of all training shards). Words are lower-cased
runs of letters/digits, hashed with blake2b and combined into 64-bit n-gram hashes with numpy,
so the check is exact up to 64-bit collisions and the same on every run and machine. Documents
with fewer than 13 words have no 13-gram and are always kept.
"""
import hashlib
import math
import re
from dataclasses import asdict, dataclass
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F

from .train import autocast

NGRAM = 13  # the n-gram length GPT-3 used for its contamination check
MAX_OVERLAP = 0.5  # a larger share of shared 13-grams means the eval doc is a near-duplicate of training text
_WORD = re.compile(r"\w+")
_NGRAM_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant for the polynomial combine


@dataclass(frozen=True)
class EvalScore:
    bpb: float
    perplexity: float
    nats: float
    tokens: int
    bytes: int
    docs: int

    def to_dict(self) -> dict:
        return asdict(self)


def bits_per_byte(total_nats: float, total_bytes: int) -> float:
    return total_nats / math.log(2) / total_bytes


@torch.inference_mode()
def score_documents(model, tokenizer, docs: list[str], seq_len: int, batch_size: int, device: str) -> EvalScore:
    """Bits per byte and per-token perplexity of `model` on `docs`."""
    if not docs:
        raise ValueError("no eval documents to score")
    stream = np.concatenate([tokenizer.encode_document(doc) for doc in docs] + [[tokenizer.eos_id]])
    n_windows = math.ceil((len(stream) - 1) / seq_len)
    padded = np.full(n_windows * seq_len + 1, tokenizer.eos_id, dtype=np.int64)
    padded[: len(stream)] = stream
    starts = np.arange(n_windows) * seq_len
    windows = torch.from_numpy(padded[starts[:, None] + np.arange(seq_len + 1)])

    model.eval()
    total_nats, total_tokens = 0.0, 0
    for i in range(0, n_windows, batch_size):
        batch = windows[i : i + batch_size].to(device)
        inputs, targets = batch[:, :-1], batch[:, 1:]
        with autocast(device):
            logits, _ = model(inputs)
        nats = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="none")
        scored = targets.reshape(-1) != tokenizer.eos_id
        total_nats += nats[scored].sum().item()
        total_tokens += int(scored.sum().item())
    total_bytes = sum(len(doc.encode("utf-8")) for doc in docs)
    return EvalScore(
        bpb=bits_per_byte(total_nats, total_bytes),
        perplexity=math.exp(total_nats / total_tokens),
        nats=total_nats,
        tokens=total_tokens,
        bytes=total_bytes,
        docs=len(docs),
    )


def ngram_hashes(text: str, n: int = NGRAM, word_cache: dict | None = None) -> np.ndarray:
    """64-bit hashes of the word n-grams of `text` (one per position; empty under n words)."""
    cache = {} if word_cache is None else word_cache
    words = _WORD.findall(text.lower())
    if len(words) < n:
        return np.empty(0, dtype=np.uint64)
    word_hashes = np.fromiter((_word_hash(w, cache) for w in words), dtype=np.uint64, count=len(words))
    hashes = np.zeros(len(words) - n + 1, dtype=np.uint64)
    for offset in range(n):  # sum_k word[i + k] * M ** (n - 1 - k), wrapping at 2 ** 64
        hashes = hashes * _NGRAM_MULTIPLIER + word_hashes[offset : offset + len(hashes)]
    return hashes


def _word_hash(word: str, cache: dict) -> int:
    value = cache.get(word)
    if value is None:
        value = cache[word] = int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")
    return value


def eval_ngrams(eval_docs: list[str], n: int = NGRAM) -> tuple[list[np.ndarray], np.ndarray]:
    """Each eval document's distinct n-gram hashes, and all of them, sorted and unique."""
    cache: dict = {}
    doc_ngrams = [np.unique(ngram_hashes(doc, n, cache)) for doc in eval_docs]
    return doc_ngrams, np.unique(np.concatenate(doc_ngrams)) if doc_ngrams else np.empty(0, dtype=np.uint64)


def seen_ngrams(wanted: np.ndarray, training_texts: Iterable[str], n: int = NGRAM) -> np.ndarray:
    """The hashes of `wanted` (sorted, unique) that occur in the training text, which is streamed
    once, keeping only the wanted n-grams in memory."""
    cache: dict = {}
    seen = np.zeros(len(wanted), dtype=bool)
    for text in training_texts:
        hashes = ngram_hashes(text, n, cache)
        if len(hashes) and len(wanted):
            positions = np.searchsorted(wanted, hashes)
            positions[positions == len(wanted)] = 0
            seen[positions[wanted[positions] == hashes]] = True
        if len(cache) > 5_000_000:  # bound memory on huge vocabularies; hashes stay the same
            cache.clear()
    return wanted[seen]


def overlapping_documents(doc_ngrams: list[np.ndarray], seen: np.ndarray, max_overlap: float = MAX_OVERLAP) -> list[int]:
    """Indices of the documents more than `max_overlap` of whose distinct n-grams were seen."""
    return [i for i, grams in enumerate(doc_ngrams) if len(grams) and np.isin(grams, seen).mean() > max_overlap]


def drop_training_overlap(
    eval_docs: list[str], training_texts: Iterable[str], n: int = NGRAM, max_overlap: float = MAX_OVERLAP
) -> tuple[list[str], list[int]]:
    """(kept documents, indices of dropped ones): a document is dropped when the share of its
    distinct n-grams found in the training text exceeds `max_overlap`."""
    doc_ngrams, wanted = eval_ngrams(eval_docs, n)
    dropped = overlapping_documents(doc_ngrams, seen_ngrams(wanted, training_texts, n), max_overlap)
    dropped_set = set(dropped)
    return [doc for i, doc in enumerate(eval_docs) if i not in dropped_set], dropped
