"""Parsers of a policy's fields: each takes raw YAML, its path and the error list.

Pure: every problem is appended as ``path: reason`` and parsing goes on, so one pass
names them all. Allowed values come from the session reference (:mod:`.session`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tokenbroker.errors import InvalidRequest
from tokenbroker.policy import session as ref
from tokenbroker.policy.model import (
    Instructions,
    NumberRange,
    TokenCap,
    Tools,
    Transcription,
    TurnDetection,
)

Errors = list[str]
Parser = Callable[[Any, str, Errors], Any]


def mapping(raw: Any, path: str, errors: Errors, keys: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        errors.append(f"{path or '(document)'}: must be a mapping")
        return {}
    for key in raw:
        if key not in keys:
            errors.append(f"{path}.{key}: unknown key" if path else f"{key}: unknown key")
    return raw


def string_list(allowed: tuple[str, ...] | None, *, what: str = "value") -> Parser:
    def parse(raw: Any, path: str, errors: Errors) -> tuple[str, ...] | None:
        if not isinstance(raw, list) or not raw:
            errors.append(f"{path}: must be a non-empty list")
            return ()
        out = []
        for i, item in enumerate(raw):
            if not isinstance(item, str):
                errors.append(f"{path}[{i}]: must be a string")
            elif allowed is not None and item not in allowed:
                errors.append(
                    f"{path}[{i}]: unknown {what} {item!r} (one of: {', '.join(allowed)})"
                )
            else:
                out.append(item)
        if len(set(out)) != len(out):
            errors.append(f"{path}: has duplicates")
        return tuple(out)

    return parse


def _number(raw: Any, path: str, errors: Errors, low: float, high: float) -> float | None:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        errors.append(f"{path}: must be a number")
        return None
    if raw < low:
        errors.append(f"{path}: must be at least {low}")
        return None
    if raw > high:
        errors.append(f"{path}: must be at most {high}")
        return None
    return float(raw)


def number_range(low: float, high: float, *, with_default: bool, integral: bool = False) -> Parser:
    def parse(raw: Any, path: str, errors: Errors) -> NumberRange | None:
        keys = ("min", "max", "default") if with_default else ("min", "max")
        raw = mapping(raw, path, errors, dict.fromkeys(keys))
        before = len(errors)
        values: dict[str, float | None] = {}
        for key in keys:
            value = raw.get(key)
            if value is not None:
                if integral and (isinstance(value, bool) or not isinstance(value, int)):
                    errors.append(f"{path}.{key}: must be an integer")
                    continue
                value = _number(value, f"{path}.{key}", errors, low, high)
            values[key] = value
        if len(errors) > before:
            return None
        lo = values.get("min")
        lo = low if lo is None else lo
        hi = values.get("max")
        hi = high if hi is None else hi
        if lo > hi:
            errors.append(f"{path}: min ({lo:g}) is greater than max ({hi:g})")
            return None
        default = values.get("default")
        if default is not None and not lo <= default <= hi:
            errors.append(f"{path}.default: {default:g} is outside min..max ({lo:g}..{hi:g})")
            return None
        return NumberRange(lo, hi, default)

    return parse


def _temperature(raw: Any, path: str, errors: Errors) -> NumberRange | None:
    parsed: NumberRange | None = number_range(*ref.TEMPERATURE_RANGE, with_default=True)(
        raw, path, errors
    )
    if parsed is not None and parsed.default is None:
        # The upstream's own default (0.8), pulled into the policy's range.
        parsed = NumberRange(parsed.min, parsed.max, min(max(0.8, parsed.min), parsed.max))
    return parsed


def _token_cap(raw: Any, path: str, errors: Errors) -> TokenCap | None:
    return _cap(raw, path, errors, *ref.OUTPUT_TOKENS_RANGE)


def cap(low: int, high: int) -> Parser:
    """``{max, default}``: a whole number, clamped to max; default max."""
    return lambda raw, path, errors: _cap(raw, path, errors, low, high)


def _cap(raw: Any, path: str, errors: Errors, low: int, high: int) -> TokenCap | None:
    raw = mapping(raw, path, errors, {"max": None, "default": None})
    before = len(errors)
    values = {}
    for key in ("max", "default"):
        value = raw.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append(f"{path}.{key}: must be an integer")
        elif value < low:
            errors.append(f"{path}.{key}: must be at least {low}")
        elif value > high:
            errors.append(f"{path}.{key}: must be at most {high}")
        else:
            values[key] = value
    if len(errors) > before:
        return None
    cap = values.get("max", high)
    default = values.get("default", cap)
    if default > cap:
        errors.append(f"{path}.default: {default} is greater than max ({cap})")
        return None
    return TokenCap(cap, default)


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
    raw = mapping(raw, path, errors, {"mode": None, "names": None, "list": None})
    mode = raw.get("mode", "none")
    if mode == "none":
        for key in ("names", "list"):
            if key in raw:
                errors.append(f"{path}.{key}: not used when mode is none")
        return Tools()
    if mode == "client":
        names = string_list(None)(raw.get("names"), f"{path}.names", errors)
        if "list" in raw:
            errors.append(f"{path}.list: not used when mode is client")
        return Tools("client", names=names or ())
    if mode == "fixed":
        tools = raw.get("list")
        if not isinstance(tools, list) or not tools:
            errors.append(f"{path}.list: must be a non-empty list of tools")
            return None
        for i, tool in enumerate(tools):
            try:
                ref.TOOL(tool, f"{path}.list[{i}]")
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


def _transcription(raw: Any, path: str, errors: Errors) -> Transcription | None:
    raw = mapping(raw, path, errors, {"models": None})
    models = string_list(ref.TRANSCRIPTION_MODELS, what="transcription model")(
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


def _bool(raw: Any, path: str, errors: Errors) -> bool:
    if not isinstance(raw, bool):
        errors.append(f"{path}: must be true or false")
        return False
    return raw


POLICY_FIELDS: dict[str, Parser] = {
    "disabled": _bool,
    "models": string_list(None, what="model"),  # names checked per dialect (vocabulary.py)
    "voices": string_list(None, what="voice"),
    "modalities": _modalities,
    "input_audio_formats": string_list(ref.AUDIO_FORMATS, what="audio format"),
    "output_audio_formats": string_list(ref.AUDIO_FORMATS, what="audio format"),
    "temperature": _temperature,
    "max_response_output_tokens": _token_cap,
    "instructions": _instructions,
    "tools": _tools,
    "transcription": _transcription,
    "turn_detection": _turn_detection,
    "noise_reduction": string_list(ref.NOISE_REDUCTION_TYPES, what="noise reduction type"),
}
