"""How an upstream call can fail, as data, and what each failure means for the caller.

Every attempt ends in what the reply gives (read by the API family) or a
:class:`Failure`. A failure says, in one place, whether another attempt may help
(``retryable``), whether it counts against the upstream's health (``unhealthy``, for the
circuit breaker), whether the user's rate-limit charge goes back (``refundable``) and
which of the broker's errors the client sees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from tokenbroker.errors import BrokerError, Unavailable, UpstreamFailed, UpstreamTimeout

RETRYABLE_STATUS = (500, 502, 503, 504)


class Kind(Enum):
    UNREACHABLE = "unreachable"  # refused, reset, no connection in time, malformed reply
    TIMEOUT = "timeout"  # asked, but the deadline passed before the answer
    STATUS = "status"  # answered with a non-200 status
    INVALID = "invalid"  # answered 200 without a usable secret
    OPEN_CIRCUIT = "open_circuit"  # not asked: the breaker is open


def _retry_after(value: str | None) -> str:
    try:
        return str(max(1, math.ceil(float(value or "1"))))
    except ValueError:
        return "1"


@dataclass(frozen=True, slots=True)
class Failure:
    kind: Kind
    status: int | None = None
    retry_after: str | None = None

    @property
    def retryable(self) -> bool:
        return self.kind is Kind.UNREACHABLE or (
            self.kind is Kind.STATUS and self.status in RETRYABLE_STATUS
        )

    @property
    def unhealthy(self) -> bool:
        """The upstream is failing (not merely saying no): the breaker counts it."""
        status = self.status or 0
        return self.kind in (Kind.UNREACHABLE, Kind.TIMEOUT) or (
            self.kind is Kind.STATUS and not 400 <= status < 500
        )

    @property
    def refundable(self) -> bool:
        """Whether the user keeps the allowance: yes unless the upstream may have minted
        (a 200 whose secret the broker could not read)."""
        return self.kind is not Kind.INVALID

    def error(self, breaker_reset: float = 1.0) -> BrokerError:
        """The client-facing error, in the broker's envelope (docs: Errors)."""
        if self.kind is Kind.OPEN_CIRCUIT:
            return UpstreamFailed(
                "upstream_error",
                "The upstream is failing; the broker is not calling it for a moment.",
                headers={"Retry-After": str(math.ceil(breaker_reset))},
            )
        if self.kind is Kind.TIMEOUT:
            return UpstreamTimeout("upstream_timeout", "The upstream did not answer in time.")
        if self.kind is Kind.UNREACHABLE:
            return UpstreamFailed("upstream_error", "The upstream could not be reached.")
        if self.kind is Kind.INVALID:
            return UpstreamFailed(
                "upstream_invalid_response",
                "The upstream answered without a usable client secret.",
            )
        status = self.status or 0
        if status == 429:
            return Unavailable(
                "upstream_rate_limited",
                "The upstream is rate limiting; retry later.",
                headers={"Retry-After": _retry_after(self.retry_after)},
            )
        if status in (401, 403):
            return UpstreamFailed("upstream_auth_failed", "The upstream refused the broker's key.")
        if 400 <= status < 500:
            return UpstreamFailed("upstream_rejected", "The upstream rejected the session config.")
        return UpstreamFailed("upstream_error", f"The upstream failed (status {status}).")


class UpstreamError(Exception):
    """An upstream call that ended in ``failure``; ``error`` is what the client sees."""

    def __init__(self, failure: Failure, error: BrokerError) -> None:
        super().__init__(error.message)
        self.failure = failure
        self.error = error


def failed(kind: Kind, status: int | None = None, retry_after: str | None = None) -> UpstreamError:
    """The error of an upstream call that ended in a failure of ``kind``."""
    failure = Failure(kind, status, retry_after)
    return UpstreamError(failure, failure.error())
