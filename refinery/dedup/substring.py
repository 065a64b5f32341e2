"""Exact substring dedup (RefinedWeb's MDR stage 8; Lee et al. 2022), without Ray.

The rule: every span of at least `min_tokens` consecutive tokens that occurs more than once in
the stage's scope is struck out, repeats inside one document included. `keep: none` (Lee et
al.'s recommendation) strikes every copy; `keep: first` keeps the copy in the smallest document
id (then the earliest offset). A token is struck when some window of `min_tokens` tokens that
covers it is struck, so spans are unions of windows. A line left empty goes; a document left
under `min_words` words is removed (`substring_dedup:too_few_words`).

Tokens are words (maximal runs of non-whitespace, `str.split`'s whitespace) in scripts written
with spaces, and single characters in scripts written without them (CJK, kana, Thai, Lao,
Khmer, Myanmar, Tibetan, Yi, fullwidth forms); a combining mark stays with the character before
it. Tokens compare exactly (case and punctuation count; the whitespace between them does not).
So cuts fall between tokens: never inside a word, a UTF-8 sequence or a grapheme's marks, and
"Alice wanted [to go to the] store" becomes "Alice wanted store", not Lee et al.'s
"Alice wantedstore".

RefinedWeb counted 50 GPT-2 tokens, ~38 English words (REFERENCE.md); GPT-2's BPE cannot be
loaded offline, so `min_tokens` defaults to 38 tokens of the above kind. For CJK text a
character is about one GPT-2 token or more, so 38 characters is a shorter span than RefinedWeb's
there: set `min_tokens` higher for such corpora.

How it scales (the Ray wiring is `refinery.dedup_ray`), in four passes over the documents:
1. `window_rows` (map): every window's 64-bit hash (a rolling polynomial over xxh64 token
   hashes, then fmix64), with its document, offset and the slot (group of input files) the
   document lives in; shuffled through storage by hash.
2. `candidates` (reduce, per hash partition): windows whose (scope group, hash) occurs twice or
   more. Each copy to strike gets a partner: the class's first copy (smallest doc id, offset),
   and the first copy itself (keep none) the second. Candidates go to their document's slot;
   requests for the partners' text go to the partners' slots.
3. `request_runs` (per slot): the requested windows' text, merged into runs, sent to the slots
   that asked.
4. `strike` (per slot): each candidate is verified token by token against its partner's text, so
   a hash collision can never strike unique text (it is counted as rejected instead); verified
   windows are struck.
Only the struck text travels in step 3 (each run once per asking slot), not every window's
text: shipping windows would be ~38x the corpus. Memory per task is bounded by a partition of
window rows (step 2) or a slot's candidates (steps 3-4), never by the corpus.
"""
from __future__ import annotations

import unicodedata
from functools import lru_cache
from typing import Literal, NamedTuple

import numpy as np
import pyarrow as pa
from pydantic import Field

from refinery.dedup import kernels
from refinery.dedup.minhash import as_string_array, utf8_buffers
from refinery.dedup.clusters import doc_ids_from_strings
from refinery.dedup.scope import PartitionCount, Partitions, Scope, groups
from refinery.params import Params

REASON_SHORT = "substring_dedup:too_few_words"  # the document is removed
REASON_STRUCK = "substring_dedup:spans_struck"  # kept, with spans struck (only in removed/)


class SubstringDedupParams(Params):
    """Exact substring dedup; defaults follow RefinedWeb and Lee et al. (module doc)."""

    stage: Literal["substring_dedup"] = "substring_dedup"
    min_tokens: int = Field(
        38, ge=2, description="shortest span struck; RefinedWeb's 50 GPT-2 tokens are ~38 English words (see the module doc)"
    )
    keep: Literal["none", "first"] = Field("none", description="none: strike every copy (Lee et al.); first: keep the copy in the smallest doc id")
    min_words: int = Field(50, ge=0, description="a document left with fewer words is removed (Gopher's minimum)")
    partitions: PartitionCount = Field("auto", description="shuffle partitions of the window rows (one per token): N, or auto (~1 GiB each, per scope group)")
    scope: Scope = "run"


