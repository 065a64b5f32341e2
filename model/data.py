"""Training data (Parquet shards packed into fixed-length sequences) and eval-set readers.

Packing: each document becomes `eos + its tokens`, documents are concatenated into one stream,
and the stream is cut into sequences of seq_len + 1 tokens that overlap by one (inputs are
tokens[:-1], targets tokens[1:]), so no token is padding and a document may span two sequences.

Order: a global shuffle, deterministic given a seed. The arm's documents are tokenized once into
a token file (an unlinked temporary file read through a memory map, so RAM holds only the
per-document offsets). Every epoch lays all documents, from every shard, end to end in a seeded
permutation, cuts that stream into sequences (the last < seq_len tokens of an epoch are left
out), and visits the sequences in a second seeded permutation. So any number of batches, a
fraction of an epoch included, is a uniform sample of the whole arm, not of its first shards or
documents, and one long document is spread over the epoch rather than filling batches in a row.
The position (epoch, sequences drawn) is the loader's `state_dict()`, so a resumed run reads
exactly what an uninterrupted one would.
"""
import glob
import gzip
import json
import re
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyarrow.parquet as pq
import torch

TEXT_COLUMN = "text"
DOCS_PER_RECORD_BATCH = 1024  # documents per Parquet read
_DOC_ORDER, _SEQUENCE_ORDER = range(2)  # keep the seeded random streams apart


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


class TokenFile:
    """Every document of some Parquet shards as `eos + tokens`, end to end in one memory-mapped
    file, with each document's start: random access to any document without holding the text."""

    def __init__(self, paths: Sequence[Path], tokenizer, directory: str | Path | None = None):
        dtype = np.min_scalar_type(tokenizer.vocab_size - 1)
        self._file = tempfile.TemporaryFile(dir=directory)  # unlinked: gone when closed, even after a kill
        lengths = []
        for text in iter_parquet_texts(paths):
            tokens = tokenizer.encode_document(text)
            self._file.write(tokens.astype(dtype).tobytes())
            lengths.append(len(tokens))
        self._file.flush()
        self.starts = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=self.starts[1:])
        self.tokens = np.memmap(self._file, dtype=dtype, mode="r") if lengths else np.empty(0, dtype)

    @property
    def documents(self) -> int:
        return len(self.starts) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.starts)

    def close(self) -> None:
        self.tokens = None
        self._file.close()


class PackedBatches:
    """Endless (epoch after epoch) batches of packed sequences from Parquet shards, drawn in a
    seeded order over the whole of their text (see the module docstring)."""

    def __init__(self, paths: Sequence[Path], tokenizer, seq_len: int, batch_size: int, seed: int,
                 temp_dir: str | Path | None = None):
        if not paths:
            raise ValueError("no training shards")
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.seed = seed
        self.text = TokenFile(paths, tokenizer, temp_dir)
        if self.text.documents == 0:
            raise ValueError("training shards contain no text")
        total = int(self.text.starts[-1])
        if total < seq_len + 1:
            raise ValueError(f"training text has {total:,} tokens, fewer than one sequence of {seq_len + 1}")
        self.sequences_per_epoch = (total - 1) // seq_len
        self.epoch = 0
        self.position = 0  # sequences of this epoch already drawn
        self._plan_epoch = None
        self._doc_order = self._stream_starts = self._sequence_order = None

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position,
                "documents": self.text.documents, "tokens": int(self.text.starts[-1])}

    def load_state_dict(self, state: dict) -> None:
        if state["seed"] != self.seed:
            raise ValueError(f"data position was saved for seed {state['seed']}, not {self.seed}")
        if (state["documents"], state["tokens"]) != (self.text.documents, int(self.text.starts[-1])):
            raise ValueError(f"data position was saved for {state['documents']:,} documents and {state['tokens']:,} "
                             f"tokens of training text; these shards hold {self.text.documents:,} and "
                             f"{int(self.text.starts[-1]):,}")
        self.epoch, self.position = state["epoch"], state["position"]

    def close(self) -> None:
        self.text.close()

    def _plan(self) -> None:
        """This epoch's document order, where each document starts in its stream, and the order
        its sequences are drawn in."""
        if self._plan_epoch == self.epoch:
            return
        self._doc_order = _seeded_rng(self.seed, _DOC_ORDER, self.epoch).permutation(self.text.documents)
        self._stream_starts = np.zeros(self.text.documents + 1, dtype=np.int64)
        np.cumsum(self.text.lengths[self._doc_order], out=self._stream_starts[1:])
        self._sequence_order = _seeded_rng(self.seed, _SEQUENCE_ORDER, self.epoch).permutation(self.sequences_per_epoch)
        self._plan_epoch = self.epoch

    def _sequence(self, index: int) -> np.ndarray:
        """Tokens [index * seq_len, index * seq_len + seq_len + 1) of this epoch's stream."""
        begin, end = index * self.seq_len, index * self.seq_len + self.seq_len + 1
        k = int(np.searchsorted(self._stream_starts, begin, side="right")) - 1
        pieces = []
        while begin < end:
            doc = self._doc_order[k]
            offset = begin - self._stream_starts[k]
            take = min(end - begin, self._stream_starts[k + 1] - begin)
            start = self.text.starts[doc] + offset
            pieces.append(self.text.tokens[start : start + take])
            begin, k = begin + take, k + 1
        return np.concatenate(pieces).astype(np.int64)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets), each (batch_size, seq_len) int64 on the CPU."""
        rows = []
        for _ in range(self.batch_size):
            if self.position == self.sequences_per_epoch:
                self.epoch, self.position = self.epoch + 1, 0
            self._plan()
            rows.append(self._sequence(int(self._sequence_order[self.position])))
            self.position += 1
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
