"""The broker's error hierarchy, and the one place that turns an error into a reply.

Every error a client can see is a ``BrokerError``: plain data (status, type, code,
message, param, headers). Each layer raises the subclass that names what went wrong;
the app turns it into OpenAI's error envelope with :func:`error_body`.

    BrokerError
    ├── InvalidRequest         400 invalid_request_error
    │   ├── BodyTooLarge       413
    │   └── UnsupportedMediaType 415
    ├── NotFound               404 invalid_request_error
    ├── MethodNotAllowed       405 invalid_request_error
    ├── AuthenticationFailed   401 authentication_error (+ WWW-Authenticate)
    ├── PermissionDenied       403 permission_error
    ├── RateLimited            429 rate_limit_error (+ Retry-After)
    ├── UpstreamFailed         502 upstream_error
    │   └── UpstreamTimeout    504
    └── Unavailable            503 unavailable (store down, upstream rate limited)

    InvalidDocument (ValueError): a settings or policy file with every problem named.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar


class BrokerError(Exception):
    """An error with a status and a stable machine-readable code."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"

    def __init__(
        self,
        code: str,
        message: str,
        *,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param
        self.headers: dict[str, str] = dict(headers or {})

    @property
    def outcome(self) -> str:
        """What the request's log line, metrics and audit entry call this end."""
        return self.code

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r}, param={self.param!r})"


class InvalidRequest(BrokerError):
    status = 400
    type = "invalid_request_error"


class BodyTooLarge(InvalidRequest):
    status = 413


class UnsupportedMediaType(InvalidRequest):
    status = 415


class NotFound(BrokerError):
    status = 404
    type = "invalid_request_error"


class MethodNotAllowed(BrokerError):
    status = 405
    type = "invalid_request_error"


class AuthenticationFailed(BrokerError):
    """A missing or bad token. The message stays generic; ``reason`` goes to the log only."""

    status = 401
    type = "authentication_error"

    def __init__(self, code: str, reason: str) -> None:
        challenge = 'Bearer realm="tokenbroker"'
        if code != "missing_token":
            # RFC 6750 §3.1: no error attribute when the request had no credentials.
            challenge += ', error="invalid_token"'
        message = (
            "Missing bearer token."
            if code == "missing_token"
            else "The bearer token is invalid or expired."
        )
        super().__init__(code, message, headers={"WWW-Authenticate": challenge})
        self.reason = reason


class PermissionDenied(BrokerError):
    status = 403
    type = "permission_error"


class RateLimited(BrokerError):
    status = 429
    type = "rate_limit_error"

    @property
    def outcome(self) -> str:
        return "rate_limited" if self.code == "rate_limit_exceeded" else self.code


class UpstreamFailed(BrokerError):
    status = 502
    type = "upstream_error"


class UpstreamTimeout(UpstreamFailed):
    status = 504


class Unavailable(BrokerError):
    status = 503
    type = "unavailable"


class InvalidDocument(ValueError):
    """A configuration or policy document is invalid: one ``path: reason`` line per problem.

    Raised before anything serves (settings) or before a document is adopted (policies);
    never a reply by itself (the admin API wraps it as a 400 ``invalid_policy``).
    """

    what = "document"

    def __init__(self, errors: list[str]) -> None:
        super().__init__(f"invalid {self.what}:\n" + "\n".join(f"  {e}" for e in errors))
        self.errors = errors


def error_body(status_type: str, code: str, message: str, param: str | None) -> bytes:
    """OpenAI's error envelope, as bytes."""
    payload: dict[str, Any] = {
        "error": {"type": status_type, "code": code, "message": message, "param": param}
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def render(error: BrokerError) -> bytes:
    return error_body(error.type, error.code, error.message, error.param)
