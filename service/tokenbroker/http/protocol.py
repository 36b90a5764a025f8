"""uvicorn's httptools protocol with the bounds a public endpoint needs, and errors in the
broker's JSON envelope even where the server, not the app, answers.

- a head (request line and headers) larger than ``max_header_bytes``: 431 and closed,
  counted in bytes as they arrive, so a value, a name or a request line that never ends
  is refused once it passes the cap instead of being joined in memory by the parser;
- a reply sent before its request's body arrived whole (a 413, a refusal before the
  body was read): ``Connection: close`` and nothing more read, one request, one reply;
- headers not complete ``header_timeout`` after the connection (or the request) began,
  or a body not complete ``body_timeout`` after its headers: 408 and the connection
  closed, so clients that never finish cannot pile up;
- more than ``max_connections`` open: a new connection is closed at once (a few bytes of
  state, instead of buffers), so memory stays bounded whatever clients do;
- HTTP that does not parse: 400 ``invalid_http``, as JSON.

And one write per reply: what a connection writes in one event-loop turn (a reply's
status line and headers, then its body) goes to the socket as one write.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tokenbroker.errors import error_body


@dataclass(frozen=True, slots=True)
class ProtocolLimits:
    max_connections: int = 2000
    max_header_bytes: int = 16384
    header_timeout: float = 10.0
    body_timeout: float = 10.0


_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


def _reply(status: int, code: str, message: str) -> bytes:
    body = error_body("invalid_request_error", code, message, None)
    return b"".join([
        b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status]),
        b"content-type: application/json\r\n",
        b"content-length: %d\r\n" % len(body),
        b"connection: close\r\n\r\n",
        body,
    ])  # fmt: skip


class CorkedTransport:
    """A connection's transport whose writes of one loop turn go out as one: uvicorn writes
    a reply's head and body separately, two sends for a few hundred bytes. Everything
    else is the real transport's; ``close`` sends what is pending first."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def bounded_protocol(limits: ProtocolLimits) -> type[HttpToolsProtocol]:
    """The protocol class uvicorn instantiates per connection, with ``limits``.

    The timeouts are enforced by one sweep a second over the open connections, not by a
    timer per request: two timers a request (headers, body) cost ~60 µs of CPU per mint
    at saturation in an A/B run (timer heap churn); a sweep costs nothing per request and
    closes a slow connection within a second of its deadline."""

    class BoundedHttpTools(HttpToolsProtocol):
        _waiting_since: float | None = None  # headers, or a body, still to come since then
        _waiting_for = "headers"
        _in_head = True  # the bytes arriving belong to a request's head
        _head_bytes = 0  # how many of them so far
        _keep_alive_after = True  # the request's keep-alive, once its body is complete
        _sweeping = False  # one sweeper per process (class attribute)

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            if len(self.connections) > limits.max_connections:
                transport.abort()  # over the cap: nothing is read, nothing kept
                return
            self.transport = CorkedTransport(transport, self.loop)  # type: ignore[assignment]
            self._wait("headers")
            if not BoundedHttpTools._sweeping:
                BoundedHttpTools._sweeping = True
                self.loop.call_later(1.0, self._sweep, self.loop, self.connections)

        @staticmethod
        def _sweep(loop: asyncio.AbstractEventLoop, connections: set[Any]) -> None:
            now = loop.time()
            for conn in list(connections):
                since = getattr(conn, "_waiting_since", None)
                if since is None:
                    continue
                what = conn._waiting_for
                budget = limits.header_timeout if what == "headers" else limits.body_timeout
                if now - since > budget and not conn.transport.is_closing():
                    conn._waiting_since = None
                    cycle = conn.cycle
                    if cycle is None or not cycle.response_started:  # one reply per request
                        message = f"The request {what} did not arrive in time."
                        conn.transport.write(_reply(408, "request_timeout", message))
                    conn.transport.close()
            loop.call_later(1.0, BoundedHttpTools._sweep, loop, connections)

        def _wait(self, what: str) -> None:
            self._waiting_since, self._waiting_for = self.loop.time(), what

        def data_received(self, data: bytes) -> None:
            """Bytes of a head are counted before the parser sees them: httptools joins a
            header's value (or name, or the URL) inside itself and reports it only once it
            ends, so a cap counted in its callbacks holds nothing against one that never
            does. The parser gets at most the cap's worth of a head; past it, 431."""
            if not self._in_head:
                super().data_received(data)
                return
            room = limits.max_header_bytes - self._head_bytes
            if len(data) <= room:
                self._head_bytes += len(data)
                super().data_received(data)
                return
            self._head_bytes = limits.max_header_bytes
            if room > 0:
                super().data_received(data[:room])
            if self._in_head:  # the head did not end within the cap
                self._refuse_head()
            elif not self.transport.is_closing():
                super().data_received(data[max(room, 0) :])

        def _refuse_head(self) -> None:
            if self.transport.is_closing():
                return
            self._waiting_since = None
            message = f"The request headers exceed {limits.max_header_bytes} bytes."
            self.transport.write(_reply(431, "headers_too_large", message))
            self.transport.close()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._waiting_since is None:
                self._wait("headers")

        def on_headers_complete(self) -> None:
            self._in_head, self._head_bytes = False, 0
            self._wait("body")
            previous = self.cycle
            super().on_headers_complete()
            cycle = self.cycle
            if cycle is None or cycle is previous:  # a WebSocket upgrade: no request cycle
                return
            # No keep-alive until the body is complete: a reply that starts before then (a
            # 413, a refusal before the body was read) ends the connection, and the rest of
            # the body (it may never end) is not read. Restored when the body is complete.
            self._keep_alive_after, cycle.keep_alive = cycle.keep_alive, False

        def on_message_complete(self) -> None:
            self._waiting_since = None
            self._in_head = True
            cycle = self.cycle
            if cycle is not None and not cycle.response_started:
                cycle.keep_alive = self._keep_alive_after
            super().on_message_complete()

        def send_400_response(self, msg: str) -> None:
            reply = _reply(400, "invalid_http", "The request is not valid HTTP/1.1.")
            self.transport.write(reply)
            self.transport.close()

    return BoundedHttpTools
