"""The ``live:`` section of a policy: what a user may ask of a GPT-Live session.

    live:
      models: [gpt-live-1.1, gpt-live-1]     # allowed; the first is the default
      voices: [marin, cedar]                 # built-in names or custom voice ids
      instructions: {mode: fixed, text: "…", max_chars: 4000}   # fixed | prefix | client
      delegation:                            # owned by the policy: none | client | responses
        mode: responses
        responses: {model: gpt-5-mini, instructions: "…", tools: [...], tool_choice: auto,
                    reasoning: {effort: low}, max_output_tokens: 2000}
      browser: [triggers]                    # what the browser may send of: delegation,
                                             # triggers, input, store, safety_identifier
      idle_timeout_s: {max: 120, default: 30}    # clamped; {force: 30} sets it always
      wake_policy: {mode: allow, vad_threshold: {min: 0.3, max: 0.8, default: 0.5}}
      data_channel:                          # what the browser's data channel may carry
        client_events: [session.input_audio.mute, session.input_audio.unmute, session.close]
        server_events: [session.started, session.output_transcript.delta, error]  # or all

An MCP tool of the policy's delegation names its secrets by environment variable
(``authorization_env: TOKENBROKER_MCP_CRM``, ``headers_env: {X-Key: TOKENBROKER_MCP_KEY}``):
never a secret in the file, and the values never go to the browser. Pure parsing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from tokenbroker.policy.model import Instructions, NumberRange
from tokenbroker.policy.primitives import Errors, mapping, number_range, string_list
from tokenbroker.policy.vocabulary import Section

# The data channel's defaults: the browser may mute, unmute and close, nothing that changes
# the session or injects text; it hears what a voice UI shows, no backend internals.
DEFAULT_CLIENT_EVENTS = ("session.input_audio.mute", "session.input_audio.unmute",
                         "session.close")  # fmt: skip
DEFAULT_SERVER_EVENTS = (
    "session.started", "session.input_audio.muted", "session.input_audio.unmuted",
    "session.input_transcript.delta", "session.output_transcript.delta", "session.closed",
    "error", "info",
)  # fmt: skip
BROWSER_FIELDS = ("delegation", "triggers", "input", "store", "safety_identifier")
DELEGATION_MODES = ("none", "client", "responses")
RESPONSES_KEYS = ("model", "instructions", "tools", "tool_choice", "reasoning",
                  "max_output_tokens", "parallel_tool_calls", "text", "service_tier")  # fmt: skip
SECRET_ENV = re.compile(r"^TOKENBROKER_MCP_[A-Z0-9_]+$")
EVENT_NAME = re.compile(r"^(?:error|info|[a-z][a-z0-9_-]*(?:\.[a-z0-9_-]+)+)$")


@dataclass(frozen=True, slots=True)
class IdleTimeout:
    max: int
    default: int | None = None
    force: int | None = None


@dataclass(frozen=True, slots=True)
class WakeRule:
    mode: str = "allow"  # allow | force
    vad_threshold: NumberRange | None = None


@dataclass(frozen=True, slots=True)
class Delegation:
    mode: str = "none"  # none | client | responses
    responses: dict[str, Any] = field(default_factory=dict)  # as sent, secrets by env name


@dataclass(frozen=True, slots=True)
class LivePolicy:
    models: tuple[str, ...]
    voices: tuple[str, ...] | None = None  # None: the browser may not choose one
    instructions: Instructions | None = None  # None: the browser may not send any
    delegation: Delegation = field(default_factory=Delegation)
    browser: tuple[str, ...] = ()
    idle_timeout: IdleTimeout | None = None  # None: the browser may not set it
    wake: WakeRule | None = None  # None: the browser may not set a wake policy
    client_events: tuple[str, ...] = DEFAULT_CLIENT_EVENTS
    server_events: tuple[str, ...] | None = DEFAULT_SERVER_EVENTS  # None: all

    def secret_names(self) -> list[str]:
        """The environment variables the delegation's MCP tools name."""
        names = []
        for tool in self.delegation.responses.get("tools", ()):
            if tool.get("authorization_env"):
                names.append(tool["authorization_env"])
            names += list((tool.get("headers_env") or {}).values())
        return names


