"""One request's facts, for its log line, its metrics and its audit entry; never a secret.

The HTTP edge creates the context when a request arrives and finishes it once when the
reply has gone; the route says whether the request is a mint; the flow fills in what it
learns (user, policy, model, upstream time); the error handler records the error. The
outcome is decided in one place, :meth:`RequestContext.finish`, from how it ended.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from tokenbroker.errors import AuthenticationFailed, BrokerError


def hash_user(user_id: str) -> str:
    """The user id as logs show it: a short unkeyed hash, stable across replicas."""
    return hashlib.blake2b(user_id.encode(), digest_size=8).hexdigest()


@dataclass(slots=True)
class RequestContext:
    request_id: str = ""
    client_ip: str = ""
    user_agent: str = ""
    mint: bool = False  # set by the route: this request asks for a key
    user_id: str | None = None  # the audit trail keeps it; logs only see ``user``
    user: str | None = None
    policy: str | None = None
    model: str | None = None
    voice: str | None = None
    upstream_ms: float | None = None
    error: BrokerError | None = None
    outcome: str = "error"
    success: str = "minted"  # the outcome of a request that succeeded (the route sets it)
    detail: str = ""  # the audit entry's free-form detail (a created call's id)
    extra: dict[str, Any] = field(default_factory=dict)

    def identified(self, user_id: str) -> None:
        self.user_id, self.user = user_id, hash_user(user_id)

    def finish(self, status: int) -> str:
        """The outcome, decided once from how the request ended."""
        if status == 499:
            self.outcome = "client_disconnected"
        elif self.error is not None:
            self.outcome = self.error.outcome
            if isinstance(self.error, AuthenticationFailed):
                self.extra["reason"] = self.error.reason[:200]  # precise, for operators only
        elif status >= 500:
            self.outcome = "internal_error"
        else:
            self.outcome = self.success
        return self.outcome

    def audit_entry(self) -> dict[str, str] | None:
        """The audit trail's entry for a mint whose user is known, else None."""
        if not self.mint or self.user_id is None:
            return None
        return {
            "user": self.user_id, "policy": self.policy or "", "model": self.model or "",
            "voice": self.voice or "", "outcome": self.outcome, "request_id": self.request_id,
            "ip": self.client_ip, "user_agent": self.user_agent[:256], "detail": self.detail,
        }  # fmt: skip
