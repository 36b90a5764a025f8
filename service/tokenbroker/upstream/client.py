"""The upstream call: the dialect's mint endpoint, with the real API key.

One total deadline covers the whole call, retries included (:mod:`.retry`). A circuit
breaker answers at once while the upstream keeps failing and lets one probe through every
``breaker_reset`` seconds. Each attempt ends in a :class:`Minted` or a typed
:class:`Failure` (:mod:`.failures`), which decides retries, the breaker, the refund and
the client's error; only the secret and its session's facts leave this module.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from tokenbroker.infra.breaker import CircuitBreaker
from tokenbroker.upstream.dialects import OPENAI, Dialect
from tokenbroker.upstream.entra import EntraToken
from tokenbroker.upstream.failures import Failure, Kind, Minted, UpstreamError
from tokenbroker.upstream.retry import RetryPolicy, with_retries


@dataclass(frozen=True, slots=True)
class UpstreamPolicy:
    deadline: float = 10.0  # total, retries included
    retries: int = 2
    backoff: float = 0.05  # first retry waits up to this (full jitter), doubling after
    breaker_threshold: int = 5
    breaker_reset: float = 2.0


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
        dialect: Dialect = OPENAI,
        token: EntraToken | None = None,
    ) -> None:
        """``token``: bearer tokens instead of the key (Azure with Entra ID)."""
        self.dialect = dialect
        self._token = token
        self.session = session
        self.base_url = upstream_url.rstrip("/")
        self._url = URL(f"{self.base_url}{dialect.path}")  # parsed once
        self.proxy = URL(proxy) if proxy else None  # from the settings (HTTPS_PROXY…)
        key_header = dialect.auth(api_key) if token is None else {}
        self._headers = {**key_header, **(extra_headers or {})}
        self._policy = policy or UpstreamPolicy()
        self._retry = RetryPolicy(self._policy.retries, self._policy.backoff)
        self.breaker = CircuitBreaker(self._policy.breaker_threshold, self._policy.breaker_reset)
        self._on_retry = on_retry

    async def auth_headers(self) -> dict[str, str]:
        """The key (or Entra ID token) and organisation headers of every upstream call."""
        if self._token is None:
            return self._headers
        return {**self._headers, **await self._token.headers()}

    @property
    def deadline(self) -> float:
        return self._policy.deadline

    async def create_session(self, config: dict[str, Any]) -> Minted:
        """The minted secret for a request body in the dialect's shape, or
        :class:`UpstreamError` carrying the typed failure."""
        if not self.breaker.allow():
            failure = Failure(Kind.OPEN_CIRCUIT)
            raise UpstreamError(failure, failure.error(self._policy.breaker_reset))
        body = json.dumps(config).encode()
        deadline = time.monotonic() + self._policy.deadline
        result = await with_retries(
            lambda: self._attempt(body, deadline), self._retry, deadline, self._on_retry
        )
        if isinstance(result, Minted):
            self.breaker.success()
            return result
        if result.unhealthy:
            self.breaker.failure()
        else:
            self.breaker.success()  # it answered: alive, even if it said no
        raise UpstreamError(result, result.error())

    async def _attempt(self, body: bytes, deadline: float) -> Minted | Failure:
        # aiohttp's one timer covers connecting, sending and reading the whole reply; it is
        # set to what is left of the mint's deadline (backoff pauses stop short of it).
        timeout = aiohttp.ClientTimeout(
            total=max(deadline - time.monotonic(), 0.001),
            connect=self.session.timeout.connect,
        )
        headers = await self.auth_headers()
        try:
            async with self.session.post(
                self._url,
                data=body,
                headers=headers,
                allow_redirects=False,
                proxy=self.proxy,
                timeout=timeout,
            ) as reply:
                status, content = reply.status, await reply.read()
                retry_after = reply.headers.get("Retry-After")
        except aiohttp.ConnectionTimeoutError:  # no connection in connect_timeout
            late = time.monotonic() >= deadline  # the deadline ran out while connecting
            return Failure(Kind.TIMEOUT if late else Kind.UNREACHABLE)
        except TimeoutError:  # asked, but no answer in time: not retried
            return Failure(Kind.TIMEOUT)
        except aiohttp.ClientError:  # refused, reset, malformed reply: worth a retry
            return Failure(Kind.UNREACHABLE)
        if status == 200:
            return self.dialect.parse(content)
        return Failure(Kind.STATUS, status, retry_after)


def make_session(
    *, connect_timeout: float, timeout: float, max_connections: int = 2000
) -> aiohttp.ClientSession:
    """The shared upstream client (call inside the event loop; close with ``close()``).

    aiohttp directly: the benchmark measured the httpx interface over aiohttp's transport
    at ~2.5x the client CPU per call (docs/performance.md). The pool is large so a
    thousand slow mints never queue; cookies are neither kept nor sent.
    """
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=max_connections, limit_per_host=0),
        timeout=aiohttp.ClientTimeout(total=timeout, connect=connect_timeout),
        headers={"Content-Type": "application/json", "User-Agent": "tokenbroker"},
        cookie_jar=aiohttp.DummyCookieJar(),
    )