WINDOW_SCHEMA = pa.schema([("part", pa.int32()), ("group", pa.int32()), ("hash", pa.uint64()), ("doc", pa.int64()), ("pos", pa.int32()), ("slot", pa.int32())])
CANDIDATE_SCHEMA = pa.schema([("slot", pa.int32()), ("doc", pa.int64()), ("pos", pa.int32()), ("partner_doc", pa.int64()), ("partner_pos", pa.int32())])
REQUEST_SCHEMA = pa.schema([("slot", pa.int32()), ("doc", pa.int64()), ("pos", pa.int32()), ("to_slot", pa.int32())])
RUN_SCHEMA = pa.schema(
    [("to_slot", pa.int32()), ("doc", pa.int64()), ("id", pa.string()), ("start", pa.int32()), ("char_start", pa.int64()), ("text", pa.large_string())]
)
SPAN_TYPE = pa.struct([("start", pa.int64()), ("end", pa.int64()), ("text", pa.string()), ("other_id", pa.string()), ("other_start", pa.int64())])
EDIT_SCHEMA = pa.schema(
    [
        ("doc", pa.int64()), ("text", pa.large_string()), ("n_words", pa.int64()), ("n_chars", pa.int64()),
        ("tokens_struck", pa.int64()), ("dropped", pa.bool_()), ("spans", pa.list_(SPAN_TYPE)), ("detail", pa.string()),
    ]
)

# ---------------------------------------------------------------- tokens

WORD, SPACE, OWN, MARK = 0, 1, 2, 3
# Blocks of scripts written without spaces between words: one token per character.
NO_SPACE_BLOCKS = [
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x0F00, 0x0FFF),  # Tibetan
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF), (0x19E0, 0x19FF),  # Khmer
    (0x2E80, 0x2FDF),  # CJK radicals, Kangxi radicals
    (0x3000, 0x303F),  # CJK symbols and punctuation
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3100, 0x312F), (0x31A0, 0x31FF),  # Bopomofo, CJK strokes, Katakana extension
    (0x3200, 0x4DBF),  # enclosed CJK, CJK compatibility, CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xA000, 0xA4CF),  # Yi
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFE30, 0xFE4F),  # CJK compatibility forms
    (0xFF00, 0xFF9F),  # fullwidth forms, halfwidth katakana
    (0x1B000, 0x1B16F),  # kana supplement and extensions
    (0x20000, 0x323AF),  # CJK extensions B-H
]


@lru_cache(maxsize=1)
def token_classes() -> np.ndarray:
    """uint8 class of every codepoint: SPACE (`str.isspace`), MARK (Unicode M*, and the zero
    width joiner), OWN (a no-space script), else WORD; in that order of precedence."""
    classes = np.full(0x110000, WORD, dtype=np.uint8)
    for lo, hi in NO_SPACE_BLOCKS:
        classes[lo : hi + 1] = OWN
    for c in range(0x300, 0x20000):  # no combining marks below U+0300 or in the CJK planes
        if unicodedata.category(chr(c))[0] == "M":
            classes[c] = MARK
    classes[0xE0100:0xE01F0] = MARK  # variation selectors supplement
    classes[0x200D] = MARK
    for c in range(0x3001):  # U+3000 is the largest whitespace codepoint
        if chr(c).isspace():
            classes[c] = SPACE
    return classes


def token_spans(text: str) -> list[tuple[int, int]]:
    """The tokens of `text` as (start, end) character offsets: the definition, in plain Python
    (the compiled `_kernels.substring_tokenize` must agree with it)."""
    classes = token_classes()
    spans: list[list[int]] = []
    state = 0  # 0: between tokens, 1: in a word, 2: in a no-space character (and its marks)
    for i, ch in enumerate(text):
        kind = classes[ord(ch)]
        if kind == SPACE:
            state = 0
        elif kind == OWN or (kind == WORD and state != 1) or (kind == MARK and state == 0):
            spans.append([i, i + 1])
            state = 2 if kind == OWN else 1
        else:  # a word character in a word, or a mark in any token
            spans[-1][1] = i + 1
    return [(a, b) for a, b in spans]


