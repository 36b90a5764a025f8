"""Rate-limit rules as data: a token bucket ``{limit, per, burst}``."""

from __future__ import annotations

from dataclasses import dataclass

from tokenbroker.config.durations import parse_duration

__all__ = ["LimitRule", "parse_duration"]


@dataclass(frozen=True, slots=True)
class LimitRule:
    """A token bucket (GCRA): admits ``burst`` at once, refills ``limit`` per ``per`` seconds."""

    limit: int
    per: float
    burst: int
    per_text: str

    @property
    def interval_us(self) -> int:
        """Microseconds between two admissions at the sustained rate (the emission interval)."""
        return max(1, round(self.per * 1_000_000 / self.limit))

    @property
    def name(self) -> str:
        return f"{self.limit}-per-{self.per_text}"
