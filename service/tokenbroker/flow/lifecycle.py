"""Models have a lifecycle: the upstream announces a model's shutdown date, and a policy
that still names the model would have every request for it refused once it passes.

At start and then every ``upstream.models_check_interval`` this replica reads the
upstream's model list and, for every model a live policy names (any family's) with a
shutdown date within WARN_DAYS, logs a warning naming the policies and exports
``tokenbroker_model_days_to_shutdown{model}`` (an alert rule fires on it). A new policy
version is judged again by the last list read. A list that cannot be read is retried
within the hour; what it said last stays exported meanwhile.
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
FOLLOW = 1.0  # seconds between looks at the policy version


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
        self._listed: Mapping[str, dt.date | None] | None = None  # the last list read
        self._judged = -1  # the policy version the export is for

    async def check(self) -> list[Shutdown] | None:
        """Read the model list and judge the policies by it (None: it was unreadable)."""
        try:
            self._listed = await self._read()
        except ModelListUnavailable as exc:
            log.warning("model list unavailable (%s); shutdown dates not checked", exc)
            return None
        return self.judge(warn=True)

    def judge(self, *, warn: bool) -> list[Shutdown] | None:
        """The shutdowns of the models the current policies name, by the last list read:
        the metric set again (a model no policy names any more leaves it), and with
        ``warn`` a log line for each one soon."""
        current = self._policies.policies
        if current is None or self._listed is None:
            return None
        self._judged = self._policies.version
        named = self._policies.vocabulary.models(current.policies.values())
        found = shutdowns(named, self._listed, dt.datetime.now(dt.UTC).date())
        gauge = self._metrics.model_days_to_shutdown
        gauge.clear()
        for shutdown in found:
            gauge.labels(shutdown.model).set(shutdown.days)
        for shutdown in soon(found) if warn else ():
            log.warning("model shuts down soon", extra={"fields": {
                "model": shutdown.model, "shutdown_date": shutdown.date.isoformat(),
                "days": shutdown.days, "policies": list(shutdown.policies)}})  # fmt: skip
        return found

    async def run(self) -> None:
        """Read the list at start and every interval (within the hour after a failed read);
        between reads, a new policy version is judged by the last list within seconds, so
        the alert follows a policy moved off a model without waiting a day."""
        next_read = 0.0
        loop = asyncio.get_running_loop()
        while True:
            if self._policies.policies is not None:
                if loop.time() >= next_read:
                    found = await self.check()
                    next_read = loop.time() + (
                        self._interval if found is not None else min(RETRY, self._interval)
                    )
                elif self._policies.version != self._judged:
                    self.judge(warn=True)
            await asyncio.sleep(FOLLOW)  # the period at which policy versions are followed
