"""A provider's JWKS: fetched with the shared async client, cached, refetched sparingly.

- Cached for ``Cache-Control: max-age`` clamped to [min_ttl, max_ttl] (default ttl).
- An unknown ``kid`` triggers at most one refetch per ``cooldown``, whatever the
  traffic: concurrent misses wait on one lock and then find the fresh set (or the
  cooldown) instead of fetching again.
- While the provider is down the last good set keeps serving for up to ``max_stale``.
- No redirects, a size cap, JSON only; keys for ``use: enc`` and symmetric keys ignored.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt

from tokenbroker.config.settings import JwksSettings
from tokenbroker.infra import strict_json

log = logging.getLogger("tokenbroker.jwks")
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*(\d+)", re.IGNORECASE)


class JwksUnavailable(Exception):
    """No usable key set: never fetched successfully, or stale beyond max_stale."""


def _keys_from(document: Any) -> dict[str | None, Any]:
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWK set")
    keys: dict[str | None, Any] = {}
    for item in document["keys"]:
        if not isinstance(item, dict) or item.get("use", "sig") != "sig":
            continue
        if item.get("kty") not in ("RSA", "EC", "OKP"):
            continue  # symmetric ("oct") keys never come from a URL
        kid = item.get("kid")
        if kid is not None and not isinstance(kid, str):
            continue
        try:
            keys[kid] = jwt.PyJWK(item).key
        except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
            log.warning("skipping unusable JWK %r: %s", kid, type(exc).__name__)
    return keys


def make_jwks_client() -> httpx.AsyncClient:
    """The client JWKS fetches share: documents are cached, so httpx's own transport is
    plenty (the upstream call has its own, faster client)."""
    return httpx.AsyncClient(headers={"User-Agent": "tokenbroker"}, follow_redirects=False)


class JwksCache:
    def __init__(
        self,
        url: str,
        client: httpx.AsyncClient,
        settings: JwksSettings,
        clock: Callable[[], float] = time.monotonic,
        on_fetch: Callable[[str], None] = lambda result: None,
    ) -> None:
        self.url = url
        self._on_fetch = on_fetch
        self._client = client
        self._settings = settings
        self._clock = clock
        self._keys: dict[str | None, Any] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._expires_at = 0.0
        self._last_attempt = float("-inf")
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def key(self, kid: str | None) -> Any:
        """The verification key for ``kid``; KeyError if the provider has no such key."""
        if self._clock() >= self._expires_at or kid not in self._keys:
            await self._refresh(kid)
        if self._fetched_at is None or self._clock() - self._fetched_at > self._settings.max_stale:
            raise JwksUnavailable(self.url)
        return self._keys[kid]

    async def _refresh(self, kid: str | None) -> None:
        """Fetch at most once per cooldown, however many requests miss at the same time."""
        async with self._lock:
            now = self._clock()
            if now < self._expires_at and kid in self._keys:
                return  # another request refreshed it while this one waited
            if now - self._last_attempt < self._settings.refetch_cooldown:
                return  # unknown kid or failing provider: no fetch inside the cooldown
            self._last_attempt = now
            await self._fetch()

    async def _fetch(self) -> None:
        self.fetches += 1
        try:
            async with self._client.stream(
                "GET",
                self.url,
                follow_redirects=False,
                timeout=self._settings.timeout,
                headers={"Accept": "application/json"},
            ) as response:
                if response.status_code != 200:
                    raise ValueError(f"status {response.status_code}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > self._settings.max_bytes:
                        raise ValueError(f"larger than {self._settings.max_bytes} bytes")
                document = strict_json.loads(bytes(body))
                keys = _keys_from(document)
                max_age = _MAX_AGE.search(response.headers.get("cache-control", ""))
        except (httpx.HTTPError, ValueError, RecursionError) as exc:
            log.warning("JWKS fetch from %s failed: %s", self.url, exc)
            self._on_fetch("error")
            return
        self._on_fetch("ok")
        ttl = float(max_age.group(1)) if max_age else self._settings.cache_ttl
        ttl = min(max(ttl, self._settings.min_ttl), self._settings.max_ttl)
        now = self._clock()
        self._keys, self._fetched_at, self._expires_at = keys, now, now + ttl
        log.info("JWKS from %s: %d signing keys, cached %.0f s", self.url, len(keys), ttl)
