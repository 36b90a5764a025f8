"""Apply a user's policy to a validated session request: the config sent upstream.

Pure. Omitted fields take the policy default; enumerated values outside the policy's
allowlist raise PermissionDenied with the field's ``*_not_allowed`` code; numbers outside
the policy's range are clamped and named in ``adjusted`` (the Policy-Adjusted header).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tokenbroker.errors import InvalidRequest, PermissionDenied
from tokenbroker.families.realtime.rules import McpServers, RealtimeRules, TurnDetection, rules_of
from tokenbroker.policy.model import NumberRange, Policy


@dataclass(frozen=True, slots=True)
class Enforced:
    session: dict[str, Any]
    adjusted: tuple[str, ...]


def _deny(code: str, param: str, message: str) -> PermissionDenied:
    return PermissionDenied(code, message, param=param or None)


def _choose(
    request: dict[str, Any],
    key: str,
    allowed: tuple[str, ...] | None,
    code: str,
    parent: str = "",
) -> str | None:
    """The requested value if allowed, the first allowed value if omitted."""
    value = request.get(key)
    if value is None:
        return allowed[0] if allowed else None
    if not allowed or value not in allowed:
        param = f"{parent}.{key}" if parent else key
        what = ", ".join(allowed) if allowed else "none"
        raise _deny(code, param, f"'{param}' {value!r} is not allowed by your policy ({what}).")
    return str(value)


def _clamp(value: float, bounds: NumberRange, param: str, adjusted: list[str]) -> float:
    clamped = min(max(value, bounds.min), bounds.max)
    if clamped != value:
        adjusted.append(param)
    return clamped


def _instructions(rules: RealtimeRules, request: dict[str, Any]) -> str | None:
    text = request.get("instructions")
    rule = rules.instructions
    if rule is None or rule.mode == "fixed":
        if text is not None:
            raise _deny(
                "instructions_not_allowed",
                "instructions",
                "Your policy does not allow setting 'instructions'.",
            )
        return rule.text if rule else None
    if text is not None and rule.max_chars is not None and len(text) > rule.max_chars:
        raise _deny(
            "instructions_not_allowed",
            "instructions",
            f"'instructions' is longer than your policy allows ({rule.max_chars} characters).",
        )
    if rule.mode == "prefix":
        return rule.text if not text else f"{rule.text}\n\n{text}"
    return text


def _mcp(rule: McpServers | None, tool: dict[str, Any], param: str) -> dict[str, Any]:
    """An MCP tool the policy lists (by server URL or connector id), approval forced."""
    listed = rule is not None and (
        tool.get("server_url") in rule.servers or tool.get("connector_id") in rule.connectors
    )
    if rule is None or not listed:
        raise _deny("tools_not_allowed", param, "This MCP server is not allowed by your policy.")
    return {**tool, "require_approval": rule.require_approval}


def _tools(rules: RealtimeRules, request: dict[str, Any], session: dict[str, Any]) -> None:
    rule = rules.tools
    wanted = request.get("tools")
    if rule.mode == "fixed":
        if wanted is not None:
            raise _deny(
                "tools_not_allowed", "tools", "Your policy sets the tools; do not send any."
            )
        tools: list[dict[str, Any]] = list(rule.list)
    elif rule.mode == "client":
        tools = list(wanted or ())
        for i, tool in enumerate(tools):
            if tool.get("type") == "mcp":
                tools[i] = _mcp(rule.mcp, tool, f"tools[{i}]")
            elif tool.get("name") not in rule.names:
                raise _deny(
                    "tools_not_allowed",
                    f"tools[{i}]",
                    f"Tool {tool.get('name')!r} is not allowed by your policy.",
                )
    else:
        if wanted:
            raise _deny("tools_not_allowed", "tools", "Your policy does not allow tools.")
        tools = []
    if tools:
        session["tools"] = tools
    choice = request.get("tool_choice")
    if choice is None or choice in ("auto", "none"):
        if choice is not None:
            session["tool_choice"] = choice
        return
    names = {tool.get("name") for tool in tools}
    if (choice == "required" and not tools) or (choice != "required" and choice not in names):
        raise InvalidRequest(
            "invalid_value",
            f"'tool_choice' {choice!r} does not match the session's tools.",
            param="tool_choice",
        )
    session["tool_choice"] = choice


def _transcription(rules: RealtimeRules, request: dict[str, Any], session: dict[str, Any]) -> None:
    if "input_audio_transcription" not in request:
        return
    wanted = request["input_audio_transcription"]
    if wanted is None:
        session["input_audio_transcription"] = None
        return
    rule = rules.transcription
    if rule is None:
        raise _deny(
            "transcription_not_allowed",
            "input_audio_transcription",
            "Your policy does not allow input audio transcription.",
        )
    config = dict(wanted)
    config["model"] = _choose(
        wanted, "model", rule.models, "transcription_not_allowed", "input_audio_transcription"
    )
    session["input_audio_transcription"] = config


def _turn_detection(
    rules: RealtimeRules, request: dict[str, Any], session: dict[str, Any], adjusted: list[str]
) -> None:
    rule: TurnDetection | None = rules.turn_detection
    if "turn_detection" not in request:
        if rule is not None and rule.types[0] != "server_vad":
            session["turn_detection"] = {"type": rule.types[0]}
        return
    wanted = request["turn_detection"]
    if rule is None or (wanted is None and not rule.allow_none):
        raise _deny(
            "turn_detection_not_allowed",
            "turn_detection",
            "Your policy does not allow changing turn detection.",
        )
    if wanted is None:
        session["turn_detection"] = None
        return
    config = dict(wanted)
    code = "turn_detection_not_allowed"
    config["type"] = _choose(wanted, "type", rule.types, code, "turn_detection")
    if rule.eagerness is not None:
        _choose(wanted, "eagerness", rule.eagerness, code, "turn_detection")
    for key in ("threshold", "prefix_padding_ms", "silence_duration_ms"):
        bounds = getattr(rule, key)
        if key in config and bounds is not None:
            value = _clamp(config[key], bounds, f"turn_detection.{key}", adjusted)
            config[key] = value if key == "threshold" else round(value)
    session["turn_detection"] = config


def _noise_reduction(
    rules: RealtimeRules, request: dict[str, Any], session: dict[str, Any]
) -> None:
    if "input_audio_noise_reduction" not in request:
        return
    wanted = request["input_audio_noise_reduction"]
    if wanted is not None and (
        rules.noise_reduction is None or wanted.get("type") not in rules.noise_reduction
    ):
        raise _deny(
            "noise_reduction_not_allowed",
            "input_audio_noise_reduction",
            "Your policy does not allow this noise reduction.",
        )
    session["input_audio_noise_reduction"] = wanted


def enforce(policy: Policy, request: dict[str, Any]) -> Enforced:
    """The session config to send upstream for ``request`` under ``policy``."""
    rules = rules_of(policy)
    if policy.disabled:
        raise _deny("policy_disabled", "", "Your account may not create sessions.")
    adjusted: list[str] = []
    session: dict[str, Any] = {
        "model": _choose(request, "model", rules.models, "model_not_allowed")
    }

    modalities = request.get("modalities")
    allowed_sets = rules.modalities
    if modalities is None:
        if allowed_sets:
            session["modalities"] = list(allowed_sets[0])
    elif not allowed_sets or set(modalities) not in [set(s) for s in allowed_sets]:
        raise _deny(
            "modalities_not_allowed",
            "modalities",
            f"'modalities' {modalities!r} is not allowed by your policy.",
        )
    else:
        session["modalities"] = modalities

    for key, allowed, code in (
        ("voice", rules.voices, "voice_not_allowed"),
        ("input_audio_format", rules.input_audio_formats, "input_audio_format_not_allowed"),
        ("output_audio_format", rules.output_audio_formats, "output_audio_format_not_allowed"),
    ):
        value = _choose(request, key, allowed, code)
        if value is not None:
            session[key] = value

    instructions = _instructions(rules, request)
    if instructions is not None:
        session["instructions"] = instructions

    _tools(rules, request, session)
    _transcription(rules, request, session)
    _turn_detection(rules, request, session, adjusted)
    _noise_reduction(rules, request, session)

    if rules.temperature is not None:
        wanted = request.get("temperature")
        session["temperature"] = (
            rules.temperature.default
            if wanted is None
            else _clamp(wanted, rules.temperature, "temperature", adjusted)
        )
    elif "temperature" in request:
        session["temperature"] = request["temperature"]

    cap = rules.max_response_output_tokens
    tokens = request.get("max_response_output_tokens")
    if cap is not None:
        if tokens is None:
            session["max_response_output_tokens"] = cap.default
        elif tokens == "inf" or tokens > cap.max:
            session["max_response_output_tokens"] = cap.max
            adjusted.append("max_response_output_tokens")
        else:
            session["max_response_output_tokens"] = tokens
    elif tokens is not None:
        session["max_response_output_tokens"] = tokens

    return Enforced(session, tuple(adjusted))
