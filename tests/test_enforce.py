"""Policy enforcement as a pure function: allowed, denied, clamped, defaulted, inherited."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tokenbroker.enforce import enforce
from tokenbroker.errors import InvalidRequest, PermissionDenied
from tokenbroker.policy import PolicySet
from tokenbroker.policy_store import parse_policy_text

EXAMPLE = Path(__file__).parent.parent / "config" / "policies.yaml"


@pytest.fixture(scope="module")
def policies() -> PolicySet:
    return parse_policy_text(EXAMPLE.read_text())


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
