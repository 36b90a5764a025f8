"""What every settings section shares: strictness, durations, paths, environment marks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo

from tokenbroker.config.durations import parse_duration


def _duration(value: Any) -> float:
    if isinstance(value, float) and not isinstance(value, bool):
        return value  # already parsed (a model built in code)
    return parse_duration(str(value))


Duration = Annotated[float, BeforeValidator(_duration)]


def env_field(variable: str, description: str) -> Any:
    """A setting that only the environment gives (never the file): never shown by repr."""
    return Field(None, repr=False, description=description, json_schema_extra={"env": variable})


def relative(value: Any, info: ValidationInfo) -> Any:
    """File paths in the config are relative to the config file."""
    base = (info.context or {}).get("base_dir")
    if value is None or not isinstance(value, str | Path):
        return value
    path = Path(value)
    return base / path if base is not None and not path.is_absolute() else path


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
