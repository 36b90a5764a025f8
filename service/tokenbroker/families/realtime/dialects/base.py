"""What a dialect is: data and pure functions, no I/O."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tokenbroker.upstream.failures import Failure, Kind

# The enforced session (the seed's field names) and the GA-only fields beside it, to a
# request body and the names of the fields this dialect has no place for.
Shape = Callable[[dict[str, Any], dict[str, Any]], tuple[dict[str, Any], tuple[str, ...]]]


@dataclass(frozen=True, slots=True)
class Minted:
    """What the upstream gave: the secret, its expiry, and the session it belongs to."""

    value: str
    expires_at: int
    session_id: str | None = None
    session: dict[str, Any] = field(default_factory=dict)  # the reply without the secret


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    path: str  # appended to upstream.url
    key_header: str  # "Authorization" (Bearer) or "api-key"
    shape: Shape
    secret_of: Callable[[Any], Any]  # the reply's object holding value / expires_at
    session_of: Callable[[Any], Any]  # the reply's session facts, the secret taken out

    def parse(self, content: bytes) -> Minted | Failure:
        """The secret and its session from a 200 reply, or an INVALID failure."""
        try:
            reply: Any = json.loads(content)
            secret = self.secret_of(reply)
            value, expires_at = secret["value"], secret["expires_at"]
        except (ValueError, KeyError, TypeError):
            return Failure(Kind.INVALID)
        if not isinstance(value, str) or not value or type(expires_at) is not int:
            return Failure(Kind.INVALID)
        session = self.session_of(reply)
        session = session if isinstance(session, dict) else {}
        session_id = session.get("id")
        return Minted(value, expires_at, session_id if isinstance(session_id, str) else None,
                      session)  # fmt: skip
