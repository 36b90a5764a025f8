"""Parsers of a policy's fields: each takes raw YAML, its path and the error list.

Pure: every problem is appended as ``path: reason`` and parsing goes on, so one pass
names them all. Allowed values come from the session reference (:mod:`.session`).
"""

from __future__ import annotations

from typing import Any

from tokenbroker.errors import InvalidRequest
from tokenbroker.families.realtime import session as ref
from tokenbroker.families.realtime.rules import McpServers, Tools, Transcription, TurnDetection
from tokenbroker.policy.model import Instructions, NumberRange, TokenCap
from tokenbroker.policy.primitives import Errors, Parser, cap_of, mapping, number_range, string_list


def _temperature(raw: Any, path: str, errors: Errors) -> NumberRange | None:
    parsed: NumberRange | None = number_range(*ref.TEMPERATURE_RANGE, with_default=True)(
        raw, path, errors
    )
    if parsed is not None and parsed.default is None:
        # The upstream's own default (0.8), pulled into the policy's range.
        parsed = NumberRange(parsed.min, parsed.max, min(max(0.8, parsed.min), parsed.max))
    return parsed


def _token_cap(raw: Any, path: str, errors: Errors) -> TokenCap | None:
    return cap_of(raw, path, errors, *ref.OUTPUT_TOKENS_RANGE)


def _modalities(raw: Any, path: str, errors: Errors) -> tuple[tuple[str, ...], ...] | None:
    if not isinstance(raw, list) or not raw:
        errors.append(f"{path}: must be a non-empty list of modality sets")
        return None
    sets = []
    for i, item in enumerate(raw):
        parsed = string_list(ref.MODALITIES, what="modality")(item, f"{path}[{i}]", errors)
        if parsed:
            sets.append(parsed)
    return tuple(sets)


def _instructions(raw: Any, path: str, errors: Errors) -> Instructions | None:
    raw = mapping(raw, path, errors, {"mode": None, "text": None, "max_chars": None})
    mode = raw.get("mode")
    if mode not in ("fixed", "prefix", "client"):
        errors.append(f"{path}.mode: must be one of fixed, prefix, client")
        return None
    text = raw.get("text", "")
    if not isinstance(text, str):
        errors.append(f"{path}.text: must be a string")
        return None
    if mode in ("fixed", "prefix") and not text:
        errors.append(f"{path}.text: is required when mode is {mode}")
    max_chars = raw.get("max_chars")
    if max_chars is not None and (
        isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 0
    ):
        errors.append(f"{path}.max_chars: must be a whole number of at least 0")
        return None
    return Instructions(mode, text, max_chars)


def _tools(raw: Any, path: str, errors: Errors) -> Tools | None:
    raw = mapping(raw, path, errors, {"mode": None, "names": None, "list": None, "mcp": None})
    mode = raw.get("mode", "none")
    if "mcp" in raw and mode != "client":
        errors.append(f"{path}.mcp: used only when mode is client")
    if mode == "none":
        for key in ("names", "list"):
            if key in raw:
                errors.append(f"{path}.{key}: not used when mode is none")
        return Tools()
    if mode == "client":
        names: tuple[str, ...] | None = ()  # MCP servers alone need no function names
        if "names" in raw or "mcp" not in raw:
            names = string_list(None)(raw.get("names"), f"{path}.names", errors)
        if "list" in raw:
            errors.append(f"{path}.list: not used when mode is client")
        mcp = mcp_servers(raw["mcp"], f"{path}.mcp", errors) if "mcp" in raw else None
        return Tools("client", names=names or (), mcp=mcp)
    if mode == "fixed":
        tools = raw.get("list")
        if not isinstance(tools, list) or not tools:
            errors.append(f"{path}.list: must be a non-empty list of tools")
            return None
        for i, tool in enumerate(tools):
            try:
                ref.validate_tool(tool, f"{path}.list[{i}]")
            except InvalidRequest as exc:
                errors.append(f"{exc.param}: {exc.message}")
            else:
                if not isinstance(tool.get("name"), str):
                    errors.append(f"{path}.list[{i}].name: is required")
        if "names" in raw:
            errors.append(f"{path}.names: not used when mode is fixed")
        return Tools("fixed", list=tuple(tools))
    errors.append(f"{path}.mode: must be one of none, client, fixed")
    return None


