"""Rate limiting: GCRA token buckets charged for all of a mint's windows in one step.

A rule ``{limit: N, per: P, burst: B}`` is a bucket of B tokens refilled at N per P. Its
state is one number, the theoretical arrival time (TAT). :func:`gcra` is the arithmetic;
``gcra.lua`` is the same arithmetic run atomically inside Redis on the server's clock, and
:class:`MemoryLimiter` runs it in-process (dev mode, ``fail_mode: local``).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Protocol

from redis.exceptions import ResponseError

from .limits import LimitRule
from .turn_batcher import TurnBatcher


@dataclass(frozen=True, slots=True)
class Window:
    scope: str  # "user" or "global"
    rule: LimitRule
    remaining: int
    reset_us: int


@dataclass(slots=True)
class Charge:
    """The outcome of one charge; refundable once."""

    allowed: bool
    retry_after_us: int
    windows: tuple[Window, ...]
    key: tuple[str, tuple[LimitRule, ...], tuple[LimitRule, ...]]
    refunded: bool = field(default=False)
    local: bool = field(default=False)  # charged in-process because the store was down

    @property
    def retry_after_seconds(self) -> int:
        """Whole seconds (at least 1) after which the same request would pass."""
        return max(1, math.ceil(self.retry_after_us / 1_000_000))


def gcra(
    tat: int | None, now: int, interval: int, burst: int, *, refund: bool = False
) -> tuple[bool, int, int, int]:
    """One window's step: (allowed, new_tat, remaining, retry_after_us).

    A denied charge leaves the TAT as it was. A refund moves it back one interval but
    never before ``now``, so a bucket never holds more than ``burst`` tokens.
    """
    tau = interval * burst
    tat = now if tat is None or tat < now else tat
    if refund:
        new = max(tat - interval, now)
        return True, new, (tau - (new - now)) // interval, 0
    new = tat + interval
    if new - now > tau:
        return False, tat, (tau - (tat - now)) // interval, new - tau - now
    return True, new, (tau - (new - now)) // interval, 0


def user_key(prefix: str, user_id: str) -> str:
    """The user's bucket hash. The id is hashed so no value can pick the key or its slot;
    the name is kept short because it is most of a user's memory in Redis."""
    digest = hashlib.blake2b(user_id.encode(), digest_size=9).digest()
    return f"{prefix}:{{{base64.urlsafe_b64encode(digest).decode()}}}"


def global_key(prefix: str) -> str:
    return f"{prefix}:rl:{{global}}"


class Limiter(Protocol):
    async def charge(
        self, user_id: str, user_rules: Sequence[LimitRule], global_rules: Sequence[LimitRule]
    ) -> Charge: ...

    async def refund(self, charge: Charge) -> None: ...


class LimitState(Protocol):
    """Read and clear one user's buckets (operators' `user show` / `user reset`)."""

    async def peek(self, user_id: str, rules: Sequence[LimitRule]) -> tuple[Window, ...]: ...
    async def reset(self, user_id: str) -> None: ...


def _peek(tats: dict[str, int], now: int, rules: Sequence[LimitRule]) -> tuple[Window, ...]:
    windows = []
    for index, rule in enumerate(rules):
        tat = max(tats.get(str(index), now), now)
        remaining = (rule.interval_us * rule.burst - (tat - now)) // rule.interval_us
        windows.append(Window("user", rule, max(0, remaining), tat - now))
    return tuple(windows)


@dataclass(frozen=True, slots=True)
class _Bucket:
    """One bucket hash: its windows as (hash field, rule), and the same as ``gcra.lua``
    takes them, ``spec``: ``field:interval:burst`` per window, space separated (one
    argument, not three each). A window's field is its position in the scope's list, so
    editing a rule keeps the debt already run up in that window."""

    scope: str  # "user" or "global"
    windows: tuple[tuple[str, LimitRule], ...]
    spec: str


@functools.lru_cache(maxsize=1024)
def _buckets(
    user_rules: tuple[LimitRule, ...], global_rules: tuple[LimitRule, ...]
) -> tuple[_Bucket, ...]:
    """A policy's buckets (the user's, then the global budget), worked out once."""
    buckets = []
    for scope, rules in (("user", user_rules), ("global", global_rules)):
        windows = tuple((str(i), rule) for i, rule in enumerate(rules))
        spec = " ".join(f"{field}:{r.interval_us}:{r.burst}" for field, r in windows)
        if windows:
            buckets.append(_Bucket(scope, windows, spec))
    return tuple(buckets)


def _bucket_key(prefix: str, user_id: str, bucket: _Bucket) -> str:
    return user_key(prefix, user_id) if bucket.scope == "user" else global_key(prefix)


Keyed = tuple[tuple[str, _Bucket], ...]  # the buckets of one script call, with their keys
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

    def __init__(self, client: Any, prefix: str, *, cluster: bool = False) -> None:
        self._client = client
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
            (_bucket_key(self._prefix, user_id, b), b) for b in _buckets(user_rules, global_rules)
        )
        return [keyed] if not self._cluster else [(pair,) for pair in keyed]

    async def _run_batch(self, calls: list[Call]) -> list[Outcome | Exception]:
        """One script call for several charges; each one's outcome, or its Redis error."""
        keys: dict[str, int] = {}
        args: list[str | int] = []
        for mode, keyed in calls:
            args += [mode, len(keyed)]
            for key, bucket in keyed:
                args += [keys.setdefault(key, len(keys) + 1), bucket.spec]
        reply = await self._script(keys=list(keys), args=args)
        outcomes: list[Outcome | Exception] = []
        at = 0
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
        return _peek(tats, int(seconds) * 1_000_000 + int(micros), rules)

    async def reset(self, user_id: str) -> None:
        await self._client.delete(user_key(self._prefix, user_id))


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
        for bucket in _buckets(user_rules, global_rules):
            hash_key = _bucket_key("local", user_id, bucket)
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
        return _peek(tats, self._clock(), rules)

    async def reset(self, user_id: str) -> None:
        key = user_key("local", user_id)
        self._tats = {slot: tat for slot, tat in self._tats.items() if slot[0] != key}


def rate_limit_headers(charge: Charge) -> dict[str, str]:
    """``RateLimit-Policy`` and ``RateLimit`` (draft-ietf-httpapi-ratelimit-headers)."""
    if not charge.windows:
        return {}
    policies = ", ".join(
        f'"{w.scope}-{w.rule.name}";q={w.rule.limit};w={max(1, round(w.rule.per))}'
        for w in charge.windows
    )
    tightest = min(charge.windows, key=lambda w: (w.remaining, -w.reset_us))
    reset = max(0, math.ceil(tightest.reset_us / 1_000_000))
    if not charge.allowed:
        reset = charge.retry_after_seconds
    return {
        "RateLimit-Policy": policies,
        "RateLimit": f'"{tightest.scope}-{tightest.rule.name}";r={tightest.remaining};t={reset}',
    }
