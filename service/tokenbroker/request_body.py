"""Reading a mint request's JSON body safely: media type and size checked before parsing."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from .errors import BodyTooLarge, InvalidRequest, UnsupportedMediaType


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key in object")
    return result


def parse_json(raw: bytes) -> Any:
    """Strict JSON: no NaN/Infinity, no duplicate keys; InvalidRequest otherwise."""
    try:
        return json.loads(raw, parse_constant=_no_constants, object_pairs_hook=_no_duplicates)
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


async def read_json(request: Request, limit: int) -> Any:
    """The body as JSON; an empty body is ``{}``. 415 / 413 / 400 before anything else."""
    media = media_type(request)
    if media not in ("", "application/json"):
        raise UnsupportedMediaType(
            "unsupported_media_type", "The request body must be application/json."
        )
    chunks = await read_body(request, limit)
    if not chunks.strip():
        return {}
    if not media:
        raise UnsupportedMediaType(
            "unsupported_media_type", "Send the body with Content-Type: application/json."
        )
    return parse_json(chunks)
