#!/usr/bin/env python3
"""Derive the GPT-Live JSON Schema data from the official ``openai`` SDK's types.

    .venv/bin/python scripts/derive_live_schema.py --out service/tokenbroker/schemas/live.json

The SDK's TypedDicts and models are generated from OpenAI's OpenAPI document; pydantic
turns them into JSON Schema (2020-12). Kept: the validation facts (types, enums, consts,
properties, required, items, unions); dropped: titles and descriptions. Then tightened
where the service is stricter than the SDK's types (``reference/gpt-live.md`` §3, §7):

- request objects are closed (``additionalProperties: false``): the service refuses
  unknown fields, the SDK's TypedDicts do not say so;
- the limits the types do not carry: a custom voice id of 1 to 128 characters, at most 256
  allowed data-channel events (client event names by their pattern), at most 128 input
  messages, a wake policy's ``vad_threshold`` from 0 to 1, a backend's ``max_output_tokens``
  of at least 16, an ``idle_timeout_s`` of at least 1, a non-empty SDP.

``$defs`` holds ``LiveCreateParams`` (``POST /live/sessions``), ``LiveCreateResponse``,
``ConnectClientEvent`` and ``ConnectServerEvent`` (the sideband's events). The next SDK
version is a re-run of this script.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from openai.types.live.connect_client_event import ConnectClientEvent
from openai.types.live.connect_server_event import ConnectServerEvent
from openai.types.live.live_create_params import LiveCreateParams
from openai.types.live.live_create_response import LiveCreateResponse
from pydantic import TypeAdapter

ROOTS: dict[str, Any] = {
    "LiveCreateParams": LiveCreateParams,
    "LiveCreateResponse": LiveCreateResponse,
    "ConnectClientEvent": ConnectClientEvent,
    "ConnectServerEvent": ConnectServerEvent,
}
REQUESTS = ("LiveCreateParams", "ConnectClientEvent")  # closed objects
DROP = {"title", "description", "discriminator"}
EVENT_NAME = r"^(?:error|info|[a-z][a-z0-9_-]*(?:\.[a-z0-9_-]+)+)$"
LIMITS: dict[tuple[str, str], dict[str, Any]] = {  # (definition, property): keywords
    ("CustomVoiceParam", "id"): {"minLength": 1, "maxLength": 128},
    ("WakePolicy", "vad_threshold"): {"minimum": 0, "maximum": 1},
    ("MediaSessionConfigParam", "input"): {"maxItems": 128},
    ("MediaSessionConfigParam", "idle_timeout_s"): {"minimum": 1},
    ("Transport", "sdp"): {"minLength": 1},
}


def strip(node: Any) -> Any:
    if isinstance(node, list):
        return [strip(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in DROP or (key == "default" and value is None):
            continue
        out[key] = (
            {k: strip(v) for k, v in value.items()}
            if key in ("properties", "$defs")
            else strip(value)
        )
    return out


def close(defs: dict[str, Any], name: str, seen: set[str]) -> None:
    """``additionalProperties: false`` on ``name`` and every object it references."""
    if name in seen:
        return
    seen.add(name)

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                node.setdefault("additionalProperties", False)
            ref = node.get("$ref")
            if isinstance(ref, str):
                close(defs, ref.rsplit("/", 1)[-1], seen)
            for value in node.values():
                walk(value)

    walk(defs[name])


def tighten(defs: dict[str, Any]) -> None:
    for (name, prop), keywords in LIMITS.items():
        defs[name]["properties"][prop].update(keywords)
    events = defs["DataChannelConfigParam"]["properties"]
    for key in ("allowed_client_events", "allowed_server_events"):
        for branch in events[key]["anyOf"]:
            if branch.get("type") == "array":
                branch["maxItems"] = 256
                if key == "allowed_client_events":
                    branch["items"]["pattern"] = EVENT_NAME
    tokens = defs["ResponsesDelegationConfigParam"]["properties"]["max_output_tokens"]
    for branch in tokens["anyOf"]:
        if branch.get("type") == "integer":
            branch["minimum"] = 16


def derive() -> dict[str, Any]:
    defs: dict[str, Any] = {}
    for name, kind in ROOTS.items():
        schema = TypeAdapter(kind).json_schema(ref_template="#/$defs/{model}")
        inner = schema.pop("$defs", {})
        clashes = [key for key, value in inner.items() if key in defs and defs[key] != value]
        if clashes:  # the same name for another type in another root: that root's own
            text = json.dumps({"root": schema, "defs": inner})
            for key in clashes:
                text = text.replace(f'"#/$defs/{key}"', f'"#/$defs/{name}.{key}"')
            renamed = json.loads(text)
            schema = renamed["root"]
            inner = {(f"{name}.{k}" if k in clashes else k): v
                     for k, v in renamed["defs"].items()}  # fmt: skip
        defs.update(inner)
        defs[name] = schema
    defs = {name: strip(value) for name, value in defs.items()}
    for name in REQUESTS:
        close(defs, name, set())
    tighten(defs)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$comment": "Derived by scripts/derive_live_schema.py from the openai SDK's "
                        "types; do not edit.", "$defs": dict(sorted(defs.items()))}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.write_text(json.dumps(derive(), indent=1, sort_keys=False) + "\n")


if __name__ == "__main__":
    main()
