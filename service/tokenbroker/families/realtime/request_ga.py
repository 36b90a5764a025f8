"""Checking a GA ``client_secrets`` request against the GA schema data.

The session's ``type`` picks its schema first, so an error names the field, not the
union. The policy vocabulary's GA values and ranges (:data:`FACTS`) are read out of the
same data; nothing here lists an enum by hand.
"""

from __future__ import annotations

from typing import Any

from tokenbroker.errors import InvalidRequest
from tokenbroker.policy.schema_check import check, compile_schema, schema_data

_DEFS = schema_data("realtime-client-secrets.json")
_SESSION_OF = {
    "realtime": "RealtimeSessionCreateRequestGA",
    "transcription": "RealtimeTranscriptionSessionCreateRequestGA",
}


def _compile(component: str) -> Any:
    request = dict(_DEFS["RealtimeCreateClientSecretRequest"])
    session = {"$ref": f"#/$defs/{component}"}
    return compile_schema({**request, "properties": {**request["properties"], "session": session}},
                          _DEFS)  # fmt: skip


VALIDATORS = {kind: _compile(component) for kind, component in _SESSION_OF.items()}


def _facts() -> dict[str, tuple[Any, ...]]:
    """Allowed values and ranges the policy vocabulary checks against, from the data."""
    defs = _DEFS  # short name for the lines below
    session = defs["RealtimeSessionCreateRequestGA"]["properties"]
    speed = session["audio"]["properties"]["output"]["properties"]["speed"]
    seconds = defs["RealtimeCreateClientSecretRequest"]["properties"]["expires_after"]
    seconds = seconds["properties"]["seconds"]
    truncation = defs["RealtimeTruncation"]["oneOf"]
    mcp = defs["MCPTool"]["properties"]
    approval = next(b for b in mcp["require_approval"]["anyOf"][0]["oneOf"] if "enum" in b)
    return {
        "connectors": tuple(mcp["connector_id"]["enum"]),
        "require_approval": tuple(approval["enum"]),
        "session_types": tuple(_SESSION_OF),
        "reasoning_efforts": tuple(defs["RealtimeReasoningEffort"]["enum"]),
        "include": tuple(session["include"]["items"]["enum"]),
        "truncation": (*truncation[0]["enum"], *truncation[1]["properties"]["type"]["enum"]),
        "speed": (speed["minimum"], speed["maximum"]),
        "client_secret_ttl": (seconds["minimum"], seconds["maximum"]),
    }


FACTS = _facts()


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
    result: dict[str, Any] = check(validator, body)
    return result
