"""Usage of a ``response.done`` event, and its price. Pure.

Rates are US dollars per million tokens by modality, so one token costs ``rate``
micro-dollars: costs are summed as whole micro-dollars, exact in Redis.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

RATES = ("text_input", "text_cached_input", "text_output",
         "audio_input", "audio_cached_input", "audio_output")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Usage:
    text_input: int = 0  # uncached
    text_cached_input: int = 0
    text_output: int = 0
    audio_input: int = 0  # uncached
    audio_cached_input: int = 0
    audio_output: int = 0
    total: int = 0  # the event's total_tokens (image tokens included)

    def cost_micros(self, rates: Mapping[str, float]) -> int:
        """What the usage costs at ``rates`` (USD per million tokens), in micro-dollars."""
        total: float = sum(getattr(self, name) * rates.get(name, 0.0) for name in RATES)
        return round(total)


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
