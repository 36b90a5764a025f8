"""Checking a GA ``client_secrets`` request against the official schema, as data.

The facts (types, enums, ranges, closed objects) are ``tokenbroker/schemas/`` as
``scripts/derive_schemas.py`` derived them from the official OpenAPI document; nothing
here lists an enum by hand. fastjsonschema compiles them once at import: ~40 µs per
request against ~480 µs for jsonschema on the same body (docs/performance.md). The
session's ``type`` picks its schema first, so an error names the field, not the union.
Failures are the §2 errors: ``unknown_parameter``, ``invalid_type``, ``invalid_value``.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

import fastjsonschema

from tokenbroker.errors import InvalidRequest

_DATA = json.loads(
    resources.files("tokenbroker").joinpath("schemas", "realtime-client-secrets.json").read_text()
)
_SESSION_OF = {
    "realtime": "RealtimeSessionCreateRequestGA",
    "transcription": "RealtimeTranscriptionSessionCreateRequestGA",
}
_UNKNOWN = re.compile(r"must not contain \{(.*)\} properties")


def _compile(component: str) -> Any:
    request = dict(_DATA["$defs"]["RealtimeCreateClientSecretRequest"])
    request["properties"] = {
        **request["properties"],
        "session": {"$ref": f"#/definitions/{component}"},
    }
    schema = {**request, "definitions": _DATA["$defs"]}
    text = json.dumps(schema).replace('"#/$defs/', '"#/definitions/')
    return fastjsonschema.compile(json.loads(text))


VALIDATORS = {kind: _compile(component) for kind, component in _SESSION_OF.items()}


def _facts() -> dict[str, tuple[Any, ...]]:
    """Allowed values and ranges the policy vocabulary checks against, from the data."""
    defs = _DATA["$defs"]
    session = defs["RealtimeSessionCreateRequestGA"]["properties"]
    speed = session["audio"]["properties"]["output"]["properties"]["speed"]
    seconds = defs["RealtimeCreateClientSecretRequest"]["properties"]["expires_after"]
    seconds = seconds["properties"]["seconds"]
    truncation = defs["RealtimeTruncation"]["oneOf"]
    return {
        "session_types": tuple(_SESSION_OF),
        "reasoning_efforts": tuple(defs["RealtimeReasoningEffort"]["enum"]),
        "include": tuple(session["include"]["items"]["enum"]),
        "truncation": (*truncation[0]["enum"], *truncation[1]["properties"]["type"]["enum"]),
        "speed": (speed["minimum"], speed["maximum"]),
        "client_secret_ttl": (seconds["minimum"], seconds["maximum"]),
    }


FACTS = _facts()


def _param(path: list[str], extra: str | None = None) -> str | None:
    parts = [p for p in path[1:]] + ([extra] if extra else [])
    text = ""
    for part in parts:
        text += f"[{part}]" if part.isdigit() else (f".{part}" if text else part)
    return text or None


def validate_client_secret_request(body: Any) -> dict[str, Any]:
    """``body`` if the reference accepts it, else :class:`InvalidRequest` naming the field."""
    if not isinstance(body, dict):
        raise InvalidRequest("invalid_type", "The request body must be a JSON object.")
    session = body.get("session", {})
    kind = session.get("type", "realtime") if isinstance(session, dict) else "realtime"
    validator = VALIDATORS.get(kind) if isinstance(kind, str) else None
    if validator is None:
        raise InvalidRequest("invalid_value", "'session.type' must be 'realtime' or "
                             "'transcription'.", param="session.type")  # fmt: skip
    try:
        validator(body)
    except fastjsonschema.JsonSchemaValueException as exc:
        path = [str(p) for p in exc.path]
        if exc.rule == "additionalProperties":
            unknown = _UNKNOWN.search(exc.message)
            name = unknown.group(1).split(",")[0].strip(" '\"") if unknown else None
            param = _param(path, name)
            raise InvalidRequest("unknown_parameter", f"Unknown parameter: '{param}'.",
                                 param=param) from None  # fmt: skip
        param = _param(path)
        code = "invalid_type" if exc.rule == "type" else "invalid_value"
        where = f"'{param}'" if param else "The request"
        raise InvalidRequest(code, f"Invalid value for {where}.", param=param) from None
    return body
