"""Strict reading of a compact JWS before any key is used (closes gaps PyJWT leaves open).

PyJWT's ``jwt.decode`` accepts duplicate JSON keys (last one wins), numeric strings for
``iat``/``nbf`` and booleans where numbers belong. This module reads the header and
payload itself so the service can refuse such tokens before verification, and keeps the
signing input and signature so the token is parsed once: the signature is then checked
by PyJWT's algorithm implementation (``auth.py``), not by a second parse in
``jwt.decode``.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from dataclasses import dataclass
from typing import Any

from tokenbroker.infra import strict_json

_SEGMENT = re.compile(r"^[A-Za-z0-9_-]*$")


class MalformedToken(ValueError):
    pass


def _segment(text: str, what: str) -> dict[str, Any]:
    if not _SEGMENT.match(text) or len(text) % 4 == 1:
        raise MalformedToken(f"{what} is not base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        value = strict_json.loads(raw)
    except (binascii.Error, UnicodeDecodeError, RecursionError) as exc:
        raise MalformedToken(f"{what} is not valid: {type(exc).__name__}") from None
    except ValueError as exc:
        raise MalformedToken(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise MalformedToken(f"{what} is not a JSON object")
    return value


@dataclass(frozen=True, slots=True)
class UnverifiedToken:
    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes  # what the signature covers: "<header>.<payload>" as sent
    signature: bytes


def read_token(token: str) -> UnverifiedToken:
    """Header, claims and signature of a compact JWS, strictly parsed but NOT verified."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        raise MalformedToken("not three non-empty segments")
    header, payload, signature = parts
    if not _SEGMENT.match(signature) or len(signature) % 4 == 1:
        raise MalformedToken("signature is not base64url")
    return UnverifiedToken(
        _segment(header, "header"),
        _segment(payload, "payload"),
        f"{header}.{payload}".encode("ascii"),
        base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)),
    )


def numeric_date(claims: dict[str, Any], name: str) -> float | None:
    """A NumericDate claim, or None if absent; MalformedToken if not a finite number."""
    value = claims.get(name)
    if value is None:
        if name in claims:
            raise MalformedToken(f"{name} is null")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedToken(f"{name} is not a number")
    try:  # an integer too large for a float is no date either
        seconds = float(value)
    except OverflowError:
        raise MalformedToken(f"{name} is out of range") from None
    if not math.isfinite(seconds):
        raise MalformedToken(f"{name} is not a finite number")
    return seconds
