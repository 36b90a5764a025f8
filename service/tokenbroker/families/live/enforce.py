"""A browser's GPT-Live session request made into the session the broker sends upstream.

Pure. What the policy owns is set by the broker (delegation, the data channel's events,
the safety identifier); what the browser may choose is checked against the policy
(403 ``*_not_allowed`` with its ``param``) or clamped (named in ``Policy-Adjusted``); what
the policy does not let it send is refused. The data channel's permissions are always
sent, never omitted (omitted means "all"); a browser may narrow them, never widen them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tokenbroker.errors import PermissionDenied, Unavailable
from tokenbroker.families.live.policy import LivePolicy

CHANNEL = "session.client.data_channel"


@dataclass(frozen=True, slots=True)
class Enforced:
    session: dict[str, Any]
    adjusted: tuple[str, ...]  # the fields the policy changed (Policy-Adjusted)


def _deny(code: str, param: str, message: str) -> PermissionDenied:
    return PermissionDenied(code, message, param=param)


def _browser_only(policy: LivePolicy, session: Mapping[str, Any]) -> None:
    for name in ("delegation", "triggers", "input", "store", "safety_identifier"):
        if name in session and name not in policy.browser:
            raise _deny(f"{name}_not_allowed", f"session.{name}",
                        f"Your policy does not let the browser set '{name}'.")  # fmt: skip


def _voice(policy: LivePolicy, session: Mapping[str, Any]) -> Any:
    voice = ((session.get("audio") or {}).get("output") or {}).get("voice")
    if voice is None:
        return policy.voices[0] if policy.voices else None
    name = voice.get("id") if isinstance(voice, dict) else voice
    if policy.voices is None or name not in policy.voices:
        raise _deny("voice_not_allowed", "session.audio.output.voice",
                    "This voice is not allowed by your policy.")  # fmt: skip
    return voice


def _instructions(policy: LivePolicy, text: Any) -> str | None:
    rule = policy.instructions
    if rule is None or rule.mode == "fixed":
        if text:
            raise _deny("instructions_not_allowed", "session.instructions",
                        "Your policy sets the instructions; send none.")  # fmt: skip
        return rule.text if rule else None
    if text and rule.max_chars is not None and len(text) > rule.max_chars:
        raise _deny("instructions_not_allowed", "session.instructions",
                    f"'instructions' is longer than your policy allows ({rule.max_chars} "
                    "characters).")  # fmt: skip
    if rule.mode == "prefix":
        return rule.text if not text else f"{rule.text}\n\n{text}"
    return text or None


def _delegation(policy: LivePolicy, session: Mapping[str, Any],
                secrets: Mapping[str, str]) -> dict[str, Any] | None:  # fmt: skip
    owned = policy.delegation
    if "delegation" in session:
        if owned.mode != "none":
            raise _deny("delegation_not_allowed", "session.delegation",
                        "Your policy sets the delegation; send none.")  # fmt: skip
        sent = session["delegation"] or {}
        tools = (sent.get("responses") or {}).get("tools") or [] if isinstance(sent, dict) else []
        for i, tool in enumerate(tools):
            if isinstance(tool, dict) and tool.get("type") == "mcp":
                raise _deny("tools_not_allowed", f"session.delegation.responses.tools[{i}]",
                            "MCP servers come from the policy, not the browser.")  # fmt: skip
        return session["delegation"]  # type: ignore[no-any-return]
    if owned.mode == "client":
        return {"type": "client"}
    if owned.mode != "responses":
        return None
    responses = {**owned.responses}
    if "tools" in responses:
        responses["tools"] = [_with_secrets(tool, secrets) for tool in responses["tools"]]
    return {"type": "responses", "responses": responses}


def _with_secrets(tool: Mapping[str, Any], secrets: Mapping[str, str]) -> dict[str, Any]:
    """An MCP tool with its secrets read from the environment's values by name."""
    out = {k: v for k, v in tool.items() if k not in ("authorization_env", "headers_env")}
    names = [tool["authorization_env"]] if "authorization_env" in tool else []
    names += list((tool.get("headers_env") or {}).values())
    missing = [name for name in names if not secrets.get(name)]
    if missing:
        message = "The broker is missing a secret its policy names; an operator must set it."
        raise Unavailable("live_secret_missing", message, headers={"Retry-After": "60"})
    if "authorization_env" in tool:
        out["authorization"] = secrets[tool["authorization_env"]]
    if tool.get("headers_env"):
        out["headers"] = {header: secrets[name] for header, name in tool["headers_env"].items()}
    return out


