"""Which model and voice names a policy may list, per upstream dialect, from the schema data.

The beta schema enumerates its models and voices, so a policy for ``openai-beta`` may
list only those. The GA schema takes any string for both (new models, custom voices,
Azure deployment names), so for ``openai`` and ``azure`` any non-empty name is valid.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any


@dataclass(frozen=True, slots=True)
class Vocabulary:
    dialect: str
    models: tuple[str, ...] | None  # None: any name
    voices: tuple[str, ...] | None


def _enum(schema: Any) -> tuple[str, ...] | None:
    """The closed set of strings a schema allows, or None when it takes any string."""
    if "enum" in schema:
        return tuple(schema["enum"])
    branches = schema.get("anyOf") or schema.get("oneOf")
    if not branches:
        return None
    found: list[str] = []
    for branch in branches:
        values = _enum(branch)
        if values is None:
            return None
        found += values
    return tuple(found)


def _beta() -> Vocabulary:
    path = resources.files("tokenbroker").joinpath("schemas", "realtime-sessions.json")
    defs = json.loads(path.read_text())["$defs"]
    session = defs["RealtimeSessionCreateRequest"]["properties"]
    return Vocabulary("openai-beta", _enum(session["model"]), _enum(defs["VoiceIdsShared"]))


GA = Vocabulary("openai", None, None)
VOCABULARIES = {"openai": GA, "openai-beta": _beta(), "azure": Vocabulary("azure", None, None)}
