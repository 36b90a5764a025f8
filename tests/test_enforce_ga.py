"""The policy on GA-only fields, as a table: allowed, refused with code and param,
clamped and named."""

from __future__ import annotations

from typing import Any

import pytest

from tokenbroker.errors import PermissionDenied
from tokenbroker.families import vocabulary
from tokenbroker.families.realtime.enforce_ga import enforce_ga
from tokenbroker.policy.model import PolicySet
from tokenbroker.policy.parse import parse_policy_text

POLICIES = """
default_policy: bare
policies:
  bare: {models: [gpt-realtime]}
  rich:
    models: [gpt-realtime]
    session_types: [realtime, transcription]
    speed: {min: 0.8, max: 1.2, default: 1.0}
    tracing: {mode: allow}
    client_secret_ttl: {max: 300, default: 120}
    reasoning_efforts: [low, medium]
    prompts: [pmpt_1]
    include: [item.input_audio_transcription.logprobs]
    truncation: [auto, retention_ratio]
  forced:
    models: [gpt-realtime]
    tracing: {mode: force, workflow_name: wf}
"""


@pytest.fixture(scope="module")
def policies() -> PolicySet:
    return parse_policy_text(POLICIES, vocabulary("openai"))


@pytest.mark.parametrize(
    ("policy", "ga_only", "ttl", "sent", "adjusted"),
    [
        ("bare", {}, None, {"type": "realtime"}, ()),
        ("bare", {"speed": 1.4}, None, {"type": "realtime", "speed": 1.4}, ()),
        ("bare", {}, 90, {"type": "realtime", "expires_after": 90}, ()),
        ("bare", {"tracing": None}, None, {"type": "realtime"}, ()),
        ("rich", {}, None, {"type": "realtime", "speed": 1.0, "expires_after": 120}, ()),
        ("rich", {"speed": 1.4}, 900, {"type": "realtime", "speed": 1.2, "expires_after": 300},
         ("session.audio.output.speed", "expires_after.seconds")),
        ("rich", {"speed": 0.5}, 60, {"type": "realtime", "speed": 0.8, "expires_after": 60},
         ("session.audio.output.speed",)),
        ("rich", {"type": "transcription", "include": ["item.input_audio_transcription.logprobs"]},
         None, {"type": "transcription", "speed": 1.0, "expires_after": 120,
                "include": ["item.input_audio_transcription.logprobs"]}, ()),
        ("rich", {"tracing": "auto", "reasoning": {"effort": "low"}, "prompt": {"id": "pmpt_1"},
                  "truncation": {"type": "retention_ratio", "retention_ratio": 0.5}}, None,
         {"type": "realtime", "speed": 1.0, "expires_after": 120, "tracing": "auto",
          "reasoning": {"effort": "low"}, "prompt": {"id": "pmpt_1"},
          "truncation": {"type": "retention_ratio", "retention_ratio": 0.5}}, ()),
        ("forced", {}, None, {"type": "realtime", "tracing": {"workflow_name": "wf"}}, ()),
        ("forced", {"tracing": "auto"}, None,
         {"type": "realtime", "tracing": {"workflow_name": "wf"}}, ("session.tracing",)),
    ],
)  # fmt: skip
def test_allowed_and_clamped(
    policies: PolicySet,
    policy: str,
    ga_only: dict[str, Any],
    ttl: int | None,
    sent: dict[str, Any],
    adjusted: tuple[str, ...],
) -> None:
    """What the policy lets through is sent; what it clamps is clamped and named."""
    assert enforce_ga(policies.policies[policy], ga_only, ttl) == (sent, adjusted)


@pytest.mark.parametrize(
    ("policy", "ga_only", "code", "param"),
    [
        ("bare", {"type": "transcription"}, "session_type_not_allowed", "session.type"),
        ("bare", {"tracing": "auto"}, "tracing_not_allowed", "session.tracing"),
        ("bare", {"reasoning": {"effort": "low"}}, "reasoning_not_allowed",
         "session.reasoning.effort"),
        ("rich", {"reasoning": {"effort": "high"}}, "reasoning_not_allowed",
         "session.reasoning.effort"),
        ("bare", {"prompt": {"id": "pmpt_1"}}, "prompt_not_allowed", "session.prompt.id"),
        ("rich", {"prompt": {"id": "pmpt_2"}}, "prompt_not_allowed", "session.prompt.id"),
        ("bare", {"include": ["item.input_audio_transcription.logprobs"]}, "include_not_allowed",
         "session.include"),
        ("rich", {"truncation": "disabled"}, "truncation_not_allowed", "session.truncation"),
        ("bare", {"truncation": "auto"}, "truncation_not_allowed", "session.truncation"),
    ],
)  # fmt: skip
def test_refused(
    policies: PolicySet, policy: str, ga_only: dict[str, Any], code: str, param: str
) -> None:
    """A GA field the policy does not allow is a 403 with its code and GA param."""
    with pytest.raises(PermissionDenied) as caught:
        enforce_ga(policies.policies[policy], ga_only, None)
    assert (caught.value.code, caught.value.param) == (code, param)


@pytest.mark.parametrize(
    ("yaml_policy", "error"),
    [
        ("speed: {min: 0.1}", "speed.min: must be at least 0.25"),
        ("client_secret_ttl: {max: 9000}", "client_secret_ttl.max: must be at most 7200"),
        ("tracing: {mode: force}", "tracing.workflow_name: is required when mode is force"),
        ("tracing: {mode: sometimes}", "tracing.mode: must be one of forbid, allow, force"),
        ("reasoning_efforts: [extreme]", "reasoning_efforts[0]: unknown reasoning effort "
         "'extreme' (one of: minimal, low, medium, high, xhigh)"),
        ("session_types: [video]", "session_types[0]: unknown session type 'video' "
         "(one of: realtime, transcription)"),
        ("tools: {mode: client, mcp: {connectors: [connector_fax]}}",
         "tools.mcp.connectors[0]: unknown connector 'connector_fax' (one of: connector_dropbox, "
         "connector_gmail, connector_googlecalendar, connector_googledrive, "
         "connector_microsoftteams, connector_outlookcalendar, connector_outlookemail, "
         "connector_sharepoint)"),
        ("tools: {mode: client, mcp: {servers: [s], require_approval: sometimes}}",
         "tools.mcp.require_approval: must be one of always, never"),
        ("tools: {mode: none, mcp: {servers: [s]}}", "tools.mcp: used only when mode is client"),
    ],
)  # fmt: skip
def test_policy_file_errors(yaml_policy: str, error: str) -> None:
    """GA keys are checked against the GA schema's values and ranges, by path."""
    from tokenbroker.policy.model import PolicyError

    text = f"default_policy: p\npolicies:\n  p:\n    models: [m]\n    {yaml_policy}\n"
    with pytest.raises(PolicyError) as caught:
        parse_policy_text(text, vocabulary("openai"))
    assert caught.value.errors == [f"policies.p.{error}"]
