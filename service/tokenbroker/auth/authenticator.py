"""End-user authentication: verify the bearer JWT and say who the user is.

Order matters. The token is size-checked and strictly parsed once (no duplicate keys,
no numeric strings); its ``iss`` picks the provider before any key is touched; the
header may not bring its own key (``jwk``, ``jku``, ``x5u``, ``x5c``) or extensions
(``crit``); the algorithm must be in the provider's allowlist *and* fit the key's type;
only then is the signature checked, by PyJWT's implementation of that algorithm over the
bytes that were parsed (no second parse), and after it the registered claims (``exp``,
``nbf``, ``aud``; the issuer already matched), then required claims and the user id.
Failures raise AuthenticationFailed: a generic message for the client, the precise
``reason`` for the log.

A token that passed all of that is remembered (up to ``auth.verified_cache_bytes`` in
all, least recently used out first) until its ``exp`` plus the leeway: a browser presents the
same JWT for every session it opens, and none of the checks above can change their answer
for the same bytes except the expiry (the cache drops the entry then) and the key (a hit
asks the provider for the token's key again and must get the very key that verified it,
so a JWKS rotation or a provider gone stale past ``max_stale`` ends the hit).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from cachetools import TLRUCache
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import Algorithm, get_default_algorithms
from jwt.exceptions import InvalidKeyError
from prometheus_client import Counter

from tokenbroker.auth.jwks import JwksCache, JwksUnavailable
from tokenbroker.auth.token import MalformedToken, UnverifiedToken, numeric_date, read_token
from tokenbroker.config.settings import AuthSettings, ProviderSettings
from tokenbroker.errors import AuthenticationFailed

_FORBIDDEN_HEADERS = ("jwk", "jku", "x5u", "x5c", "crit")
_MAX_USER_ID = 256
_CURVES = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1}
_ALGORITHMS: dict[str, Algorithm] = get_default_algorithms()


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str
    provider: str
    claims: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class _Verified:
    """A verified token: who it names, and the key that verified it (see the module doc)."""

    identity: Identity
    provider: _Provider
    kid: str | None
    key: Any
    exp: float
    size: int  # estimated bytes held: the token, its claims, the entry (see entry_size)


def entry_size(token: str, claims: Any) -> int:
    """What a cache entry holds: the token (the key), its claims as Python objects, and a
    fixed part for the entry and the cache's bookkeeping. The claims are measured, not
    guessed from the token's length (a token with many small claims holds several times
    its length); tracemalloc agrees within 20 % (tests)."""
    size, stack = sys.getsizeof(token) + 700, [claims]
    while stack:
        item = stack.pop()
        size += sys.getsizeof(item)
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return size


def key_fits(alg: str, key: Any) -> bool:
    """Whether ``alg`` may be verified with ``key`` (blocks algorithm confusion)."""
    if alg == "HS256":
        return isinstance(key, str | bytes)
    if alg[:2] in ("RS", "PS"):
        return isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048
    if alg in _CURVES:
        return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, _CURVES[alg])
    if alg == "EdDSA":
        return isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey)
    return False


def signature_valid(alg: str, prepared_key: Any, token: UnverifiedToken) -> bool:
    """PyJWT's implementation of ``alg`` checks the signature over the signing input."""
    return bool(_ALGORITHMS[alg].verify(token.signing_input, prepared_key, token.signature))


class _Provider:
    def __init__(self, settings: ProviderSettings, jwks: JwksCache | None) -> None:
        self.settings = settings
        self._jwks = jwks
        self._static: Any = settings.hs256_secret
        if settings.pem_file is not None:
            self._static = load_pem_public_key(settings.pem_file.read_bytes())
        self.audiences = frozenset(settings.audiences)
        self._prepared: dict[str, Any] = {}

    def prepared(self, alg: str, key: Any) -> Any:
        """``key`` as PyJWT's ``alg`` wants it; the configured key is prepared only once."""
        if key is not self._static:
            return _ALGORITHMS[alg].prepare_key(key)
        if alg not in self._prepared:
            self._prepared[alg] = _ALGORITHMS[alg].prepare_key(key)
        return self._prepared[alg]

    async def key(self, kid: str | None) -> Any:
        if self._jwks is None:
            return self._static
        try:
            return await self._jwks.key(kid)
        except KeyError:
            raise AuthenticationFailed("invalid_token", f"unknown kid {kid!r}") from None
        except JwksUnavailable:
            raise AuthenticationFailed("invalid_token", "JWKS unavailable") from None


def _fetch_counter(counter: Counter | None, provider: str) -> Callable[[str], None]:
    if counter is None:
        return lambda result: None
    return lambda result: counter.labels(provider, result).inc()


