"""Errors the event loop reports outside any request, logged at most once per interval.

When the process runs out of file descriptors, asyncio's accept loop reports every failed
``accept()`` (thousands a second, each with a traceback); one line per interval with
the count says the same and keeps the log readable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("tokenbroker")


class QuietLoopErrors:
    """A loop exception handler: accept errors counted and logged once per ``interval``;
    anything else goes to the loop's default handler."""

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self._interval, self._clock = interval, clock
        self._last = -interval
        self._count = 0

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if "accept" not in str(context.get("message", "")):
            loop.default_exception_handler(context)
            return
        self._count += 1
        now = self._clock()
        if now - self._last >= self._interval:
            error = context.get("exception")
            log.error("connections not accepted: %d in the last %.0f s (%s)", self._count,
                      self._interval, type(error).__name__ if error else "error")  # fmt: skip
            self._last, self._count = now, 0
