"""A ``POST /v1/live/sessions`` body checked against the schema data derived from the
official SDK's types (``schemas/live.json``, made by ``scripts/derive_live_schema.py``):
unknown fields, wrong types and values outside the ranges are 400 with the field's path,
before anything is charged or asked upstream. Only the ``webrtc`` transport, with an SDP
offer that looks like one."""

from __future__ import annotations

from typing import Any

from tokenbroker.errors import InvalidRequest
from tokenbroker.flow.calls import check_offer
from tokenbroker.infra import strict_json
from tokenbroker.policy.schema_check import check, compile_schema, schema_data

_DEFS = schema_data("live.json")
# upstream the session's model is required; from a browser it may be left to the policy
_SESSION = {**_DEFS["MediaSessionConfigParam"], "required": []}
_CREATE = compile_schema(_DEFS["LiveCreateParams"], {**_DEFS, "MediaSessionConfigParam": _SESSION})


def parse_create(raw: bytes) -> tuple[dict[str, Any], str]:
    """The session the browser asked for and its SDP offer, or :class:`InvalidRequest`."""
    try:
        body = strict_json.loads(raw)
    except (ValueError, RecursionError):
        raise InvalidRequest("invalid_json", "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise InvalidRequest("invalid_type", "The request body must be a JSON object.")
    transport = body.get("transport")
    if isinstance(transport, dict) and transport.get("type") not in (None, "webrtc"):
        raise InvalidRequest("invalid_value", "Only the webrtc transport is accepted from a "
                             "browser.", param="transport.type")  # fmt: skip
    check(_CREATE, body)
    return body["session"], check_offer(body["transport"]["sdp"])
