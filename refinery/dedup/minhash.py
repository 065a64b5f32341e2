"""MinHash signatures and LSH band keys for fuzzy dedup (RefinedWeb MDR stage 7).

Signatures are bit-for-bit datasketch 2.0 signatures (scheme "affine32" or "affine64", same
seed, hence the same permutations), for shingles hashed with `shingle_hash`: pass that
function to datasketch as `hashfunc` and feed it `shingle_bytes(text)` to reproduce a row.
What differs is the cost: the whole path from a batch's UTF-8 buffer to its signatures runs in
compiled loops (`refinery.dedup._kernels`, numba): one pass tokenizes (lowercase, punctuation
dropped, whitespace split, with per-codepoint tables computed from Arrow's own kernels, so it
is `normalize_texts` exactly) and hashes each word as it ends, one hashes the shingles, and the permutations
fold four shingles at a time into an L1-sized block of the signature row, with no
shingles x hashes temporary.

Shingle hash: each normalized word is hashed with xxh64 of its UTF-8 bytes, and a shingle's
hash is a polynomial of its word hashes mod 2^64 finished with MurmurHash3's fmix64; the
32-bit scheme uses its low 32 bits.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Literal, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash
from pydantic import Field

from refinery.dedup import kernels
from refinery.dedup.scope import PartitionCount, Scope
from refinery.params import Params

if TYPE_CHECKING:
    from datasketch import LeanMinHash

Texts = Union[Sequence[str], pa.Array, pa.ChunkedArray]

_PUNCTUATION = r"\p{P}+"  # Unicode general category P (RE2 syntax)
_WORD_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # odd, so the polynomial keeps all bits
_CHUNK_ELEMENTS = 1 << 20  # torch: shingles x hashes per temporary (x64 on CUDA)
# Permutations per block of the compiled fold: the row, a and b of a block fit L1 (24 KiB).
_PERM_BLOCK = {32: 2048, 64: 1024}
_SCHEMES = {32: "affine32", 64: "affine64"}
_DTYPES = {32: np.uint32, 64: np.uint64}
# MurmurHash3 finalizer constants per width (datasketch's _FMIX_CONSTANTS).
_FMIX = {
    32: (16, 0x85EBCA6B, 13, 0xC2B2AE35, 16),
    64: (33, 0xFF51AFD7ED558CCD, 33, 0xC4CEB9FE1A85EC53, 33),
}


class MinHashParams(Params):
    """Fuzzy-dedup parameters; defaults are RefinedWeb's 9,000 hashes as 450 bands x 20 rows."""

    stage: Literal["minhash"] = "minhash"
    ngram: int = Field(5, ge=1, description="words per shingle")
    bands: int = Field(450, ge=1)
    rows: int = Field(20, ge=1, description="hashes per band")
    seed: int = Field(1, ge=0, lt=2**32, description="seeds the permutations, as in datasketch")
    hash_bits: Literal[32, 64] = Field(32, description="datasketch scheme affine32 / affine64")
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    partitions: PartitionCount = Field("auto", description="shuffle partitions of the band rows: N, or auto (~1 GiB each, per scope group)")
    scope: Scope = Field("run", description="run, crawl or {parts: N | auto} (refinery.dedup.scope)")

    @property
    def num_perm(self) -> int:
        return self.bands * self.rows


# FineWeb: 112 hashes as 14 bands x 8 rows, 64-bit hashes (REFERENCE.md).
FINEWEB_MINHASH = MinHashParams(bands=14, rows=8, hash_bits=64)


def fmix(values: np.ndarray, bits: int) -> np.ndarray:
    """MurmurHash3's finalizer on uint32/uint64 arrays: a bijection that spreads every input bit."""
    s1, m1, s2, m2, s3 = (_DTYPES[bits](c) for c in _FMIX[bits])
    values = values ^ (values >> s1)
    values = values * m1
    values = values ^ (values >> s2)
    values = values * m2
    return values ^ (values >> s3)


# ---------------------------------------------------------------- normalization and shingles


def as_string_array(texts: Texts) -> pa.Array:
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if isinstance(texts, pa.Array):
        texts = texts.cast(pa.large_string())
    else:
        texts = pa.array(list(texts), type=pa.large_string(), from_pandas=True)
    return texts.fill_null("")


def _normalized_words(texts: Texts) -> pa.Array:
    """Each text's words after lowercasing and removing punctuation, as an Arrow list array.

    One implementation for the batch and the single-text paths, so `normalize`, the exact
    keys and the shingles can never disagree about what a word is."""
    lowered = pc.utf8_lower(as_string_array(texts))
    stripped = pc.utf8_trim_whitespace(pc.replace_substring_regex(lowered, _PUNCTUATION, ""))
    # Arrow splits "" into [""]; a null splits into null, which counts and flattens as no words.
    blank_as_null = pc.if_else(pc.equal(stripped, ""), pa.scalar(None, pa.large_string()), stripped)
    return pc.utf8_split_whitespace(blank_as_null)


def normalize_texts(texts: Texts) -> list[str]:
    """`normalize` over a batch."""
    joined = pc.binary_join(_normalized_words(texts), pa.scalar(" ", pa.large_string()))
    return joined.fill_null("").to_pylist()