class Authenticator:
    """Verifies tokens against the configured providers."""

    def __init__(
        self,
        settings: AuthSettings,
        client: httpx.AsyncClient | None = None,
        on_jwks_fetch: Counter | None = None,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """``clock`` (tests) stands in for the wall clock of token times and the cache,
        and for the JWKS caches' monotonic clock."""
        self._clock = clock or time.time
        self._providers: dict[str, _Provider] = {}
        for provider in settings.providers:
            jwks = None
            if provider.jwks_url is not None:
                assert client is not None, "JWKS providers need the shared HTTP client"
                jwks = JwksCache(
                    provider.jwks_url,
                    client,
                    settings.jwks,
                    clock or time.monotonic,
                    on_fetch=_fetch_counter(on_jwks_fetch, provider.name),
                )
            self._providers[provider.issuer] = _Provider(provider, jwks)
        self._leeway = settings.leeway
        self._max_lifetime = settings.max_token_lifetime
        self._max_bytes = settings.max_token_bytes
        self._verified: TLRUCache[str, _Verified] | None = None
        if settings.verified_cache_bytes > 0:
            self._verified = TLRUCache(
                settings.verified_cache_bytes,
                ttu=lambda _token, entry, _now: entry.exp + self._leeway,
                timer=self._clock,
                getsizeof=lambda entry: entry.size,
            )

    async def verify(self, token: str) -> Identity:
        if self._verified is None:
            return (await self._verify(token)).identity
        hit = self._verified.get(token)
        if hit is not None and await hit.provider.key(hit.kid) is hit.key:
            return hit.identity
        verified = await self._verify(token)
        with contextlib.suppress(ValueError):  # one entry larger than the whole budget
            self._verified[token] = verified
        return verified.identity

    async def _verify(self, token: str) -> _Verified:
        if len(token) > self._max_bytes:
            raise AuthenticationFailed("invalid_token", f"token longer than {self._max_bytes}")
        try:
            unverified = read_token(token)
        except MalformedToken as exc:
            raise AuthenticationFailed("invalid_token", f"malformed token: {exc}") from None
        header, claims = unverified.header, unverified.claims
        issuer = claims.get("iss")
        provider = self._providers.get(issuer) if isinstance(issuer, str) else None
        if provider is None:
            raise AuthenticationFailed("invalid_token", f"unknown issuer {issuer!r}")
        for name in _FORBIDDEN_HEADERS:
            if name in header:
                raise AuthenticationFailed("invalid_token", f"forbidden header {name!r}")
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or alg not in provider.settings.algorithms:
            raise AuthenticationFailed("invalid_token", f"alg {alg!r} not allowed")
        if kid is not None and not isinstance(kid, str):
            raise AuthenticationFailed("invalid_token", "kid is not a string")
        exp, nbf = self._check_times(claims)
        key = await provider.key(kid)
        if not key_fits(alg, key):
            raise AuthenticationFailed("invalid_token", f"alg {alg} does not fit the key")
        try:
            prepared = provider.prepared(alg, key)
        except InvalidKeyError:
            raise AuthenticationFailed("invalid_token", f"key unusable for {alg}") from None
        if not signature_valid(alg, prepared, unverified):
            raise AuthenticationFailed("invalid_token", "signature verification failed")
        self._check_claims(provider, claims, exp, nbf)
        identity = Identity(
            self._user_id(provider.settings, claims), provider.settings.name, claims
        )
        return _Verified(identity, provider, kid, key, exp, entry_size(token, claims))

    def _check_claims(
        self, provider: _Provider, claims: dict[str, Any], exp: float, nbf: float | None
    ) -> None:
        """After the signature: expiry, not-before, audience (what ``jwt.decode`` checks)."""
        now = self._clock()
        if exp <= now - self._leeway:
            raise AuthenticationFailed("token_expired", "token expired")
        if nbf is not None and nbf > now + self._leeway:
            raise AuthenticationFailed("invalid_token", "token not yet valid (nbf)")
        for name in ("sub", "jti"):
            if name in claims and not isinstance(claims[name], str):
                raise AuthenticationFailed("invalid_token", f"{name} is not a string")
        if not provider.audiences:
            return
        aud = claims.get("aud")
        values = [aud] if isinstance(aud, str) else aud
        if (
            not isinstance(values, list)
            or not all(isinstance(value, str) for value in values)
            or provider.audiences.isdisjoint(values)
        ):
            raise AuthenticationFailed("invalid_token", "audience mismatch or missing")

    def _check_times(self, claims: dict[str, Any]) -> tuple[float, float | None]:
        """Before any key is used: numbers only, not issued in the future, bounded lifetime.
        Returns ``exp`` and ``nbf`` for the checks after the signature."""
        try:
            exp = numeric_date(claims, "exp")
            iat = numeric_date(claims, "iat")
            nbf = numeric_date(claims, "nbf")
        except MalformedToken as exc:
            raise AuthenticationFailed("invalid_token", str(exc)) from None
        if exp is None:
            raise AuthenticationFailed("invalid_token", "no exp")
        now = self._clock()
        if iat is not None and iat > now + self._leeway:
            raise AuthenticationFailed("invalid_token", "iat in the future")
        start = max(x for x in (iat, nbf, now - self._max_lifetime) if x is not None)
        if exp - start > self._max_lifetime + self._leeway or exp - now > self._max_lifetime:
            raise AuthenticationFailed("invalid_token", "token lifetime exceeds the maximum")
        return exp, nbf

    def _user_id(self, provider: ProviderSettings, claims: Mapping[str, Any]) -> str:
        for name, accepted in provider.required_claims.items():
            if claims.get(name) not in accepted:
                raise AuthenticationFailed("invalid_token", f"required claim {name} mismatch")
        user_id = claims.get(provider.user_claim)
        if (
            not isinstance(user_id, str)
            or not user_id.strip()
            or len(user_id) > _MAX_USER_ID
            or not user_id.isprintable()
        ):
            raise AuthenticationFailed("invalid_token", f"bad user id claim {provider.user_claim}")
        return user_id
