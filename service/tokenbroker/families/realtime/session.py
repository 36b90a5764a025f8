"""The seed's session (beta ``POST /realtime/sessions``) as data, and its request check.

Field names, types, enums and ranges are the schema data derived from the official
document (``tokenbroker/schemas/realtime-sessions.json``, by ``scripts/derive_schemas.py``);
the names below read the policy vocabulary's allowed values out of it. Nothing is listed
by hand. Both this check and the GA one go through :mod:`.schema_check`.
"""

from __future__ import annotations

from typing import Any

from tokenbroker.errors import InvalidRequest
from tokenbroker.policy.schema_check import check, compile_schema, schema_data

_DEFS = schema_data("realtime-sessions.json")
_FIELDS: dict[str, Any] = _DEFS["RealtimeSessionCreateRequest"]["properties"]


def _object(schema: dict[str, Any]) -> dict[str, Any]:
    """A nullable object's own schema (``anyOf: [object, null]``) or the schema itself."""
    for branch in schema.get("anyOf", ()):
        if branch.get("type") == "object" or "properties" in branch:
            return dict(branch)
    return schema


def _enum(schema: dict[str, Any]) -> tuple[str, ...]:
    return tuple(value for value in schema["enum"] if value is not None)


def _range(schema: dict[str, Any]) -> tuple[Any, Any]:
    for branch in schema.get("oneOf", ()):
        if "minimum" in branch:
            return branch["minimum"], branch["maximum"]
    return schema["minimum"], schema["maximum"]


_TURN = _object(_FIELDS["turn_detection"])["properties"]
MODALITIES = _enum(_FIELDS["modalities"]["items"])
AUDIO_FORMATS = _enum(_FIELDS["input_audio_format"])
TURN_DETECTION_TYPES = _enum(_TURN["type"])
EAGERNESS = _enum(_TURN["eagerness"])
NOISE_REDUCTION_TYPES = _enum(_object(_FIELDS["input_audio_noise_reduction"])["properties"]["type"])
TEMPERATURE_RANGE = _range(_FIELDS["temperature"])
OUTPUT_TOKENS_RANGE = _range(_FIELDS["max_response_output_tokens"])
VAD_THRESHOLD_RANGE = _range(_TURN["threshold"])

# Any model name: which models exist depends on the dialect (a GA model on the seed's
# endpoint is fine when the broker speaks GA); the policy's allowlist decides, and
# policy files are checked per dialect (vocabulary.py).
# The seed's audio format names and the GA format objects they stand for.
GA_FORMATS: dict[str, dict[str, Any]] = {
    "pcm16": {"type": "audio/pcm", "rate": 24000},
    "g711_ulaw": {"type": "audio/pcmu"},
    "g711_alaw": {"type": "audio/pcma"},
}
SEED_FORMAT = {spec["type"]: name for name, spec in GA_FORMATS.items()}

_SESSION = compile_schema(
    {**_DEFS["RealtimeSessionCreateRequest"],
     "properties": {**_FIELDS, "model": {"type": "string"}}},
    _DEFS,
)  # fmt: skip
_TOOL = compile_schema(_FIELDS["tools"]["items"], _DEFS)


def validate_session(body: Any) -> dict[str, Any]:
    """``body`` if it is a valid session configuration, else InvalidRequest."""
    if not isinstance(body, dict):
        raise InvalidRequest("invalid_type", "The request body must be a JSON object.")
    result: dict[str, Any] = check(_SESSION, body)
    return result


def validate_tool(tool: Any, param: str) -> None:
    """One function tool as the session takes it; InvalidRequest names ``param``'s field."""
    check(_TOOL, tool, prefix=param)
