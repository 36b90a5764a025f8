"""One JSON object per log line, for the service and for uvicorn's own messages.

The access line (one per request) skips the logging machinery when it is JSON: it is
encoded by orjson and the lines of one event-loop turn go out in one write
(:class:`AccessLog`); every other line goes through ``logging``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from typing import IO, Any

import orjson

_ENCODER = json.JSONEncoder(default=str)


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._stamp = ""

    def _time(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:  # one strftime per second, not per line
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self._time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        request_id = getattr(record, "request_id", None)
        if request_id:
            line["request_id"] = request_id
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return _ENCODER.encode(line)


class TextFormatter(logging.Formatter):
    """Human-readable lines for a terminal: the message, then the fields as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            text += " " + " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        return text


def configure_logging(level: str = "info", style: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if style == "json"
        else TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Records need no caller, thread or process names (the Python logging HOWTO's
    # "Optimization" section): skipping them is a good part of each access line's cost.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # the edge logs each request
    logging.getLogger("httpx").setLevel(logging.WARNING)


class AccessLog:
    """The per-request line. JSON at info level: a dict encoded by orjson, appended to the
    lines of this loop turn, written with one ``write`` + ``flush`` at the end of the turn
    (measured in docs/performance.md). Otherwise (text format, or info filtered out) the
    line goes through ``logging`` like any other."""

    def __init__(self, style: str, level: str, stream: IO[bytes] | None = None) -> None:
        self._fast = style == "json" and logging.getLevelName(level.upper()) <= logging.INFO
        self._stream = stream
        self._pending: list[bytes] = []
        self._second = -1
        self._stamp = ""
        self._log = logging.getLogger("tokenbroker.access")

    def _time(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp}.{int(now * 1000) % 1000:03d}Z"

    def write(self, fields: dict[str, Any]) -> None:
        if not self._fast:
            self._log.info("request", extra={"fields": fields})
            return
        line = {"time": self._time(), "level": "info", "logger": "tokenbroker.access",
                "message": "request", **fields}  # fmt: skip
        self._pending.append(orjson.dumps(line, default=str))
        if len(self._pending) == 1:
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        if not self._pending:
            return
        stream = self._stream or sys.stderr.buffer
        data = b"\n".join(self._pending) + b"\n"
        self._pending.clear()
        sys.stderr.flush()  # what logging wrote before stays before
        stream.write(data)
        stream.flush()
