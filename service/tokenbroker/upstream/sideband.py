"""What every API family's calls share upstream: the form of a call's (or session's) id,
kept byte for byte; the sideband refused (the call is over, or was never there); the
aiohttp client their calls and sidebands go through; a creation's reply status read
into the breaker and the typed failure."""

from __future__ import annotations

import re

import aiohttp
from yarl import URL

from tokenbroker.infra.breaker import CircuitBreaker
from tokenbroker.upstream.client import Connection
from tokenbroker.upstream.failures import Failure, Kind, UpstreamError

CALL_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")  # opaque: any family's id fits


class SidebandGone(Exception):
    """The upstream refused the sideband: the call is over (or was never there)."""


class SocketClient:
    """An aiohttp client without a connection cap, made on first use: each sideband holds
    its connection for the call's life, and thousands of them must not starve the call
    creations (the mints have their own client, upstream/client.py)."""

    def __init__(self, connection: Connection) -> None:
        self.proxy = URL(connection.proxy) if connection.proxy else None
        self.connect_timeout = connection.connect_timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),
                timeout=aiohttp.ClientTimeout(total=None, connect=self.connect_timeout),
                headers={"User-Agent": "tokenbroker"},
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def created(breaker: CircuitBreaker, status: int, retry_after: str | None) -> None:
    """A creation's reply status told to the breaker; :class:`UpstreamError` unless it
    created (200/201). Not retried: a call created twice would be one nobody watches."""
    if status in (200, 201):
        breaker.success()
        return
    failure = Failure(Kind.STATUS, status, retry_after)
    breaker.failure() if failure.unhealthy else breaker.success()
    raise UpstreamError(failure, failure.error())
