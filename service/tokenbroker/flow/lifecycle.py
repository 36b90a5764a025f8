"""Models have a lifecycle: the upstream announces a model's shutdown date, and a policy
that still names the model would have every request for it refused once it passes.

At start and then every ``upstream.models_check_interval`` this replica reads the
upstream's model list and, for every model a live policy names (any family's) with a
shutdown date within WARN_DAYS, logs a warning naming the policies and exports
``tokenbroker_model_days_to_shutdown{model}`` (an alert rule fires on it). A list that
cannot be read is retried within the hour; what it said last stays exported meanwhile.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from tokenbroker.infra.metrics import Metrics
from tokenbroker.policy.cache import PolicyCache
from tokenbroker.upstream.models import ModelListUnavailable

log = logging.getLogger("tokenbroker.models")
WARN_DAYS = 30
RETRY = 3600.0  # seconds before a failed read of the model list is tried again


@dataclass(frozen=True, slots=True)
class Shutdown:
    model: str
    date: dt.date
    days: int  # whole days from today (0: today)
    policies: tuple[str, ...]

    def sentence(self) -> str:
        return (f"model {self.model!r} (policies {', '.join(self.policies)}) shuts down on "
                f"{self.date.isoformat()}, in {self.days} days: move the policies to its "
                "successor before then")  # fmt: skip


def shutdowns(
    named: Mapping[str, Sequence[str]], listed: Mapping[str, dt.date | None], today: dt.date
) -> list[Shutdown]:
    """The models the policies name that have a shutdown date, soonest first (pure)."""
    found = [Shutdown(model, date, (date - today).days, tuple(policies))
             for model, policies in named.items()
             if (date := listed.get(model)) is not None]  # fmt: skip
    return sorted(found, key=lambda s: (s.date, s.model))


def soon(found: Sequence[Shutdown], within: int = WARN_DAYS) -> list[Shutdown]:
    return [s for s in found if s.days <= within]


class ModelLifecycle:
    def __init__(
        self,
        read: Callable[[], Awaitable[Mapping[str, dt.date | None]]],
        policies: PolicyCache,
        metrics: Metrics,
        interval: float,
    ) -> None:
        self._read = read
        self._policies = policies
        self._metrics = metrics
        self._interval = interval

    async def check(self) -> list[Shutdown] | None:
        """One look: the shutdowns of the models named now (None: the list was unreadable)."""
        current = self._policies.policies
        if current is None:
            return None
        try:
            listed = await self._read()
        except ModelListUnavailable as exc:
            log.warning("model list unavailable (%s); shutdown dates not checked", exc)
            return None
        named = self._policies.vocabulary.models(current.policies.values())
        found = shutdowns(named, listed, dt.datetime.now(dt.UTC).date())
        gauge = self._metrics.model_days_to_shutdown
        gauge.clear()
        for shutdown in found:
            gauge.labels(shutdown.model).set(shutdown.days)
        for shutdown in soon(found):
            log.warning("model shuts down soon", extra={"fields": {
                "model": shutdown.model, "shutdown_date": shutdown.date.isoformat(),
                "days": shutdown.days, "policies": list(shutdown.policies)}})  # fmt: skip
        return found

    async def run(self) -> None:
        while True:
            if self._policies.policies is None:  # not loaded yet: look again shortly
                await asyncio.sleep(1.0)  # the period of the wait for policies
                continue
            found = await self.check()
            await asyncio.sleep(self._interval if found is not None else min(RETRY, self._interval))