def mcp_servers(raw: Any, path: str, errors: Errors) -> McpServers | None:
    """``{servers, connectors, require_approval}``: values from the GA schema data."""
    from tokenbroker.families.realtime.request_ga import (
        FACTS,  # GA data, read when parsing needs it
    )

    raw = mapping(raw, path, errors, {"servers": None, "connectors": None,
                                      "require_approval": None})  # fmt: skip
    if "servers" not in raw and "connectors" not in raw:
        errors.append(f"{path}: name servers or connectors")
        return None
    found: dict[str, tuple[str, ...]] = {}
    for key, allowed, what in (("servers", None, "server"),
                               ("connectors", FACTS["connectors"], "connector")):  # fmt: skip
        if key in raw:
            found[key] = string_list(allowed, what=what)(raw[key], f"{path}.{key}", errors) or ()
    approval = raw.get("require_approval", "always")
    if approval not in FACTS["require_approval"]:
        choices = ", ".join(FACTS["require_approval"])
        errors.append(f"{path}.require_approval: must be one of {choices}")
    return McpServers(found.get("servers", ()), found.get("connectors", ()), str(approval))


def _transcription(raw: Any, path: str, errors: Errors) -> Transcription | None:
    raw = mapping(raw, path, errors, {"models": None})
    models = string_list(None, what="transcription model")(  # any name, as both schemas
        raw.get("models"), f"{path}.models", errors
    )
    return Transcription(models) if models else None


def _turn_detection(raw: Any, path: str, errors: Errors) -> TurnDetection | None:
    keys = (
        "types",
        "allow_none",
        "eagerness",
        "threshold",
        "prefix_padding_ms",
        "silence_duration_ms",
    )
    raw = mapping(raw, path, errors, dict.fromkeys(keys))
    types = string_list(ref.TURN_DETECTION_TYPES, what="turn detection type")(
        raw.get("types", list(ref.TURN_DETECTION_TYPES)), f"{path}.types", errors
    )
    allow_none = raw.get("allow_none", False)
    if not isinstance(allow_none, bool):
        errors.append(f"{path}.allow_none: must be true or false")
    eagerness = None
    if "eagerness" in raw:
        eagerness = string_list(ref.EAGERNESS, what="eagerness")(
            raw["eagerness"], f"{path}.eagerness", errors
        )
    ranges: dict[str, NumberRange | None] = {}
    bounds = {
        "threshold": (*ref.VAD_THRESHOLD_RANGE, False),
        "prefix_padding_ms": (0, 10_000, True),
        "silence_duration_ms": (0, 10_000, True),
    }
    for key, (low, high, integral) in bounds.items():
        if key in raw:
            parse = number_range(low, high, with_default=False, integral=integral)
            ranges[key] = parse(raw[key], f"{path}.{key}", errors)
    if not types:
        return None
    return TurnDetection(types, allow_none is True, eagerness, **ranges)


def _formats(raw: Any, path: str, errors: Errors) -> tuple[str, ...] | None:
    """Audio formats by the seed's names (``pcm16``) or GA's (``audio/pcm``), kept as the
    seed's: the dialect writes them in its own shape."""
    names = (*ref.AUDIO_FORMATS, *ref.SEED_FORMAT)
    found = string_list(names, what="audio format")(raw, path, errors)
    return tuple(ref.SEED_FORMAT.get(name, name) for name in found) if found else found


POLICY_FIELDS: dict[str, Parser] = {
    # "models" and "voices": names checked per dialect (vocabulary.py)
    "modalities": _modalities,
    "input_audio_formats": _formats,
    "output_audio_formats": _formats,
    "temperature": _temperature,
    "max_response_output_tokens": _token_cap,
    "instructions": _instructions,
    "tools": _tools,
    "transcription": _transcription,
    "turn_detection": _turn_detection,
    "noise_reduction": string_list(ref.NOISE_REDUCTION_TYPES, what="noise reduction type"),
}