def normalize(text: str) -> str:
    """Lowercase, Unicode punctuation (category P) removed, whitespace runs folded to one space."""
    return normalize_texts([text])[0]


def _combine(word_hashes: np.ndarray, start: np.ndarray, length: np.ndarray, n: int) -> np.ndarray:
    """Polynomial of each shingle's word hashes mod 2^64, plus its length, through fmix64."""
    combined = np.zeros(len(start), dtype=np.uint64)
    last = max(len(word_hashes) - 1, 0)
    for j in range(n):
        following = word_hashes[np.minimum(start + j, last)]
        combined = np.where(j < length, combined * _WORD_MULTIPLIER + following, combined)
    return fmix(combined + length.astype(np.uint64), 64)


@lru_cache(maxsize=1)
def _codepoint_tables() -> tuple[np.ndarray, np.ndarray]:
    r"""The tokenizer's tables, computed with the Arrow kernels of `_normalized_words` run once
    over every codepoint: `lower[c]` is `utf8_lower`'s codepoint for c (one codepoint each: Arrow
    lowercases codepoint by codepoint, with no context), and `classes[c]` says whether the
    `\p{P}` regex removes c, `utf8_split_whitespace` splits on it, or neither. ~0.3 s a process."""
    codepoints = np.r_[np.arange(0, 0xD800), np.arange(0xE000, 0x110000)].astype(np.uint32)
    utf8 = codepoints.tobytes().decode("utf-32-le").encode()
    offsets = pa.py_buffer(np.array([0, len(utf8)], dtype=np.int64))
    every = pa.LargeStringArray.from_buffers(1, offsets, pa.py_buffer(utf8))

    def codepoints_of(array: pa.Array) -> np.ndarray:
        text = "".join(array.to_pylist())
        return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)

    lower = np.arange(0x110000, dtype=np.int32)
    lowered = codepoints_of(pc.utf8_lower(every))
    if len(lowered) != len(codepoints):
        raise RuntimeError("Arrow's utf8_lower changed the number of codepoints")
    lower[codepoints] = lowered
    classes = np.full(0x110000, kernels().WORD, dtype=np.uint8)
    kept = codepoints_of(pc.replace_substring_regex(every, _PUNCTUATION, ""))
    classes[_missing(codepoints, kept)] = kernels().PUNCTUATION
    not_space = codepoints_of(pc.list_flatten(pc.utf8_split_whitespace(every)))
    classes[_missing(codepoints, not_space)] = kernels().SPACE
    return lower, classes


def _missing(codepoints: np.ndarray, found: np.ndarray) -> np.ndarray:
    """The codepoints not in `found`, by a lookup table (np.setdiff1d takes seconds here)."""
    seen = np.zeros(0x110000, dtype=bool)
    seen[found] = True
    return codepoints[~seen[codepoints]]


def utf8_buffers(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A large_string array's data bytes and its n+1 offsets into them."""
    _, offsets, data = texts.buffers()
    offsets = np.frombuffer(offsets, dtype=np.int64)[texts.offset : texts.offset + len(texts) + 1]
    data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, dtype=np.uint8)
    return data, offsets


def _batch_shingles(texts: Texts, n: int) -> tuple[np.ndarray, np.ndarray]:
    """All shingle hashes of a batch (uint64, document by document) and each document's
    offsets into them (n_docs + 1)."""
    data, offsets = utf8_buffers(as_string_array(texts))
    hashes, counts = kernels().word_hashes(data, offsets, *_codepoint_tables())
    return kernels().shingle_hashes(hashes, counts, n)


def shingles(text: str, n: int = 5) -> np.ndarray:
    """The set of hashed word n-grams of the normalized text: sorted unique uint64."""
    return np.unique(_batch_shingles([text], n)[0])


def shingle_bytes(text: str, n: int = 5) -> list[bytes]:
    """The shingles themselves (normalized words joined by one space), for datasketch."""
    normalized = normalize(text)
    if not normalized:
        return []
    words = normalized.split(" ")
    return [" ".join(words[i : i + n]).encode() for i in range(max(len(words) - n + 1, 1))]


def shingle_hash(shingle: bytes, bits: int = 64) -> int:
    """The hash `shingles` gives one shingle; datasketch's `hashfunc` for equal signatures."""
    words = shingle.split(b" ")
    word_hashes = np.array([xxhash.xxh64_intdigest(w) for w in words], dtype=np.uint64)
    length = np.array([len(words)])
    full = _combine(word_hashes, np.zeros(1, dtype=np.int64), length, len(words))
    return int(full[0]) & ((1 << bits) - 1)


# ---------------------------------------------------------------- signatures


@lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch 2.0's affine permutations h -> a*h + b mod 2^bits (a odd), same RNG draws."""
    dtype = _DTYPES[bits]
    rng = np.random.RandomState(seed)
    a = rng.randint(0, 1 << (bits - 1), num_perm, dtype=dtype) * dtype(2) + dtype(1)
    b = rng.randint(0, 1 << bits, num_perm, dtype=dtype)
    return a, b


