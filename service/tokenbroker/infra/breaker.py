"""A circuit breaker: after repeated failures, stop asking a dependency for a while.

closed → (``threshold`` consecutive failures) → open for ``reset_after`` seconds →
half-open: one caller probes; success closes it, failure opens it again. Callers ask
:meth:`allow` before a call and report with :meth:`success` / :meth:`failure`.
Time comes from an injected clock so the state machine is tested without sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class CircuitBreaker:
    def __init__(
        self,
        threshold: int = 3,
        reset_after: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = threshold
        self._reset_after = reset_after
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self._reset_after:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        """Whether to call the dependency now (in half-open, only one probe at a time)."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._probing:
            self._probing = True
            return True
        return False

    def success(self) -> None:
        self._failures, self._opened_at, self._probing = 0, None, False

    def failure(self) -> None:
        self._failures += 1
        self._probing = False
        if self._opened_at is not None or self._failures >= self._threshold:
            self._opened_at = self._clock()
