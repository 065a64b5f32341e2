"""Compiled (numba) loops of the dedup stages: for MinHash, tokenizing, word and shingle hashing
and the permutations; for substring dedup, tokenizing, window hashing and verification. Each is
one pass over its input with no batch-sized temporaries. Imported on first use
(`refinery.dedup.kernels()`), not by the processes that only read the stages' params.

Every function here reproduces, bit for bit, a definition stated elsewhere with Arrow or numpy:
- `word_hashes` tokenizes as Arrow's `utf8_lower`, then removing `\\p{P}` (RE2), then
  `utf8_split_whitespace`, with per-codepoint tables computed from those very kernels
  (`minhash._codepoint_tables`), so it cannot drift from `normalize_texts`, and hashes each
  word with `xxh64`, xxHash's XXH64 with seed 0 (the `xxhash` package's `xxh64_intdigest`);
- `shingle_hashes` is `minhash._combine` (polynomial of word hashes mod 2^64 + length, fmix64);
- `signatures32/64` are datasketch 2.0's affine32/affine64 permutations and min.
Arithmetic is on uint64/uint32 only: numba turns a uint64 mixed with an int64 into a float,
so every constant is typed.
"""
from __future__ import annotations

import numpy as np
from numba import njit

_U8 = np.uint64(8)
_P1 = np.uint64(11400714785074694791)
_P2 = np.uint64(14029467366897019727)
_P3 = np.uint64(1609587929392839161)
_P4 = np.uint64(9650029242287828579)
_P5 = np.uint64(2870177450012600261)
_WORD_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_M64_1 = np.uint64(0xFF51AFD7ED558CCD)
_M64_2 = np.uint64(0xC4CEB9FE1A85EC53)
_M32_1 = np.uint32(0x85EBCA6B)
_M32_2 = np.uint32(0xC2B2AE35)

# Codepoint classes of the tokenizer's table (after lowercasing).
WORD, PUNCTUATION, SPACE = 0, 1, 2


@njit(cache=True, inline="always")
def _rotl(x, r):
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


@njit(cache=True, inline="always")
def _read_le(data, i, n):
    """The n bytes of data at i as a little-endian unsigned integer (n = 4 or 8)."""
    v = np.uint64(0)
    for j in range(n - 1, -1, -1):
        v = (v << _U8) | np.uint64(data[i + j])
    return v


@njit(cache=True, inline="always")
def _round(acc, lane):
    acc = acc + lane * _P2
    return _rotl(acc, 31) * _P1


@njit(cache=True, inline="always")
def _merge_round(acc, lane):
    acc = acc ^ _round(np.uint64(0), lane)
    return acc * _P1 + _P4


@njit(cache=True)
def xxh64(data, start, end):
    """XXH64 (seed 0) of data[start:end], data a uint8 array."""
    n = end - start
    i = start
    if n >= 32:
        v1 = _P1 + _P2
        v2 = _P2
        v3 = np.uint64(0)
        v4 = np.uint64(0) - _P1
        while i + 32 <= end:
            v1 = _round(v1, _read_le(data, i, 8))
            v2 = _round(v2, _read_le(data, i + 8, 8))
            v3 = _round(v3, _read_le(data, i + 16, 8))
            v4 = _round(v4, _read_le(data, i + 24, 8))
            i += 32
        h = _rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)
        h = _merge_round(h, v1)
        h = _merge_round(h, v2)
        h = _merge_round(h, v3)
        h = _merge_round(h, v4)
    else:
        h = _P5
    h = h + np.uint64(n)
    while i + 8 <= end:
        h = h ^ _round(np.uint64(0), _read_le(data, i, 8))
        h = _rotl(h, 27) * _P1 + _P4
        i += 8
    if i + 4 <= end:
        h = h ^ (_read_le(data, i, 4) * _P1)
        h = _rotl(h, 23) * _P2 + _P3
        i += 4
    while i < end:
        h = h ^ (np.uint64(data[i]) * _P5)
        h = _rotl(h, 11) * _P1
        i += 1
    h = h ^ (h >> np.uint64(33))
    h = h * _P2
    h = h ^ (h >> np.uint64(29))
    h = h * _P3
    return h ^ (h >> np.uint64(32))


@njit(cache=True, inline="always")
def fmix64(h):
    h = h ^ (h >> np.uint64(33))
    h = h * _M64_1
    h = h ^ (h >> np.uint64(33))
    h = h * _M64_2
    return h ^ (h >> np.uint64(33))