def _signatures_cpu(hashes: np.ndarray, doc_offsets: np.ndarray, p: MinHashParams) -> np.ndarray:
    """Per-document minimum of every permutation, in the compiled fold."""
    a, b = permutations(p.num_perm, p.seed, p.hash_bits)
    fold = kernels().signatures64 if p.hash_bits == 64 else kernels().signatures32
    return fold(hashes, doc_offsets, a, b, _PERM_BLOCK[p.hash_bits])


def _torch_fmix(values, bits: int):
    """`fmix` in torch int64: wrapping products, masked to 32 bits or logical 64-bit shifts."""
    mask = (1 << bits) - 1
    s1, m1, s2, m2, s3 = _FMIX[bits]

    def shift(x, s):
        return (x >> s) & ((1 << (64 - s)) - 1)

    def times(x, m):
        return (x * _signed64(m)) & mask if bits == 32 else x * _signed64(m)

    values = times(values ^ shift(values, s1), m1)
    values = times(values ^ shift(values, s2), m2)
    return values ^ shift(values, s3)


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _signatures_torch(
    hashes: np.ndarray, doc_offsets: np.ndarray, p: MinHashParams, device: str
) -> np.ndarray:
    """The permutations in torch int64 (CUDA has no uint64 arithmetic), a chunk of the batch's
    shingles at a time: 64-bit values are compared with their sign bit flipped so that signed
    order equals unsigned order."""
    import torch

    n_docs = len(doc_offsets) - 1
    doc = np.repeat(np.arange(n_docs), np.diff(doc_offsets))
    bits = p.hash_bits
    a, b = (
        torch.as_tensor(x.astype(np.uint64).view(np.int64), device=device)
        for x in permutations(p.num_perm, p.seed, bits)
    )
    inputs = hashes if bits == 64 else hashes & np.uint64(0xFFFFFFFF)
    premixed = _torch_fmix(torch.as_tensor(inputs.view(np.int64), device=device), bits)
    doc_index = torch.as_tensor(doc, device=device)
    sign = -(1 << 63) if bits == 64 else 0
    largest = (1 << 63) - 1 if bits == 64 else (1 << 32) - 1  # all-ones, sign-flipped for 64
    signatures = torch.full((n_docs, len(a)), largest, dtype=torch.int64, device=device)
    rows = max(1, _CHUNK_ELEMENTS * (64 if device.startswith("cuda") else 1) // len(a))
    for lo in range(0, len(premixed), rows):
        permuted = premixed[lo : lo + rows, None] * a + b
        ordered = permuted & 0xFFFFFFFF if bits == 32 else permuted ^ sign
        index = doc_index[lo : lo + rows, None].expand_as(ordered)
        signatures.scatter_reduce_(0, index, ordered, reduce="amin", include_self=True)
    unsigned = (signatures ^ sign).cpu().numpy()
    return unsigned.view(np.uint64) if bits == 64 else unsigned.astype(np.uint32)


def minhash_signatures_torch(texts: Texts, p: MinHashParams, device: str = "cuda") -> np.ndarray:
    """`minhash_signatures` with the permutations in torch on `device`; equal to the CPU path."""
    return _signatures_torch(*_batch_shingles(texts, p.ngram), p, device)


def _use_cuda(device: str) -> bool:
    if device == "cpu":
        return False
    if device == "cuda":
        return True
    import torch

    return torch.cuda.is_available()


def minhash_signatures(texts: Texts, p: MinHashParams = MinHashParams()) -> np.ndarray:
    """(n_docs, bands*rows) uint32 or uint64 MinHash signatures, equal to datasketch's.

    A document with no words gets the all-max signature of an empty datasketch MinHash (so
    all empty documents fall in one cluster, as their normalized texts are equal)."""
    if _use_cuda(p.device):
        return minhash_signatures_torch(texts, p, "cuda")
    return _signatures_cpu(*_batch_shingles(texts, p.ngram), p)


# ---------------------------------------------------------------- LSH


def lsh_band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n_docs, bands) uint64: one hash per band of `rows` consecutive signature values.

    Two documents share a band key iff (up to 2^-64 collisions) the band's rows are equal."""
    n_docs = signatures.shape[0]
    if signatures.shape[1] != bands * rows:
        raise ValueError(f"signatures have {signatures.shape[1]} hashes, not bands*rows={bands * rows}")
    grouped = signatures.reshape(n_docs, bands, rows)
    keys = np.zeros((n_docs, bands), dtype=np.uint64)
    for r in range(rows):
        keys = keys * _WORD_MULTIPLIER + grouped[:, :, r].astype(np.uint64)
    return fmix(keys, 64)


def to_lean_minhash(signature_row: np.ndarray, seed: int = 1) -> LeanMinHash:
    """One signature as a datasketch LeanMinHash, to query with datasketch's MinHashLSH.
    datasketch is imported here, not at the top: it pulls in scipy, ~0.35 s in every process."""
    from datasketch import LeanMinHash

    bits = 32 if signature_row.dtype == np.uint32 else 64
    return LeanMinHash(seed=seed, hashvalues=signature_row, scheme=_SCHEMES[bits])
