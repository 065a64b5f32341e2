"""Training data (Parquet shards packed into fixed-length sequences) and eval-set readers.

Packing: each document becomes `eos + its tokens`, documents are concatenated into one stream,
and the stream is cut into sequences of seq_len + 1 tokens that overlap by one (inputs are
tokens[:-1], targets tokens[1:]), so no token is padding and a document may span two sequences.

Order, deterministic given a seed: every epoch visits the shards in a seeded permutation and the
documents of each Parquet record batch in a seeded permutation. Packed sequences then pass
through a shuffle buffer (SHUFFLE_BUFFER_TOKENS) that batches draw from at seeded random slots,
so one long document is spread over many steps instead of filling whole batches in a row.
The position (epoch, shard, record batch, document, unfinished tokens, buffer, batches drawn)
is the loader's `state_dict()`, so a resumed run reads exactly what an uninterrupted one would.
"""
import glob
import gzip
import json
import re
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyarrow.parquet as pq
import torch

TEXT_COLUMN = "text"
DOCS_PER_RECORD_BATCH = 1024  # also the span of within-shard document shuffling
SHUFFLE_BUFFER_TOKENS = 2**20  # packed sequences held for drawing batches: ~1M tokens, 8 MB
_SHARD_ORDER, _DOC_ORDER, _BATCH_SLOTS = range(3)  # keep the seeded random streams apart


def resolve_paths(specs: Sequence[str | Path], suffix: str = ".parquet") -> list[Path]:
    """Files named by each spec, which is a file, a directory (searched recursively for
    `suffix`) or a glob pattern; sorted and deduplicated so the order does not depend on the OS."""
    paths: set[Path] = set()
    for spec in specs:
        spec_path = Path(spec)
        if spec_path.is_dir():
            matched = [p for p in spec_path.rglob(f"*{suffix}") if p.is_file()]
        elif spec_path.is_file():
            matched = [spec_path]
        else:
            matched = [Path(p) for p in glob.glob(str(spec), recursive=True) if Path(p).is_file()]
        if not matched:
            raise FileNotFoundError(f"no {suffix} files found for {spec!r}")
        paths.update(p.resolve() for p in matched)
    return sorted(paths)


def iter_parquet_texts(paths: Sequence[Path]) -> Iterator[str]:
    """Non-empty `text` values of the given Parquet files, in file order."""
    for path in paths:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=DOCS_PER_RECORD_BATCH, columns=[TEXT_COLUMN]):
            yield from (text for text in batch.column(0).to_pylist() if text)


def _seeded_rng(*keys: int) -> np.random.Generator:
    return np.random.default_rng([int(k) for k in keys])