KEYS = ("models", "voices", "instructions", "delegation", "browser", "idle_timeout_s",
        "wake_policy", "data_channel")  # fmt: skip


def _instructions(raw: Any, path: str, errors: Errors) -> Instructions | None:
    raw = mapping(raw, path, errors, {"mode": None, "text": None, "max_chars": None})
    mode, text, cap = raw.get("mode"), raw.get("text", ""), raw.get("max_chars")
    if mode not in ("fixed", "prefix", "client"):
        errors.append(f"{path}.mode: must be one of fixed, prefix, client")
        return None
    if not isinstance(text, str) or (mode != "client" and not text):
        errors.append(f"{path}.text: must be a non-empty string when mode is {mode}")
        return None
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 0):
        errors.append(f"{path}.max_chars: must be a whole number of at least 0")
        return None
    return Instructions(mode, text, cap)


def _tool(raw: Any, path: str, errors: Errors) -> dict[str, Any]:
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        errors.append(f"{path}: must be a tool mapping with a type")
        return {}
    if raw["type"] == "mcp":
        for key in ("authorization", "headers"):
            if key in raw:
                errors.append(f"{path}.{key}: secrets are named by environment variable "
                              f"({key}_env), never written in the policy")  # fmt: skip
        names = [raw.get("authorization_env")] if "authorization_env" in raw else []
        headers = raw.get("headers_env", {})
        if not isinstance(headers, dict):
            errors.append(f"{path}.headers_env: must map header names to variables")
            headers = {}
        for name in [*names, *headers.values()]:
            if not isinstance(name, str) or not SECRET_ENV.match(name):
                errors.append(f"{path}: {name!r} must be an environment variable named "
                              "TOKENBROKER_MCP_…")  # fmt: skip
    return dict(raw)


def _delegation(raw: Any, path: str, errors: Errors) -> Delegation:
    raw = mapping(raw, path, errors, {"mode": None, "responses": None})
    mode = raw.get("mode", "none")
    if mode not in DELEGATION_MODES:
        errors.append(f"{path}.mode: must be one of {', '.join(DELEGATION_MODES)}")
        return Delegation()
    if (mode == "responses") != ("responses" in raw):
        errors.append(f"{path}.responses: is required when mode is responses, and only then")
        return Delegation()
    if mode != "responses":
        return Delegation(mode)
    responses = mapping(raw["responses"], f"{path}.responses", errors,
                        dict.fromkeys(RESPONSES_KEYS))  # fmt: skip
    if not isinstance(responses.get("model"), str) or not responses.get("model"):
        errors.append(f"{path}.responses.model: is required (the backend model)")
    tools = responses.get("tools", [])
    if not isinstance(tools, list):
        errors.append(f"{path}.responses.tools: must be a list")
        tools = []
    checked = [_tool(t, f"{path}.responses.tools[{i}]", errors) for i, t in enumerate(tools)]
    return Delegation("responses", {**responses, **({"tools": checked} if tools else {})})


def _idle(raw: Any, path: str, errors: Errors) -> IdleTimeout | None:
    raw = mapping(raw, path, errors, {"max": None, "default": None, "force": None})
    values = {}
    for key, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            errors.append(f"{path}.{key}: must be a whole number of seconds, at least 1")
        else:
            values[key] = value
    if "force" in values:
        if set(values) != {"force"}:
            errors.append(f"{path}: force stands alone (no max or default beside it)")
        return IdleTimeout(values["force"], force=values["force"])
    if "max" not in values:
        errors.append(f"{path}.max: is required (or force)")
        return None
    if values.get("default", 0) > values["max"]:
        errors.append(f"{path}.default: is greater than max ({values['max']})")
    return IdleTimeout(values["max"], values.get("default"))


