"""Retries within a deadline: a small loop over attempts that return, never raise, their end.

At most ``retries`` more attempts after the first, each after a full-jitter exponential
pause, and only while the pause ends before the deadline.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tokenbroker.upstream.failures import Failure

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retries: int = 2
    backoff: float = 0.05  # the first retry waits up to this (full jitter), doubling after


async def with_retries(
    attempt: Callable[[], Awaitable[T | Failure]],
    policy: RetryPolicy,
    deadline: float,
    on_retry: Callable[[], None] = lambda: None,
) -> T | Failure:
    """The first result that is not a retryable failure, or the last attempt's."""
    tries = 0
    while True:
        result = await attempt()
        if not isinstance(result, Failure) or not result.retryable:
            return result
        pause = random.uniform(0, policy.backoff * 2**tries)  # noqa: S311  # jitter, not crypto
        if tries >= policy.retries or time.monotonic() + pause >= deadline:
            return result
        tries += 1
        on_retry()
        await asyncio.sleep(pause)
