"""The circuit breaker's state machine, on an injected clock."""

from __future__ import annotations

from tokenbroker.infra.breaker import CircuitBreaker


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_threshold_and_probes_once_after_reset() -> None:
    """Three failures open it; after reset_after exactly one probe goes through."""
    clock = Clock()
    breaker = CircuitBreaker(threshold=3, reset_after=1.0, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.failure()
    assert breaker.state == "closed"
    breaker.failure()
    assert breaker.state == "open"
    assert not breaker.allow()
    clock.now = 1.0
    assert breaker.state == "half_open"
    assert breaker.allow()
    assert not breaker.allow()  # one probe at a time


def test_failed_probe_reopens_and_success_closes() -> None:
    """A failed probe opens it for another period; a good one closes it fully."""
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, reset_after=1.0, clock=clock)
    breaker.failure()
    clock.now = 1.0
    assert breaker.allow()
    breaker.failure()
    assert breaker.state == "open"
    clock.now = 2.0
    assert breaker.allow()
    breaker.success()
    assert breaker.state == "closed"
    assert breaker.allow() and breaker.allow()


def test_success_resets_the_failure_count() -> None:
    """Failures must be consecutive to open it."""
    breaker = CircuitBreaker(threshold=2, reset_after=1.0, clock=Clock())
    breaker.failure()
    breaker.success()
    breaker.failure()
    assert breaker.state == "closed"
