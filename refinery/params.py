"""Base class of every stage's parameters: unknown keys are errors, so a typo in a YAML
config fails at start with the path of the field instead of being silently ignored."""
from pydantic import BaseModel, ConfigDict


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
