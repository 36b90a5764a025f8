"""The fake upstream's request check: JSON Schema data derived from the official OpenAPI
documents (``tokenbroker/schemas/``, made by ``scripts/derive_schemas.py``), checked by
``jsonschema``.

Independent of the broker's own validator on purpose: what the broker sends is checked
against the documents, not against the broker's reading of them. Failures take OpenAI's
400 shape: ``unknown_parameter``, ``invalid_type`` or ``invalid_value`` with ``param``.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from tokenbroker.infra import strict_json

# (schema file, component) per endpoint the fake serves
SESSIONS = ("realtime-sessions.json", "RealtimeSessionCreateRequest")
CLIENT_SECRETS = ("realtime-client-secrets.json", "RealtimeCreateClientSecretRequest")
CALL_CREATE = ("realtime-calls.json", "RealtimeCallCreateRequest")
SESSION_UPDATE = ("realtime-calls.json", "RealtimeClientEventSessionUpdate")
LIVE_CREATE = ("live.json", "LiveCreateParams")  # derived from the official SDK's types


class Refused(Exception):
    def __init__(self, code: str, param: str | None, message: str) -> None:
        super().__init__(message)
        self.code, self.param, self.message = code, param, message


@functools.cache
def validator(schema_file: str, component: str) -> Draft202012Validator:
    data = json.loads(resources.files("tokenbroker").joinpath("schemas", schema_file).read_text())
    return Draft202012Validator({**data, "$ref": f"#/$defs/{component}"})


def _param(path: Any, extra: str | None = None) -> str | None:
    text = ""
    for part in [*path, *([extra] if extra else [])]:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or None


def _refusal(error: ValidationError) -> Refused:
    if error.validator == "additionalProperties":
        schema: Any = error.schema
        instance: Any = error.instance
        extra = sorted(set(instance) - set(schema.get("properties", {})))[0]
        param = _param(error.absolute_path, extra)
        return Refused("unknown_parameter", param, f"Unknown parameter: '{param}'.")
    param = _param(error.absolute_path)
    code = "invalid_type" if error.validator == "type" else "invalid_value"
    where = f"'{param}'" if param else "the body"
    return Refused(code, param, f"Invalid value for {where}: {error.message}")


def check(raw: bytes, endpoint: tuple[str, str]) -> dict[str, Any]:
    """The request body if the reference accepts it, else :class:`Refused`."""
    try:
        body = strict_json.loads(raw) if raw.strip() else {}
    except (ValueError, RecursionError):
        raise Refused("invalid_json", None, "We could not parse the JSON body.") from None
    error = best_match(validator(*endpoint).iter_errors(body))
    if error is not None:
        raise _refusal(error)
    if not isinstance(body, dict):
        raise Refused("invalid_type", None, "The body must be a JSON object.")
    return body


def check_event(event: Any, schema: tuple[str, str]) -> None:
    """A sideband event the reference accepts, else :class:`Refused`."""
    error = best_match(validator(*schema).iter_errors(event))
    if error is not None:
        raise _refusal(error)
