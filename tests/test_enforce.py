"""Policy enforcement as a pure function: allowed, denied, clamped, defaulted, inherited."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tokenbroker.errors import InvalidRequest, PermissionDenied
from tokenbroker.families import vocabulary
from tokenbroker.families.realtime.enforce import enforce
from tokenbroker.policy.model import PolicySet
from tokenbroker.policy.parse import parse_policy_text

EXAMPLE = Path(__file__).parent / "policies" / "example.yaml"


@pytest.fixture(scope="module")
def policies() -> PolicySet:
    return parse_policy_text(EXAMPLE.read_text(), vocabulary("openai"))


DEFAULTS = {
    "model": "gpt-4o-mini-realtime-preview",
    "modalities": ["audio", "text"],
    "voice": "alloy",
    "input_audio_format": "pcm16",
    "output_audio_format": "pcm16",
    "instructions": "You are a helpful assistant.",
    "temperature": 0.8,
    "max_response_output_tokens": 512,
}


@pytest.mark.parametrize(
    ("policy", "request_body", "changes", "adjusted"),
    [
        ("standard", {}, {}, ()),
        ("standard", {"voice": "ash"}, {"voice": "ash"}, ()),
        ("standard", {"modalities": ["text"]}, {"modalities": ["text"]}, ()),
        ("standard", {"modalities": ["text", "audio"]}, {"modalities": ["text", "audio"]}, ()),
        ("standard", {"temperature": 0.7}, {"temperature": 0.7}, ()),
        ("standard", {"temperature": 1.2}, {"temperature": 0.9}, ("temperature",)),
        ("standard", {"temperature": 0.6}, {"temperature": 0.6}, ()),
        ("standard", {"max_response_output_tokens": 100}, {"max_response_output_tokens": 100}, ()),
        (
            "standard",
            {"max_response_output_tokens": 4096},
            {"max_response_output_tokens": 1024},
            ("max_response_output_tokens",),
        ),
        (
            "standard",
            {"max_response_output_tokens": "inf"},
            {"max_response_output_tokens": 1024},
            ("max_response_output_tokens",),
        ),
        (
            "standard",
            {"input_audio_transcription": {"language": "en"}},
            {"input_audio_transcription": {"language": "en", "model": "whisper-1"}},
            (),
        ),
        ("standard", {"input_audio_transcription": None}, {"input_audio_transcription": None}, ()),
        (
            "standard",
            {"turn_detection": {"type": "semantic_vad"}},
            {"turn_detection": {"type": "semantic_vad"}},
            (),
        ),
        (
            "standard",
            {"turn_detection": {"silence_duration_ms": 50}},
            {"turn_detection": {"type": "server_vad", "silence_duration_ms": 200}},
            ("turn_detection.silence_duration_ms",),
        ),
        (
            "standard",
            {"input_audio_noise_reduction": {"type": "far_field"}},
            {"input_audio_noise_reduction": {"type": "far_field"}},
            (),
        ),
        ("standard", {"tool_choice": "none"}, {"tool_choice": "none"}, ()),
        ("premium", {"model": "gpt-4o-realtime-preview"}, {"model": "gpt-4o-realtime-preview"}, ()),
        ("premium", {}, {"model": "gpt-4o-realtime-preview"}, ()),
        (
            "premium",
            {"instructions": "Speak French."},
            {
                "model": "gpt-4o-realtime-preview",
                "instructions": "You are a helpful assistant.\n\nSpeak French.",
            },
            (),
        ),
        # premium inherits voices, clamps and formats from standard through extends
        (
            "premium",
            {"temperature": 1.0},
            {"model": "gpt-4o-realtime-preview", "temperature": 0.9},
            ("temperature",),
        ),
    ],
)
def test_allowed_defaulted_and_clamped(
    policies: PolicySet,
    policy: str,
    request_body: dict[str, Any],
    changes: dict[str, Any],
    adjusted: tuple[str, ...],
) -> None:
    """Allowed values pass, omitted ones take defaults, numbers out of range are clamped."""
    result = enforce(policies.policies[policy], request_body)
    assert result.session == {**DEFAULTS, **changes}
    assert result.adjusted == adjusted


@pytest.mark.parametrize(
    ("policy", "request_body", "code", "param"),
    [
        ("standard", {"model": "gpt-4o-realtime-preview"}, "model_not_allowed", "model"),
        ("standard", {"voice": "verse"}, "voice_not_allowed", "voice"),
        ("standard", {"modalities": ["audio"]}, "modalities_not_allowed", "modalities"),
        (
            "standard",
            {"input_audio_format": "g711_ulaw"},
            "input_audio_format_not_allowed",
            "input_audio_format",
        ),
        (
            "standard",
            {"output_audio_format": "g711_alaw"},
            "output_audio_format_not_allowed",
            "output_audio_format",
        ),
        ("standard", {"instructions": "hi"}, "instructions_not_allowed", "instructions"),
        ("standard", {"tools": [{"type": "function", "name": "f"}]}, "tools_not_allowed", "tools"),
        (
            "standard",
            {"input_audio_transcription": {"model": "gpt-4o-transcribe"}},
            "transcription_not_allowed",
            "input_audio_transcription.model",
        ),
        ("standard", {"turn_detection": None}, "turn_detection_not_allowed", "turn_detection"),
        (
            "standard",
            {"input_audio_noise_reduction": {}},
            "noise_reduction_not_allowed",
            "input_audio_noise_reduction",
        ),
        ("premium", {"instructions": "x" * 2001}, "instructions_not_allowed", "instructions"),
        ("suspended", {}, "policy_disabled", None),
    ],
)
def test_denied(
    policies: PolicySet, policy: str, request_body: dict[str, Any], code: str, param: str | None
) -> None:
    """Values outside the allowlist are refused with the field's code and param."""
    with pytest.raises(PermissionDenied) as caught:
        enforce(policies.policies[policy], request_body)
    assert caught.value.code == code
    assert caught.value.param == param


