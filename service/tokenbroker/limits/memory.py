"""The same buckets in this process only: dev mode and ``fail_mode: local``."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from tokenbroker.limits.gcra import (
    Charge,
    Window,
    bucket_key,
    buckets,
    gcra,
    peek_windows,
    user_key,
)
from tokenbroker.limits.rules import LimitRule


class MemoryLimiter:
    """The same buckets in this process only: dev mode and ``fail_mode: local``."""

    def __init__(self, clock: Callable[[], int] | None = None) -> None:
        self._clock = clock or (lambda: time.monotonic_ns() // 1000)
        self._tats: dict[tuple[str, str], int] = {}

    def _step(
        self, key: tuple[str, tuple[LimitRule, ...], tuple[LimitRule, ...]], refund: bool
    ) -> tuple[bool, int, tuple[Window, ...]]:
        now = self._clock()
        user_id, user_rules, global_rules = key
        results = []
        for bucket in buckets(user_rules, global_rules):
            hash_key = bucket_key("local", user_id, bucket)
            for name, rule in bucket.windows:
                tat = self._tats.get((hash_key, name))
                step = gcra(tat, now, rule.interval_us, rule.burst, refund=refund)
                results.append((bucket.scope, (hash_key, name), rule, step))
        allowed = all(r[3][0] for r in results)
        if allowed:
            for _, slot, _, (_, new, _, _) in results:
                self._tats[slot] = new
        if len(self._tats) > 100_000:  # forget full buckets: they equal fresh ones
            self._tats = {k: v for k, v in self._tats.items() if v > now}
        retry = max((r[3][3] for r in results), default=0)
        windows = tuple(
            Window(scope, rule, max(0, remaining), new - now)
            for scope, _, rule, (_, new, remaining, _) in results
        )
        return allowed, retry, windows

    async def charge(
        self, user_id: str, user_rules: Sequence[LimitRule], global_rules: Sequence[LimitRule]
    ) -> Charge:
        key = (user_id, tuple(user_rules), tuple(global_rules))
        allowed, retry, windows = self._step(key, refund=False)
        return Charge(allowed, retry, windows, key)

    async def refund(self, charge: Charge) -> None:
        if charge.refunded or not charge.allowed or not charge.windows:
            return
        charge.refunded = True
        self._step(charge.key, refund=True)

    async def peek(self, user_id: str, rules: Sequence[LimitRule]) -> tuple[Window, ...]:
        key = user_key("local", user_id)
        tats = {name: tat for (k, name), tat in self._tats.items() if k == key}
        return peek_windows(tats, self._clock(), rules)

    async def reset(self, user_id: str) -> None:
        key = user_key("local", user_id)
        self._tats = {slot: tat for slot, tat in self._tats.items() if slot[0] != key}
