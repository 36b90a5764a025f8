"""The usage a Realtime ``response.done`` event carries. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tokenbroker.limits.usage import Usage


def _count(node: Any, key: str) -> int:
    value = node.get(key, 0) if isinstance(node, dict) else 0
    return value if type(value) is int and value > 0 else 0


def usage_of(event: Mapping[str, Any]) -> Usage | None:
    """The usage of a ``response.done`` event, or None when it carries none."""
    response = event.get("response")
    usage = response.get("usage") if isinstance(response, dict) else None
    if not isinstance(usage, dict):
        return None
    inputs = usage.get("input_token_details") or {}
    cached = inputs.get("cached_tokens_details") or {} if isinstance(inputs, dict) else {}
    outputs = usage.get("output_token_details") or {}
    text_in, audio_in = _count(inputs, "text_tokens"), _count(inputs, "audio_tokens")
    text_cached = min(_count(cached, "text_tokens"), text_in)
    audio_cached = min(_count(cached, "audio_tokens"), audio_in)
    total = _count(usage, "total_tokens") or (
        _count(usage, "input_tokens") + _count(usage, "output_tokens")
    )
    return Usage(
        text_input=text_in - text_cached,
        text_cached_input=text_cached,
        text_output=_count(outputs, "text_tokens"),
        audio_input=audio_in - audio_cached,
        audio_cached_input=audio_cached,
        audio_output=_count(outputs, "audio_tokens"),
        total=total,
    )
