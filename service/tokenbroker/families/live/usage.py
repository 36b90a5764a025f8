"""What a GPT-Live session used, from its events, and what that costs. Pure.

``session.usage.updated`` and ``session.closed`` carry cumulative figures: billed whole
seconds, split into active and paused (standby) seconds where the session is eligible.
Voice cost = active minutes times the model's active rate + paused minutes times its standby rate
(all active when there is no split). The delegated backend's tokens come in the nested
``response.completed`` of a ``response.event``, priced per backend model per million.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Cumulative:
    seconds: int
    active: int
    paused: int


def cumulative(event: Mapping[str, Any]) -> Cumulative | None:
    """The cumulative usage an event reports, or None."""
    usage = event.get("usage")
    if not isinstance(usage, dict):
        return None
    seconds = usage.get("seconds")
    if type(seconds) is not int or seconds < 0:
        return None
    active, paused = usage.get("active_seconds"), usage.get("paused_seconds")
    if type(active) is int and type(paused) is int and active >= 0 and paused >= 0:
        return Cumulative(seconds, active, paused)
    return Cumulative(seconds, seconds, 0)


def voice_cost_micros(usage: Cumulative, price: Mapping[str, float] | None) -> int:
    """The cost so far in micro-dollars (0 when the model has no price)."""
    if not price:
        return 0
    dollars = (usage.active * price.get("active_per_minute", 0.0)
               + usage.paused * price.get("standby_per_minute", 0.0)) / 60  # fmt: skip
    return round(dollars * 1_000_000)


@dataclass(frozen=True, slots=True)
class BackendUsage:
    response_id: str
    model: str
    input: int  # uncached
    cached: int
    output: int

    @property
    def total(self) -> int:
        return self.input + self.cached + self.output

    def cost_micros(self, rates: Mapping[str, float] | None) -> int:
        if not rates:
            return 0
        total = (self.input * rates.get("text_input", 0.0)
                 + self.cached * rates.get("text_cached_input", 0.0)
                 + self.output * rates.get("text_output", 0.0))  # fmt: skip
        return round(total)


def _count(node: Any, key: str) -> int:
    value = node.get(key, 0) if isinstance(node, dict) else 0
    return value if type(value) is int and value > 0 else 0


def backend_usage(event: Mapping[str, Any], default_model: str) -> BackendUsage | None:
    """The tokens of a finished backend response in a ``response.event``, or None."""
    inner = event.get("event")
    if not isinstance(inner, dict) or inner.get("type") != "response.completed":
        return None
    response = inner.get("response")
    if not isinstance(response, dict) or not isinstance(response.get("id"), str):
        return None
    usage = response.get("usage")
    if not isinstance(usage, dict):
        return None
    cached = min(_count(usage.get("input_tokens_details"), "cached_tokens"),
                 _count(usage, "input_tokens"))  # fmt: skip
    model = response.get("model") if isinstance(response.get("model"), str) else default_model
    return BackendUsage(response["id"], str(model), _count(usage, "input_tokens") - cached,
                        cached, _count(usage, "output_tokens"))  # fmt: skip
