"""The Redis limiter: every window of a mint charged by one ``gcra.lua`` call.

The arithmetic is :mod:`tokenbroker.limits.gcra`'s, run inside Redis on the server's
clock (or, for tests, on a clock passed in: the script then takes ``now`` as its first
argument, so a test moves time instead of sleeping).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any

from redis.exceptions import ResponseError

from tokenbroker.limits.batcher import TurnBatcher
from tokenbroker.limits.gcra import (
    Bucket,
    Charge,
    Window,
    bucket_key,
    buckets,
    peek_windows,
    user_key,
)
from tokenbroker.limits.rules import LimitRule

Keyed = tuple[tuple[str, Bucket], ...]  # the buckets of one script call, with their keys
Call = tuple[str, Keyed]  # "charge" or "refund", and its buckets
Outcome = tuple[bool, int, list[Window]]  # allowed, retry_after_us, the windows


class RedisLimiter:
    """All windows of a mint checked and charged by one Lua script call.

    On Redis Cluster the user's hash and the global budget live in different slots, so
    no single script may touch both: the user's windows are charged first (one atomic
    call), then the global budget (another); if the budget says no, the user's charge
    is refunded at once. Each scope stays exact under any concurrency; a concurrent
    request of the same user may briefly see the charge that is about to be returned.
    """

    def __init__(
        self,
        client: Any,
        prefix: str,
        *,
        cluster: bool = False,
        clock: Callable[[], int] | None = None,
        patience: float | None = None,
    ) -> None:
        """``clock`` (µs) replaces the Redis server's clock: tests only. ``patience`` (s):
        a charge that Redis runs later than this after it was sent charges nothing (the
        caller stops waiting at the Redis timeout; half of it leaves the reply time to
        arrive), so a user whose request failed on a slow path keeps the allowance."""
        self._client = client
        self._clock = clock
        self._patience_us = round(patience * 1_000_000) if patience else None
        self._offset_us: int | None = None  # the Redis clock minus ours, from its replies
        self._prefix = prefix
        self._cluster = cluster
        # redis-py's Script: EVALSHA, reloaded after NOSCRIPT (a Redis restart or failover)
        self._script = client.register_script(
            resources.files(__package__).joinpath("gcra.lua").read_text()
        )
        # Calls of one loop turn go as one script call; on a cluster each key has its own
        # node, so there every call goes on its own.
        batcher: TurnBatcher[Call, Outcome] = TurnBatcher(self._run_batch)
        self._call = self._run_one if cluster else batcher

    def _groups(
        self, user_id: str, user_rules: tuple[LimitRule, ...], global_rules: tuple[LimitRule, ...]
    ) -> list[Keyed]:
        """Script calls for a charge: one, or on a cluster one per bucket (user first)."""
        keyed = tuple(
            (bucket_key(self._prefix, user_id, b), b) for b in buckets(user_rules, global_rules)
        )
        return [keyed] if not self._cluster else [(pair,) for pair in keyed]

    async def _run_batch(self, calls: list[Call]) -> list[Outcome | Exception]:
        """One script call for several charges; each one's outcome, or its Redis error."""
        keys: dict[str, int] = {}
        args: list[str | int] = [] if self._clock is None else [f"@{self._clock()}"]
        charges_only = all(mode == "charge" for mode, _ in calls)  # a late refund still refunds
        if self._patience_us and self._offset_us is not None and charges_only:
            args.append(f"<{time.time_ns() // 1000 + self._offset_us + self._patience_us}")
        for mode, keyed in calls:
            args += [mode, len(keyed)]
            for key, bucket in keyed:
                args += [keys.setdefault(key, len(keys) + 1), bucket.spec]
        reply = await self._script(keys=list(keys), args=args)
        # The offset errs low (the reply took time to come), so deadlines err early.
        self._offset_us = reply[-1 if reply[0] == -2 else 0] - time.time_ns() // 1000
        if reply[0] == -2:  # ran past its deadline: nothing charged
            late = TimeoutError("the rate-limit store ran the charge too late; nothing charged")
            return [late] * len(calls)
        outcomes: list[Outcome | Exception] = []
        at = 1
        for _, keyed in calls:
            windows = [(b.scope, rule) for _, b in keyed for _, rule in b.windows]
            size = 2 + 2 * len(windows)
            part, at = reply[at : at + size], at + size
            if part[0] == -1:
                outcomes.append(ResponseError(bytes(part[1]).decode(errors="replace")))
                continue
            outcomes.append((
                bool(part[0]),
                part[1],
                [Window(scope, rule, max(0, part[2 + 2 * i]), part[3 + 2 * i])
                 for i, (scope, rule) in enumerate(windows)],
            ))  # fmt: skip
        return outcomes

    async def _run_one(self, call: Call) -> Outcome:
        (outcome,) = await self._run_batch([call])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def charge(
        self, user_id: str, user_rules: Sequence[LimitRule], global_rules: Sequence[LimitRule]
    ) -> Charge:
        key = (user_id, tuple(user_rules), tuple(global_rules))
        windows: list[Window] = []
        charged: list[Keyed] = []
        for keyed in self._groups(*key):
            allowed, retry, group_windows = await self._call(("charge", keyed))
            windows += group_windows
            if not allowed:
                for done in charged:
                    await self._call(("refund", done))
                return Charge(False, retry, tuple(windows), key)
            charged.append(keyed)
        return Charge(True, 0, tuple(windows), key)

    async def refund(self, charge: Charge) -> None:
        if charge.refunded or not charge.allowed or not charge.windows:
            return
        charge.refunded = True
        for keyed in self._groups(*charge.key):
            await self._call(("refund", keyed))

    async def peek(self, user_id: str, rules: Sequence[LimitRule]) -> tuple[Window, ...]:
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.time()
            pipe.hgetall(user_key(self._prefix, user_id))
            (seconds, micros), raw = await pipe.execute()
        tats = {bytes(k).decode(): int(v) for k, v in raw.items()}
        now = self._clock() if self._clock else int(seconds) * 1_000_000 + int(micros)
        return peek_windows(tats, now, rules)

    async def reset(self, user_id: str) -> None:
        await self._client.delete(user_key(self._prefix, user_id))
