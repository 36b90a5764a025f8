"""The policy on a GA request's own fields (pure): session type, speed, tracing, the
client secret's lifetime, reasoning effort, stored prompts, include and truncation.

The rest of a GA session is the seed's fields in other places; :func:`enforce` handles
those. Params name the GA field (``session.audio.output.speed``).
"""

from __future__ import annotations

from typing import Any

from tokenbroker.errors import PermissionDenied
from tokenbroker.families.realtime.rules import rules_of
from tokenbroker.policy.model import Policy


def _deny(code: str, param: str, message: str) -> PermissionDenied:
    return PermissionDenied(code, message, param=param)


def _allowlisted(
    value: Any, allowed: tuple[str, ...] | None, code: str, param: str, what: str
) -> None:
    if allowed is None or value not in allowed:
        raise _deny(code, param, f"{what} {value!r} is not allowed by your policy.")


def enforce_ga(
    policy: Policy, ga_only: dict[str, Any], ttl: int | None
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The GA-only fields to send, and the names of those the policy clamped."""
    rules = rules_of(policy)
    adjusted: list[str] = []
    out: dict[str, Any] = {}
    kind = ga_only.get("type", "realtime")
    _allowlisted(kind, rules.session_types, "session_type_not_allowed", "session.type",
                 "Session type")  # fmt: skip
    out["type"] = kind
    if ga_only.get("custom_voice"):
        out["custom_voice"] = True
    if "parallel_tool_calls" in ga_only:
        out["parallel_tool_calls"] = ga_only["parallel_tool_calls"]

    speed, rule = ga_only.get("speed"), rules.speed
    if rule is not None and (speed is not None or rule.default is not None):
        chosen = rule.default if speed is None else min(max(speed, rule.min), rule.max)
        if speed is not None and chosen != speed:
            adjusted.append("session.audio.output.speed")
        out["speed"] = chosen
    elif speed is not None:
        out["speed"] = speed

    tracing = rules.tracing
    if tracing.mode == "force":
        out["tracing"] = {"workflow_name": tracing.workflow_name}
        if "tracing" in ga_only and ga_only["tracing"] != out["tracing"]:
            adjusted.append("session.tracing")
    elif "tracing" in ga_only and ga_only["tracing"] is not None:
        if tracing.mode != "allow":
            raise _deny("tracing_not_allowed", "session.tracing",
                        "Your policy does not allow tracing.")  # fmt: skip
        out["tracing"] = ga_only["tracing"]

    if "reasoning" in ga_only:
        effort = (ga_only["reasoning"] or {}).get("effort")
        if effort is not None:
            _allowlisted(effort, rules.reasoning_efforts, "reasoning_not_allowed",
                         "session.reasoning.effort", "Reasoning effort")  # fmt: skip
        out["reasoning"] = ga_only["reasoning"]
    if ga_only.get("prompt") is not None:
        _allowlisted(ga_only["prompt"].get("id"), rules.prompts, "prompt_not_allowed",
                     "session.prompt.id", "Prompt")  # fmt: skip
        out["prompt"] = ga_only["prompt"]
    for value in ga_only.get("include") or ():
        _allowlisted(value, rules.include, "include_not_allowed", "session.include",
                     "Include value")  # fmt: skip
    if "include" in ga_only:
        out["include"] = ga_only["include"]
    if "truncation" in ga_only:
        wanted = ga_only["truncation"]
        kind_of = wanted.get("type") if isinstance(wanted, dict) else wanted
        _allowlisted(kind_of, rules.truncation, "truncation_not_allowed",
                     "session.truncation", "Truncation")  # fmt: skip
        out["truncation"] = wanted

    cap = rules.client_secret_ttl
    if cap is not None:
        seconds = cap.default if ttl is None else min(ttl, cap.max)
        if ttl is not None and seconds != ttl:
            adjusted.append("expires_after.seconds")
        out["expires_after"] = seconds
    elif ttl is not None:
        out["expires_after"] = ttl
    return out, tuple(adjusted)
