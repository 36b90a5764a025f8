"""Token usage by modality, and its price. Pure. (How an API family's events carry it is the
family's: families/realtime/usage.py for ``response.done``.)

Rates are US dollars per million tokens by modality, so one token costs ``rate``
micro-dollars: costs are summed as whole micro-dollars, exact in Redis.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

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
