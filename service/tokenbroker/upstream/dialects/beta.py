"""``openai-beta``: the seed's ``POST /realtime/sessions``; the session goes as it is."""

from __future__ import annotations

from typing import Any

from tokenbroker.upstream.dialects.base import Dialect


def shape(
    session: dict[str, Any], ga_only: dict[str, Any]
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The beta body is the enforced session; GA-only fields have no place in it."""
    return session, tuple(sorted(ga_only))


BETA = Dialect(
    "openai-beta", "/realtime/sessions", "Authorization", shape, lambda r: r["client_secret"]
)
