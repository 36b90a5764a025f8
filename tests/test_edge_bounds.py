"""The edge under hostile or broken clients: every error the broker can shape is the error
envelope, no redirect is built from request headers, and clients that never finish
cannot hold connections or memory past their timeouts."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import FakeUpstream, StartBroker, make_token
from servers import TokenbrokerServer, wait_until

SLOW = 300  # connections that never finish their headers


@pytest.fixture(scope="module")
def broker(start_broker: StartBroker) -> TokenbrokerServer:
    return start_broker(
        server={"host": "127.0.0.1", "port": 0, "max_connections": SLOW + 100},
        http={"header_timeout": "1s", "body_timeout": "1s", "max_header_bytes": 8192},
    )


def connect(broker: TokenbrokerServer) -> socket.socket:
    host, port = broker.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def read_reply(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one HTTP reply, read until the server closes."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def envelope(body: bytes) -> dict[str, str]:
    error: dict[str, str] = json.loads(body)["error"]
    assert set(error) == {"type", "code", "message", "param"}
    return error


def test_trailing_slash_is_404_without_a_redirect(broker: TokenbrokerServer) -> None:
    """No 307 whose Location comes from the client's Host header: a 404 envelope."""
    reply = httpx.post(broker.url + "/v1/realtime/sessions/", json={},
                       headers={"Host": "evil.example"})  # fmt: skip
    assert reply.status_code == 404 and "location" not in reply.headers
    assert envelope(reply.content)["code"] == "not_found"


def test_refused_preflight_is_json(broker: TokenbrokerServer) -> None:
    """A CORS preflight from an origin not in the allowlist: 400 in the envelope."""
    reply = httpx.options(broker.url + "/v1/realtime/sessions", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})  # fmt: skip
    assert reply.status_code == 400
    assert reply.headers["content-type"] == "application/json"
    assert envelope(reply.content)["code"] == "cors_not_allowed"
    assert "access-control-allow-origin" not in reply.headers


@pytest.mark.parametrize(
    "raw", [b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
            b"POST /v1/realtime/sessions HTTP/1.1\r\nContent-Length: -5\r\n\r\n"],
)  # fmt: skip
def test_malformed_http_is_json(broker: TokenbrokerServer, raw: bytes) -> None:
    """What the HTTP parser refuses is answered in the envelope too, then closed."""
    with connect(broker) as sock:
        sock.sendall(raw)
        status, headers, body = read_reply(sock)
    assert status == 400 and headers["content-type"] == "application/json"
    assert envelope(body)["code"] == "invalid_http"


def test_oversized_headers_are_431(broker: TokenbrokerServer) -> None:
    """Headers past http.max_header_bytes: 431 in the envelope, connection closed."""
    with connect(broker) as sock:
        sock.sendall(b"POST /v1/realtime/sessions HTTP/1.1\r\nHost: x\r\n")
        sock.sendall(b"X-Pad: " + b"a" * 10_000 + b"\r\n\r\n")
        status, _, body = read_reply(sock)
    assert status == 431 and envelope(body)["code"] == "headers_too_large"


def test_a_body_that_never_comes_is_408(broker: TokenbrokerServer, upstream: FakeUpstream) -> None:
    """Content-Length promised, part of it sent: 408 after http.body_timeout, no mint."""
    with connect(broker) as sock:
        token = make_token("slow-body").encode()
        sock.sendall(b"POST /v1/realtime/sessions HTTP/1.1\r\nHost: x\r\n"
                     b"Authorization: Bearer " + token + b"\r\nContent-Type: application/json"
                     b"\r\nContent-Length: 100\r\n\r\n{\"vo")  # fmt: skip
        started = time.monotonic()
        status, _, body = read_reply(sock)
    assert status == 408 and envelope(body)["code"] == "request_timeout"
    assert time.monotonic() - started < 5
    assert upstream.received() == []


