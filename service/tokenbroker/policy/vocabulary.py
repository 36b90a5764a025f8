"""Which model and voice names a policy may list, per upstream dialect, from the schema data.

The beta schema enumerates its models and voices, so a policy for ``openai-beta`` may
list only those. The GA schema takes any string for both (new models, custom voices,
Azure deployment names), so for ``openai`` and ``azure`` any non-empty name is valid;
for ``openai`` a model the GA schema does not list is worth a note (a newer model, or a
typo that every mint would meet at the upstream).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from tokenbroker.policy.model import Policy
from tokenbroker.policy.primitives import Parser


@dataclass(frozen=True, slots=True)
class Vocabulary:
    dialect: str
    models: tuple[str, ...] | None  # None: any name
    voices: tuple[str, ...] | None
    listed_models: tuple[str, ...] | None = None  # the reference's names (None: no notes)
    listed_voices: tuple[str, ...] | None = None
    # policy keys of the API families (tokenbroker.families): key -> its parser
    sections: Mapping[str, Parser] = field(default_factory=dict)


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


def _defs(file: str) -> Any:
    return json.loads(resources.files("tokenbroker").joinpath("schemas", file).read_text())["$defs"]


def _beta() -> Vocabulary:
    defs = _defs("realtime-sessions.json")
    models = _enum(defs["RealtimeSessionCreateRequest"]["properties"]["model"])
    voices = _enum(defs["VoiceIdsShared"])
    return Vocabulary("openai-beta", models, voices, models, voices)


def _listed(schema: Any) -> tuple[str, ...]:
    """The strings a schema names, in any branch (the GA model: any string, or these)."""
    branches = schema.get("anyOf") or schema.get("oneOf") or [schema]
    return tuple(v for branch in branches for v in branch.get("enum", ()))


_GA_DEFS = _defs("realtime-client-secrets.json")
GA = Vocabulary("openai", None, None,
                _listed(_GA_DEFS["RealtimeSessionCreateRequestGA"]["properties"]["model"]),
                _listed(_GA_DEFS["VoiceIdsShared"]))  # fmt: skip
VOCABULARIES = {"openai": GA, "openai-beta": _beta(), "azure": Vocabulary("azure", None, None)}


def reference_notes(policies: Iterable[Policy], vocabulary: Vocabulary) -> list[str]:
    """A note for each model or voice the policies allow that the dialect's reference does
    not list (none where the dialect takes any name, as Azure's deployment names): a newer
    model or a custom voice is fine, a typo would have its mints refused by the upstream."""
    allowed = list(policies)
    checks: list[tuple[str, tuple[str, ...] | None, Callable[[Policy], Any]]] = [
        ("model", vocabulary.listed_models, lambda policy: policy.models),
        ("voice", vocabulary.listed_voices, lambda policy: policy.voices),
    ]
    found: dict[tuple[str, str], list[str]] = {}
    for kind, listed, names_of in checks:
        for policy in allowed if listed is not None else ():
            for name in names_of(policy) or ():
                if listed is not None and name not in listed:
                    found.setdefault((kind, name), []).append(policy.name)
    return [
        f"{kind} {name!r} (policies {', '.join(names)}) is not one the {vocabulary.dialect} "
        f"reference lists: right for a {'newer model' if kind == 'model' else 'custom voice'}, "
        "otherwise check its spelling (the upstream would refuse its mints)"
        for (kind, name), names in found.items()
    ]
