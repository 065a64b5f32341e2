"""Typed run configuration. A YAML file plus CLI overrides is validated here before any work
starts: an unknown key or a bad value fails with the dotted path of the field."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Union

import yaml
from pydantic import Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from refinery.dedup.phase import DedupParams, check_dedup_list
from refinery.extract import ExtractParams
from refinery.io.sources import CrawlInput
from refinery.io.warc import ReadParams
from refinery.params import Params
from refinery.stages import StageParams
from refinery.filters.language import LanguagePrefilterParams
from refinery.filters.url import UrlFilterParams

Stage = Annotated[StageParams, Field(discriminator="stage")]
DedupStage = Annotated[DedupParams, Field(discriminator="stage")]
# paths, globs and URLs (local, https://, s3://), or a Common Crawl crawl by id
Input = Annotated[
    Union[Annotated[list[str], Tag("paths")], Annotated[CrawlInput, Tag("crawl")]],
    Discriminator(lambda v: "crawl" if isinstance(v, (dict, CrawlInput)) else "paths"),
]


class ConfigError(Exception):
    """A config that cannot run; the message names the offending field."""


class RunConfig(Params):
    input: Input = Field(default_factory=list, description="WARC paths, globs, URLs, or {crawl: ID, files: N}")
    output: str = "out"
    workers: int | None = Field(None, ge=1, description="CPUs for the local Ray; default: all")
    limit: int | None = Field(None, ge=1, description="stop after this many WARC records")
    shard_rows: int = Field(10_000, ge=1, description="documents per output shard (at least)")
    commit_rows: int | None = Field(
        None,
        ge=1,
        description=(
            "filter-phase rows per committed part, and per task; default: read.batch_records with fewer than 8 "
            "input files per CPU, else about a file's records (from the inputs' size), at most 10000 (README, Resume)"
        ),
    )
    write_removed: bool = False
    read: ReadParams = ReadParams()
    stages: list[Stage] = Field(min_length=1)
    dedup: list[DedupStage] = Field(default_factory=list, description="stages over the filtered shards, each within its scope")

    @field_validator("input", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _text_stages_follow_extraction(self) -> "RunConfig":
        seen_extract = False
        for i, st in enumerate(self.stages):
            if isinstance(st, ExtractParams):
                if seen_extract:
                    raise ValueError(f"stages.{i}: extract appears twice")
                seen_extract = True
            elif not isinstance(st, (UrlFilterParams, LanguagePrefilterParams)) and not seen_extract:
                raise ValueError(f"stages.{i}: {st.stage} works on text, so it must come after extract")
            elif isinstance(st, LanguagePrefilterParams) and seen_extract:
                raise ValueError(f"stages.{i}: language_prefilter works on HTML, so it must come before extract")
        check_dedup_list(self.dedup)
        return self


def _format_errors(e: ValidationError) -> str:
    lines = []
    for err in e.errors():
        path = ".".join(str(x) for x in err["loc"]) or "(top level)"
        lines.append(f"  {path}: {err['msg']}")
    return "\n".join(lines)


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML config (safe_load only), apply CLI overrides, validate."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of settings")
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"invalid config {path}:\n{_format_errors(e)}") from None
