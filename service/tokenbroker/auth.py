"""End-user authentication: verify the bearer JWT and say who the user is.

The token's ``iss`` picks the provider before any key is used; the provider's explicit
algorithm allowlist and key decide the rest. Failures raise AuthenticationFailed with a
generic message for the client and the precise ``reason`` for the log.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from .errors import AuthenticationFailed, InvalidRequest
from .settings import ProviderSettings, Settings

# Header parameters that would make the token choose its own key or extensions.
_FORBIDDEN_HEADERS = ("jwk", "jku", "x5u", "x5c", "crit")
_MAX_USER_ID = 256


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str
    provider: str
    claims: Mapping[str, Any]


def bearer_token(authorization: str | None) -> str:
    """The token in an ``Authorization: Bearer`` header (RFC 6750 §2.1)."""
    if authorization is None or not authorization.strip():
        raise AuthenticationFailed("missing_token", "no Authorization header")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token or "," in authorization:
        raise InvalidRequest(
            "invalid_request",
            "The Authorization header must be 'Bearer <token>'.",
            headers={"WWW-Authenticate": 'Bearer realm="tokenbroker", error="invalid_request"'},
        )
    return token


class Authenticator:
    """Verifies tokens against the configured providers."""

    def __init__(self, settings: Settings) -> None:
        self._providers = {p.issuer: p for p in settings.providers}
        self._leeway = settings.leeway
        self._max_lifetime = settings.max_token_lifetime
        self._max_bytes = settings.max_token_bytes

    def _key(self, provider: ProviderSettings, header: Mapping[str, Any]) -> Any:
        if header.get("alg") == "HS256" and provider.hs256_secret:
            return provider.hs256_secret
        raise AuthenticationFailed("invalid_token", f"no key for alg {header.get('alg')!r}")

    def verify(self, token: str) -> Identity:
        if len(token) > self._max_bytes:
            raise AuthenticationFailed("invalid_token", f"token longer than {self._max_bytes}")
        try:
            unverified = jwt.api_jwt.decode_complete(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise AuthenticationFailed("invalid_token", f"malformed token: {exc}") from None
        header, payload = unverified["header"], unverified["payload"]
        if not isinstance(payload, dict):
            raise AuthenticationFailed("invalid_token", "payload is not an object")
        issuer = payload.get("iss")
        provider = self._providers.get(issuer) if isinstance(issuer, str) else None
        if provider is None:
            raise AuthenticationFailed("invalid_token", f"unknown issuer {issuer!r}")
        for name in _FORBIDDEN_HEADERS:
            if name in header:
                raise AuthenticationFailed("invalid_token", f"forbidden header {name!r}")
        if header.get("alg") not in provider.algorithms:
            raise AuthenticationFailed("invalid_token", f"alg {header.get('alg')!r} not allowed")
        key = self._key(provider, header)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=list(provider.algorithms),
                audience=list(provider.audiences) or None,
                issuer=provider.issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iss"], "verify_aud": bool(provider.audiences)},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationFailed("token_expired", "token expired") from None
        except jwt.PyJWTError as exc:
            raise AuthenticationFailed("invalid_token", f"{type(exc).__name__}: {exc}") from None
        return Identity(self._user_id(provider, claims), provider.name, claims)

    def _user_id(self, provider: ProviderSettings, claims: Mapping[str, Any]) -> str:
        exp = claims["exp"]
        if isinstance(exp, bool) or not isinstance(exp, int | float):
            raise AuthenticationFailed("invalid_token", "exp is not a number")
        start = claims.get("iat", claims.get("nbf", time.time()))
        if isinstance(start, bool) or not isinstance(start, int | float):
            raise AuthenticationFailed("invalid_token", "iat/nbf is not a number")
        if exp - start > self._max_lifetime + self._leeway:
            raise AuthenticationFailed("invalid_token", "token lifetime exceeds the maximum")
        user_id = claims.get(provider.user_claim)
        if not isinstance(user_id, str) or not user_id.strip() or len(user_id) > _MAX_USER_ID:
            raise AuthenticationFailed("invalid_token", f"bad user id claim {provider.user_claim}")
        return user_id