def _idle(policy: LivePolicy, sent: Any, adjusted: list[str]) -> int | None:
    rule = policy.idle_timeout
    if rule is None:
        if sent is not None:
            raise _deny("idle_timeout_not_allowed", "session.idle_timeout_s",
                        "Your policy does not let the browser set an idle timeout.")  # fmt: skip
        return None
    if rule.force is not None:
        if sent is not None and sent != rule.force:
            adjusted.append("session.idle_timeout_s")
        return rule.force
    if sent is None:
        return rule.default
    if sent > rule.max:
        adjusted.append("session.idle_timeout_s")
        return rule.max
    return int(sent)


def _wake(policy: LivePolicy, sent: Any, adjusted: list[str]) -> dict[str, Any] | None:
    rule = policy.wake
    if rule is None:
        if sent is not None:
            raise _deny("wake_policy_not_allowed", "session.wake_policy",
                        "Your policy does not let the browser set a wake policy.")  # fmt: skip
        return None
    if sent is None and rule.mode == "allow":
        return None
    wake: dict[str, Any] = {"type": "speech", **(sent or {})}
    vad = rule.vad_threshold
    if vad is not None:
        value = wake.get("vad_threshold", vad.default)
        if value is not None:
            clamped = min(max(value, vad.min), vad.max)
            if "vad_threshold" in wake and clamped != value:
                adjusted.append("session.wake_policy.vad_threshold")
            wake["vad_threshold"] = clamped
    return wake


def _client_events(policy: LivePolicy, sent: Any, adjusted: list[str]) -> list[str]:
    allowed = list(policy.client_events)
    if sent is None:
        return allowed
    if sent == "all":
        adjusted.append(f"{CHANNEL}.allowed_client_events")
        return allowed
    kept = [name for name in dict.fromkeys(sent) if name in allowed]
    if len(kept) != len(set(sent)):
        adjusted.append(f"{CHANNEL}.allowed_client_events")
    return kept


def _selector(name: str) -> dict[str, str]:
    kind, _, inner = name.partition(":")
    return {"type": kind, "response_event": inner} if inner else {"type": kind}


def _server_events(policy: LivePolicy, sent: Any, adjusted: list[str]) -> Any:
    if policy.server_events is None:  # the policy allows all: the browser's choice
        return "all" if sent is None else sent
    allowed = [_selector(name) for name in policy.server_events]
    if sent is None:
        return allowed
    if sent == "all":
        adjusted.append(f"{CHANNEL}.allowed_server_events")
        return allowed
    kept = [s for s in sent if s in allowed or {"type": s.get("type")} in allowed]
    if len(kept) != len(sent):
        adjusted.append(f"{CHANNEL}.allowed_server_events")
    return kept


def enforce_live(
    policy: LivePolicy, session: Mapping[str, Any], pseudonym: str,
    secrets: Mapping[str, str],
) -> Enforced:  # fmt: skip
    """The session to send upstream for a browser's ``session`` (checked against the
    schema already), or :class:`PermissionDenied`."""
    _browser_only(policy, session)
    adjusted: list[str] = []
    model = session.get("model", policy.models[0])
    if model not in policy.models:
        raise _deny("model_not_allowed", "session.model", "This model is not allowed by your "
                    f"policy (allowed: {', '.join(policy.models)}).")  # fmt: skip
    out: dict[str, Any] = {"model": model}
    instructions = _instructions(policy, session.get("instructions"))
    if instructions is not None:
        out["instructions"] = instructions
    voice = _voice(policy, session)
    if voice is not None:
        out["audio"] = {"output": {"voice": voice}}
    delegation = _delegation(policy, session, secrets)
    if delegation is not None:
        out["delegation"] = delegation
    channel = (session.get("client") or {}).get("data_channel") or {}
    out["client"] = {"data_channel": {
        "allowed_client_events": _client_events(
            policy, channel.get("allowed_client_events"), adjusted),
        "allowed_server_events": _server_events(
            policy, channel.get("allowed_server_events"), adjusted),
    }}  # fmt: skip
    idle = _idle(policy, session.get("idle_timeout_s"), adjusted)
    if idle is not None:
        out["idle_timeout_s"] = idle
    wake = _wake(policy, session.get("wake_policy"), adjusted)
    if wake is not None:
        out["wake_policy"] = wake
    for name in ("triggers", "input", "store"):
        if name in session:
            out[name] = session[name]
    out["safety_identifier"] = session.get("safety_identifier") or pseudonym
    return Enforced(out, tuple(adjusted))
