"""Per-user usage budgets in Redis: what live calls spent, per fixed window.

Each budget (``{tokens: N, per: 1d}`` or ``{cost: 5.0, per: 1d}``) counts in a window of
``per`` seconds aligned to the Unix epoch, so the window's end is an honest Retry-After.
A response's usage is added by one ``usage.lua`` call that first records the event id in
the call's set: an event delivered twice (or seen by two replicas around an adoption) is
counted once. Every key carries the user's hash tag, so one script may touch them all on
a Redis Cluster too.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

from tokenbroker.limits.gcra import user_key
from tokenbroker.limits.rules import Budget

SEEN_TTL = 2 * 3600  # longer than any call (60 minutes upstream)


@dataclass(frozen=True, slots=True)
class Spent:
    budget: Budget
    tokens: int
    cost_micros: int
    resets_at: float  # Unix time the window ends
    seconds: int = 0  # GPT-Live voice seconds

    @property
    def exhausted(self) -> bool:
        if self.budget.tokens is not None:
            return self.tokens >= self.budget.tokens
        if self.budget.seconds is not None:
            return self.seconds >= self.budget.seconds
        assert self.budget.cost is not None
        return self.cost_micros >= round(self.budget.cost * 1_000_000)

    @property
    def left(self) -> dict[str, Any]:
        """What remains of the budget in its own unit, for operators."""
        if self.budget.tokens is not None:
            left = max(0, self.budget.tokens - self.tokens)
            return {"budget": self.budget.name, "tokens_left": left,
                    "resets_at": int(self.resets_at)}  # fmt: skip
        if self.budget.seconds is not None:
            return {"budget": self.budget.name,
                    "seconds_left": max(0, self.budget.seconds - self.seconds),
                    "resets_at": int(self.resets_at)}  # fmt: skip
        assert self.budget.cost is not None
        usd = max(0.0, self.budget.cost - self.cost_micros / 1_000_000)
        return {"budget": self.budget.name, "usd_left": round(usd, 6),
                "resets_at": int(self.resets_at)}  # fmt: skip


def retry_after(spent: Sequence[Spent], now: float) -> int | None:
    """Seconds until every exhausted budget has a new window, or None if none is spent."""
    ends = [s.resets_at for s in spent if s.exhausted]
    return max(1, math.ceil(max(ends) - now)) if ends else None


class UsageLedger(Protocol):
    async def add(
        self, user_id: str, call_id: str, event_id: str, tokens: int, cost_micros: int,
        budgets: Sequence[Budget],
    ) -> list[Spent] | None: ...  # fmt: skip
    async def add_cumulative(
        self, user_id: str, session_id: str, seconds: int, cost_micros: int,
        budgets: Sequence[Budget],
    ) -> list[Spent] | None: ...  # fmt: skip
    async def spent(self, user_id: str, budgets: Sequence[Budget]) -> list[Spent]: ...
    async def session_seconds(self, user_id: str, session_id: str) -> int: ...
    def now(self) -> float: ...


class Ledger:
    def __init__(self, client: Any, prefix: str, clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._prefix = prefix
        self._clock = clock
        self._script = client.register_script(
            resources.files(__package__).joinpath("usage.lua").read_text()
        )
        self._cumulative = client.register_script(
            resources.files(__package__).joinpath("cumulative.lua").read_text()
        )

    def _windows(self, user_id: str, budgets: Sequence[Budget]) -> list[tuple[str, float]]:
        now, base = self._clock(), user_key(self._prefix, user_id)
        out = []
        for budget in budgets:
            index = math.floor(now / budget.per)
            out.append((f"{base}:use:{budget.per:g}:{index}", (index + 1) * budget.per))
        return out

    async def add(
        self,
        user_id: str,
        call_id: str,
        event_id: str,
        tokens: int,
        cost_micros: int,
        budgets: Sequence[Budget],
    ) -> list[Spent] | None:
        """Count one event's usage; the windows' totals after it, or None if already counted."""
        windows = self._windows(user_id, budgets)
        unique = dict(windows)  # budgets with the same window share its counts: add once
        seen = f"{user_key(self._prefix, user_id)}:seen:{call_id}"
        now = self._clock()
        ttls = [max(1, math.ceil(end - now)) + 60 for end in unique.values()]
        reply = await self._script(
            keys=[seen, *unique], args=[event_id, tokens, cost_micros, SEEN_TTL, *ttls]
        )
        return self._totals(reply, budgets, windows, unique)

    async def add_cumulative(
        self, user_id: str, session_id: str, seconds: int, cost_micros: int,
        budgets: Sequence[Budget],
    ) -> list[Spent] | None:  # fmt: skip
        """Count a session's cumulative usage (GPT-Live: seconds, and their cost so far):
        only what it adds to the last figure counted for the session, whoever counted it
        (a repeated figure, or one seen again after an adoption, adds nothing). The
        windows' totals after it, or None if it added nothing."""
        windows = self._windows(user_id, budgets)
        unique = dict(windows)
        last = f"{user_key(self._prefix, user_id)}:cum:{session_id}"
        now = self._clock()
        ttls = [max(1, math.ceil(end - now)) + 60 for end in unique.values()]
        reply = await self._cumulative(
            keys=[last, *unique], args=[seconds, cost_micros, SEEN_TTL, *ttls]
        )
        return self._totals(reply, budgets, windows, unique)

    @staticmethod
    def _totals(reply: Any, budgets: Sequence[Budget], windows: list[tuple[str, float]],
                unique: dict[str, float]) -> list[Spent] | None:  # fmt: skip
        if not reply or int(reply[0]) == 0:
            return None
        totals = {key: (int(reply[1 + 3 * i]), int(reply[2 + 3 * i]), int(reply[3 + 3 * i]))
                  for i, key in enumerate(unique)}  # fmt: skip
        return [Spent(budget, totals[key][0], totals[key][1], end, totals[key][2])
                for budget, (key, end) in zip(budgets, windows, strict=True)]  # fmt: skip

    async def session_seconds(self, user_id: str, session_id: str) -> int:
        """The seconds counted so far for a GPT-Live session."""
        last = f"{user_key(self._prefix, user_id)}:cum:{session_id}"
        return int(await self._client.hget(last, "s") or 0)

    async def spent(self, user_id: str, budgets: Sequence[Budget]) -> list[Spent]:
        """What the user has spent of each budget in its current window."""
        if not budgets:
            return []
        windows = self._windows(user_id, budgets)
        async with self._client.pipeline(transaction=False) as pipe:
            for key, _ in windows:
                pipe.hmget(key, "t", "c", "s")
            replies = await pipe.execute()
        return [
            Spent(budget, int(reply[0] or 0), int(reply[1] or 0), end, int(reply[2] or 0))
            for budget, (_, end), reply in zip(budgets, windows, replies, strict=True)
        ]

    def now(self) -> float:
        return self._clock()