def tokenize(texts: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(UTF-8 data, text offsets, token byte starts, byte ends, char starts, char ends, counts)
    of a string array; token offsets are relative to their text."""
    data, offsets = utf8_buffers(as_string_array(texts))
    return (data, offsets, *kernels().substring_tokenize(data, offsets, token_classes()))


# ---------------------------------------------------------------- 1. windows (map side)

def token_hashes(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(xxh64 of every token, each text's token count)."""
    data, offsets, bs, be, _, _, counts = tokenize(texts)
    return kernels().substring_token_hashes(data, offsets, bs, be, counts), counts


def window_hashes(texts: pa.Array, min_tokens: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hash, row in `texts`, token offset) of every window of `min_tokens` tokens."""
    return kernels().substring_window_hashes(*token_hashes(texts), min_tokens)


def window_rows(texts: pa.Array, docs: np.ndarray, groups: np.ndarray, slot: int, p: SubstringDedupParams,
                partitions: Partitions | None = None) -> pa.Table:
    """The map side: one row per window (WINDOW_SCHEMA), with the shuffle partition of its hash
    within its scope group (`partitions`; default: an integer `p.partitions`, or one)."""
    hashes, row, pos = window_hashes(texts, p.min_tokens)
    if partitions is None:
        partitions = Partitions.shared(p.partitions if p.partitions != "auto" else 1, int(groups.max(initial=0)) + 1)
    part = partitions.of(groups[row], hashes).astype(np.int32)
    slots = np.full(len(hashes), slot, dtype=np.int32)
    return pa.table([part, groups[row], hashes, docs[row], pos, slots], schema=WINDOW_SCHEMA)


# ---------------------------------------------------------------- 2. candidates (reduce side)


def _unique_rows(*columns: np.ndarray) -> np.ndarray:
    """Indices of the first of each distinct row of the given columns."""
    if not len(columns[0]):
        return np.empty(0, dtype=np.int64)
    order = np.lexsort(columns[::-1])
    differs = np.zeros(len(order), dtype=bool)
    differs[0] = True
    for c in columns:
        s = c[order]
        differs[1:] |= s[1:] != s[:-1]
    return order[differs]


def candidates(rows: pa.Table, keep: str) -> tuple[pa.Table, pa.Table]:
    """Reduce one hash partition of window rows: (candidates, requests). A class is the windows
    of one (group, hash); a class of two or more is a candidate repeat. Its first copy (smallest
    doc id, then offset) is the partner of every other copy, and (keep none) the second copy is
    the first's. Requests ask each partner's slot to send the partner window's text to the
    slots of the copies that name it, once per slot."""
    g, h, d, p, s = (rows.column(c).to_numpy() for c in ("group", "hash", "doc", "pos", "slot"))
    order = np.lexsort((p, d, h, g))
    g, h, d, p, s = g[order], h[order], d[order], p[order], s[order]
    first = np.ones(len(h), dtype=bool)
    first[1:] = (g[1:] != g[:-1]) | (h[1:] != h[:-1])
    cls = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    repeated = np.diff(np.r_[starts, len(h)])[cls] >= 2
    copy = np.flatnonzero(repeated & ~first)
    partner = starts[cls[copy]]
    if keep == "none":
        firsts = np.flatnonzero(repeated & first)
        copy, partner = np.r_[copy, firsts], np.r_[partner, firsts + 1]
    cand = pa.table([s[copy], d[copy], p[copy], d[partner], p[partner]], schema=CANDIDATE_SCHEMA)
    once = _unique_rows(d[partner], p[partner], s[copy])
    req = pa.table([s[partner][once], d[partner][once], p[partner][once], s[copy][once]], schema=REQUEST_SCHEMA)
    return cand, req


# ---------------------------------------------------------------- 3. partners' text


def request_runs(batch: pa.Table, docs: np.ndarray, requests: pa.Table, min_tokens: int) -> pa.Table:
    """The text of the requested windows of the batch's documents, as runs (RUN_SCHEMA): the
    requested windows of a document for one slot, merged where they overlap or touch, each run
    the document's own text from its first token's start to its last token's end."""
    req_doc = requests.column("doc").to_numpy()
    mine = np.isin(req_doc, docs)
    if not mine.any():
        return RUN_SCHEMA.empty_table()
    doc, pos, to = req_doc[mine], requests.column("pos").to_numpy()[mine], requests.column("to_slot").to_numpy()[mine]
    order = np.lexsort((pos, to, doc))
    doc, pos, to = doc[order], pos[order], to[order]
    new = np.ones(len(doc), dtype=bool)
    new[1:] = (doc[1:] != doc[:-1]) | (to[1:] != to[:-1]) | (pos[1:] > pos[:-1] + min_tokens)
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:], len(doc)] - 1
    run_doc, run_to, first_tok, last_tok = doc[starts], to[starts], pos[starts], pos[ends] + min_tokens - 1
    tok = _tokens_of(batch, docs, run_doc)
    ids = batch.column("id").to_pylist()
    char_start = tok.cs[tok.first + first_tok]
    char_end = tok.ce[tok.first + last_tok]
    return pa.table(
        [
            run_to.astype(np.int32), run_doc, [ids[r] for r in tok.row], first_tok.astype(np.int32), char_start.astype(np.int64),
            pa.array([tok.texts[r][a:b] for r, a, b in zip(tok.row.tolist(), char_start.tolist(), char_end.tolist())], pa.large_string()),
        ],
        schema=RUN_SCHEMA,
    )


