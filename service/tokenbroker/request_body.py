"""Reading a mint request's JSON body safely: media type and size checked before parsing."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from . import strict_json
from .errors import BodyTooLarge, InvalidRequest, UnsupportedMediaType


def parse_json(raw: bytes) -> Any:
    """Strict JSON: no NaN/Infinity, no duplicate keys; InvalidRequest otherwise."""
    try:
        return strict_json.loads(raw)
    except (ValueError, RecursionError):
        raise InvalidRequest("invalid_json", "The request body is not valid JSON.") from None


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it is known to exceed ``limit``."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        if not length.isdigit():
            raise InvalidRequest("invalid_request", "Content-Length is not a number.")
        raise BodyTooLarge("body_too_large", f"The request body is larger than {limit} bytes.")
    chunks = bytearray()
    async for chunk in request.stream():
        chunks += chunk
        if len(chunks) > limit:
            raise BodyTooLarge("body_too_large", f"The request body is larger than {limit} bytes.")
    return bytes(chunks)


async def read_json_bytes(request: Request, limit: int) -> bytes:
    """A JSON body's bytes (empty allowed), with 415 and 413 decided before any parsing."""
    media = media_type(request)
    if media not in ("", "application/json"):
        raise UnsupportedMediaType(
            "unsupported_media_type", "The request body must be application/json."
        )
    raw = await read_body(request, limit)
    if media != "application/json" and raw.strip():
        raise UnsupportedMediaType(
            "unsupported_media_type", "Send the body with Content-Type: application/json."
        )
    return raw


def parse_body(raw: bytes) -> Any:
    """The request body as JSON; an empty body means ``{}``."""
    return parse_json(raw) if raw.strip() else {}
