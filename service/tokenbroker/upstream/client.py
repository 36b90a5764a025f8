"""The upstream call: a JSON ``POST`` to one of the upstream's endpoints, with the real
API key; what is posted where and how a reply reads is the API family's (its dialect).

One total deadline covers the whole call, retries included (:mod:`.retry`). A circuit
breaker answers at once while the upstream keeps failing and lets one probe through every
``breaker_reset`` seconds. Each attempt ends in what the reply gives or a typed
:class:`Failure` (:mod:`.failures`), which decides retries, the breaker, the refund and
the client's error; only the secret and its session's facts leave this module.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from pyreqwest.client import Client, ClientBuilder
from pyreqwest.exceptions import ConnectTimeoutError, RequestError
from pyreqwest.proxy import ProxyBuilder

from tokenbroker.infra import fast_json
from tokenbroker.infra.breaker import CircuitBreaker
from tokenbroker.upstream.entra import EntraToken
from tokenbroker.upstream.failures import Failure, Kind, UpstreamError
from tokenbroker.upstream.retry import RetryPolicy, with_retries

T = TypeVar("T")
NO_RETRY = RetryPolicy(retries=0)


@dataclass(frozen=True, slots=True)
class UpstreamPolicy:
    deadline: float = 10.0  # total, retries included
    retries: int = 2
    backoff: float = 0.05  # first retry waits up to this (full jitter), doubling after
    breaker_threshold: int = 5
    breaker_reset: float = 2.0


@dataclass(frozen=True, slots=True)
class Connection:
    """How the broker reaches the upstream, for the mints' client and the calls' one."""

    connect_timeout: float  # the settings' `upstream.connect_timeout`
    max_connections: int = 2000  # mint calls in flight at once
    proxy: str | None = None  # from the settings (HTTPS_PROXY…)


class Upstream:
    def __init__(
        self,
        connection: Connection,
        upstream_url: str,
        api_key: str | None,
        policy: UpstreamPolicy | None = None,
        extra_headers: Mapping[str, str] | None = None,
        on_retry: Callable[[], None] = lambda: None,
        key_header: str = "Authorization",
        token: EntraToken | None = None,
    ) -> None:
        """Makes its client from ``connection`` (close it with :meth:`close`).
        ``key_header``: ``Authorization`` (a bearer key) or ``api-key`` (Azure's);
        ``token``: bearer tokens instead of the key (Azure with Entra ID)."""
        self._token = token
        self.connection = connection
        self.client = make_client(connection)
        self.base_url = upstream_url.rstrip("/")
        bearer = key_header == "Authorization"
        key = {key_header: f"Bearer {api_key or ''}" if bearer else api_key or ""}
        self._headers = {**(key if token is None else {}), **(extra_headers or {})}
        self._policy = policy or UpstreamPolicy()
        self._retry = RetryPolicy(self._policy.retries, self._policy.backoff)
        self.breaker = CircuitBreaker(self._policy.breaker_threshold, self._policy.breaker_reset)
        self._on_retry = on_retry

    async def close(self) -> None:
        await self.client.close()

    async def auth_headers(self, *, bearer: bool = False) -> dict[str, str]:
        """The key (or Entra ID token) and organisation headers of every upstream call;
        ``bearer``: the key as ``Authorization: Bearer`` whatever the dialect's header
        (Azure's GPT-Live docs show a bearer key, its Realtime API takes ``api-key``)."""
        headers = self._headers
        if bearer and "api-key" in headers:
            headers = {k: v for k, v in headers.items() if k != "api-key"}
            headers["Authorization"] = f"Bearer {self._headers['api-key']}"
        if self._token is None:
            return headers
        return {**headers, **await self._token.headers()}

    @property
    def deadline(self) -> float:
        return self._policy.deadline

    async def post(
        self,
        path: str,
        config: dict[str, Any],
        read: Callable[[bytes], T | Failure],
        *,
        retry: bool = True,
        bearer: bool = False,
    ) -> T:
        """What ``read`` makes of the 200 (or 201) reply to ``config`` posted at ``path``
        (retried within the deadline unless ``retry`` is false: a creation made twice
        would be one nobody asked for), or :class:`UpstreamError` carrying the typed
        failure. ``bearer``: see :meth:`auth_headers`."""
        if not self.breaker.allow():
            failure = Failure(Kind.OPEN_CIRCUIT)
            raise UpstreamError(failure, failure.error(self._policy.breaker_reset))
        body = fast_json.dumps(config)
        deadline = time.monotonic() + self._policy.deadline
        url = f"{self.base_url}{path}"
        result: T | Failure = await with_retries(
            lambda: self._attempt(url, body, deadline, read, bearer),
            self._retry if retry else NO_RETRY, deadline, self._on_retry,
        )  # fmt: skip
        if not isinstance(result, Failure):
            self.breaker.success()
            return result
        if result.unhealthy:
            self.breaker.failure()
        else:
            self.breaker.success()  # it answered: alive, even if it said no
        raise UpstreamError(result, result.error())

    async def _attempt(
        self,
        url: str,
        body: bytes,
        deadline: float,
        read: Callable[[bytes], T | Failure],
        bearer: bool,
    ) -> T | Failure:
        # One timeout covers connecting, sending and reading the whole reply; it is set to
        # what is left of the mint's deadline (backoff pauses stop short of it).
        left = timedelta(seconds=max(deadline - time.monotonic(), 0.001))
        headers = await self.auth_headers(bearer=bearer)
        try:
            request = self.client.post(url).headers(headers).body_bytes(body)
            reply = await request.timeout(left).build().send()
            status, content = reply.status, await reply.bytes()
            retry_after = reply.get_header("retry-after")
        except ConnectTimeoutError:  # no connection in connect_timeout
            late = time.monotonic() >= deadline  # the deadline ran out while connecting
            return Failure(Kind.TIMEOUT if late else Kind.UNREACHABLE)
        except TimeoutError:  # asked, but no answer in time: not retried
            return Failure(Kind.TIMEOUT)
        except RequestError:  # refused, reset, malformed reply: worth a retry
            return Failure(Kind.UNREACHABLE)
        if status in (200, 201):
            return read(content.to_bytes())
        return Failure(Kind.STATUS, status, retry_after)


def make_client(connection: Connection) -> Client:
    """The upstream client for mints (close with ``await client.close()``).

    pyreqwest (Rust's reqwest and hyper under a thin binding): the least CPU per call of
    the clients measured (docs/performance.md). Up to ``max_connections`` requests in
    flight, so a thousand slow mints never queue; each request carries its own timeout;
    no redirects, no cookies, no proxy from the environment but the settings' one.
    """
    builder = (
        ClientBuilder()
        .max_connections(connection.max_connections)
        .connect_timeout(timedelta(seconds=connection.connect_timeout))
        .follow_redirects(False)
        .default_cookie_store(False)
        .user_agent("tokenbroker")
        .default_headers({"Content-Type": "application/json"})
        .no_proxy()
    )
    if connection.proxy:
        builder = builder.proxy(ProxyBuilder.all(connection.proxy))
    return builder.build()