def test_tool_choice_must_fit_the_tools(policies: PolicySet) -> None:
    """A tool_choice naming a tool the session does not have is a 400."""
    with pytest.raises(InvalidRequest) as caught:
        enforce(policies.policies["standard"], {"tool_choice": "required"})
    assert (caught.value.code, caught.value.param) == ("invalid_value", "tool_choice")


def test_policy_selection(policies: PolicySet) -> None:
    """Assignment beats the claim, the claim beats the default, unknown claims fall back."""
    assert policies.select("user-42", {"plan": "suspended"}).name == "premium"
    assert policies.select("someone", {"plan": "suspended"}).name == "suspended"
    assert policies.select("someone", {"plan": "no-such-plan"}).name == "standard"
    assert policies.select("someone", {}).name == "standard"


FIELDS = Path(__file__).parent / "policies" / "fields.yaml"
LOOKUP = {
    "type": "function",
    "name": "lookup",
    "description": "Look up an order",
    "parameters": {"type": "object"},
}


@pytest.fixture(scope="module")
def field_policies() -> PolicySet:
    return parse_policy_text(FIELDS.read_text(), vocabulary("openai"))


@pytest.mark.parametrize(
    ("policy", "request_body", "expected", "adjusted"),
    [
        ("open", {}, {}, ()),
        ("open", {"instructions": "Be brief."}, {"instructions": "Be brief."}, ()),
        (
            "open",
            {"tools": [{"type": "function", "name": "weather"}], "tool_choice": "weather"},
            {"tools": [{"type": "function", "name": "weather"}], "tool_choice": "weather"},
            (),
        ),
        (
            "open",
            {"tools": [{"name": "lookup"}], "tool_choice": "required"},
            {"tools": [{"name": "lookup"}], "tool_choice": "required"},
            (),
        ),
        ("open", {"turn_detection": None}, {"turn_detection": None}, ()),
        (
            "open",
            {"turn_detection": {"eagerness": "low", "threshold": 0.9, "prefix_padding_ms": 20}},
            {
                "turn_detection": {
                    "type": "server_vad",
                    "eagerness": "low",
                    "threshold": 0.7,
                    "prefix_padding_ms": 100,
                }
            },
            ("turn_detection.threshold", "turn_detection.prefix_padding_ms"),
        ),
        (
            "open",
            {"input_audio_transcription": {"prompt": "orders", "language": "de"}},
            {
                "input_audio_transcription": {
                    "model": "gpt-4o-transcribe",
                    "prompt": "orders",
                    "language": "de",
                }
            },
            (),
        ),
        ("fixed_tools", {}, {"tools": [LOOKUP]}, ()),
        (
            "fixed_tools",
            {"tool_choice": "lookup"},
            {"tools": [LOOKUP], "tool_choice": "lookup"},
            (),
        ),
        ("semantic", {}, {"turn_detection": {"type": "semantic_vad"}}, ()),
    ],
)
def test_client_modes_and_nested_fields(
    field_policies: PolicySet,
    policy: str,
    request_body: dict[str, Any],
    expected: dict[str, Any],
    adjusted: tuple[str, ...],
) -> None:
    """Client instructions and tools, fixed tools, turn detection clamps, transcription."""
    result = enforce(field_policies.policies[policy], request_body)
    assert result.session == {"model": "gpt-4o-realtime-preview", **expected}
    assert result.adjusted == adjusted


@pytest.mark.parametrize(
    ("policy", "request_body", "code", "param"),
    [
        ("open", {"instructions": "x" * 11}, "instructions_not_allowed", "instructions"),
        (
            "open",
            {"tools": [{"name": "lookup"}, {"name": "rm_rf"}]},
            "tools_not_allowed",
            "tools[1]",
        ),
        ("fixed_tools", {"tools": [LOOKUP]}, "tools_not_allowed", "tools"),
        (
            "open",
            {"turn_detection": {"type": "semantic_vad"}},
            "turn_detection_not_allowed",
            "turn_detection.type",
        ),
        (
            "open",
            {"turn_detection": {"eagerness": "high"}},
            "turn_detection_not_allowed",
            "turn_detection.eagerness",
        ),
        (
            "semantic",
            {"input_audio_noise_reduction": {"type": "near_field"}},
            "noise_reduction_not_allowed",
            "input_audio_noise_reduction",
        ),
    ],
)
def test_client_modes_denied(
    field_policies: PolicySet,
    policy: str,
    request_body: dict[str, Any],
    code: str,
    param: str,
) -> None:
    """Client text over max_chars, unlisted tools, tools under fixed, disallowed VAD settings."""
    with pytest.raises(PermissionDenied) as caught:
        enforce(field_policies.policies[policy], request_body)
    assert (caught.value.code, caught.value.param) == (code, param)


@pytest.mark.parametrize("choice", ["required", "weather"])
def test_tool_choice_without_matching_tool(field_policies: PolicySet, choice: str) -> None:
    """tool_choice 'required' with no tools, or naming a tool not sent, is a 400."""
    with pytest.raises(InvalidRequest):
        enforce(field_policies.policies["open"], {"tool_choice": choice})
