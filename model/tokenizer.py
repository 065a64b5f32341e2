"""Byte-level tokenizer: the 256 byte values plus one end-of-document symbol.

It needs no training and no download, is identical for every arm of a comparison by
construction, and makes bits per byte exact: one target token is one UTF-8 byte.
It is still saved in every checkpoint (as `state_dict()`), so a checkpoint says how to read it.
"""
import numpy as np


class ByteTokenizer:
    """Token i < 256 is byte i; token 256 (`eos_id`) separates documents."""

    kind = "bytes+eos"
    vocab_size = 257
    eos_id = 256

    def encode(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)

    def encode_document(self, text: str) -> np.ndarray:
        """The document's tokens preceded by the separator, the unit both training and
        evaluation streams are built from (so a document always starts after an eos)."""
        tokens = np.empty(len(text.encode("utf-8")) + 1, dtype=np.int64)
        tokens[0] = self.eos_id
        tokens[1:] = self.encode(text)
        return tokens

    def decode(self, tokens) -> str:
        return bytes(int(t) for t in tokens if t != self.eos_id).decode("utf-8", errors="replace")

    def state_dict(self) -> dict:
        return {"kind": self.kind, "vocab_size": self.vocab_size, "eos_id": self.eos_id}

    @classmethod
    def from_state_dict(cls, state: dict) -> "ByteTokenizer":
        tokenizer = cls()
        if state != tokenizer.state_dict():
            raise ValueError(f"unsupported tokenizer in checkpoint: {state}")
        return tokenizer