def rss_kib(broker: TokenbrokerServer) -> int:
    status = Path(f"/proc/{broker.process.proc.pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1])


@pytest.fixture
def slow_clients(broker: TokenbrokerServer) -> Iterator[list[socket.socket]]:
    socks = []
    for _ in range(SLOW):
        sock = connect(broker)
        sock.sendall(b"POST /v1/realtime/sessions HTTP/1.1\r\nX-Slow: ")  # never finished
        socks.append(sock)
    yield socks
    for sock in socks:
        sock.close()


def test_clients_that_never_finish_are_closed_while_others_mint(
    broker: TokenbrokerServer, upstream: FakeUpstream, slow_clients: list[socket.socket]
) -> None:
    """Hundreds of connections stuck in their headers: a normal client mints meanwhile,
    the broker's memory stays bounded, and every stuck connection is closed with a 408
    within the header timeout (1 s here)."""
    before = rss_kib(broker)
    for i in range(5):
        headers = {"Authorization": f"Bearer {make_token(f'fine-{i}')}"}
        reply = httpx.post(broker.url + "/v1/realtime/sessions", json={}, headers=headers)
        assert reply.status_code == 200
    closed: list[int] = []

    def all_closed() -> bool:
        for sock in slow_clients:
            if sock.fileno() != -1 and id(sock) not in closed:
                sock.settimeout(0.01)
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    continue
                if not data or b"408" in data:
                    closed.append(id(sock))
        return len(closed) == len(slow_clients)

    assert wait_until(all_closed, 10, pause=0.05) < 5
    assert rss_kib(broker) - before < 20 * 1024  # well under the pod's headroom


def test_connections_past_the_cap_are_closed_at_once(start_broker: StartBroker) -> None:
    """Past server.max_connections a new connection is closed before anything is read."""
    capped = start_broker(server={"host": "127.0.0.1", "port": 0, "max_connections": 5},
                          http={"header_timeout": "5s"})  # fmt: skip
    held = [connect(capped) for _ in range(5)]
    try:
        extra = connect(capped)
        extra.settimeout(5)
        with contextlib.suppress(ConnectionResetError):  # aborted: closed as well
            assert extra.recv(1) == b""  # closed by the broker
        extra.close()
    finally:
        for sock in held:
            sock.close()


ENDLESS_HEADS = {
    "value": b"POST /v1/realtime/sessions HTTP/1.1\r\nHost: x\r\nX-Big: ",
    "name": b"POST /v1/realtime/sessions HTTP/1.1\r\nHost: x\r\nX-",
    "request line": b"GET /",
    "many headers": b"POST /v1/realtime/sessions HTTP/1.1\r\nHost: x\r\n",
}


def endless(shape: str) -> bytes:
    """64 KiB more of a head of ``shape`` (it can be sent again and again)."""
    if shape == "many headers":
        return b"".join(b"X-H%05d: v\r\n" % i for i in range(64 * 1024 // 13))
    return b"a" * 65536


@pytest.mark.parametrize("shape", list(ENDLESS_HEADS))
def test_a_head_that_never_ends_is_431_and_holds_no_memory(
    broker: TokenbrokerServer, shape: str
) -> None:
    """Ten connections stream a head without end (one value, one name, a request line,
    header after header): each is answered 431 and closed within a second of passing
    http.max_header_bytes, and the broker's memory grows by about ten caps, not by what
    was sent."""
    before = rss_kib(broker)
    socks = [connect(broker) for _ in range(10)]
    answers: list[tuple[int, float]] = []
    for sock in socks:
        sock.sendall(ENDLESS_HEADS[shape])
        chunk, sent, passed = endless(shape), 0, 0.0
        sock.settimeout(0.01)
        reply = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):  # closed by the broker under our feet
                sock.sendall(chunk)
                sent += len(chunk)
                if sent > 8192 and not passed:
                    passed = time.monotonic()
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                break
            reply += data
            if not data or b"\r\n\r\n" in reply:
                break
        answers.append((int(reply.split()[1]) if reply else 0, time.monotonic() - passed))
        assert sent < 4 * 1024 * 1024  # the broker stopped it long before this
    for sock in socks:
        sock.close()
    assert [status for status, _ in answers] == [431] * 10
    assert max(after for _, after in answers) < 1.0
    assert rss_kib(broker) - before < 4 * 1024  # ten 8 KiB caps and change, not megabytes


def test_after_a_413_the_connection_is_closed_and_nothing_more_is_sent(
    broker: TokenbrokerServer, upstream: FakeUpstream
) -> None:
    """A body declared larger than the limit is refused 413 with Connection: close; the
    broker reads no more of it and answers nothing else (no later 408 on the same
    connection), however long the client keeps sending."""
    with connect(broker) as sock:
        token = make_token("big-body").encode()
        sock.sendall(b"POST /v1/realtime/sessions HTTP/1.1\r\nHost: x\r\n"
                     b"Authorization: Bearer " + token + b"\r\nContent-Type: application/json"
                     b"\r\nContent-Length: 100000000\r\n\r\n{\"voice\": \"")  # fmt: skip
        sock.settimeout(0.05)
        received, deadline, closed = b"", time.monotonic() + 5, False
        while time.monotonic() < deadline and not closed:
            with contextlib.suppress(OSError):  # closed: what it sent is all there is
                sock.sendall(b"a" * 65536)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                closed = True
                break
            received += data
            closed = not data
    assert closed, "the broker kept the connection open after its 413"
    assert received.count(b"HTTP/1.1 ") == 1
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413") and b"connection: close" in head.lower()
    assert envelope(body)["code"] == "body_too_large"
    assert upstream.received() == []