@njit(cache=True, inline="always")
def fmix32(h):
    h = h ^ (h >> np.uint32(16))
    h = np.uint32(h * _M32_1)
    h = h ^ (h >> np.uint32(13))
    h = np.uint32(h * _M32_2)
    return h ^ (h >> np.uint32(16))


@njit(cache=True)
def word_hashes(data, text_offsets, lower, classes):
    """xxh64 of every word of the UTF-8 texts in `data` (delimited by `text_offsets`), after
    lowercasing and dropping punctuation, splitting on whitespace; and each text's word count.
    `lower` maps a codepoint to its lowercase codepoint, `classes` a lowercase codepoint to
    WORD, PUNCTUATION or SPACE. A word is hashed as soon as it ends, from a scratch buffer that
    stays in L1: one pass over the text, with no array of words in between."""
    n_texts = len(text_offsets) - 1
    longest = 0
    for t in range(n_texts):
        longest = max(longest, text_offsets[t + 1] - text_offsets[t])
    word = np.empty(2 * longest + 4, dtype=np.uint8)  # lowercasing grows a codepoint by <= 1 byte
    hashes = np.empty(len(data) // 2 + n_texts + 1, dtype=np.uint64)  # a word and a separator
    counts = np.zeros(n_texts, dtype=np.int64)
    n_words = 0
    for t in range(n_texts):
        first = n_words
        pos = 0
        i = text_offsets[t]
        end = text_offsets[t + 1]
        while i < end:
            b0 = np.int64(data[i])
            if b0 < 0x80:
                c = b0
                i += 1
            elif b0 < 0xE0:
                c = ((b0 & 0x1F) << 6) | (np.int64(data[i + 1]) & 0x3F)
                i += 2
            elif b0 < 0xF0:
                c = ((b0 & 0x0F) << 12) | ((np.int64(data[i + 1]) & 0x3F) << 6) | (np.int64(data[i + 2]) & 0x3F)
                i += 3
            else:
                c = (
                    ((b0 & 0x07) << 18)
                    | ((np.int64(data[i + 1]) & 0x3F) << 12)
                    | ((np.int64(data[i + 2]) & 0x3F) << 6)
                    | (np.int64(data[i + 3]) & 0x3F)
                )
                i += 4
            c = np.int64(lower[c])
            kind = classes[c]
            if kind == PUNCTUATION:
                continue
            if kind == SPACE:
                if pos > 0:
                    hashes[n_words] = xxh64(word, 0, pos)
                    n_words += 1
                    pos = 0
                continue
            if c < 0x80:
                word[pos] = c
                pos += 1
            elif c < 0x800:
                word[pos] = 0xC0 | (c >> 6)
                word[pos + 1] = 0x80 | (c & 0x3F)
                pos += 2
            elif c < 0x10000:
                word[pos] = 0xE0 | (c >> 12)
                word[pos + 1] = 0x80 | ((c >> 6) & 0x3F)
                word[pos + 2] = 0x80 | (c & 0x3F)
                pos += 3
            else:
                word[pos] = 0xF0 | (c >> 18)
                word[pos + 1] = 0x80 | ((c >> 12) & 0x3F)
                word[pos + 2] = 0x80 | ((c >> 6) & 0x3F)
                word[pos + 3] = 0x80 | (c & 0x3F)
                pos += 4
        if pos > 0:
            hashes[n_words] = xxh64(word, 0, pos)
            n_words += 1
        counts[t] = n_words - first
    return hashes[:n_words], counts


@njit(cache=True)
def shingle_hashes(hashes, counts, n):
    """Each document's shingle hashes (`minhash._combine`) and their offsets per document.

    A document shorter than n words has one shingle of all its words; an empty one has none."""
    n_docs = len(counts)
    doc_offsets = np.zeros(n_docs + 1, dtype=np.int64)
    for d in range(n_docs):
        c = counts[d]
        doc_offsets[d + 1] = doc_offsets[d] + (c - n + 1 if c >= n else min(c, 1))
    out = np.empty(doc_offsets[n_docs], dtype=np.uint64)
    first_word = 0
    for d in range(n_docs):
        c = counts[d]
        length = min(c, n)
        for s in range(doc_offsets[d + 1] - doc_offsets[d]):
            combined = np.uint64(0)
            for j in range(length):
                combined = combined * _WORD_MULTIPLIER + hashes[first_word + s + j]
            out[doc_offsets[d] + s] = fmix64(combined + np.uint64(length))
        first_word += c
    return out, doc_offsets


@njit(cache=True)
def _fold4_64(row, a, b, h0, h1, h2, h3):
    """row = min(row, a*h + b) over four shingles at once: one load and store of row per four.
    Selects, not `min()`, so that LLVM vectorizes the loop."""
    for k in range(row.shape[0]):
        ak = a[k]
        bk = b[k]
        v0 = h0 * ak + bk
        v1 = h1 * ak + bk
        v2 = h2 * ak + bk
        v3 = h3 * ak + bk
        v0 = v0 if v0 < v1 else v1
        v2 = v2 if v2 < v3 else v3
        v0 = v0 if v0 < v2 else v2
        r = row[k]
        row[k] = v0 if v0 < r else r


@njit(cache=True)
def _fold1_64(row, a, b, h):
    for k in range(row.shape[0]):
        v = h * a[k] + b[k]
        r = row[k]
        row[k] = v if v < r else r


@njit(cache=True)
def _fold4_32(row, a, b, h0, h1, h2, h3):
    for k in range(row.shape[0]):
        ak = a[k]
        bk = b[k]
        v0 = np.uint32(np.uint32(h0 * ak) + bk)
        v1 = np.uint32(np.uint32(h1 * ak) + bk)
        v2 = np.uint32(np.uint32(h2 * ak) + bk)
        v3 = np.uint32(np.uint32(h3 * ak) + bk)
        v0 = v0 if v0 < v1 else v1
        v2 = v2 if v2 < v3 else v3
        v0 = v0 if v0 < v2 else v2
        r = row[k]
        row[k] = v0 if v0 < r else r


@njit(cache=True)
def _fold1_32(row, a, b, h):
    for k in range(row.shape[0]):
        v = np.uint32(np.uint32(h * a[k]) + b[k])
        r = row[k]
        row[k] = v if v < r else r


@njit(cache=True)
def _premix64(hashes):
    out = np.empty(len(hashes), dtype=np.uint64)
    for i in range(len(hashes)):
        out[i] = fmix64(hashes[i])
    return out


@njit(cache=True)
def _premix32(hashes):
    out = np.empty(len(hashes), dtype=np.uint32)
    for i in range(len(hashes)):
        out[i] = fmix32(np.uint32(hashes[i] & np.uint64(0xFFFFFFFF)))
    return out


def _fold_documents(fold4, fold1):
    """Per document, per block of `block` permutations (the signature row, a and b stay in
    L1), fold every shingle into the row, four at a time. One compiled function per hash width:
    numba cannot cache a function that takes other compiled functions as arguments."""

    def fold_documents(out, premixed, doc_offsets, a, b, block):
        k_all = len(a)
        for d in range(len(doc_offsets) - 1):
            lo = doc_offsets[d]
            hi = doc_offsets[d + 1]
            for k0 in range(0, k_all, block):
                k1 = min(k0 + block, k_all)
                row = out[d, k0:k1]
                aa = a[k0:k1]
                bb = b[k0:k1]
                i = lo
                while i + 4 <= hi:
                    fold4(row, aa, bb, premixed[i], premixed[i + 1], premixed[i + 2], premixed[i + 3])
                    i += 4
                while i < hi:
                    fold1(row, aa, bb, premixed[i])
                    i += 1
        return out

    return njit(fold_documents)


_fold_documents64 = _fold_documents(_fold4_64, _fold1_64)
_fold_documents32 = _fold_documents(_fold4_32, _fold1_32)


def signatures64(hashes, doc_offsets, a, b, block):
    """datasketch affine64: per document, min over its shingles of a*fmix64(h) + b mod 2^64."""
    out = np.full((len(doc_offsets) - 1, len(a)), np.uint64(0xFFFFFFFFFFFFFFFF), dtype=np.uint64)
    return _fold_documents64(out, _premix64(hashes), doc_offsets, a, b, block)


def signatures32(hashes, doc_offsets, a, b, block):
    """datasketch affine32: the same in uint32 over the low 32 bits of the shingle hashes."""
    out = np.full((len(doc_offsets) - 1, len(a)), np.uint32(0xFFFFFFFF), dtype=np.uint32)
    return _fold_documents32(out, _premix32(hashes), doc_offsets, a, b, block)


# ---------------------------------------------------------------- substring dedup (refinery.dedup.substring)

@njit(cache=True)
def substring_tokenize(data, offsets, classes):
    """Tokens of each UTF-8 text of `data` (delimited by `offsets`): byte and character start
    and end of each, relative to its text, and each text's token count. Two passes: count, then
    fill, so the arrays are exactly the token count long."""
    n_texts = len(offsets) - 1
    counts = np.zeros(n_texts, dtype=np.int64)
    bs = be = cs = ce = np.empty(0, dtype=np.int32)
    for fill in range(2):
        if fill:
            n = counts.sum()
            bs = np.empty(n, dtype=np.int32)
            be = np.empty(n, dtype=np.int32)
            cs = np.empty(n, dtype=np.int32)
            ce = np.empty(n, dtype=np.int32)
        k = 0
        for t in range(n_texts):
            i = offsets[t]
            end = offsets[t + 1]
            chars = 0
            state = 0  # as in token_spans
            found = 0
            while i < end:
                b0 = np.int64(data[i])
                if b0 < 0x80:
                    c, w = b0, 1
                elif b0 < 0xE0:
                    c, w = ((b0 & 0x1F) << 6) | (np.int64(data[i + 1]) & 0x3F), 2
                elif b0 < 0xF0:
                    c, w = ((b0 & 0x0F) << 12) | ((np.int64(data[i + 1]) & 0x3F) << 6) | (np.int64(data[i + 2]) & 0x3F), 3
                else:
                    c = ((b0 & 0x07) << 18) | ((np.int64(data[i + 1]) & 0x3F) << 12) | ((np.int64(data[i + 2]) & 0x3F) << 6) | (np.int64(data[i + 3]) & 0x3F)
                    w = 4
                kind = classes[c]
                if kind == 1:  # SPACE
                    state = 0
                elif kind == 2 or (kind == 0 and state != 1) or (kind == 3 and state == 0):
                    if fill:
                        bs[k] = i - offsets[t]
                        cs[k] = chars
                    k += 1
                    found += 1
                    state = 2 if kind == 2 else 1
                i += w
                chars += 1
                if fill and state != 0:
                    be[k - 1] = i - offsets[t]
                    ce[k - 1] = chars
            if not fill:
                counts[t] = found
    return bs, be, cs, ce, counts


_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd: the polynomial keeps every token's bits


@njit(cache=True)
def substring_token_hashes(data, offsets, bs, be, counts):
    """xxh64 of every token's UTF-8 bytes, text after text."""
    out = np.empty(len(bs), dtype=np.uint64)
    k = 0
    for t in range(len(counts)):
        for _ in range(counts[t]):
            out[k] = xxh64(data, offsets[t] + bs[k], offsets[t] + be[k])
            k += 1
    return out


@njit(cache=True)
def substring_window_hashes(tokens, counts, m):
    """Hash of every window of m consecutive tokens of every text: a polynomial of the token
    hashes mod 2^64, rolled one token at a time, finished with fmix64. Returns (hash, text
    index, token offset) per window."""
    total = 0
    for t in range(len(counts)):
        total += max(counts[t] - m + 1, 0)
    hashes = np.empty(total, dtype=np.uint64)
    text = np.empty(total, dtype=np.int64)
    pos = np.empty(total, dtype=np.int32)
    top = np.uint64(1)
    for _ in range(m - 1):
        top = top * _BASE
    k = 0
    first = 0
    for t in range(len(counts)):
        c = counts[t]
        if c >= m:
            h = np.uint64(0)
            for j in range(c):
                if j >= m:
                    h = h - tokens[first + j - m] * top
                h = h * _BASE + tokens[first + j]
                if j >= m - 1:
                    hashes[k] = fmix64(h)
                    text[k] = t
                    pos[k] = j - m + 1
                    k += 1
        first += c
    return hashes, text, pos


@njit(cache=True)
def substring_verify(data, base, bs, be, own, rdata, rbase, rbs, rbe, other, m):
    """For each candidate c, whether its m tokens (from token `own[c]` of the text at byte
    `base[c]` of `data`) equal its partner's (from token `other[c]` of the run at `rbase[c]`
    of `rdata`), byte for byte. A candidate one token after a verified one, with its partner
    one token after that one's, compares only its last token."""
    ok = np.zeros(len(own), dtype=np.bool_)
    for c in range(len(own)):
        follows = (
            c > 0 and ok[c - 1] and own[c] == own[c - 1] + 1 and other[c] == other[c - 1] + 1
            and base[c] == base[c - 1] and rbase[c] == rbase[c - 1]
        )
        good = True
        for j in range(m - 1 if follows else 0, m):
            a0 = base[c] + bs[own[c] + j]
            a1 = base[c] + be[own[c] + j]
            b0 = rbase[c] + rbs[other[c] + j]
            b1 = rbase[c] + rbe[other[c] + j]
            if a1 - a0 != b1 - b0:
                good = False
                break
            for x in range(a1 - a0):
                if data[a0 + x] != rdata[b0 + x]:
                    good = False
                    break
            if not good:
                break
        ok[c] = good
    return ok
