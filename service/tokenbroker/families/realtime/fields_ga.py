"""Parsers of the policy fields for GA session fields; allowed values come from the GA
schema data (:data:`.request_ga.FACTS`), never from a list kept here."""

from __future__ import annotations

from typing import Any

from tokenbroker.families.realtime.request_ga import FACTS
from tokenbroker.families.realtime.rules import Tracing
from tokenbroker.policy.primitives import Errors, Parser, cap, mapping, number_range, string_list

TRACING_MODES = ("forbid", "allow", "force")


def _tracing(raw: Any, path: str, errors: Errors) -> Tracing | None:
    raw = mapping(raw, path, errors, {"mode": None, "workflow_name": None})
    mode, name = raw.get("mode", "forbid"), raw.get("workflow_name")
    if mode not in TRACING_MODES:
        errors.append(f"{path}.mode: must be one of {', '.join(TRACING_MODES)}")
        return None
    if mode == "force" and (not isinstance(name, str) or not name):
        errors.append(f"{path}.workflow_name: is required when mode is force")
        return None
    return Tracing(mode, name if isinstance(name, str) else None)


def _ids(raw: Any, path: str, errors: Errors) -> tuple[str, ...] | None:
    result: tuple[str, ...] | None = string_list(None, what="id")(raw, path, errors)
    return result


GA_FIELDS: dict[str, Parser] = {
    "session_types": string_list(FACTS["session_types"], what="session type"),
    "speed": number_range(*FACTS["speed"], with_default=True),
    "tracing": _tracing,
    "client_secret_ttl": cap(*FACTS["client_secret_ttl"]),
    "reasoning_efforts": string_list(FACTS["reasoning_efforts"], what="reasoning effort"),
    "prompts": _ids,
    "include": string_list(FACTS["include"], what="include value"),
    "truncation": string_list(FACTS["truncation"], what="truncation"),
}
