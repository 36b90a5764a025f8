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

_ANY_OBJECT = {"type": "object"}


def _browser_defs(defs: dict[str, Any]) -> dict[str, Any]:
    """The definitions a browser's request is checked with: only those the create call
    reaches, the session's model left to the policy (upstream it is required), and the
    backend's tools, tool choice and Decisions questions checked as objects only (the
    policy owns the delegation; a browser's own is refused unless allowed, its MCP servers
    always, and the upstream checks the rest). Compiling every tool's shape cost ~80 MiB of
    memory per process for fields a browser can rarely send."""
    defs = {**defs, "MediaSessionConfigParam": {**defs["MediaSessionConfigParam"],
                                                "required": []}}  # fmt: skip
    responses = defs["ResponsesDelegationConfigParam"]
    defs["ResponsesDelegationConfigParam"] = {**responses, "properties": {
        **responses["properties"], "tools": {"type": "array", "items": _ANY_OBJECT},
        "tool_choice": {}}}  # fmt: skip
    for name in ("DelegationDecisions", "DecisionTriggerParam"):
        defs[name] = _ANY_OBJECT
    reached: set[str] = set()
    stack: list[Any] = [defs["LiveCreateParams"]]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.rsplit("/", 1)[-1] not in reached:
                reached.add(ref.rsplit("/", 1)[-1])
                stack.append(defs[ref.rsplit("/", 1)[-1]])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return {name: defs[name] for name in reached}


_DEFS = schema_data("live.json")
_CREATE = compile_schema(_DEFS["LiveCreateParams"], _browser_defs(_DEFS))


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
