"""The upstream's model list (``GET {url}/models``, the same relative path on OpenAI and
Azure), for the shutdown dates the upstream announces: ``shutdown_date`` on a model, as
a Unix time or an ISO date. Read with the real key; nothing of the reply but each model's
id and date leaves this module."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from pyreqwest.exceptions import RequestError

from tokenbroker.upstream.client import Upstream

MAX_MODELS_BYTES = 4 * 1024 * 1024  # a model list is a few KiB; more is not one


class ModelListUnavailable(Exception):
    """The upstream's model list could not be read (unreachable, refused, malformed)."""


def shutdown_of(raw: Any) -> dt.date | None:
    """A model's ``shutdown_date`` as a date (UTC), or None when it has none we can read."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        try:
            return dt.datetime.fromtimestamp(raw, dt.UTC).date()
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(raw, str):
        try:
            return dt.date.fromisoformat(raw[:10])
        except ValueError:
            return None
    return None


def parse_models(content: bytes) -> dict[str, dt.date | None]:
    """``{model id: its shutdown date or None}`` from a ``GET /models`` reply."""
    try:
        reply: Any = json.loads(content)
        entries = reply["data"]
    except (ValueError, KeyError, TypeError):
        raise ModelListUnavailable("not a model list") from None
    if not isinstance(entries, list):
        raise ModelListUnavailable("not a model list")
    models: dict[str, dt.date | None] = {}
    for entry in entries:
        if isinstance(entry, Mapping) and isinstance(entry.get("id"), str):
            models[entry["id"]] = shutdown_of(entry.get("shutdown_date"))
    return models


async def list_models(upstream: Upstream) -> dict[str, dt.date | None]:
    """The upstream's models and their shutdown dates; ModelListUnavailable otherwise."""
    try:
        request = upstream.client.get(f"{upstream.base_url}/models")
        request = request.headers(await upstream.auth_headers())
        reply = await request.timeout(timedelta(seconds=upstream.deadline)).build().send()
        status, content = reply.status, (await reply.bytes()).to_bytes()
    except (RequestError, TimeoutError) as exc:
        raise ModelListUnavailable(type(exc).__name__) from None
    if status != 200:
        raise ModelListUnavailable(f"status {status}")
    if len(content) > MAX_MODELS_BYTES:
        raise ModelListUnavailable("reply too large")
    return parse_models(content)
