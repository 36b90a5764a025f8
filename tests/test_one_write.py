"""One write per loop turn: the access lines (JSON; other formats and levels go through
logging) and a connection's reply."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest

from tokenbroker.http.protocol import CorkedTransport
from tokenbroker.infra.logs import AccessLog


class Counting(io.BytesIO):
    writes = 0

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.writes += 1
        return super().write(data)


async def test_lines_of_one_turn_are_one_write() -> None:
    stream = Counting()
    access = AccessLog("json", "info", stream)
    access.write({"request_id": "a", "status": 200})
    access.write({"request_id": "b", "status": 404, "latency_ms": 0.5})
    assert stream.getvalue() == b""  # written at the end of the turn, not on the reply path
    await asyncio.sleep(0)  # one loop turn
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert stream.writes == 1
    seen = [(x["request_id"], x["status"], x["logger"], x["level"]) for x in lines]
    assert seen == [("a", 200, "tokenbroker.access", "info"),
                    ("b", 404, "tokenbroker.access", "info")]  # fmt: skip
    assert lines[1]["time"].endswith("Z")


@pytest.mark.parametrize(("style", "level"), [("text", "info"), ("json", "warning")])
async def test_other_formats_and_levels_go_through_logging(
    style: str, level: str, caplog: pytest.LogCaptureFixture
) -> None:
    stream = Counting()
    access = AccessLog(style, level, stream)
    with caplog.at_level(logging.INFO, logger="tokenbroker.access"):
        access.write({"request_id": "c"})
        await asyncio.sleep(0)
    assert stream.writes == 0
    assert [r.fields for r in caplog.records] == [{"request_id": "c"}]  # type: ignore[attr-defined]


class Recording:
    """A transport that records what reaches it."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0


async def test_a_reply_goes_out_in_one_write() -> None:
    """Head and body written in one loop turn reach the socket as one write; ``close``
    sends what is pending first; other calls reach the real transport."""
    real = Recording()
    corked = CorkedTransport(real, asyncio.get_running_loop())
    corked.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    corked.write(b"{}")
    assert real.writes == []
    await asyncio.sleep(0)
    assert real.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    assert corked.get_write_buffer_size() == 0
    corked.write(b"bye")
    corked.close()
    assert real.writes[-1] == b"bye" and real.closed
