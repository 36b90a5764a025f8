"""The request's credential: exactly one ``Authorization: Bearer <token>`` (RFC 6750).

No credential, or another scheme (``Basic``, …), is 401 ``missing_token`` with a plain
Bearer challenge (§3.1: the request holds no credential for this resource); a repeated
header or a Bearer value that is not one token is 400 ``invalid_request``.
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenbroker.errors import AuthenticationFailed, InvalidRequest


def _malformed_authorization() -> InvalidRequest:
    return InvalidRequest(
        "invalid_request",
        "The Authorization header must be exactly one 'Bearer <token>'.",
        headers={"WWW-Authenticate": 'Bearer realm="tokenbroker", error="invalid_request"'},
    )


def bearer_token(values: Sequence[str]) -> str:
    """The token of the request's one ``Authorization: Bearer`` header (RFC 6750 §2.1)."""
    if not values or not "".join(values).strip():
        raise AuthenticationFailed("missing_token", "no Authorization header")
    if len(values) > 1:
        raise _malformed_authorization()
    scheme, _, token = values[0].strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer":  # another scheme (Basic, …): no credentials for us (§3.1)
        raise AuthenticationFailed("missing_token", f"unsupported scheme {scheme[:20]!r}")
    if not token or any(c in token for c in " ,\t"):
        raise _malformed_authorization()
    return token