class _Tokens(NamedTuple):
    """The tokens of some documents of a batch, for a list of wanted documents (with repeats):
    per wanted one, its row in the batch, its first token and token count in the arrays, and
    its text's first byte in `data`; the texts as Python strings by row."""

    row: np.ndarray
    first: np.ndarray
    count: np.ndarray
    byte_base: np.ndarray
    texts: dict
    data: np.ndarray
    bs: np.ndarray
    be: np.ndarray
    cs: np.ndarray
    ce: np.ndarray


def _tokens_of(batch: pa.Table, docs: np.ndarray, wanted: np.ndarray) -> _Tokens:
    order = np.argsort(docs, kind="stable")
    rows = order[np.searchsorted(docs, wanted, sorter=order)]
    distinct, inverse = np.unique(rows, return_inverse=True)
    sub = batch.column("text").take(pa.array(distinct))
    data, offsets, bs, be, cs, ce, counts = tokenize(sub)
    first = np.r_[0, np.cumsum(counts)[:-1]].astype(np.int64)
    texts = dict(zip(distinct.tolist(), sub.to_pylist()))
    return _Tokens(rows, first[inverse], counts[inverse], offsets[:-1][inverse], texts, data, bs, be, cs, ce)


# ---------------------------------------------------------------- 4. verify and strike


def strike(batch: pa.Table, docs: np.ndarray, cand: pa.Table, runs: pa.Table, p: SubstringDedupParams) -> tuple[pa.Table, int]:
    """Verify the candidates of the batch's documents against their partners' text (`runs`),
    and cut the verified windows out: (one EDIT_SCHEMA row per document with a struck token,
    the number of candidates that failed verification)."""
    m = p.min_tokens
    mine = np.isin(cand.column("doc").to_numpy(), docs)
    if not mine.any():
        return EDIT_SCHEMA.empty_table(), 0
    cand = cand.filter(pa.array(mine))
    c_doc, c_pos, o_doc, o_pos = (cand.column(c).to_numpy() for c in ("doc", "pos", "partner_doc", "partner_pos"))
    tok = _tokens_of(batch, docs, c_doc)
    own = tok.first + c_pos
    order = np.argsort(own, kind="stable")  # by document, then offset: what substring_verify's shortcut needs
    own, c_pos, o_doc, o_pos = own[order], c_pos[order], o_doc[order], o_pos[order].astype(np.int64)
    row, first, count, own_base = tok.row[order], tok.first[order], tok.count[order], tok.byte_base[order]

    # each candidate's partner run: the run of the partner document that holds the partner window
    runs = runs.filter(pa.array(np.isin(runs.column("doc").to_numpy(), o_doc)))  # this batch's partners only
    rdata, roffsets, rbs, rbe, rcs, _, rcounts = tokenize(runs.column("text"))
    r_doc, r_start = runs.column("doc").to_numpy(), runs.column("start").to_numpy().astype(np.int64)
    r = _find_runs(r_doc, r_start, o_doc, o_pos)
    rel = o_pos - r_start[np.maximum(r, 0)] if len(r_start) else np.zeros(len(r), np.int64)
    found = (r >= 0) & (rel >= 0) & (rel + m <= (rcounts[np.maximum(r, 0)] if len(rcounts) else 0))
    r = np.where(found, r, 0)
    r_first = np.r_[0, np.cumsum(rcounts)[:-1]].astype(np.int64)
    other = np.where(found, r_first[r] + rel, 0) if len(rcounts) else np.zeros(len(r), np.int64)
    verified = found.copy()
    if found.any():
        idx = np.flatnonzero(found)
        verified[idx] = kernels().substring_verify(tok.data, own_base[idx], tok.bs, tok.be, own[idx], rdata, roffsets[r[idx]], rbs, rbe, other[idx], m)
    rejected = int(len(verified) - verified.sum())

    # struck tokens: the union of the verified windows
    delta = np.zeros(len(tok.cs) + 1, dtype=np.int64)
    np.add.at(delta, own[verified], 1)
    np.add.at(delta, own[verified] + m, -1)
    struck = np.cumsum(delta[:-1]) > 0
    r_ids, r_char = runs.column("id").to_pylist(), runs.column("char_start").to_numpy()
    partner = {}  # (row, token offset) of a verified window -> (partner's id, partner's char offset)
    for w_row, pos, run, o in zip(row[verified].tolist(), c_pos[verified].tolist(), r[verified].tolist(), other[verified].tolist()):
        partner[(w_row, pos)] = (r_ids[run], int(r_char[run] + rcs[o]))
    out = {name: [] for name in EDIT_SCHEMA.names}
    ids = cand.column("doc").to_numpy()[order]
    done = set()
    for k in np.flatnonzero(verified).tolist():
        w_row = int(row[k])
        if w_row in done:
            continue
        done.add(w_row)
        lo, n = int(first[k]), int(count[k])
        text, mask = tok.texts[w_row], struck[lo : lo + n]
        cs, ce = tok.cs[lo : lo + n], tok.ce[lo : lo + n]
        new = strike_text(text, cs, ce, mask)
        n_words = len(new.split())
        spans = []
        for a, b in _true_runs(mask):
            other_id, other_start = partner[(w_row, a)]
            start, end = int(cs[a]), int(ce[b - 1])
            spans.append({"start": start, "end": end, "text": text[start:end], "other_id": other_id, "other_start": other_start})
        dropped = n_words < p.min_words
        detail = f"{int(mask.sum())} tokens struck in {len(spans)} spans, {n_words} words left" + (f" < {p.min_words}" if dropped else "")
        values = (int(ids[k]), None if dropped else new, n_words, len(new), int(mask.sum()), dropped, spans, detail)
        for name, value in zip(EDIT_SCHEMA.names, values):
            out[name].append(value)
    return pa.table(out, schema=EDIT_SCHEMA), rejected


