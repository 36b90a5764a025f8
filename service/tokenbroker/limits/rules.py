"""Limit rules as data: a token bucket ``{limit, per, burst}``, a usage budget."""

from __future__ import annotations

from dataclasses import dataclass

from tokenbroker.config.durations import parse_duration

__all__ = ["Budget", "LimitRule", "parse_duration"]


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


@dataclass(frozen=True, slots=True)
class Budget:
    """Usage allowed per fixed window of ``per`` seconds (aligned to the Unix epoch)."""

    per: float
    per_text: str
    tokens: int | None = None
    cost: float | None = None  # US dollars, priced from the settings' price table
    seconds: int | None = None  # GPT-Live voice seconds (billed by the second)

    @property
    def name(self) -> str:
        if self.tokens is not None:
            amount = f"{self.tokens}-tokens"
        elif self.seconds is not None:
            amount = f"{self.seconds}-seconds"
        else:
            amount = f"{self.cost:g}-usd"
        return f"{amount}-per-{self.per_text}"