class PackedBatches:
    """Endless (epoch after epoch) batches of packed sequences from Parquet shards."""

    def __init__(self, paths: Sequence[Path], tokenizer, seq_len: int, batch_size: int, seed: int):
        if not paths:
            raise ValueError("no training shards")
        self.paths = list(paths)
        self.tokenizer = tokenizer
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0
        self.shard_pos = 0  # index into this epoch's shard permutation
        self.record_batch = 0  # record batches of the current shard fully read
        self.doc_pos = 0  # documents of the current record batch already tokenized
        self.pending = np.empty(0, dtype=np.int64)  # tokenized but not yet packed into a sequence
        self.buffer_size = max(batch_size, SHUFFLE_BUFFER_TOKENS // seq_len)
        self.buffer: np.ndarray | None = None  # (buffer_size, seq_len + 1), filled on the first batch
        self.batches_drawn = 0
        self._docs: list[str] | None = None  # current record batch, permuted
        self._batches: Iterator | None = None  # open reader of the current shard

    def state_dict(self) -> dict:
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "shard_pos": self.shard_pos,
            "record_batch": self.record_batch,
            "doc_pos": self.doc_pos,
            "pending": torch.from_numpy(self.pending.copy()),
            "buffer": None if self.buffer is None else torch.from_numpy(self.buffer.copy()),
            "batches_drawn": self.batches_drawn,
        }

    def load_state_dict(self, state: dict) -> None:
        if state["seed"] != self.seed:
            raise ValueError(f"data position was saved for seed {state['seed']}, not {self.seed}")
        self.epoch, self.shard_pos = state["epoch"], state["shard_pos"]
        self.record_batch, self.doc_pos = state["record_batch"], state["doc_pos"]
        self.pending = state["pending"].numpy().astype(np.int64)
        self.buffer = None if state["buffer"] is None else state["buffer"].numpy().copy()
        self.batches_drawn = state["batches_drawn"]
        self._docs = self._batches = None

    def _shard_order(self) -> np.ndarray:
        return _seeded_rng(self.seed, _SHARD_ORDER, self.epoch).permutation(len(self.paths))

    def _open_record_batch(self) -> list[str] | None:
        """The current record batch's documents in their seeded order; None at the shard's end."""
        if self._batches is None:
            path = self.paths[self._shard_order()[self.shard_pos]]
            self._batches = pq.ParquetFile(path).iter_batches(batch_size=DOCS_PER_RECORD_BATCH, columns=[TEXT_COLUMN])
            for _ in range(self.record_batch):  # resuming mid-shard: skip what was read
                next(self._batches)
        batch = next(self._batches, None)
        if batch is None:
            return None
        texts = batch.column(0).to_pylist()
        order = _seeded_rng(self.seed, _DOC_ORDER, self.epoch, self.shard_pos, self.record_batch).permutation(len(texts))
        return [texts[i] for i in order]

    def _next_document(self) -> str:
        empty_epochs = 0
        while True:
            if self._docs is None:
                self._docs = self._open_record_batch()
                if self._docs is None:  # shard finished
                    self._batches = None
                    self.shard_pos, self.record_batch, self.doc_pos = self.shard_pos + 1, 0, 0
                    if self.shard_pos == len(self.paths):
                        self.epoch, self.shard_pos = self.epoch + 1, 0
                        empty_epochs += 1
                        if empty_epochs > 1:
                            raise ValueError("training shards contain no text")
                    continue
            if self.doc_pos < len(self._docs):
                text = self._docs[self.doc_pos]
                self.doc_pos += 1
                if text:
                    empty_epochs = 0
                    return text
                continue
            self._docs = None
            self.record_batch, self.doc_pos = self.record_batch + 1, 0

    def _next_sequence(self) -> np.ndarray:
        while len(self.pending) < self.seq_len + 1:
            self.pending = np.concatenate([self.pending, self.tokenizer.encode_document(self._next_document())])
        sequence = self.pending[: self.seq_len + 1]
        self.pending = self.pending[self.seq_len :]
        return sequence

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets), each (batch_size, seq_len) int64 on the CPU."""
        if self.buffer is None:
            self.buffer = np.stack([self._next_sequence() for _ in range(self.buffer_size)])
        slots = _seeded_rng(self.seed, _BATCH_SLOTS, self.batches_drawn).integers(self.buffer_size, size=self.batch_size)
        rows = []
        for slot in slots:  # a slot drawn twice yields its refill the second time
            rows.append(self.buffer[slot].copy())
            self.buffer[slot] = self._next_sequence()
        self.batches_drawn += 1
        sequences = torch.from_numpy(np.stack(rows))
        return sequences[:, :-1].contiguous(), sequences[:, 1:].contiguous()


def read_eval_documents(path: str | Path) -> list[str]:
    """Documents of an eval set, by file type:
    - .txt / .txt.gz: documents are separated by blank lines (whitespace-only lines count as blank),
      so a file of paragraphs gives one document per paragraph; lines inside one are kept joined by
      newlines, and surrounding whitespace is stripped;
    - .jsonl / .jsonl.gz: one JSON object per line, the document is its `text` field;
    - .parquet (or a directory / glob of them): the `text` column.
    Empty documents are dropped."""
    name = str(path)
    if name.endswith((".txt", ".txt.gz")):
        docs = re.split(r"\n[ \t]*\n", _read_text(path))
        return [doc.strip() for doc in docs if doc.strip()]
    if name.endswith((".jsonl", ".jsonl.gz")):
        lines = _read_text(path).splitlines()
        return [doc for doc in (json.loads(line).get(TEXT_COLUMN) for line in lines if line.strip()) if doc]
    return list(iter_parquet_texts(resolve_paths([path])))


def _read_text(path: str | Path) -> str:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return f.read()


_ARTICLE_HEADING = re.compile(r"= (?!=).*\S =")  # " = Title = ", not " = = Section = = "
_WIKITEXT_HEADING = re.compile(r"^(=\s)+(.*?)(\s=)+$")
_WIKITEXT_RULES = [
    (re.compile(r" @([-,.])@ "), r"\1"),  # 1 @,@ 000 -> 1,000 ; red @-@ tipped -> red-tipped
    (re.compile(r" ([.,;:!?%)\]}])"), r"\1"),  # no space before closing punctuation
    (re.compile(r"([(\[{$]) "), r"\1"),  # nor after opening punctuation
    (re.compile(r" (n't|'s|'re|'ve|'m|'ll|'d)\b"), r"\1"),  # split contractions and possessives
    (re.compile(r'" ([^"]*?) "'), r'"\1"'),  # " quoted words " -> "quoted words"
]


def detokenize_wikitext(text: str) -> str:
    """Tokenized WikiText (" , " spaced punctuation, " @-@ " hyphens, " = Heading = " lines) back
    to ordinary prose, line by line. `<unk>` markers are left as they are: the words are lost."""
    lines = []
    for line in text.split("\n"):
        line = line.strip()
        heading = _WIKITEXT_HEADING.match(line)
        if heading:
            line = heading.group(2)
        for pattern, replacement in _WIKITEXT_RULES:
            line = pattern.sub(replacement, line)
        lines.append(line)
    return "\n".join(lines)


def wikitext_articles(path: str | Path) -> list[str]:
    """Tokenized WikiText -> one detokenized document per article. An article starts at a
    top-level " = Title = " line between blank lines (a wrapped formula such as " = 1 <unk> / s ... = "
    inside a paragraph is not one); its blank lines are dropped (a blank line separates documents in
    the eval file), so its heading, section headings and paragraphs are joined by single newlines."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    articles: list[list[str]] = []
    for i, line in enumerate(lines):
        blank_around = (i == 0 or not lines[i - 1].strip()) and (i + 1 == len(lines) or not lines[i + 1].strip())
        if not articles or (blank_around and _ARTICLE_HEADING.fullmatch(line.strip())):
            articles.append([])
        articles[-1].append(line)
    documents = []
    for article in articles:
        text = detokenize_wikitext("\n".join(article))
        paragraphs = [line for line in text.split("\n") if line.strip()]
        if paragraphs:
            documents.append("\n".join(paragraphs))
    return documents
