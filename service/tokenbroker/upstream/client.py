"""The upstream call: ``POST {upstream_url}/realtime/sessions`` with the real API key.

Only the ephemeral ``client_secret`` leaves this module. One total deadline covers the
whole call, retries included. Connection errors and 500/502/503/504 are retried (at most
``retries`` times, jittered exponential backoff) while the deadline allows. A circuit
breaker answers at once while the upstream keeps failing and lets one probe through
every ``breaker_reset`` seconds. Failures become the broker's errors (SPEC §2);
``refundable`` says whether the user's rate-limit charge goes back.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import aiohttp
from yarl import URL

from tokenbroker.errors import BrokerError, Unavailable, UpstreamFailed, UpstreamTimeout
from tokenbroker.infra.breaker import CircuitBreaker

RETRYABLE_STATUS = (500, 502, 503, 504)


@dataclass(frozen=True, slots=True)
class Minted:
    value: str
    expires_at: int


@dataclass(frozen=True, slots=True)
class UpstreamPolicy:
    deadline: float = 10.0  # total, retries included
    retries: int = 2
    backoff: float = 0.05  # first retry waits up to this (full jitter), doubling after
    breaker_threshold: int = 5
    breaker_reset: float = 2.0


class UpstreamError(Exception):
    """Wraps the client-facing error and whether the mint's charge goes back."""

    def __init__(self, error: BrokerError, *, refundable: bool) -> None:
        super().__init__(error.message)
        self.error = error
        self.refundable = refundable


class _Retry(Exception):
    """An attempt failed in a way worth retrying; ``final`` is the error if it was the last."""

    def __init__(self, final: UpstreamError) -> None:
        self.final = final


def _retry_after(value: str | None) -> str:
    try:
        return str(max(1, math.ceil(float(value or "1"))))
    except ValueError:
        return "1"


def _parse(content: bytes) -> Minted:
    try:
        secret = json.loads(content)["client_secret"]
        value, expires_at = secret["value"], secret["expires_at"]
    except (ValueError, KeyError, TypeError):
        value = expires_at = None
    if (
        not isinstance(value, str)
        or not value
        or isinstance(expires_at, bool)
        or not isinstance(expires_at, int)
    ):
        error = UpstreamFailed(
            "upstream_invalid_response", "The upstream answered without a usable client secret."
        )
        raise UpstreamError(error, refundable=False)
    return Minted(value, expires_at)


def _failure(status: int, retry_after: str | None) -> UpstreamError:
    """The broker's error for a non-200 upstream answer."""
    if status == 429:
        return UpstreamError(
            Unavailable(
                "upstream_rate_limited",
                "The upstream is rate limiting; retry later.",
                headers={"Retry-After": _retry_after(retry_after)},
            ),
            refundable=True,
        )
    if status in (401, 403):
        error = UpstreamFailed("upstream_auth_failed", "The upstream refused the broker's key.")
    elif 400 <= status < 500:
        error = UpstreamFailed("upstream_rejected", "The upstream rejected the session config.")
    else:
        error = UpstreamFailed("upstream_error", f"The upstream failed (status {status}).")
    return UpstreamError(error, refundable=True)


def _unreachable() -> UpstreamError:
    error = UpstreamFailed("upstream_error", "The upstream could not be reached.")
    return UpstreamError(error, refundable=True)


def _timeout() -> UpstreamError:
    error = UpstreamTimeout("upstream_timeout", "The upstream did not answer in time.")
    return UpstreamError(error, refundable=True)


class Upstream:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        upstream_url: str,
        api_key: str | None,
        policy: UpstreamPolicy | None = None,
        extra_headers: Mapping[str, str] | None = None,
        on_retry: Callable[[], None] = lambda: None,
        proxy: str | None = None,
    ) -> None:
        self._session = session
        self._url = URL(f"{upstream_url.rstrip('/')}/realtime/sessions")  # parsed once
        self._proxy = URL(proxy) if proxy else None  # from the settings (HTTPS_PROXY…)
        self._headers = {"Authorization": f"Bearer {api_key or ''}", **(extra_headers or {})}
        self._policy = policy or UpstreamPolicy()
        self.breaker = CircuitBreaker(self._policy.breaker_threshold, self._policy.breaker_reset)
        self._on_retry = on_retry

    async def create_session(self, config: dict[str, object]) -> Minted:
        if not self.breaker.allow():
            error = UpstreamFailed(
                "upstream_error",
                "The upstream is failing; the broker is not calling it for a moment.",
                headers={"Retry-After": str(math.ceil(self._policy.breaker_reset))},
            )
            raise UpstreamError(error, refundable=True)
        body = json.dumps(config).encode()
        try:
            minted = await self._attempts(body, time.monotonic() + self._policy.deadline)
        except UpstreamError as exc:
            if exc.error.code in ("upstream_error", "upstream_timeout"):
                self.breaker.failure()  # 5xx, unreachable, reset
            else:
                self.breaker.success()  # it answered: alive, even if it said no
            raise
        self.breaker.success()
        return minted

    async def _attempts(self, body: bytes, deadline: float) -> Minted:
        attempt = 0
        while True:
            try:
                return await self._attempt(body, deadline)
            except _Retry as retry:
                pause = random.uniform(0, self._policy.backoff * 2**attempt)  # noqa: S311
                if attempt >= self._policy.retries or time.monotonic() + pause >= deadline:
                    raise retry.final from None
                attempt += 1
                self._on_retry()
                await asyncio.sleep(pause)

    async def _attempt(self, body: bytes, deadline: float) -> Minted:
        # aiohttp's one timer covers connecting, sending and reading the whole reply; it is
        # set to what is left of the mint's deadline (backoff pauses stop short of it).
        timeout = aiohttp.ClientTimeout(
            total=max(deadline - time.monotonic(), 0.001),
            connect=self._session.timeout.connect,
        )
        try:
            async with self._session.post(
                self._url,
                data=body,
                headers=self._headers,
                allow_redirects=False,
                proxy=self._proxy,
                timeout=timeout,
            ) as reply:
                status, content = reply.status, await reply.read()
                retry_after = reply.headers.get("Retry-After")
        except aiohttp.ConnectionTimeoutError:  # no connection in connect_timeout
            if time.monotonic() < deadline:
                raise _Retry(_unreachable()) from None
            raise _timeout() from None  # the deadline ran out while connecting
        except TimeoutError:  # asked, but no answer in time: not retried
            raise _timeout() from None
        except aiohttp.ClientError:  # refused, reset, malformed reply: worth a retry
            raise _Retry(_unreachable()) from None
        if status == 200:
            return _parse(content)
        if status in RETRYABLE_STATUS:
            raise _Retry(_failure(status, retry_after))
        raise _failure(status, retry_after)


def make_session(
    *, connect_timeout: float, timeout: float, max_connections: int = 2000
) -> aiohttp.ClientSession:
    """The shared upstream client (call inside the event loop; close with ``close()``).

    aiohttp directly: the benchmark measured the httpx interface over aiohttp's transport
    at ~2.5x the client CPU per call (see README, Performance). The pool is large so a
    thousand slow mints never queue; cookies are neither kept nor sent.
    """
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=max_connections, limit_per_host=0),
        timeout=aiohttp.ClientTimeout(total=timeout, connect=connect_timeout),
        headers={"Content-Type": "application/json", "User-Agent": "tokenbroker"},
        cookie_jar=aiohttp.DummyCookieJar(),
    )
