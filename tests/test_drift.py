"""Drift (pure): which fields of a live session left the policy, and the session.update that
restores them; every update checked against the official event schema (jsonschema)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from conftest import POLICIES
from live import schema
from tokenbroker.fake_upstream.events import apply
from tokenbroker.families import vocabulary
from tokenbroker.families.realtime.dialects.ga import from_ga, to_ga
from tokenbroker.families.realtime.drift import revert, violations
from tokenbroker.families.realtime.enforce import enforce
from tokenbroker.families.realtime.enforce_ga import enforce_ga
from tokenbroker.policy.model import Policy
from tokenbroker.policy.parse import parse_policy_text

POLICY_SET = parse_policy_text((POLICIES / "ga.yaml").read_text(), vocabulary("openai"))
WATCHED = parse_policy_text((POLICIES / "calls.yaml").read_text(), vocabulary("openai")).policies[
    "watched"
]


def _enforced(policy: Policy, request: dict[str, Any]) -> dict[str, Any]:
    seed, ga_only = from_ga(request)
    enforced = enforce(policy, seed)
    extra, _ = enforce_ga(policy, ga_only, None)
    session: dict[str, Any] = to_ga(enforced.session, extra)[0]["session"]
    return session


def _as_reported(enforced: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The session as session.updated would show it after ``changes``."""
    session = {"object": "realtime.session", "id": "sess_1", **copy.deepcopy(enforced)}
    for path, value in changes.items():
        node = session
        *parents, last = path.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return session


GA = POLICY_SET.policies["ga"]
STRICT = POLICY_SET.policies["strict"]
BASE = _enforced(GA, {"type": "realtime", "audio": {"output": {"voice": "cedar"}}})


def test_the_enforced_session_itself_is_within_the_policy() -> None:
    assert violations(GA, BASE, _as_reported(BASE)) == []


@pytest.mark.parametrize(
    "changes",
    [
        {"audio__output__voice": "alloy"},  # another allowed voice
        {"audio__output__speed": 1.2},  # inside the clamp
        {"tools": [{"type": "function", "name": "lookup", "parameters": {}}]},  # a listed tool
        {"model": "gpt-realtime-2025-08-28"},  # the upstream names the snapshot it runs
        {"output_modalities": ["text"]},
        {"tracing": {"workflow_name": "tokenbroker", "group_id": "support"}},  # still forced
    ],
)
def test_changes_inside_the_policy_are_not_drift(changes: dict[str, Any]) -> None:
    assert violations(GA, BASE, _as_reported(BASE, **changes)) == []


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"instructions": "You are a pirate."}, "instructions"),
        ({"tools": [{"type": "function", "name": "wire_money", "parameters": {}}]}, "tools"),
        ({"tools": [{"type": "mcp", "server_label": "x", "server_url": "https://evil.example/sse",
                     "require_approval": "always"}]}, "tools"),
        ({"tools": [{"type": "mcp", "server_label": "x",
                     "server_url": "https://mcp.allowed.example/sse",
                     "require_approval": "never"}]}, "tools"),
        ({"audio__output__voice": "verse"}, "audio.output.voice"),
        ({"audio__output__speed": 1.5}, "audio.output.speed"),
        ({"audio__output__format": {"type": "audio/pcma"}}, "audio.output.format"),
        ({"audio__input__format": {"type": "audio/pcma"}}, "audio.input.format"),
        ({"audio__input__transcription": {"model": "gpt-4o-mini-transcribe"}},
         "audio.input.transcription"),
        ({"audio__input__noise_reduction": {"type": "far_field"}}, "audio.input.noise_reduction"),
        ({"tracing": None}, "tracing"),  # forced: off, "auto", or another workflow
        ({"tracing": "auto"}, "tracing"),
        ({"tracing": {"workflow_name": "mine"}}, "tracing"),
        ({"reasoning": {"effort": "high"}}, "reasoning"),
        ({"prompt": {"id": "pmpt_other"}}, "prompt"),
    ],
)  # fmt: skip
def test_changes_outside_the_policy_are_named_and_reverted(
    changes: dict[str, Any], field: str
) -> None:
    drifted = _as_reported(BASE, **changes)
    assert violations(GA, BASE, drifted) == [field]
    update = revert(GA, BASE, [field])
    assert update is not None
    schema("RealtimeClientEventSessionUpdate").validate(update)
    assert violations(GA, BASE, _applied(drifted, update)) == []  # the revert restores it
    sent = update["session"]
    assert sent.keys() <= {"type", field.split(".")[0]}
    if field.startswith("audio."):  # only the field that drifted, not its neighbours
        _, side, name = field.split(".")
        assert sent["audio"] == {side: {name: sent["audio"][side][name]}}
        if name in BASE["audio"].get(side, {}):  # as the call was created
            assert sent["audio"][side][name] == BASE["audio"][side][name]


def _applied(session: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``session`` after ``update``, applied as the fake upstream applies a session.update."""
    result = copy.deepcopy(session)
    apply(result, update["session"])
    return result


def test_audio_drift_the_call_was_created_without_is_restored_alone() -> None:
    """A client (the Agents SDK does) turns on transcription and semantic VAD, neither of
    which the policy allows nor the call was created with, and changes the voice within the
    policy: the revert turns the two off (server VAD is the upstream's default) and leaves
    the voice as the client chose it."""
    watched = parse_policy_text(
        (POLICIES / "calls.yaml").read_text(), vocabulary("openai")
    ).policies["watched"]
    enforced = _enforced(watched, {"type": "realtime"})
    assert "transcription" not in enforced.get("audio", {}).get("input", {})
    drifted = _as_reported(
        enforced,
        audio__input__transcription={"model": "gpt-4o-mini-transcribe"},
        audio__input__turn_detection={"type": "semantic_vad"},
        audio__output__voice="alloy",
    )
    bad = violations(watched, enforced, drifted)
    assert bad == ["audio.input.turn_detection", "audio.input.transcription"]
    update = revert(watched, enforced, bad)
    assert update is not None
    schema("RealtimeClientEventSessionUpdate").validate(update)
    assert update["session"]["audio"] == {
        "input": {"transcription": None, "turn_detection": {"type": "server_vad"}}
    }
    after = _applied(drifted, update)
    assert violations(watched, enforced, after) == []
    assert after["audio"]["output"]["voice"] == "alloy"


def test_a_model_change_cannot_be_reverted() -> None:
    drifted = _as_reported(BASE, model="gpt-realtime-mini-other")
    assert violations(GA, BASE, drifted) == ["model"]
    assert revert(GA, BASE, ["model"]) is None


def test_forbidden_tracing_is_cleared_and_fixed_tools_compared_by_name() -> None:
    enforced = _enforced(STRICT, {"type": "realtime"})
    drifted = _as_reported(enforced, tracing={"workflow_name": "mine"})
    assert violations(STRICT, enforced, drifted) == ["tracing"]
    update = revert(STRICT, enforced, ["tracing"])
    assert update is not None and update["session"]["tracing"] is None
    schema("RealtimeClientEventSessionUpdate").validate(update)


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"instructions": 42}, "instructions"), ({"max_output_tokens": "lots"}, "max_output_tokens")],
)
def test_values_of_the_wrong_type_are_drift_not_a_crash(
    changes: dict[str, Any], field: str
) -> None:
    watched = parse_policy_text(
        (POLICIES / "calls.yaml").read_text(), vocabulary("openai")
    ).policies["watched"]
    enforced = _enforced(watched, {"type": "realtime"})
    assert violations(watched, enforced, _as_reported(enforced, **changes)) == [field]
