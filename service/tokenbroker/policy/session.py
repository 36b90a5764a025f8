"""The upstream's session configuration, as data, and a validator for it.

Field names, types, enumerations and ranges come from the OpenAI reference for
``POST /realtime/sessions`` (API version 2.3.0). Ranges that the reference states only in
prose (temperature 0.6..1.2, output tokens 1..4096, VAD threshold 0..1) are written here
as numbers. Both the broker (client bodies) and the fake upstream (the broker's bodies)
validate with :func:`validate_session`, so the two can never disagree on the contract.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from tokenbroker.errors import InvalidRequest

MODALITIES = ("text", "audio")
AUDIO_FORMATS = ("pcm16", "g711_ulaw", "g711_alaw")
TURN_DETECTION_TYPES = ("server_vad", "semantic_vad")
EAGERNESS = ("low", "medium", "high", "auto")
NOISE_REDUCTION_TYPES = ("near_field", "far_field")
TRANSCRIPTION_MODELS = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")
TEMPERATURE_RANGE = (0.6, 1.2)
OUTPUT_TOKENS_RANGE = (1, 4096)
VAD_THRESHOLD_RANGE = (0.0, 1.0)

Validator = Callable[[Any, str], Any]


def _fail(code: str, param: str, message: str) -> InvalidRequest:
    return InvalidRequest(code, message, param=param or None)


def string(value: Any, param: str) -> str:
    if not isinstance(value, str):
        raise _fail("invalid_type", param, f"'{param}' must be a string.")
    return value


def enum(*allowed: str) -> Validator:
    def check(value: Any, param: str) -> str:
        text = string(value, param)
        if text not in allowed:
            raise _fail("invalid_value", param, f"'{param}' must be one of: {', '.join(allowed)}.")
        return text

    return check


def number(low: float | None = None, high: float | None = None) -> Validator:
    def check(value: Any, param: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _fail("invalid_type", param, f"'{param}' must be a number.")
        if (
            not math.isfinite(value)
            or (low is not None and value < low)
            or (high is not None and value > high)
        ):
            raise _fail("invalid_value", param, f"'{param}' must be between {low} and {high}.")
        return value

    return check


def integer(low: int | None = None, high: int | None = None) -> Validator:
    def check(value: Any, param: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail("invalid_type", param, f"'{param}' must be an integer.")
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"at least {low}" if high is None else f"between {low} and {high}"
            raise _fail("invalid_value", param, f"'{param}' must be {bounds}.")
        return value

    return check


def boolean(value: Any, param: str) -> bool:
    if not isinstance(value, bool):
        raise _fail("invalid_type", param, f"'{param}' must be a boolean.")
    return value


def obj(fields: Mapping[str, Validator], *, nullable: bool = False) -> Validator:
    def check(value: Any, param: str) -> dict[str, Any] | None:
        if value is None and nullable:
            return None
        if not isinstance(value, dict):
            kind = "an object or null" if nullable else "an object"
            raise _fail("invalid_type", param, f"'{param}' must be {kind}.")
        for key, item in value.items():
            path = f"{param}.{key}" if param else key
            validator = fields.get(key)
            if validator is None:
                raise _fail("unknown_parameter", path, f"Unknown parameter: '{path}'.")
            validator(item, path)
        return value

    return check


def array(item: Validator, *, unique: bool = False, min_items: int = 0) -> Validator:
    def check(value: Any, param: str) -> list[Any]:
        if not isinstance(value, list):
            raise _fail("invalid_type", param, f"'{param}' must be an array.")
        if len(value) < min_items:
            raise _fail("invalid_value", param, f"'{param}' needs at least {min_items} item(s).")
        for index, element in enumerate(value):
            item(element, f"{param}[{index}]")
        if unique and len(set(map(repr, value))) != len(value):
            raise _fail("invalid_value", param, f"'{param}' has duplicate items.")
        return value

    return check


def any_object(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail("invalid_type", param, f"'{param}' must be an object.")
    return value


def output_tokens(value: Any, param: str) -> int | str:
    if value == "inf" and isinstance(value, str):
        return value
    if isinstance(value, str):
        raise _fail("invalid_value", param, f"'{param}' must be an integer or 'inf'.")
    return integer(*OUTPUT_TOKENS_RANGE)(value, param)  # type: ignore[no-any-return]


TOOL = obj(
    {
        "type": enum("function"),
        "name": string,
        "description": string,
        "parameters": any_object,
    }
)

SESSION_FIELDS: dict[str, Validator] = {
    # any name: which models exist depends on the dialect; the policy's allowlist decides
    "model": string,
    "modalities": array(enum(*MODALITIES), unique=True, min_items=1),
    "instructions": string,
    "voice": string,
    "input_audio_format": enum(*AUDIO_FORMATS),
    "output_audio_format": enum(*AUDIO_FORMATS),
    "input_audio_transcription": obj(
        {"model": string, "language": string, "prompt": string}, nullable=True
    ),
    "turn_detection": obj(
        {
            "type": enum(*TURN_DETECTION_TYPES),
            "eagerness": enum(*EAGERNESS),
            "threshold": number(*VAD_THRESHOLD_RANGE),
            "prefix_padding_ms": integer(0),
            "silence_duration_ms": integer(0),
            "create_response": boolean,
            "interrupt_response": boolean,
        },
        nullable=True,
    ),
    "input_audio_noise_reduction": obj({"type": enum(*NOISE_REDUCTION_TYPES)}, nullable=True),
    "tools": array(TOOL),
    "tool_choice": string,
    "temperature": number(*TEMPERATURE_RANGE),
    "max_response_output_tokens": output_tokens,
}

_SESSION = obj(SESSION_FIELDS)


def validate_session(body: Any) -> dict[str, Any]:
    """Return ``body`` if it is a valid session configuration, else raise InvalidRequest."""
    if not isinstance(body, dict):
        raise _fail("invalid_type", "", "The request body must be a JSON object.")
    _SESSION(body, "")
    return body
