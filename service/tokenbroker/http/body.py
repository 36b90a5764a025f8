"""Reading a request's JSON body safely: media type and size checked before parsing.

It works on the ASGI scope's headers and ``receive`` (the mint endpoint is a plain ASGI
app; the admin API passes its Request's), so the checks live in one place.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import ClientDisconnect
from starlette.types import Receive

from tokenbroker.errors import BodyTooLarge, InvalidRequest, UnsupportedMediaType

RawHeaders = Sequence[tuple[bytes, bytes]]


def header(headers: RawHeaders, name: bytes) -> str | None:
    """The first value of header ``name`` (lower case, as ASGI servers give names)."""
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def media_type(headers: RawHeaders) -> str:
    return (header(headers, b"content-type") or "").split(";", 1)[0].strip().lower()


async def read_body(headers: RawHeaders, receive: Receive, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it is known to exceed ``limit`` (a body
    that does not arrive in time is the protocol's 408: http/protocol.py)."""
    length = header(headers, b"content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        if not length.isdigit():
            raise InvalidRequest("invalid_request", "Content-Length is not a number.")
        raise BodyTooLarge("body_too_large", f"The request body is larger than {limit} bytes.")
    chunks = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunks += message.get("body", b"")
        if len(chunks) > limit:
            raise BodyTooLarge("body_too_large", f"The request body is larger than {limit} bytes.")
        if not message.get("more_body", False):
            return bytes(chunks)


async def read_json_bytes(headers: RawHeaders, receive: Receive, limit: int) -> bytes:
    """A JSON body's bytes, with 415 and 413 decided before any parsing. An empty body
    means "policy defaults" whatever its Content-Type says; a non-empty one must be
    ``application/json`` (refused as soon as its length shows it is not empty)."""
    media = media_type(headers)
    length = header(headers, b"content-length")
    if media not in ("", "application/json") and length not in (None, "0"):
        raise UnsupportedMediaType(
            "unsupported_media_type", "The request body must be application/json."
        )
    raw = await read_body(headers, receive, limit)
    if media != "application/json" and raw.strip():
        raise UnsupportedMediaType(
            "unsupported_media_type", "Send the body with Content-Type: application/json."
        )
    return raw