def _wake(raw: Any, path: str, errors: Errors) -> WakeRule | None:
    raw = mapping(raw, path, errors, {"mode": None, "vad_threshold": None})
    mode = raw.get("mode", "allow")
    if mode not in ("allow", "force"):
        errors.append(f"{path}.mode: must be one of allow, force")
    vad = raw.get("vad_threshold")
    threshold = (number_range(0, 1, with_default=True)(vad, f"{path}.vad_threshold", errors)
                 if vad is not None else None)  # fmt: skip
    return WakeRule(mode, threshold)


def _events(raw: Any, path: str, errors: Errors, *, allow_all: bool) -> tuple[str, ...] | None:
    if raw == "all" and allow_all:
        return None
    if not isinstance(raw, list) or len(raw) > 256:
        errors.append(f"{path}: must be a list of event types (at most 256)"
                      + (" or all" if allow_all else ""))  # fmt: skip
        return ()
    for i, name in enumerate(raw):
        # a server event may be one of the backend's: response.event:<its type>
        parts = name.split(":", 1) if isinstance(name, str) and allow_all else [name]
        if (
            not all(isinstance(p, str) and EVENT_NAME.match(p) for p in parts)
            or (len(parts) == 2 and parts[0] != "response.event")
            or (parts == ["response.event"])
        ):
            hint = " (response.event:<type> for a backend event)" if allow_all else ""
            errors.append(f"{path}[{i}]: {name!r} is not an event type{hint}")
    return tuple(n for n in raw if isinstance(n, str))


def parse_live(raw: Any, path: str, errors: Errors) -> LivePolicy | None:
    """The ``live`` section of a policy, or None with its errors appended by path."""
    raw = mapping(raw, path, errors, dict.fromkeys(KEYS))
    before = len(errors)
    models = string_list(None, what="model")(raw.get("models"), f"{path}.models", errors)
    fields: dict[str, Any] = {"models": models}
    if "voices" in raw:
        fields["voices"] = string_list(None, what="voice")(raw["voices"], f"{path}.voices",
                                                           errors)  # fmt: skip
    if "instructions" in raw:
        fields["instructions"] = _instructions(raw["instructions"], f"{path}.instructions",
                                               errors)  # fmt: skip
    if "delegation" in raw:
        fields["delegation"] = _delegation(raw["delegation"], f"{path}.delegation", errors)
    if "browser" in raw:
        fields["browser"] = string_list(BROWSER_FIELDS, what="field")(
            raw["browser"], f"{path}.browser", errors)  # fmt: skip
    if "idle_timeout_s" in raw:
        fields["idle_timeout"] = _idle(raw["idle_timeout_s"], f"{path}.idle_timeout_s", errors)
    if "wake_policy" in raw:
        fields["wake"] = _wake(raw["wake_policy"], f"{path}.wake_policy", errors)
    if "data_channel" in raw:
        where = f"{path}.data_channel"
        channel = mapping(raw["data_channel"], where, errors,
                          {"client_events": None, "server_events": None})  # fmt: skip
        for key, allow_all in (("client_events", False), ("server_events", True)):
            if key in channel:
                fields[key] = _events(channel[key], f"{where}.{key}", errors,
                                      allow_all=allow_all)  # fmt: skip
    return LivePolicy(**fields) if len(errors) == before else None


def _section(path: str, fields: dict[str, Any], disabled: bool, errors: Errors) -> Any:
    return fields.get("live")  # parsed whole by parse_live; None: no GPT-Live


def _models(rules: LivePolicy) -> list[str]:
    """The GPT-Live models a policy names, and its delegation's backend model."""
    backend = rules.delegation.responses.get("model")
    return [*rules.models, *([backend] if isinstance(backend, str) else [])]


SECTION = Section("live", {"live": parse_live}, _section, models=_models)
