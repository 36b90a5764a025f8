"""Reading a body from ASGI messages: pieces joined, limits and disconnects honoured."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from starlette.requests import ClientDisconnect
from starlette.types import Message

from tokenbroker.errors import BodyTooLarge, InvalidRequest, UnsupportedMediaType
from tokenbroker.http.body import read_body, read_json_bytes

JSON = [(b"content-type", b"application/json")]


def messages(*items: Message) -> Callable[[], Awaitable[Message]]:
    queue = list(items)

    async def receive() -> Message:
        return queue.pop(0)

    return receive


def piece(body: bytes, more: bool = True) -> Message:
    return {"type": "http.request", "body": body, "more_body": more}


async def test_pieces_are_joined_in_order() -> None:
    """A body sent in several messages comes back whole."""
    receive = messages(piece(b'{"a"'), piece(b": 1"), piece(b"}", more=False))
    assert await read_json_bytes(JSON, receive, 100) == b'{"a": 1}'


async def test_limit_is_enforced_while_reading() -> None:
    """Without Content-Length the limit is checked as pieces arrive."""
    receive = messages(piece(b"x" * 60), piece(b"x" * 60), piece(b"", more=False))
    with pytest.raises(BodyTooLarge):
        await read_body([], receive, 100)


async def test_declared_length_is_checked_before_reading() -> None:
    """A too-large or non-numeric Content-Length is refused without reading anything."""
    with pytest.raises(BodyTooLarge):
        await read_body([(b"content-length", b"101")], messages(), 100)
    with pytest.raises(InvalidRequest):
        await read_body([(b"content-length", b"12x")], messages(), 100)


async def test_disconnect_mid_body() -> None:
    """A client that goes away mid-body ends the read (Starlette's ClientDisconnect)."""
    with pytest.raises(ClientDisconnect):
        await read_body([], messages(piece(b"{"), {"type": "http.disconnect"}), 100)


async def test_non_json_media_type_with_a_body_is_refused() -> None:
    """Only application/json (or no type with an empty body) is read."""
    form = [(b"content-type", b"application/x-www-form-urlencoded")]
    with pytest.raises(UnsupportedMediaType):
        await read_json_bytes(form, messages(piece(b"a=b", more=False)), 100)
    assert await read_json_bytes([], messages(piece(b"", more=False)), 100) == b""