class MemoryLedger:
    """The same budgets in this process only (``tokenbroker dev``)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._windows: dict[tuple[str, float, int], list[int]] = {}
        self._seen: set[tuple[str, str]] = set()
        self._last: dict[str, tuple[int, int]] = {}  # session -> last cumulative figures

    def _window(self, user_id: str, budget: Budget) -> tuple[tuple[str, float, int], float]:
        index = math.floor(self._clock() / budget.per)
        return (user_id, budget.per, index), (index + 1) * budget.per

    async def add(
        self, user_id: str, call_id: str, event_id: str, tokens: int, cost_micros: int,
        budgets: Sequence[Budget],
    ) -> list[Spent] | None:  # fmt: skip
        if (call_id, event_id) in self._seen:
            return None
        self._seen.add((call_id, event_id))
        self._count(user_id, budgets, tokens, cost_micros, 0)
        return await self.spent(user_id, budgets)

    def _count(self, user_id: str, budgets: Sequence[Budget], tokens: int, cost: int,
               seconds: int) -> None:  # fmt: skip
        keys = {self._window(user_id, b)[0] for b in budgets}  # one count per window
        for key in keys:
            totals = self._windows.setdefault(key, [0, 0, 0])
            totals[0] += tokens
            totals[1] += cost
            totals[2] += seconds

    async def add_cumulative(
        self, user_id: str, session_id: str, seconds: int, cost_micros: int,
        budgets: Sequence[Budget],
    ) -> list[Spent] | None:  # fmt: skip
        last_s, last_c = self._last.get(session_id, (0, 0))
        more_s, more_c = max(0, seconds - last_s), max(0, cost_micros - last_c)
        if not more_s and not more_c:
            return None
        self._last[session_id] = (max(seconds, last_s), max(cost_micros, last_c))
        self._count(user_id, budgets, 0, more_c, more_s)
        return await self.spent(user_id, budgets)

    async def session_seconds(self, user_id: str, session_id: str) -> int:
        return self._last.get(session_id, (0, 0))[0]

    async def spent(self, user_id: str, budgets: Sequence[Budget]) -> list[Spent]:
        out = []
        for budget in budgets:
            key, end = self._window(user_id, budget)
            tokens, cost, seconds = self._windows.get(key, [0, 0, 0])
            out.append(Spent(budget, tokens, cost, end, seconds))
        return out

    def now(self) -> float:
        return self._clock()
