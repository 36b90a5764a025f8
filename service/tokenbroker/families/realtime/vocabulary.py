"""The Realtime API's section of a policy, per upstream dialect: its keys (fields.py,
fields_ga.py) and which model and voice names a policy may list, from the schema data.

The beta schema enumerates its models and voices, so a policy for ``openai-beta`` may
list only those. The GA schema takes any string for both (new models, custom voices,
Azure deployment names), so for ``openai`` and ``azure`` any non-empty name is valid;
for ``openai`` a model the GA schema does not list is worth a note (a newer model, or a
typo that every mint would meet at the upstream).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from tokenbroker.families.realtime.fields import POLICY_FIELDS
from tokenbroker.families.realtime.fields_ga import GA_FIELDS
from tokenbroker.families.realtime.rules import RealtimeRules, rules_of
from tokenbroker.policy.model import Policy
from tokenbroker.policy.primitives import Errors, Parser, string_list
from tokenbroker.policy.vocabulary import Section


@dataclass(frozen=True, slots=True)
class Names:
    dialect: str
    models: tuple[str, ...] | None  # None: any name
    voices: tuple[str, ...] | None
    listed_models: tuple[str, ...] | None = None  # the reference's names (None: no notes)
    listed_voices: tuple[str, ...] | None = None


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


def _beta() -> Names:
    defs = _defs("realtime-sessions.json")
    models = _enum(defs["RealtimeSessionCreateRequest"]["properties"]["model"])
    voices = _enum(defs["VoiceIdsShared"])
    return Names("openai-beta", models, voices, models, voices)


def _listed(schema: Any) -> tuple[str, ...]:
    """The strings a schema names, in any branch (the GA model: any string, or these)."""
    branches = schema.get("anyOf") or schema.get("oneOf") or [schema]
    return tuple(v for branch in branches for v in branch.get("enum", ()))


_GA_DEFS = _defs("realtime-client-secrets.json")
GA = Names("openai", None, None,
                _listed(_GA_DEFS["RealtimeSessionCreateRequestGA"]["properties"]["model"]),
                _listed(_GA_DEFS["VoiceIdsShared"]))  # fmt: skip
NAMES = {"openai": GA, "openai-beta": _beta(), "azure": Names("azure", None, None)}


def reference_notes(policies: Iterable[Policy], vocabulary: Names) -> list[str]:
    """A note for each model or voice the policies allow that the dialect's reference does
    not list (none where the dialect takes any name, as Azure's deployment names): a newer
    model or a custom voice is fine, a typo would have its mints refused by the upstream."""
    allowed = list(policies)
    checks: list[tuple[str, tuple[str, ...] | None, Callable[[Policy], Any]]] = [
        ("model", vocabulary.listed_models, lambda policy: rules_of(policy).models),
        ("voice", vocabulary.listed_voices, lambda policy: rules_of(policy).voices),
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


def _named(what: str, known: tuple[str, ...] | None, dialect: str) -> Parser:
    """A list of names, each one the dialect has (any name where it takes any)."""
    names = string_list(None, what=what)

    def parse(raw: Any, path: str, errors: Errors) -> tuple[str, ...] | None:
        parsed: tuple[str, ...] | None = names(raw, path, errors)
        for i, value in enumerate(parsed or ()):
            if known is not None and value not in known:
                errors.append(f"{path}[{i}]: unknown {what} {value!r} for dialect {dialect} "
                              f"(one of: {', '.join(known)})")  # fmt: skip
        return parsed

    return parse


def _models(rules: RealtimeRules) -> list[str]:
    """The models a policy's Realtime rules name: sessions' and transcription's."""
    return [*rules.models, *(rules.transcription.models if rules.transcription else ())]


def _build(path: str, fields: dict[str, Any], disabled: bool, errors: Errors) -> RealtimeRules:
    if not disabled and "models" not in fields:
        errors.append(f"{path}.models: is required (directly or through extends)")
    return RealtimeRules(**fields)


def section(dialect: str) -> Section:
    """The Realtime section for ``dialect``: model and voice names checked against the
    dialect's (by path, where it has a closed list), notes for names its reference lacks."""
    names = NAMES[dialect]
    fields: dict[str, Parser] = {
        **POLICY_FIELDS,
        **GA_FIELDS,
        "models": _named("model", names.models, dialect),
        "voices": _named("voice", names.voices, dialect),
    }
    return Section("realtime", fields, _build, lambda policies: reference_notes(policies, names),
                   _models)  # fmt: skip
