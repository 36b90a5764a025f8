"""Accept errors (out of file descriptors) are one log line per interval, not one each."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tokenbroker.infra.loop_errors import QuietLoopErrors


def test_accept_errors_are_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    """Thousands of failed accepts in an interval: one line with their count; other loop
    errors still reach the default handler."""
    now = [0.0]
    handler = QuietLoopErrors(interval=10, clock=lambda: now[0])
    loop = asyncio.new_event_loop()
    try:
        context = {"message": "socket.accept() out of system resource",
                   "exception": OSError(24, "Too many open files")}  # fmt: skip
        with caplog.at_level(logging.ERROR, logger="tokenbroker"):
            for _ in range(5000):
                handler(loop, context)
            now[0] = 10.5
            for _ in range(300):
                handler(loop, context)
        lines = [r.getMessage() for r in caplog.records if r.name == "tokenbroker"]
        assert lines == [
            "connections not accepted: 1 in the last 10 s (OSError)",
            "connections not accepted: 5000 in the last 10 s (OSError)",
        ]
        caplog.clear()
        with caplog.at_level(logging.ERROR):
            handler(loop, {"message": "Task exception was never retrieved"})
        assert any("never retrieved" in r.getMessage() for r in caplog.records)
    finally:
        loop.close()
