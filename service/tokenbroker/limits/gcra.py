"""GCRA token buckets as pure arithmetic: no I/O, no clock of its own.

A rule ``{limit: N, per: P, burst: B}`` is a bucket of B tokens refilled at N per P. Its
state is one number, the theoretical arrival time (TAT). :func:`gcra` is one window's
step; ``gcra.lua`` is the same arithmetic run atomically inside Redis (the two are held
equal by a generated table of sequences in the tests). The rest names a policy's buckets
and their keys, and describes what a charge decided.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from tokenbroker.limits.rules import LimitRule


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
    unlimited: bool = field(default=False)  # admitted unchecked (store down, fail_mode open)

    @property
    def decision(self) -> str:
        """The limiter's decision as the metrics count it, once per mint."""
        if not self.allowed:
            return "denied"
        return "unlimited" if self.unlimited else "local" if self.local else "allowed"

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


def peek_windows(tats: dict[str, int], now: int, rules: Sequence[LimitRule]) -> tuple[Window, ...]:
    windows = []
    for index, rule in enumerate(rules):
        tat = max(tats.get(str(index), now), now)
        remaining = (rule.interval_us * rule.burst - (tat - now)) // rule.interval_us
        windows.append(Window("user", rule, max(0, remaining), tat - now))
    return tuple(windows)


@dataclass(frozen=True, slots=True)
class Bucket:
    """One bucket hash: its windows as (hash field, rule), and the same as ``gcra.lua``
    takes them, ``spec``: ``field:interval:burst`` per window, space separated (one
    argument, not three each). A window's field is its position in the scope's list, so
    editing a rule keeps the debt already run up in that window."""

    scope: str  # "user" or "global"
    windows: tuple[tuple[str, LimitRule], ...]
    spec: str


@functools.lru_cache(maxsize=1024)
def buckets(
    user_rules: tuple[LimitRule, ...], global_rules: tuple[LimitRule, ...]
) -> tuple[Bucket, ...]:
    """A policy's buckets (the user's, then the global budget), worked out once."""
    found = []
    for scope, rules in (("user", user_rules), ("global", global_rules)):
        windows = tuple((str(i), rule) for i, rule in enumerate(rules))
        spec = " ".join(f"{field}:{r.interval_us}:{r.burst}" for field, r in windows)
        if windows:
            found.append(Bucket(scope, windows, spec))
    return tuple(found)


def bucket_key(prefix: str, user_id: str, bucket: Bucket) -> str:
    return user_key(prefix, user_id) if bucket.scope == "user" else global_key(prefix)
