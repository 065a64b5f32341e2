"""MinHash signatures: datasketch equality, the torch path, shingling edge cases, band keys,
and the exact (normalized text / URL) keys."""
import importlib.util
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import xxhash
from datasketch import MinHash, MinHashLSH
from pydantic import ValidationError

from refinery.dedup import _kernels, minhash
from refinery.dedup.exact import (
    exact_text_key,
    exact_text_keys,
    keep_smallest_id_per_key,
    normalize_url,
    url_key,
    url_keys,
)
from refinery.dedup.minhash import (
    FINEWEB_MINHASH,
    MinHashParams,
    lsh_band_keys,
    minhash_signatures,
    minhash_signatures_torch,
    normalize,
    normalize_texts,
    shingle_bytes,
    shingle_hash,
    shingles,
    to_lean_minhash,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
GROUND_TRUTH = DATA / "article-extraction-benchmark" / "ground-truth.json"
EDGE_CASES = ["", "   ", "?!.", "one", "Two words", "a b c d e", "A, b; C: d! e? f", None]


@pytest.fixture(scope="module")
def pages() -> list[str]:
    """30 real article texts, the longest included (it spans several permutation chunks)."""
    if not GROUND_TRUTH.exists():
        pytest.skip(f"real pages not found at {GROUND_TRUTH}")
    pages = json.loads(GROUND_TRUTH.read_text()).values()
    texts = sorted((v["articleBody"] for v in pages), key=len)
    return texts[::6][:29] + texts[-1:]


@lru_cache(maxsize=None)
def cached_shingle_hash(shingle: bytes) -> int:
    return shingle_hash(shingle)


def datasketch_signatures(texts, num_perm: int, seed: int, bits: int) -> np.ndarray:
    """What datasketch 2.0 computes for the same shingles and shingle hash."""
    sketches = MinHash.bulk(
        [shingle_bytes(t or "") for t in texts],
        num_perm=num_perm,
        seed=seed,
        hashfunc=lambda s: cached_shingle_hash(s) & ((1 << bits) - 1),
        scheme=f"affine{bits}",
    )
    return np.array([m.hashvalues for m in sketches])


@pytest.mark.parametrize("bits", [32, 64])
@pytest.mark.parametrize("num_perm,seed", [(128, 1), (300, 42)])
def test_signatures_equal_datasketch(pages, bits, num_perm, seed):
    texts = pages + EDGE_CASES
    params = MinHashParams(bands=num_perm, rows=1, seed=seed, hash_bits=bits)
    ours = minhash_signatures(texts, params)
    assert ours.dtype == np.dtype(f"uint{bits}")
    np.testing.assert_array_equal(ours, datasketch_signatures(texts, num_perm, seed, bits))


@pytest.mark.parametrize("bits", [32, 64])
def test_torch_cpu_equals_numpy(pages, bits):
    pytest.importorskip("torch")
    params = MinHashParams(bands=30, rows=10, seed=3, hash_bits=bits)
    texts = pages + EDGE_CASES
    on_torch = minhash_signatures_torch(texts, params, "cpu")
    np.testing.assert_array_equal(on_torch, minhash_signatures(texts, params))


def test_chunking_does_not_change_signatures(pages, monkeypatch):
    params = MinHashParams(bands=45, rows=20)
    whole = minhash_signatures(pages, params)
    monkeypatch.setattr(minhash, "_PERM_BLOCK", {32: 7, 64: 7})  # blocks of 7 permutations
    np.testing.assert_array_equal(minhash_signatures(pages, params), whole)
    monkeypatch.setattr(minhash, "_CHUNK_ELEMENTS", 3 * params.num_perm)  # torch: 3 shingles a chunk
    if importlib.util.find_spec("torch"):
        np.testing.assert_array_equal(minhash_signatures_torch(pages, params, "cpu"), whole)


def test_signatures_are_reproducible_from_the_seed(pages):
    a = minhash_signatures(pages[:5], MinHashParams(bands=10, rows=2, seed=5))
    b = minhash_signatures(pages[:5], MinHashParams(bands=10, rows=2, seed=5))
    c = minhash_signatures(pages[:5], MinHashParams(bands=10, rows=2, seed=6))
    np.testing.assert_array_equal(a, b)
    assert (a != c).mean() > 0.9


def test_batch_shape_does_not_change_a_document_signature(pages):
    params = MinHashParams(bands=16, rows=8)
    together = minhash_signatures(pages, params)
    alone = np.vstack([minhash_signatures([t], params) for t in pages[:4]])
    np.testing.assert_array_equal(together[:4], alone)


def test_normalize_lowercases_strips_unicode_punctuation_and_folds_whitespace():
    text = "  Hello,\tWORLD! It’s «fine» — ok.\n\n¿Qué?  "
    assert normalize(text) == "hello world its fine ok qué"
    assert normalize("") == "" and normalize(" ;; ") == ""
    assert normalize_texts(["A.B", None, "x\u3000y。"]) == ["ab", "", "x y"]


def test_shingles_of_short_and_empty_documents():
    assert len(shingles("")) == 0 and len(shingles("...")) == 0
    assert shingle_bytes("One, two.") == [b"one two"]
    np.testing.assert_array_equal(shingles("One, two."), [shingle_hash(b"one two")])
    assert shingle_bytes("a b c d e f") == [b"a b c d e", b"b c d e f"]
    expected = sorted(shingle_hash(s) for s in shingle_bytes("a b c d e f"))
    np.testing.assert_array_equal(shingles("a b c d e f"), np.array(expected, dtype=np.uint64))
    assert len(shingles("a b c d e a b c d e")) == 5  # repeats are one shingle of the set


def test_shingle_hash_depends_on_word_order_and_boundaries():
    hashes = {shingle_hash(s) for s in [b"a b", b"b a", b"ab", b"a b c", b"a bc", b"ab c"]}
    assert len(hashes) == 6


def test_empty_documents_get_the_empty_datasketch_signature():
    signatures = minhash_signatures(["", "!!"], MinHashParams(bands=4, rows=2))
    assert (signatures == np.iinfo(np.uint32).max).all()


def test_lsh_band_keys_match_iff_band_rows_match():
    rng = np.random.default_rng(0)
    signatures = rng.integers(0, 2**32, (3, 12), dtype=np.uint32)
    signatures[1, :4] = signatures[0, :4]  # band 0 of 3 x 4 rows
    signatures[2, 4:8] = signatures[0, 4:8]  # band 1
    keys = lsh_band_keys(signatures, bands=3, rows=4)
    assert keys.shape == (3, 3) and keys.dtype == np.uint64
    assert (keys[0] == keys[1]).tolist() == [True, False, False]
    assert (keys[0] == keys[2]).tolist() == [False, True, False]
    with pytest.raises(ValueError):
        lsh_band_keys(signatures, bands=5, rows=4)


def test_lean_minhash_queries_with_datasketch_lsh(pages):
    params = MinHashParams(bands=16, rows=8, seed=9)
    words = pages[20].split()
    edited = " ".join(words[:200] + ["zzz"] + words[201:])
    signatures = minhash_signatures([pages[20], edited, pages[21]], params)
    lean = [to_lean_minhash(row, params.seed) for row in signatures]
    lsh = MinHashLSH(num_perm=params.num_perm, params=(params.bands, params.rows))
    lsh.insert("original", lean[0])
    lsh.insert("other", lean[2])
    assert lsh.query(lean[1]) == ["original"]
    exact = len(set(shingle_bytes(pages[20])) & set(shingle_bytes(edited))) / len(
        set(shingle_bytes(pages[20])) | set(shingle_bytes(edited))
    )
    assert abs(lean[0].jaccard(lean[1]) - exact) < 0.15  # 128 hashes: sd ~0.03


def test_params_defaults_presets_and_validation():
    default = MinHashParams()
    assert (default.bands, default.rows, default.num_perm, default.ngram) == (450, 20, 9000, 5)
    assert (FINEWEB_MINHASH.bands, FINEWEB_MINHASH.rows, FINEWEB_MINHASH.hash_bits) == (14, 8, 64)
    bad_values = [{"bands": 0}, {"rows": -1}, {"ngram": 0}, {"partitions": 0}, {"seed": -1}]
    for bad in bad_values + [{"device": "tpu"}, {"hash_bits": 16}, {"band": 3}]:
        with pytest.raises(ValidationError):
            MinHashParams(**bad)


def test_exact_text_key_is_equal_iff_normalized_text_is_equal():
    assert exact_text_key("Hello,  World!") == exact_text_key("hello world")
    assert exact_text_key("HELLO\nworld.") == exact_text_key("hello world")
    assert exact_text_key("hello world") != exact_text_key("hello worlds")
    assert exact_text_key("hello world") == xxhash.xxh64_intdigest(b"hello world")
    texts = ["Hello,  World!", "hello world", "other text"]
    assert exact_text_keys(texts).tolist() == [exact_text_key(t) for t in texts]


def test_exact_dedup_removes_identical_normalized_texts():
    texts = ["Same text.", "other", "same   TEXT", "Other!", "unique"]
    doc_ids = np.array([5, 3, 2, 9, 1])
    keep = keep_smallest_id_per_key(exact_text_keys(texts), doc_ids)
    assert keep.tolist() == [False, True, True, False, True]
    shuffled = np.array([4, 2, 0, 3, 1])
    shuffled_keys = exact_text_keys([texts[i] for i in shuffled])
    np.testing.assert_array_equal(keep_smallest_id_per_key(shuffled_keys, doc_ids[shuffled]), keep[shuffled])


@pytest.mark.parametrize(
    "url,normalized",
    [
        ("HTTP://Example.COM/Path?Q=1#frag", "http://example.com/Path?Q=1"),
        ("https://example.com:443", "https://example.com/"),
        ("http://User@Example.com:8080/a", "http://User@example.com:8080/a"),
        ("https://example.com/a?b=2&a=1", "https://example.com/a?b=2&a=1"),
    ],
)
def test_normalize_url(url, normalized):
    assert normalize_url(url) == normalized


def test_url_keys():
    assert url_key("https://Example.com/a#x") == url_key("https://example.com/a")
    assert url_key("https://example.com/a?x=1") != url_key("https://example.com/a?x=2")
    assert url_keys(["https://a.com", "https://A.com/"]).tolist() == [url_key("https://a.com/")] * 2


def _compiled_word_hashes(texts) -> list[list[int]]:
    """The compiled tokenizer's word hashes, text by text."""
    data, offsets = minhash.utf8_buffers(minhash.as_string_array(texts))
    hashes, counts = _kernels.word_hashes(data, offsets, *minhash._codepoint_tables())
    ends = np.cumsum(counts)
    return [hashes[end - count : end].tolist() for end, count in zip(ends, counts)]


def _arrow_word_hashes(texts) -> list[list[int]]:
    """xxh64 of the words of `normalize_texts` (Arrow's kernels), text by text."""
    return [[xxhash.xxh64_intdigest(w.encode()) for w in t.split(" ") if w] for t in normalize_texts(texts)]


def test_compiled_tokenizer_is_normalize_texts(pages):
    tricky = [
        "İstanbul ȺB ΣΊΣΥΦΟΣ Straße ǅ",  # lowercasing that changes the UTF-8 length
        "a\u00a0b\u3000c\u2028d\u200be\tf\u0085g",  # Unicode spaces, and U+200B which is none
        "it’s «fine» — ok… ¿qué? 「引用」 foo‐bar 1,000.5",
        "emoji 😀 text 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 e\u0301 ",
        " ;; ", "...word...", "x", "",
    ]
    texts = pages + tricky + EDGE_CASES
    assert _compiled_word_hashes(texts) == _arrow_word_hashes(texts)


def test_compiled_tokenizer_agrees_with_arrow_on_every_codepoint():
    """Each codepoint between two letters and after a space: lowercased, dropped, split on or
    kept exactly as Arrow's kernels do (the tables come from them; this checks their use)."""
    codepoints = [c for c in range(0x110000) if not 0xD800 <= c < 0xE000]
    texts = ["".join(f"x{chr(c)}Y {chr(c)}" for c in codepoints[i : i + 4096]) for i in range(0, len(codepoints), 4096)]
    assert _compiled_word_hashes(texts) == _arrow_word_hashes(texts)


def test_compiled_xxh64_equals_xxhash():
    rng = np.random.default_rng(0)
    blobs = [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in [*range(70), 100, 1000, 4097]]
    data = np.frombuffer(b"".join(blobs), dtype=np.uint8)
    offsets = np.r_[0, np.cumsum([len(b) for b in blobs])].astype(np.int64)
    compiled = [_kernels.xxh64(data, lo, hi) for lo, hi in zip(offsets[:-1], offsets[1:])]
    assert compiled == [xxhash.xxh64_intdigest(b) for b in blobs]


def test_numba_is_imported_only_when_a_kernel_runs():
    """The driver and every filter-phase worker import the dedup params, not numba (~0.3 s of CPU
    each at start); the first signature computed imports it."""
    import subprocess
    import sys

    code = (
        "import sys, refinery.cli, refinery.pipeline, refinery.stages\n"
        "assert 'numba' not in sys.modules, 'numba imported at start'\n"
        "from refinery.dedup.minhash import MinHashParams, minhash_signatures\n"
        "minhash_signatures(['one two three four five six'], MinHashParams())\n"
        "assert 'numba' in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
