"""What a mint does when Redis cannot answer: ``fail_mode`` closed, open or local."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from tokenbroker.errors import Unavailable
from tokenbroker.infra.breaker import CircuitBreaker
from tokenbroker.infra.metrics import Metrics
from tokenbroker.infra.redis import STORE_ERRORS
from tokenbroker.limits.gcra import Charge, Limiter
from tokenbroker.limits.memory import MemoryLimiter
from tokenbroker.limits.rules import LimitRule

log = logging.getLogger("tokenbroker.limiter")


class FailModeLimiter:
    """Charges through ``primary``; on a store error applies the configured fail mode.

    closed: 503 store_unavailable. open: admit without limits. local: this process's
    own buckets. A circuit breaker skips the store while it keeps failing (a dead Redis
    costs nothing per request) and lets one request probe it every ``reset_after``
    seconds, so recovery needs nothing.
    """

    def __init__(
        self,
        primary: Limiter,
        mode: str,
        breaker: CircuitBreaker | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._primary = primary
        self._mode = mode
        self._local = MemoryLimiter()
        self.breaker = breaker or CircuitBreaker()
        self._metrics = metrics or Metrics()

    async def charge(
        self, user_id: str, user_rules: Sequence[LimitRule], global_rules: Sequence[LimitRule]
    ) -> Charge:
        if self.breaker.allow():
            try:
                charge = await self._primary.charge(user_id, user_rules, global_rules)
            except STORE_ERRORS as exc:
                self.breaker.failure()
                self._metrics.store_errors.inc()
                log.warning(
                    "rate-limit store error (%s); fail_mode=%s; circuit %s",
                    type(exc).__name__,
                    self._mode,
                    self.breaker.state,
                )
            else:
                self.breaker.success()
                return charge
        if self._mode == "open":
            return Charge(True, 0, (), (user_id, (), ()), unlimited=True)
        if self._mode == "local":
            charge = await self._local.charge(user_id, user_rules, global_rules)
            charge.local = True
            return charge
        raise Unavailable(
            "store_unavailable",
            "The rate-limit store is unavailable; retry shortly.",
            headers={"Retry-After": "1"},
        )

    async def refund(self, charge: Charge) -> None:
        if charge.local:
            await self._local.refund(charge)
            return
        if not charge.windows or not self.breaker.allow():
            return
        try:
            await self._primary.refund(charge)
            self.breaker.success()
        except STORE_ERRORS as exc:
            self.breaker.failure()
            self._metrics.store_errors.inc()
            log.warning("refund lost: rate-limit store error (%s)", type(exc).__name__)