def _find_runs(r_doc: np.ndarray, r_start: np.ndarray, doc: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """For each (doc, pos), the index of the run of `doc` with the largest start <= pos, or -1."""
    if not len(r_doc):
        return np.full(len(doc), -1, dtype=np.int64)
    order = np.lexsort((r_start, r_doc))
    names, dense = np.unique(r_doc[order], return_inverse=True)
    key = (dense.astype(np.int64) << 32) | r_start[order]
    at = np.minimum(np.searchsorted(names, doc), len(names) - 1)
    known = names[at] == doc
    i = np.searchsorted(key, (at.astype(np.int64) << 32) | pos, side="right") - 1
    ok = known & (i >= 0)
    ok[ok] &= dense[i[ok]] == at[ok]
    return np.where(ok, order[np.maximum(i, 0)], -1)


def _true_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    edges = np.flatnonzero(np.diff(np.r_[0, mask.astype(np.int8), 0]))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def strike_text(text: str, starts: np.ndarray, ends: np.ndarray, struck: np.ndarray) -> str:
    """`text` without its struck tokens (char offsets `starts`/`ends`). In a line, a run of
    struck tokens goes with the whitespace after it, so the kept tokens keep the separators they
    had ("a b [c d] e" -> "a b e"; CJK text stays unspaced). A line left without tokens goes, and
    so do the blank lines that would then pile up or open or close the text."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    newlines = np.flatnonzero(codes == 10)
    line_of = np.searchsorted(newlines, starts)
    line_start = np.r_[0, newlines + 1]
    touched = set(np.unique(line_of[struck]).tolist())
    first_of = dict(zip(*np.unique(line_of, return_index=True)))
    out: list[str] = []
    dropped = False  # a line was dropped since the last line with tokens was written
    for number, line in enumerate(text.split("\n")):
        if number in touched:
            lo = int(first_of[number])
            hi = lo + int(np.searchsorted(line_of[lo:], number, side="right"))
            kept = _cut_line(text, line_start[number], line_start[number] + len(line), starts[lo:hi], ends[lo:hi], struck[lo:hi])
            if kept is None:
                dropped = True
                continue
            line = kept
        if not line.strip():
            if dropped and (not out or not out[-1].strip()):
                continue
        else:
            dropped = False
        out.append(line)
    while dropped and out and not out[-1].strip():
        out.pop()
    return "\n".join(out)


def _cut_line(text: str, line_start: int, line_end: int, starts: np.ndarray, ends: np.ndarray, struck: np.ndarray) -> str | None:
    """One line's text without its struck tokens, or None when none of its tokens is left."""
    kept = _true_runs(~struck)
    if not kept:
        return None
    pieces = [text[line_start : starts[0]]]  # the line's leading whitespace
    for i, (a, b) in enumerate(kept):
        if i:
            prev = kept[i - 1][1] - 1  # the last kept token before this run, and the whitespace after it
            pieces.append(text[ends[prev] : starts[prev + 1]])
        pieces.append(text[starts[a] : ends[b - 1]])
    if kept[-1][1] == len(struck):
        pieces.append(text[ends[-1] : line_end])  # trailing whitespace, when the line's end is kept
    return "".join(pieces)


# ---------------------------------------------------------------- in one process


def dedup_in_memory(slots: list[pa.Table], p: SubstringDedupParams, group_of: dict[str, int] | None = None) -> tuple[pa.Table, int]:
    """The four passes in one process over tables of (id, text[, source]), each standing for a
    slot of the Ray phase, with the same routing by partition and slot: (the edits, the
    candidates rejected). For tests, and for a corpus that fits in memory."""
    docs = [doc_ids_from_strings(t.column("id").to_pylist()) for t in slots]
    sources = [t.column("source").to_pylist() if "source" in t.column_names else [""] * t.num_rows for t in slots]
    rows = pa.concat_tables(
        [WINDOW_SCHEMA.empty_table()] + [window_rows(t.column("text"), d, groups(src, group_of or {}), s, p) for s, (t, d, src) in enumerate(zip(slots, docs, sources))]
    )
    part = rows.column("part").to_numpy()
    found = [candidates(rows.filter(pa.array(part == q)), p.keep) for q in np.unique(part)]
    cand = pa.concat_tables([CANDIDATE_SCHEMA.empty_table()] + [c for c, _ in found])
    req = pa.concat_tables([REQUEST_SCHEMA.empty_table()] + [r for _, r in found])
    runs = pa.concat_tables([RUN_SCHEMA.empty_table()] + [request_runs(t, d, _where(req, "slot", s), p.min_tokens) for s, (t, d) in enumerate(zip(slots, docs))])
    edits, rejected = [EDIT_SCHEMA.empty_table()], 0
    for s, (t, d) in enumerate(zip(slots, docs)):
        e, r = strike(t, d, _where(cand, "slot", s), _where(runs, "to_slot", s), p)
        edits.append(e)
        rejected += r
    return pa.concat_tables(edits), rejected


def _where(table: pa.Table, column: str, value: int) -> pa.Table:
    return table.filter(pa.array(table.column(column).to_numpy() == value))


# ---------------------------------------------------------------- the rule in plain Python


def reference_struck(texts: list[str], doc_ids: list[int], groups: list[int], p: SubstringDedupParams, passes: int = 1) -> list[np.ndarray]:
    """The struck tokens of each text by the rule itself: every window of `min_tokens` tokens
    compared with every other through a dict of token tuples (exact comparison, no hashing of
    our own), copies ordered by (doc id, offset). What the tests and the benchmark hold the
    pipeline to. The dict holds every window: `passes` > 1 takes the windows in that many
    groups (by Python's hash of the tuple), for 1/passes of the memory."""
    m = p.min_tokens
    tokens = [[t[a:b] for a, b in token_spans(t)] for t in texts]
    struck = [np.zeros(len(w), dtype=bool) for w in tokens]
    for k in range(passes):
        copies: dict[tuple, list[tuple[int, int, int]]] = {}
        for i, words in enumerate(tokens):
            for pos in range(len(words) - m + 1):
                window = (groups[i], tuple(words[pos : pos + m]))
                if passes == 1 or hash(window) % passes == k:
                    copies.setdefault(window, []).append((doc_ids[i], pos, i))
        for where in copies.values():
            if len(where) > 1:
                where.sort()
                for _, pos, i in where if p.keep == "none" else where[1:]:
                    struck[i][pos : pos + m] = True
    return struck
